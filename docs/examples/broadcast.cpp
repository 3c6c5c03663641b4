// A gradient of broadcast shape is summed back to each input's shape, in one place (reduce_grad).
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  Tensor col = Tensor::of({{1.0}, {2.0}, {3.0}}, {.requires_grad = true});  // (3, 1)
  Tensor row = Tensor::of({10.0, 20.0, 30.0, 40.0}, {.requires_grad = true});  // (4,)
  Tensor y = col * row;  // (3, 4): col repeats along dim 1, row along a new dim 0
  y.sum().backward();
  fmt::print("col.grad = {}\n", col.grad().str());  // each row summed: 10 + 20 + 30 + 40
  fmt::print("row.grad = {}\n", row.grad().str());  // each column summed: 1 + 2 + 3
}
