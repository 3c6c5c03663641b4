// Tensor printing in PyTorch's format (core/print.cpp).
//
// Tensor::str() and operator<< give exactly what repr(tensor) gives in PyTorch with the default print
// options (precision 4, threshold 1000, edgeitems 3, linewidth 80):
//   tensor([[ 1.0000, -2.5000],
//           [ 0.1250,  3.0000]], dtype=torch.float64, requires_grad=True)
// Floats print as integers with a trailing "." when every finite value is integral, in scientific
// notation when the finite non-zero magnitudes span more than 1000x, exceed 1e8 or go below 1e-4
// (integral tensors: only the first two), else with 4 decimals; all elements share one column width.
// More than 1000 elements print only the first and last 3 entries of each long dim, with "...".
// The suffixes are PyTorch's: dtype=torch.float64 (float32, int64 and bool are defaults; an empty
// tensor always shows a non-float32 dtype, and its size unless 1-D), then grad_fn=<...> for a tensor
// with history, or requires_grad=True for a leaf that requires grad.
#pragma once

#include "autograd.h"

#include <string>

namespace tapegrad {

// PyTorch's class name of the backward node that the same computation would have in PyTorch:
// "mul" -> "MulBackward0", "conv2d" -> "ConvolutionBackward0", "linear" on a 2-D input with bias ->
// "AddmmBackward0". Where PyTorch's choice depends on the call, the shapes the node recorded decide
// (sum over everything into a 0-dim result -> SumBackward0, over some dims -> SumBackward1). An op the
// table does not know gives its CamelCased name + "Backward0" ("foo_bar" -> "FooBarBackward0").
std::string pytorch_backward_name(const autograd::Node& node);

}  // namespace tapegrad
