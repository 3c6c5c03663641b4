// Matrix products on OpenBLAS (sgemm/dgemm), with PyTorch's matmul rules.
#pragma once

#include "../tensor.h"

namespace tapegrad {

// 1-D x 1-D: dot; 2-D x 2-D: mm; 1-D operands are promoted and the added dim removed;
// N-D: batched over the broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x W^T + b, x (*, in), W (out, in), b (out,) or undefined: one GEMM, bias folded in.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace tapegrad
