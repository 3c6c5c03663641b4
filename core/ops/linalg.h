// Matrix products on OpenBLAS (sgemm/dgemm), with PyTorch's matmul rules.
//
// Operands whose last two dims have a unit stride in either of them go to BLAS as they are (the
// transpose flag and leading dimension describe them), so transposed and sliced operands are not
// copied; only layouts BLAS cannot describe (e.g. expanded matrix dims) are made contiguous first.
// float32 and float64; both operands must have the same dtype.
#pragma once

#include "../tensor.h"

namespace tapegrad {

// 1-D x 1-D: dot (0-dim result); 2-D x 2-D: mm; a 1-D operand is promoted to a matrix (1 x n on the
// left, n x 1 on the right) and the added dim removed from the result; N-D: batched over the
// broadcast batch dims. An N-D left operand times a 1-D or 2-D right one is folded into one GEMM.
// Backward: d/da = g b^T, d/db = a^T g (composed with matmul, so double backward works; broadcast
// batch dims are summed by the engine). saved: both operands.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x W^T + b, x (*, in) incl. 1-D (in,), W (out, in), b (out,) (or any shape that broadcasts to
// (*, out)) or undefined: one GEMM over the flattened leading dims, with the bias written into the
// output first and added by the GEMM (beta = 1).
// Backward over flattened leading dims: dX = dY W, dW = dY^T X, db = sum of dY over them (composed
// with matmul, so double backward works). saved: input, weight.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace tapegrad
