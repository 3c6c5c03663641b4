#include "gradcheck.h"

#include "autograd.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "random.h"

#include <cmath>

namespace tapegrad {

namespace {

// Pointer to logical element j (row-major) of t, honouring strides.
double* element(const Tensor& t, int64_t j) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (j % t.shape()[d]) * t.strides()[d];
    j /= t.shape()[d];
  }
  return t.data_ptr<double>() + off;
}

void check_inputs(const std::vector<Tensor>& inputs, const char* who) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    TG_CHECK(x.dtype() == kFloat64, "{}: input {} requires grad but is {}; gradcheck needs float64 inputs", who, i,
             dtype_name(x.dtype()));
    for (int64_t d = 0; d < x.dim(); ++d)
      TG_CHECK(x.strides()[d] != 0 || x.shape()[d] <= 1,
               "{}: input {} has overlapping memory (an expanded dim); pass a contiguous copy", who, i);
  }
}

// <v, f(x)> summed over all floating outputs.
Tensor project(const std::vector<Tensor>& outs, const std::vector<Tensor>& vs) {
  Tensor total;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!vs[k].defined()) continue;
    Tensor s = sum(outs[k].to(kFloat64) * vs[k]);
    total = total.defined() ? total + s : s;
  }
  return total;
}

bool report(const GradcheckOptions& o, const std::string& msg) {
  if (o.raise) throw Error(msg);
  return false;
}

}  // namespace

bool gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& o) {
  check_inputs(inputs, "gradcheck");
  std::vector<Tensor> outs;
  std::vector<Tensor> vs;
  Generator gen(o.seed);
  {
    autograd::EnableGradGuard eg;
    outs = fn(inputs);
  }
  for (const Tensor& out : outs)
    vs.push_back(out.defined() && is_floating(out.dtype()) ? Tensor::randn(out.shape(), {.dtype = kFloat64}, &gen)
                                                           : Tensor());
  std::vector<Tensor> wrt;
  std::vector<size_t> wrt_index;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      wrt.push_back(inputs[i]);
      wrt_index.push_back(i);
    }
  TG_CHECK(!wrt.empty(), "gradcheck: no input requires grad");

  std::vector<Tensor> analytic(wrt.size());
  {
    autograd::EnableGradGuard eg;
    Tensor p = project(outs, vs);
    if (p.requires_grad()) analytic = autograd::grad({p}, wrt, {}, false, false, /*allow_unused=*/true);
  }

  autograd::NoGradGuard ng;
  for (size_t w = 0; w < wrt.size(); ++w) {
    const Tensor& x = wrt[w];
    const std::vector<double> a =
        analytic[w].defined() ? analytic[w].to_vector<double>() : std::vector<double>(static_cast<size_t>(x.numel()), 0.0);
    for (int64_t j = 0; j < x.numel(); ++j) {
      double* p = element(x, j);
      const double orig = *p;
      *p = orig + o.eps;
      const double plus = project(fn(inputs), vs).item();
      *p = orig - o.eps;
      const double minus = project(fn(inputs), vs).item();
      *p = orig;
      const double numeric = (plus - minus) / (2 * o.eps);
      const double analytical = a[static_cast<size_t>(j)];
      if (!(std::abs(analytical - numeric) <= o.atol + o.rtol * std::abs(numeric))) {
        return report(o, fmt::format("gradcheck: Jacobian mismatch for input {} (shape {}) at element {}: analytical "
                                     "{:.10g}, numerical {:.10g}",
                                     wrt_index[w], shape_str(x.shape()), j, analytical, numeric));
      }
    }
  }
  return true;
}

bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               const GradcheckOptions& o) {
  return gradcheck(GradcheckFn([&fn](const std::vector<Tensor>& xs) { return std::vector<Tensor>{fn(xs)}; }), inputs,
                   o);
}

bool gradgradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                   const GradcheckOptions& o) {
  check_inputs(inputs, "gradgradcheck");
  // g(x) = grad of <v, f(x)> w.r.t. the inputs, built with create_graph; gradcheck g.
  Generator gen(o.seed + 1);
  Tensor v;
  {
    autograd::EnableGradGuard eg;
    const Tensor out = fn(inputs);
    v = Tensor::randn(out.shape(), {.dtype = kFloat64}, &gen);
  }
  GradcheckFn first_order = [&fn, v](const std::vector<Tensor>& xs) {
    std::vector<Tensor> wrt;
    for (const Tensor& x : xs)
      if (x.defined() && x.requires_grad()) wrt.push_back(x);
    autograd::EnableGradGuard eg;
    Tensor p = sum(fn(xs).to(kFloat64) * v);
    if (!p.requires_grad()) return std::vector<Tensor>(wrt.size());
    auto gs = autograd::grad({p}, wrt, {}, true, /*create_graph=*/true, /*allow_unused=*/true);
    for (size_t i = 0; i < gs.size(); ++i)
      if (!gs[i].defined()) gs[i] = Tensor::zeros(wrt[i].shape(), {.dtype = kFloat64});
    return gs;
  };
  return gradcheck(first_order, inputs, o);
}

}  // namespace tapegrad
