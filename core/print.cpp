// Tensor printing in PyTorch's format.
#include "tensor.h"

namespace tapegrad {

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  auto v = to_vector<double>();
  return fmt::format("tensor({}, shape={})", fmt::join(v, ", "), shape_str(shape()));
}

}  // namespace tapegrad
