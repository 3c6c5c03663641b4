// An in-place change of a tensor that a node saved is caught when backward unpacks it.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  Tensor a = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  Tensor e = a.exp();  // exp saves its result: d exp(a) / da = exp(a)
  Tensor y = e.sum();
  fmt::print("version of e after exp: {}\n", e.version());
  e.mul_(2.0);  // bumps the version of e's storage
  fmt::print("version of e after mul_: {}\n", e.version());
  try {
    y.backward();
  } catch (const Error& e) {
    fmt::print("{}\n", e.what());
  }
}
