// 2-D pooling, PyTorch's F.max_pool2d, F.avg_pool2d and F.adaptive_avg_pool2d.
//
// Input (N, C, H, W) or unbatched (C, H, W), float32 or float64; every (n, c) plane is pooled on its
// own and the output keeps the input's rank. Kernels run over the N*C planes in parallel.
//
// Output size per spatial dim for max/avg pooling (d = 1 for avg):
//   Ho = floor_or_ceil((H + 2p - d (k - 1) - 1) / s) + 1
//   with ceil_mode, Ho -= 1 when (Ho - 1) s >= H + p (the last window must start inside the input or
//   the left padding).
//
// Every op records one node whose backward is itself a differentiable op (the adjoint of the
// forward), so gradients of any order are available.
//
// Misuse throws tapegrad::Error with PyTorch's message after the op name, e.g.
//   max_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=3
#pragma once

#include "../tensor.h"
#include "conv.h"  // Int2

#include <optional>
#include <utility>

namespace tapegrad {

// Output length of a max/avg pool along one dim (PyTorch's pooling_output_shape); no checks.
int64_t pool2d_output_size(int64_t input, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                           bool ceil_mode);

// Max over each dilated window of the input padded with -inf. stride defaults to the kernel size.
// Returns (values, indices): indices are int64 flat offsets h * W + w into the (H, W) plane of the
// same (n, c), as PyTorch's return_indices. The argmax is the first maximal element in row-major
// window order; a NaN wins (the last NaN of the window) and propagates.
// saved: indices. Backward: the gradient goes to the argmax, summed over overlapping windows.
// Errors (after "max_pool2d: "): "non-empty 3D or 4D (batch mode) tensor expected for input",
// "stride should not be zero", "pad must be non-negative, but got pad: -1",
// "pad should be at most half of kernel size, but got pad=2 and kernel_size=3",
// "kernel size should be greater than zero, but got kH: 0 kW: 0",
// "stride should be greater than zero, but got dH: -1 dW: -1",
// "dilation should be greater than zero, but got dilationH: 0 dilationW: 0",
// "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:[2, 0, 5, 5]",
// "Given input size: (1x2x2). Calculated output size: (1x0x0). Output size is too small".
std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Int2 kernel_size,
                                                  std::optional<Int2> stride = std::nullopt, Int2 padding = {0, 0},
                                                  Int2 dilation = {1, 1}, bool ceil_mode = false);
// The values only; the indices are computed only when a gradient will be needed.
Tensor max_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride = std::nullopt,
                  Int2 padding = {0, 0}, Int2 dilation = {1, 1}, bool ceil_mode = false);

// max_pool2d(relu(input), ...), with the same values and gradients as that composition. For the 2x2
// window with stride 2 (no padding, dilation or ceil_mode) one fused pass: no relu output is stored,
// and backward keeps one bool per input element (where the gradient goes: the window's first maximum
// of relu(input), when it is positive) instead of relu's output and int64 indices. Other
// configurations run the composition. Errors as max_pool2d's.
// saved: winner (bool, input's shape). Backward: gy to the winners, zero elsewhere.
Tensor relu_max_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride = std::nullopt,
                       Int2 padding = {0, 0}, Int2 dilation = {1, 1}, bool ceil_mode = false);

// Mean over each window. The divisor is divisor_override if given, else the window's size counting
// the zero padding (count_include_pad, clipped to input + padding) or only the input elements in it.
// Windows that lie entirely in the padding give 0. stride defaults to the kernel size.
// Errors as max_pool2d's (after "avg_pool2d: "), plus "divisor must be not zero".
Tensor avg_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride = std::nullopt,
                  Int2 padding = {0, 0}, bool ceil_mode = false, bool count_include_pad = true,
                  std::optional<int64_t> divisor_override = std::nullopt);

// Mean over windows that tile the plane into output_size (oH, oW) cells: cell i along a dim of input
// length L covers [floor(i L / o), ceil((i + 1) L / o)). An output size of 0 gives an empty result.
// (PyTorch's None entries are resolved by the caller to the input's size.)
// Errors (after "adaptive_avg_pool2d: "):
// "elements of output_size must be greater than or equal to 0 but received {-1, -1}",
// "Expected 3D or 4D tensor, but got [5, 5]",
// "Expected input to have non-zero size for non-batch dimensions, but input has sizes [2, 3, 0, 5] with
//  dimension 2 being empty".
Tensor adaptive_avg_pool2d(const Tensor& input, Int2 output_size);

}  // namespace tapegrad
