// The tape of a three-line expression, before and after backward.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true}).set_name("x");
  Tensor w = Tensor::of({0.5, -1.0, 0.25}, {.requires_grad = true}).set_name("w");
  Tensor loss = (x * w).exp().sum();

  fmt::print("{}", autograd::format_tape({loss}));
  loss.backward();
  fmt::print("x.grad = {}\n", x.grad().str());  // w * exp(x * w)
  fmt::print("w.grad = {}\n", w.grad().str());  // x * exp(x * w)
  fmt::print("{}", autograd::format_tape({loss}));
}
