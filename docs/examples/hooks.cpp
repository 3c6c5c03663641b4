// Tensor hooks run once per backward; a Module's full backward hook sees grad_input and grad_output.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/linear.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  a.register_hook([](const Tensor& g) {
    fmt::print("hook on a: {}\n", g.str());  // the total over the three uses of a
    return Tensor();                          // undefined: keep the gradient as it is
  });
  (a * a + a).sum().backward();

  auto lin = std::make_shared<nn::Linear>(2, 1, nn::LinearOptions{.bias = false});
  lin->weight.detach().copy_(Tensor::of({{3.0, -1.0}}));
  nn::HookHandle handle = lin->register_full_backward_hook(
      [](nn::Module& m, const Tensor& grad_input, const Tensor& grad_output) {
        fmt::print("{} backward: grad_output {}, grad_input {}\n", m.type_name(), grad_output.str(), grad_input.str());
        return grad_input * 0.5;  // a defined tensor replaces grad_input
      });
  Tensor x = Tensor::of({{1.0, 1.0}}, {.requires_grad = true});
  ((*lin)(x) * 2.0).sum().backward();
  fmt::print("x.grad = {}\n", x.grad().str());
  handle.remove();
  x.set_grad(Tensor());
  ((*lin)(x) * 2.0).sum().backward();
  fmt::print("after remove: x.grad = {}\n", x.grad().str());
}
