// Saved tensors live on the node until its backward has run; then they are freed.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true}).set_name("a");
  Tensor y = (a * a).sum();

  y.backward({}, /*retain_graph=*/true);  // keeps the saved tensors: a second backward is possible
  fmt::print("{}", autograd::format_tape({y}));
  y.backward();  // frees them as it goes
  fmt::print("{}", autograd::format_tape({y}));
  fmt::print("a.grad = {}\n", a.grad().str());  // 2a, twice
  try {
    y.backward();
  } catch (const Error& e) {
    fmt::print("{}\n", e.what());
  }
}
