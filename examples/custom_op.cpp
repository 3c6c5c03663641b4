// A user-defined differentiable op, through the same public API the built-in ops use
// (autograd::record, as in core/ops/*.cpp), checked with gradcheck and gradgradcheck.
//
//   swish(x, beta) = x * sigmoid(beta * x)
//
// forward:  a plain loop over the data (as a fast kernel would be).
// backward: d swish / dx = s + beta * x * s * (1 - s), with s = sigmoid(beta * x), written with
//           differentiable ops, so backward(create_graph=true) records its own tape and second-order
//           gradients work too.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <fmt/core.h>

#include <cmath>
#include <vector>

using namespace tapegrad;

Tensor swish(const Tensor& x_in, double beta) {
  TG_CHECK(is_floating(x_in.dtype()), "swish: expected a floating tensor, got {}", dtype_name(x_in.dtype()));
  const Tensor x = x_in.detach().contiguous();  // the kernel reads raw memory; the node below records x_in
  Tensor out = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), "swish", [&]<typename T>() {
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i) o[i] = in[i] / (T(1) + std::exp(-T(beta) * in[i]));
  });
  // saved: the input. beta is captured by value (non-tensor state goes in the closure).
  autograd::record(
      "swish", {x_in}, {out}, {x_in},
      [beta](autograd::Context& ctx) -> autograd::Grads {
        const Tensor xs = ctx.saved(0);  // version-checked: an in-place change of x since forward throws
        const Tensor s = (xs * beta).sigmoid();
        return {ctx.grad() * (s + xs * s * (1.0 - s) * beta)};
      },
      {"self"});
  return out;
}

int main() {
  manual_seed(0);
  Tensor x = Tensor::randn({2, 3}, {.dtype = kFloat64}).requires_grad_().set_name("x");
  Tensor y = swish(x, 1.5);
  Tensor loss = (y * y).sum();
  fmt::print("{}", autograd::format_tape({loss}));
  loss.backward();
  fmt::print("x.grad =\n{}\n", x.grad().str());

  // First and second order against central differences, with a random upstream gradient.
  const bool first = gradcheck([](const std::vector<Tensor>& v) { return swish(v[0], 1.5); }, {x});
  const bool second = gradgradcheck([](const std::vector<Tensor>& v) { return swish(v[0], 1.5); }, {x});
  fmt::print("gradcheck: {}, gradgradcheck: {}\n", first ? "ok" : "FAILED", second ? "ok" : "FAILED");
  return first && second ? 0 : 1;
}
