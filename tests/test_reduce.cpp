// Reductions and softmax: values against PyTorch fixtures (tests/fixtures/gen_reduce.py), gradients by
// gradcheck / gradgradcheck, error messages, and the parallel kernels against plain loops.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/core/simd.h>

#include <omp.h>

#include <cmath>
#include <limits>
#include <map>

using namespace tapegrad;
using testing::require_close;

namespace {

// Kernels are checked serially and split across 2 and 3 threads, whatever the machine has.
const int kThreadCounts[] = {1, 2, 3};

const testing::Fixture& fx() {
  static const testing::Fixture f("reduce.safetensors");
  return f;
}

// The views gen_reduce.py builds from its input x (3, 4, 5).
Tensor view_of(const std::string& v) {
  const Tensor x = fx()["x"];
  if (v == "t") return x.transpose(0, 2);
  if (v == "s") return x.slice(1, 0, 4, 2).slice(2, 1, 5);
  return x;
}

const std::vector<std::pair<std::string, Shape>> kDimSets = {
    {"all", {}}, {"d0", {0}}, {"d1", {1}}, {"dm1", {-1}}, {"d02", {0, 2}}, {"dm1m3", {-1, -3}}};
const std::vector<std::string> kViews = {"c", "t", "s"};

// Exact equality for integer results.
void require_equal(const Tensor& a, const Tensor& b) {
  REQUIRE(a.dtype() == b.dtype());
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.to_vector<int64_t>() == b.to_vector<int64_t>());
}

// ---- naive reference: plain loops over a contiguous double copy ----

struct Naive {
  Shape shape;
  std::vector<double> v;
  std::vector<bool> red;
  Shape out_shape;  // keepdim = false
  int64_t out_n = 1, red_n = 1;

  Naive(const Tensor& x, const Shape& dims) : shape(x.shape()), v(x.to_vector<double>()) {
    red.assign(shape.size(), dims.empty());
    for (int64_t d : dims) red[static_cast<size_t>(d < 0 ? d + x.dim() : d)] = true;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (red[d]) {
        red_n *= shape[d];
      } else {
        out_shape.push_back(shape[d]);
        out_n *= shape[d];
      }
    }
  }
  // Calls f(out_index, reduced_index, value) for every element, both indices row-major.
  template <typename F>
  void each(F f) const {
    const size_t nd = shape.size();
    std::vector<int64_t> idx(nd, 0);
    for (size_t e = 0; e < v.size(); ++e) {
      int64_t o = 0, k = 0;
      for (size_t d = 0; d < nd; ++d) {
        if (red[d]) k = k * shape[d] + idx[d];
        else o = o * shape[d] + idx[d];
      }
      f(o, k, v[e]);
      for (int64_t d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }
  Tensor make(const std::vector<double>& r) const { return Tensor::from_vector(r, out_shape); }
  Tensor sum() const {
    std::vector<double> r(out_n, 0.0);
    each([&](int64_t o, int64_t, double x) { r[o] += x; });
    return make(r);
  }
  Tensor var(int correction) const {
    std::vector<double> m(out_n, 0.0), r(out_n, 0.0);
    each([&](int64_t o, int64_t, double x) { m[o] += x / static_cast<double>(red_n); });
    each([&](int64_t o, int64_t, double x) { r[o] += (x - m[o]) * (x - m[o]); });
    for (auto& a : r) a /= static_cast<double>(red_n - correction);
    return make(r);
  }
  Tensor amax() const {
    std::vector<double> r(out_n, -INFINITY);
    each([&](int64_t o, int64_t, double x) {
      if (std::isnan(x) || x > r[o]) r[o] = std::isnan(r[o]) ? r[o] : x;
    });
    return make(r);
  }
  Tensor argmax() const {
    std::vector<double> best(out_n, -INFINITY);
    std::vector<int64_t> r(out_n, 0);
    each([&](int64_t o, int64_t k, double x) {
      if (!std::isnan(best[o]) && (x > best[o] || std::isnan(x))) {
        best[o] = x;
        r[o] = k;
      }
    });
    return Tensor::from_vector(r, out_shape);
  }
  Tensor logsumexp() const {
    std::vector<double> m(out_n, -INFINITY), r(out_n, 0.0);
    each([&](int64_t o, int64_t, double x) { m[o] = std::max(m[o], x); });
    for (auto& a : m) a = std::isinf(a) ? 0.0 : a;  // PyTorch's shift for infinite maxima
    each([&](int64_t o, int64_t, double x) { r[o] += std::exp(x - m[o]); });
    for (int64_t o = 0; o < out_n; ++o) r[o] = std::log(r[o]) + m[o];
    return make(r);
  }
};

// softmax along `dim` with plain loops in double.
Tensor naive_softmax(const Tensor& x, int64_t dim, bool log) {
  const Shape s = x.shape();
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[i];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= s[i];
  const int64_t n = s[d];
  const auto v = x.to_vector<double>();
  std::vector<double> r(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t i) { return (o * n + i) * inner + j; };
      double m = -INFINITY, t = 0;
      for (int64_t i = 0; i < n; ++i) m = std::max(m, v[at(i)]);
      for (int64_t i = 0; i < n; ++i) t += std::exp(v[at(i)] - m);
      for (int64_t i = 0; i < n; ++i) r[at(i)] = log ? v[at(i)] - m - std::log(t) : std::exp(v[at(i)] - m) / t;
    }
  return Tensor::from_vector(r, s);
}

Tensor randn32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, {}, &g);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Values against PyTorch

TEST_CASE("sum, mean, var, std, amax, amin and logsumexp match PyTorch over dims, keepdim and views") {
  for (const auto& vname : kViews) {
    const Tensor x = view_of(vname);
    for (const auto& [dname, dims] : kDimSets) {
      for (bool keep : {false, true}) {
        const std::string k = vname + "." + dname + ".k" + (keep ? "1" : "0");
        INFO(k);
        require_close(sum(x, dims, keep), fx()["sum." + k]);
        require_close(mean(x, dims, keep), fx()["mean." + k]);
        require_close(var(x, dims, true, keep), fx()["var." + k]);
        require_close(var(x, dims, false, keep), fx()["varb." + k]);
        require_close(tapegrad::std(x, dims, true, keep), fx()["std." + k]);
        require_close(amax(x, dims, keep), fx()["amax." + k], 0, 0);
        require_close(amin(x, dims, keep), fx()["amin." + k], 0, 0);
        require_close(logsumexp(x, dims, keep), fx()["logsumexp." + k]);
      }
    }
  }
}

TEST_CASE("max, min, argmax and argmin along a dim match PyTorch") {
  for (const auto& vname : kViews) {
    const Tensor x = view_of(vname);
    for (int64_t dim : {0, 1, 2, -1}) {
      for (bool keep : {false, true}) {
        const std::string k = vname + ".dim" + std::to_string(dim) + ".k" + (keep ? "1" : "0");
        INFO(k);
        auto [mv, mi] = max(x, dim, keep);
        auto [nv, ni] = min(x, dim, keep);
        require_close(mv, fx()["max.v." + k], 0, 0);
        require_equal(mi, fx()["max.i." + k]);
        require_close(nv, fx()["min.v." + k], 0, 0);
        require_equal(ni, fx()["min.i." + k]);
        require_equal(argmax(x, dim, keep), fx()["argmax." + k]);
        require_equal(argmin(x, dim, keep), fx()["argmin." + k]);
      }
    }
    require_close(max(x), fx()["maxall." + vname], 0, 0);
    require_close(min(x), fx()["minall." + vname], 0, 0);
    require_equal(argmax(x), fx()["argmaxall." + vname]);
    REQUIRE(max(x).dim() == 0);
  }
}

TEST_CASE("softmax and log_softmax match PyTorch along every dim and on views") {
  for (const auto& vname : kViews) {
    const Tensor x = view_of(vname);
    for (int64_t dim : {0, 1, 2, -1}) {
      INFO(vname << " dim " << dim);
      require_close(softmax(x, dim), fx()["softmax." + vname + ".dim" + std::to_string(dim)]);
      require_close(log_softmax(x, dim), fx()["log_softmax." + vname + ".dim" + std::to_string(dim)]);
    }
  }
  // Long float32 rows with a wide range: sums in double keep us within ~1e-6 of PyTorch.
  const Tensor w = fx()["wide"];
  require_close(softmax(w, 1), fx()["wide.softmax.d1"], 1e-5, 1e-7);
  require_close(log_softmax(w, 1), fx()["wide.log_softmax.d1"], 1e-6, 1e-5);
  require_close(softmax(w, 0), fx()["wide.softmax.d0"], 1e-5, 1e-7);
  require_close(logsumexp(w, {1}), fx()["wide.logsumexp.d1"], 1e-6, 1e-6);
  // 0-dim: softmax is 1, log_softmax 0.
  require_close(softmax(Tensor::scalar(3), 0), Tensor::scalar(1));
  require_close(log_softmax(Tensor::scalar(3), -1), Tensor::scalar(0));
}

TEST_CASE("float64, int64 and bool inputs keep PyTorch's dtypes") {
  const Tensor x64 = fx()["x64"];
  require_close(var(x64, {1}), fx()["x64.var.d1"], 1e-12, 1e-12);
  require_close(tapegrad::std(x64, {0}, false), fx()["x64.std.d0"], 1e-12, 1e-12);
  require_close(logsumexp(x64, {1}), fx()["x64.logsumexp.d1"], 1e-12, 1e-12);
  require_close(softmax(x64, 0), fx()["x64.softmax.d0"], 1e-12, 1e-14);
  require_close(log_softmax(x64, 1), fx()["x64.log_softmax.d1"], 1e-12, 1e-12);
  REQUIRE(var(x64, {1}).dtype() == kFloat64);

  const Tensor xi = fx()["xi"];
  require_equal(sum(xi, {0}), fx()["xi.sum.d0"]);
  require_equal(amax(xi, {1}), fx()["xi.amax.d1"]);
  require_equal(amin(xi, {0}), fx()["xi.amin.d0"]);
  require_equal(argmax(xi, 1), fx()["xi.argmax.d1"]);
  require_equal(argmin(xi, 0), fx()["xi.argmin.d0"]);
  const Tensor lse = logsumexp(xi, {1});
  REQUIRE(lse.dtype() == kFloat32);
  require_close(lse, fx()["xi.logsumexp.d1"]);
  require_equal(sum(fx()["xb"], {1}), fx()["xb.sum.d1"]);
}

TEST_CASE("ties: first index wins, gradients split evenly like PyTorch") {
  const Tensor t = fx()["ties"];
  require_equal(argmax(t, 1), fx()["ties.argmax.d1"]);
  require_equal(argmin(t, 1), fx()["ties.argmin.d1"]);
  require_equal(argmax(t, 0), fx()["ties.argmax.d0"]);
  require_equal(max(t, 1).second, fx()["ties.max.i.d1"]);
  require_equal(min(t, 1).second, fx()["ties.min.i.d1"]);

  const Tensor up = fx()["ties.up"];
  auto grad_of = [&](const std::function<Tensor(const Tensor&)>& f, const Tensor& upstream) {
    Tensor x = t.clone().detach().requires_grad_();
    f(x).backward(upstream);
    return x.grad();
  };
  require_close(grad_of([](const Tensor& x) { return amax(x, {1}); }, up), fx()["ties.grad.amax.d1"]);
  require_close(grad_of([](const Tensor& x) { return amin(x, {1}); }, up), fx()["ties.grad.amin.d1"]);
  require_close(grad_of([](const Tensor& x) { return max(x, 1).first; }, up), fx()["ties.grad.maxdim.d1"]);
  require_close(grad_of([](const Tensor& x) { return min(x, 1).first; }, up), fx()["ties.grad.mindim.d1"]);
  require_close(grad_of([](const Tensor& x) { return max(x); }, {}), fx()["ties.grad.maxall"]);
  require_close(grad_of([](const Tensor& x) { return min(x); }, {}), fx()["ties.grad.minall"]);
  require_close(grad_of([](const Tensor& x) { return amax(x, {0, 1}, true); }, Tensor::of({{2.0}})),
                fx()["ties.grad.amax.all"]);
}

TEST_CASE("NaN propagates like PyTorch; arg reductions treat it as the extreme") {
  const Tensor x = fx()["xn"];
  require_close(sum(x, {1}), fx()["xn.sum.d1"]);
  require_close(amax(x, {1}), fx()["xn.amax.d1"]);
  require_close(amin(x, {0}), fx()["xn.amin.d0"]);
  require_equal(argmax(x, 1), fx()["xn.argmax.d1"]);
  require_equal(argmin(x, 1), fx()["xn.argmin.d1"]);
  require_equal(argmax(x, 0), fx()["xn.argmax.d0"]);
  auto [mv, mi] = max(x, 1);
  require_close(mv, fx()["xn.max.v.d1"]);
  require_equal(mi, fx()["xn.max.i.d1"]);
  auto [nv, ni] = min(x, 1);
  require_close(nv, fx()["xn.min.v.d1"]);
  require_equal(ni, fx()["xn.min.i.d1"]);
  require_close(max(x), fx()["xn.maxall"]);
  require_equal(argmax(x), fx()["xn.argmaxall"]);
  require_close(var(x, {1}), fx()["xn.var.d1"]);
  require_close(logsumexp(x, {1}), fx()["xn.logsumexp.d1"]);
  require_close(softmax(x, 1), fx()["xn.softmax.d1"]);

  Tensor a = x.clone().detach().requires_grad_();
  max(a).backward();
  require_close(a.grad(), fx()["xn.grad.maxall"]);
  Tensor b = x.clone().detach().requires_grad_();
  amax(b, {1}).backward(Tensor::ones({3}));
  require_close(b.grad(), fx()["xn.grad.amax.d1"]);
}

TEST_CASE("infinities: logsumexp of -inf rows, softmax with masked entries") {
  const Tensor x = fx()["xinf"];
  require_close(logsumexp(x, {1}), fx()["xinf.logsumexp.d1"]);
  require_close(softmax(x, 1), fx()["xinf.softmax.d1"]);
  require_close(log_softmax(x, 1), fx()["xinf.log_softmax.d1"]);
  require_close(amax(x, {1}), fx()["xinf.amax.d1"]);
}

TEST_CASE("variance of one element: nan unbiased, 0 biased; std's gradient is 0 where std is 0") {
  const Tensor one = fx()["one"];
  require_close(var(one, {1}), fx()["one.var.d1"]);
  require_close(var(one, {1}, false), fx()["one.varb.d1"]);
  require_close(tapegrad::std(one, {1}), fx()["one.std.d1"]);
  Tensor a = one.clone().detach().requires_grad_();
  var(a, {1}).sum().backward();
  require_close(a.grad(), fx()["one.grad.var"]);
  Tensor b = one.clone().detach().requires_grad_();
  var(b, {1}, false).sum().backward();
  require_close(b.grad(), fx()["one.grad.varb"]);
  Tensor c = fx()["const"].clone().detach().requires_grad_();
  tapegrad::std(c, {1}).backward(Tensor::of({1.5, -0.5}));
  require_close(c.grad(), fx()["const.grad.std"]);
}

TEST_CASE("empty inputs: sums are 0, logsumexp -inf, var nan, softmax empty") {
  const Tensor e = Tensor::zeros({0, 3});
  require_close(sum(e, {0}), Tensor::zeros({3}));
  require_close(sum(e), Tensor::scalar(0));
  require_close(logsumexp(e, {0}), fx()["empty.logsumexp.d0"]);
  require_close(var(e, {0}), fx()["empty.var.d0"]);
  REQUIRE(amax(e, {1}).shape() == Shape{0});
  REQUIRE(argmax(e, 1).shape() == Shape{0});
  REQUIRE(softmax(e, 0).shape() == Shape{0, 3});
  REQUIRE(log_softmax(e, 1).shape() == Shape{0, 3});
}

TEST_CASE("0-dim inputs reduce to themselves, as PyTorch") {
  Tensor x = Tensor::scalar(3.0, kFloat64).requires_grad_();
  require_close(sum(x), x, 0, 0);
  require_close(sum(x, {0}, true), x, 0, 0);
  require_close(amax(x, {-1}), x, 0, 0);
  require_close(max(x), x, 0, 0);
  auto [v, i] = max(x, 0);
  require_close(v, x, 0, 0);
  REQUIRE(i.item<int64_t>() == 0);
  REQUIRE(argmax(x).item<int64_t>() == 0);  // flattens: a 0-dim tensor reshapes to (1,)
  REQUIRE(x.reshape({-1}).shape() == Shape{1});
  REQUIRE(x.flatten().shape() == Shape{1});
  REQUIRE(argmin(x, -1, true).item<int64_t>() == 0);
  REQUIRE(std::isnan(var(x).item()));
  require_close(logsumexp(x, {0}), x, 0, 0);
  REQUIRE(v.dim() == 0);
  v.backward();
  require_close(x.grad(), Tensor::scalar(1.0, kFloat64), 0, 0);
}

TEST_CASE("Tensor member sugar forwards to the free functions") {
  const Tensor x = fx()["x"];
  require_close(x.var({1}), var(x, {1}), 0, 0);
  require_close(x.var({0, 2}, false, true), var(x, {0, 2}, false, true), 0, 0);
  require_close(x.std({-1}), tapegrad::std(x, {-1}), 0, 0);
  require_close(x.amax({1}, true), amax(x, {1}, true), 0, 0);
  require_close(x.amin({0}), amin(x, {0}), 0, 0);
  require_equal(x.argmax(2, true), argmax(x, 2, true));
  require_close(x.softmax(1), softmax(x, 1), 0, 0);
  require_close(x.log_softmax(-1), log_softmax(x, -1), 0, 0);
  require_close(x.sum({0}, true), sum(x, {0}, true), 0, 0);
  require_close(x.mean(), mean(x), 0, 0);
}

// ---------------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("gradcheck: reductions over several dims, keepdim and non-contiguous inputs") {
  const Tensor base = testing::randn64({3, 4, 5}, 101, false);
  const std::vector<Shape> dim_sets = {{}, {0}, {-1}, {0, 2}, {1, -1}};
  for (int view = 0; view < 2; ++view) {
    // view 1: a transposed leaf, so the kernels see non-contiguous strides
    Tensor x = view == 0 ? base.clone().requires_grad_() : base.transpose(0, 2).detach().requires_grad_();
    for (const Shape& dims : dim_sets) {
      for (bool keep : {false, true}) {
        INFO("view " << view << " dims " << shape_str(dims) << " keepdim " << keep);
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return var(in[0], dims, true, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return var(in[0], dims, false, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return tapegrad::std(in[0], dims, true, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return amax(in[0], dims, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return amin(in[0], dims, keep); }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return logsumexp(in[0], dims, keep); }, {x}));
      }
    }
    for (int64_t dim : {0, 1, -1}) {
      for (bool keep : {false, true}) {
        INFO("view " << view << " dim " << dim << " keepdim " << keep);
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return max(in[0], dim, keep).first; }, {x}));
        REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return min(in[0], dim, keep).first; }, {x}));
      }
      INFO("softmax dim " << dim);
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return softmax(in[0], dim); }, {x}));
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); }, {x}));
    }
    REQUIRE(gradcheck([](const std::vector<Tensor>& in) { return max(in[0]); }, {x}));
    REQUIRE(gradcheck([](const std::vector<Tensor>& in) { return min(in[0]); }, {x}));
  }
}

TEST_CASE("gradgradcheck: sum, mean, var, std, amax, logsumexp, softmax, log_softmax") {
  Tensor x = testing::randn64({3, 4, 5}, 202);
  for (const Shape& dims : std::vector<Shape>{{}, {1}, {0, -1}}) {
    for (bool keep : {false, true}) {
      INFO("dims " << shape_str(dims) << " keepdim " << keep);
      // sum and mean are linear: square the result so the second derivative is not identically zero.
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return sum(in[0] * in[0], dims, keep); }, {x}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keep).pow(2); }, {x}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return var(in[0], dims, true, keep); }, {x}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return tapegrad::std(in[0], dims, false, keep); }, {x}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return amax(in[0], dims, keep).pow(3); }, {x}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return logsumexp(in[0], dims, keep); }, {x}));
    }
  }
  for (int64_t dim : {0, 1, -1}) {
    INFO("dim " << dim);
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return softmax(in[0], dim); }, {x}));
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); }, {x}));
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return max(in[0], dim).first.pow(2); }, {x}));
  }
}

TEST_CASE("softmax backward: gradients match PyTorch; the fused kernel matches the composed formula") {
  const Tensor s = fx()["s64"], up = fx()["s64.up"];
  for (int64_t dim : {0, 1}) {
    Tensor a = s.clone().detach().requires_grad_();
    softmax(a, dim).backward(up);
    require_close(a.grad(), fx()["s64.grad.softmax.d" + std::to_string(dim)], 1e-12, 1e-14);
    Tensor b = s.clone().detach().requires_grad_();
    log_softmax(b, dim).backward(up);
    require_close(b.grad(), fx()["s64.grad.log_softmax.d" + std::to_string(dim)], 1e-12, 1e-14);
  }
  // Without create_graph the backward runs one fused pass; with it, differentiable ops. Odd shapes,
  // every dim, float32 and float64, a non-contiguous upstream gradient.
  for (DType dt : {kFloat32, kFloat64}) {
    for (const Shape& shape : std::vector<Shape>{{7, 13}, {3, 1, 257}, {5, 300, 3}, {1}, {301, 129}}) {
      const Tensor x0 = randn32(shape, 7).to(dt);
      for (int64_t dim = 0; dim < static_cast<int64_t>(shape.size()); ++dim) {
        for (bool log : {false, true}) {
          INFO(dtype_name(dt) << " " << shape_str(shape) << " dim " << dim << " log " << log);
          Tensor x = x0.clone().detach().requires_grad_();
          Tensor y = log ? log_softmax(x, dim) : softmax(x, dim);
          Shape rev(shape.rbegin(), shape.rend());
          Shape perm;
          for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) perm.push_back(d);
          const Tensor g = randn32(rev, 8).to(dt).permute(perm);  // transposed: non-contiguous
          const Tensor fused = autograd::grad({y}, {x}, {g}, true, false)[0];
          const Tensor composed = autograd::grad({y}, {x}, {g}, true, true)[0].detach();
          require_close(fused, composed, dt == kFloat32 ? 1e-5 : 1e-12, dt == kFloat32 ? 1e-6 : 1e-14);
        }
      }
    }
  }
}

TEST_CASE("integer outputs carry no gradient") {
  Tensor x = testing::randn64({3, 4}, 5);
  REQUIRE_FALSE(argmax(x, 1).requires_grad());
  REQUIRE_FALSE(argmin(x, 0).requires_grad());
  REQUIRE_FALSE(argmax(x).requires_grad());
  auto [v, i] = max(x, 1);
  REQUIRE(v.requires_grad());
  REQUIRE_FALSE(i.requires_grad());
  REQUIRE(i.dtype() == kInt64);
}

// ---------------------------------------------------------------------------------------------------
// Errors

TEST_CASE("reduction errors carry PyTorch's messages") {
  const Tensor x = Tensor::zeros({3, 4, 5});
  REQUIRE_ERROR(sum(x, {3}), "sum: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(mean(x, {-4}), "mean: Dimension out of range (expected to be in range of [-3, 2], but got -4)");
  REQUIRE_ERROR(var(x, {0, 5}), "var: Dimension out of range (expected to be in range of [-3, 2], but got 5)");
  REQUIRE_ERROR(amax(x, {7}), "amax: Dimension out of range (expected to be in range of [-3, 2], but got 7)");
  REQUIRE_ERROR(argmax(x, 3), "argmax: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(max(x, -4), "max: Dimension out of range (expected to be in range of [-3, 2], but got -4)");
  REQUIRE_ERROR(softmax(x, 3), "softmax: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(log_softmax(x, -4),
                "log_softmax: Dimension out of range (expected to be in range of [-3, 2], but got -4)");
  REQUIRE_ERROR(logsumexp(x, {3}), "logsumexp: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(argmax(Tensor::scalar(1), 1),
                "argmax: Dimension out of range (expected to be in range of [-1, 0], but got 1)");

  REQUIRE_ERROR(sum(x, {0, -3}), "sum: dim 0 appears multiple times in the list of dims");
  REQUIRE_ERROR(var(x, {2, 2}), "var: dim 2 appears multiple times in the list of dims");
  REQUIRE_ERROR(amax(x, {1, -2}), "amax: dim 1 appears multiple times in the list of dims");
  REQUIRE_ERROR(logsumexp(x, {-1, 2}), "logsumexp: dim 2 appears multiple times in the list of dims");

  const Tensor i = Tensor::zeros({2, 3}, {.dtype = kInt64});
  REQUIRE_ERROR(var(i, {1}), "var: std and var only support floating point and complex dtypes");
  REQUIRE_ERROR(tapegrad::std(i, {1}), "std: std and var only support floating point and complex dtypes");
  REQUIRE_ERROR(softmax(i, 1), "softmax: expected a floating point tensor (float32 or float64), got int64");

  const Tensor e = Tensor::zeros({0, 3});
  REQUIRE_ERROR(max(e),
                "max: max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim "
                "with the 'dim' argument.");
  REQUIRE_ERROR(min(e),
                "min: min(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim "
                "with the 'dim' argument.");
  REQUIRE_ERROR(amax(e),
                "amax: amax(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction "
                "dim with the 'dim' argument.");
  REQUIRE_ERROR(amax(e, {0}), "amax: amax(): Expected reduction dim 0 to have non-zero size.");
  REQUIRE_ERROR(amin(Tensor::zeros({3, 0, 2}), {-1, -2}), "amin: amin(): Expected reduction dim -2 to have non-zero size.");
  REQUIRE_ERROR(max(e, 0), "max: max(): Expected reduction dim 0 to have non-zero size.");
  REQUIRE_ERROR(min(Tensor::zeros({2, 0}), -1), "min: min(): Expected reduction dim 1 to have non-zero size.");
  REQUIRE_ERROR(argmax(e, 0), "argmax: argmax(): Expected reduction dim 0 to have non-zero size.");
  REQUIRE_ERROR(argmin(e, 0), "argmin: argmin(): Expected reduction dim 0 to have non-zero size.");
  REQUIRE_ERROR(argmax(e), "argmax: argmax(): Expected reduction dim to be specified for input.numel() == 0.");
}

// ---------------------------------------------------------------------------------------------------
// Kernels against plain loops: odd shapes big enough for the parallel and split paths

TEST_CASE("reduction kernels match plain loops on every loop order") {
  struct Case {
    Shape shape;
    Shape dims;
    bool transpose;  // reduce x.transpose(0, -1) instead of x
  };
  const std::vector<Case> cases = {
      {{301, 257}, {1}, false},        // inner, many outputs
      {{2, 70001}, {1}, false},        // inner, few long rows: split reductions
      {{513, 129}, {}, false},         // everything into one output: split
      {{4099, 67}, {0}, false},        // outer, narrow tiles
      {{70001, 3}, {0}, false},        // outer, one tile of 3: split over rows
      {{1031, 1500}, {0}, false},      // outer, wide rows: tiles of accumulators
      {{7, 513, 33}, {1}, false},      // outer with a leading kept dim
      {{13, 17, 19, 11}, {0, 2}, false},
      {{13, 17, 19, 11}, {1, 3}, false},
      {{257, 301}, {0}, true},         // transposed input: reduced dim contiguous
      {{257, 301}, {1}, true},         // transposed input: kept dim contiguous
      {{3, 5}, {0}, false},            // small, serial
      {{1, 1, 5}, {0, 1}, false},      // size-1 reduced dims
  };
  const int all_threads = omp_get_max_threads();
  for (int threads : kThreadCounts) {
    omp_set_num_threads(threads);
    for (const auto& c : cases) {
      for (DType dt : {kFloat32, kFloat64}) {
        INFO(shape_str(c.shape) << " dims " << shape_str(c.dims) << " transposed " << c.transpose << " "
                                << dtype_name(dt) << " threads " << threads);
        Tensor x = randn32(c.shape, 11).to(dt);
        if (c.transpose) x = x.transpose(0, -1);
        const Naive ref(x, c.dims);
        const double tol = dt == kFloat32 ? 1e-5 : 1e-10;
        require_close(sum(x, c.dims), ref.sum(), tol, tol);
        require_close(var(x, c.dims), ref.var(1), tol, tol);
        require_close(amax(x, c.dims), ref.amax(), 0, 0);
        require_close(logsumexp(x, c.dims), ref.logsumexp(), tol, tol);
        if (c.dims.size() == 1) {
          const Tensor idx = argmax(x, c.dims[0]);
          require_equal(idx, ref.argmax());
          auto [v, i] = max(x, c.dims[0]);
          require_equal(i, idx);
          require_close(v, ref.amax(), 0, 0);
        }
      }
    }
    // int64 sums accumulate exactly.
    const Tensor xi = Tensor::randint(-1000, 1000, {4099, 67});
    const Naive ri(xi, {0});
    require_close(sum(xi, {0}), ri.sum(), 0, 0);
    require_close(sum(xi), Naive(xi, {}).sum(), 0, 0);
  }
  omp_set_num_threads(all_threads);
}

TEST_CASE("argmax with ties and NaN on the parallel paths picks the first") {
  // Ties everywhere (small integers) on shapes that take the split paths.
  for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{{{2, 70001}, 1}, {{70001, 3}, 0}}) {
    Tensor x = Tensor::randint(0, 3, shape).to(kFloat32);
    const Naive ref(x, {dim});
    require_equal(argmax(x, dim), ref.argmax());
    // A NaN late in the reduction wins over everything before it.
    Tensor y = x.clone();
    {
      Tensor row = dim == 1 ? y.select(0, 1).narrow(0, 60000, 1) : y.select(1, 2).narrow(0, 60000, 1);
      row.fill_(NAN);
    }
    require_equal(argmax(y, dim), Naive(y, {dim}).argmax());
    require_close(amax(y, {dim}), Naive(y, {dim}).amax(), 0, 0);
  }
}

TEST_CASE("logsumexp merges partial sums across chunks, with infinities") {
  // Rows long enough to be split into chunks: row 0 starts with -inf, row 1 is all -inf, row 2 has a
  // late +inf, row 3 a late NaN; the outer loop order sees the same data transposed.
  Tensor x = randn32({4, 70001}, 21) * 30.0;
  x.select(0, 0).narrow(0, 0, 40000).fill_(-INFINITY);
  x.select(0, 1).fill_(-INFINITY);
  x.select(0, 2).narrow(0, 65000, 1).fill_(INFINITY);
  x.select(0, 3).narrow(0, 69000, 1).fill_(NAN);
  const int all_threads = omp_get_max_threads();
  for (int threads : kThreadCounts) {
    omp_set_num_threads(threads);
    require_close(logsumexp(x, {1}), Naive(x, {1}).logsumexp(), 1e-6, 1e-6);
    const Tensor xt = x.t().contiguous();
    require_close(logsumexp(xt, {0}), Naive(xt, {0}).logsumexp(), 1e-6, 1e-6);
    require_close(logsumexp(x.t(), {0}), Naive(xt, {0}).logsumexp(), 1e-6, 1e-6);
  }
  omp_set_num_threads(all_threads);
}

TEST_CASE("softmax kernels match plain loops on odd shapes") {
  const int all_threads = omp_get_max_threads();
  for (int threads : kThreadCounts) {
    omp_set_num_threads(threads);
    for (const Shape& shape : std::vector<Shape>{{7, 13}, {129, 301}, {3, 1, 257}, {5, 300, 33}, {1}, {2, 70001}}) {
      for (DType dt : {kFloat32, kFloat64}) {
        const Tensor x = (randn32(shape, 3) * 4.0).to(dt);
        for (int64_t dim = 0; dim < static_cast<int64_t>(shape.size()); ++dim) {
          INFO(shape_str(shape) << " dim " << dim << " " << dtype_name(dt) << " threads " << threads);
          const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
          require_close(softmax(x, dim), naive_softmax(x, dim, false), tol, 1e-7);
          require_close(log_softmax(x, dim), naive_softmax(x, dim, true), tol, tol);
        }
      }
    }
    // A non-contiguous input takes the same kernels after a copy.
    const Tensor x = randn32({40, 31}, 4).t();
    require_close(softmax(x, 1), naive_softmax(x, 1, false), 1e-5, 1e-7);
  }
  omp_set_num_threads(all_threads);
}

// ---------------------------------------------------------------------------------------------------
// In-place sampling

TEST_CASE("uniform_ and normal_ fill in place, bump the version and respect autograd") {
  Generator g(42);
  Tensor x = Tensor::empty({1000, 50});
  const auto v0 = x.version();
  x.uniform_(-2, 3, &g);
  REQUIRE(x.version() == v0 + 1);
  const auto u = x.to_vector<double>();
  double lo = 1e9, hi = -1e9, m = 0;
  for (double a : u) {
    lo = std::min(lo, a);
    hi = std::max(hi, a);
    m += a / static_cast<double>(u.size());
  }
  REQUIRE(lo >= -2);
  REQUIRE(hi < 3);
  REQUIRE(std::abs(m - 0.5) < 0.02);

  Tensor y = Tensor::empty({20000}, {.dtype = kFloat64});
  y.normal_(1.5, 2.0, &g);
  REQUIRE(std::abs(mean(y).item() - 1.5) < 0.05);
  REQUIRE(std::abs(tapegrad::std(y).item() - 2.0) < 0.05);

  // Same generator state, same numbers; a strided view fills in row-major order.
  Generator g1(7), g2(7);
  Tensor a = Tensor::empty({6, 4});
  a.uniform_(0, 1, &g1);
  Tensor b = Tensor::zeros({4, 6});
  Tensor bt = b.t();
  bt.uniform_(0, 1, &g2);
  require_close(bt, a, 0, 0);

  Tensor leaf = Tensor::zeros({3}, {.requires_grad = true});
  REQUIRE_ERROR(leaf.uniform_(0, 1), "uniform_: a leaf Variable that requires grad is being used in an in-place operation.");
  REQUIRE_ERROR(leaf.normal_(0, 1), "normal_: a leaf Variable that requires grad is being used in an in-place operation.");
  {
    autograd::NoGradGuard ng;
    leaf.normal_(0, 1);  // allowed without grad mode (how layers initialize their parameters)
  }
  REQUIRE_ERROR(Tensor::empty({3}).uniform_(1, 0),
                "uniform_: uniform_ expects to return a [from, to) range, but found from=1 > to=0");
  REQUIRE_ERROR(Tensor::empty({3}).normal_(0, -1), "normal_: normal expects std >= 0.0, but found std -1");
  REQUIRE_ERROR(Tensor::empty({3}, {.dtype = kInt64}).normal_(0, 1),
                "normal_: expected a floating point tensor (float32 or float64), got int64");

  // Overwriting a non-leaf cuts the gradient to its old values, as PyTorch.
  Tensor w = Tensor::ones({4}, {.requires_grad = true});
  Tensor h = w * 2.0;
  h.uniform_(0, 1);
  (h * 3.0).sum().backward();
  require_close(w.grad(), Tensor::zeros({4}));
}

// ---------------------------------------------------------------------------------------------------
// The vectorized exp behind softmax and logsumexp

TEST_CASE("vectorized float exp is within 2 ulp of the correctly rounded exp, with IEEE special values") {
  double worst = 0;
  float worst_x = 0;
  std::vector<float> xs;
  for (double x = -110; x < 95; x += 3.7e-4) xs.push_back(static_cast<float>(x));
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.7f, 88.72f, 88.73f, -87.3f, -87.34f, -103.9f, -104.0f})
    xs.push_back(x);
  std::vector<float> ys(xs.size());
  simd::exp_shift(xs.data(), 0.0f, ys.data(), static_cast<int64_t>(xs.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double ref = std::exp(static_cast<double>(xs[i]));
    const float rounded = static_cast<float>(ref);
    if (std::isinf(rounded) || rounded < std::numeric_limits<float>::min()) {
      // overflow to inf; denormals and underflow: within one denormal step
      const bool ok = std::isinf(rounded) ? std::isinf(ys[i])
                                          : std::abs(ys[i] - ref) <= std::numeric_limits<float>::denorm_min();
      if (!ok) FAIL("exp(" << xs[i] << ") = " << ys[i] << ", expected " << ref);
      continue;
    }
    const double ulp = std::nextafter(rounded, INFINITY) - rounded;
    const double err = std::abs(ys[i] - ref) / ulp;
    if (err > worst) {
      worst = err;
      worst_x = xs[i];
    }
  }
  INFO("worst error " << worst << " ulp at x = " << worst_x);
  REQUIRE(worst <= 2.0);
  const float special[] = {-INFINITY, INFINITY, NAN, 0.0f, 100.0f, -200.0f, 1.0f};
  float out[7];
  simd::exp_shift(special, 0.0f, out, 7);
  REQUIRE(out[0] == 0.0f);
  REQUIRE(std::isinf(out[1]));
  REQUIRE(std::isnan(out[2]));
  REQUIRE(out[3] == 1.0f);
  REQUIRE(std::isinf(out[4]));
  REQUIRE(out[5] == 0.0f);
  REQUIRE(std::abs(out[6] - std::exp(1.0f)) <= 2 * std::numeric_limits<float>::epsilon() * std::exp(1.0f));
}
