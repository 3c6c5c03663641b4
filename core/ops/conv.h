// 2-D convolution (cross-correlation with zero padding), PyTorch's F.conv2d.
//
//   input  (N, Cin, H, W) or unbatched (Cin, H, W)       float32 or float64
//   weight (Cout, Cin/groups, kH, kW)                    same dtype
//   bias   (Cout,) or undefined
//   output (N, Cout, Ho, Wo) (unbatched: (Cout, Ho, Wo)), with
//     Ho = floor((H + pad_top + pad_bottom - dH (kH - 1) - 1) / sH) + 1     (same for Wo)
//     out[n, co, i, j] = bias[co] + sum_{ci, p, q} weight[co, ci, p, q] * xpad[n, g Cin/G + ci, sH i + dH p, sW j + dW q]
//   where g = co / (Cout/G) is the group of output channel co.
//
// Kernels: im2col + OpenBLAS GEMM, or (AVX2 builds, stride 1 along W) direct kernels that compute
// from a zero-padded copy of each image with register tiles of output channels x row vectors; the
// choice is made per pass from the shape (see set_conv2d_algorithm at the end).
//
// One autograd node "conv2d" (saved: input, weight). Its backward is one fused pass over the batch
// computing only the gradients that are needed:
//   dX = conv_transpose(dY, W)  (GEMM W^T dY per image then col2im, or the direct kernel run on the
//                                padded dY with the flipped, transposed weight)
//   dW = sum_n dY_n cols(X_n)^T (per-thread partial sums, reduced at the end)
//   db = sum over N, Ho, Wo of dY
// Under create_graph the same gradients are computed by the differentiable conv2d_input_grad /
// conv2d_weight_grad below, so higher-order gradients work.
//
// Misuse throws tapegrad::Error with PyTorch's message after "conv2d: ", e.g.
//   conv2d: Given groups=1, weight of size [8, 3, 3, 3], expected input[2, 4, 5, 5] to have 3 channels, but got 4 channels instead
#pragma once

#include "../tensor.h"

#include <array>
#include <string>
#include <string_view>

namespace tapegrad {

// (height, width) pair of a 2-D op's kernel size, stride, padding or dilation.
using Int2 = std::array<int64_t, 2>;

// Zero padding on each side of the plane: before = (top, left), after = (bottom, right).
struct Conv2dPadding {
  Int2 before{0, 0};
  Int2 after{0, 0};

  Conv2dPadding() = default;
  Conv2dPadding(Int2 before_, Int2 after_) : before(before_), after(after_) {}
  // The same amount on both sides of each dim: PyTorch's padding=(pH, pW).
  static Conv2dPadding symmetric(Int2 p) { return {p, p}; }
  bool operator==(const Conv2dPadding&) const = default;
};

// PyTorch's string padding, "same" or "valid". A type of its own so that a brace pair like {0, 0}
// stays an Int2 (it would also construct a std::string_view).
struct PaddingString {
  std::string_view value;
  PaddingString(const char* s) : value(s) {}             // NOLINT: implicit on purpose
  PaddingString(std::string_view s) : value(s) {}        // NOLINT
  PaddingString(const std::string& s) : value(s) {}      // NOLINT
};

// Resolves PyTorch's string padding for a kernel of size `kernel` with `dilation`:
//   "valid": no padding.
//   "same":  total = dilation * (kernel - 1) per dim; before = total / 2, after = total - before, so an
//            even kernel puts the extra zero row/col on the bottom/right. Needs stride 1.
// Errors: "conv2d: Invalid padding string: 'foo'",
//         "conv2d: padding='same' is not supported for strided convolutions".
Conv2dPadding conv2d_padding(std::string_view mode, Int2 kernel, Int2 dilation = {1, 1}, Int2 stride = {1, 1});

// Output length of a convolution along one dim (floor mode); may be <= 0 for a kernel that does not fit.
int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t pad_before, int64_t pad_after, int64_t stride,
                           int64_t dilation);

// F.conv2d(input, weight, bias, stride, padding, dilation, groups) with symmetric padding.
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = {}, Int2 stride = {1, 1},
              Int2 padding = {0, 0}, Int2 dilation = {1, 1}, int64_t groups = 1);
// padding = "same" or "valid" (resolved with conv2d_padding).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Int2 stride, PaddingString padding,
              Int2 dilation = {1, 1}, int64_t groups = 1);
// Explicit, possibly asymmetric padding (what padding="same" with an even kernel resolves to).
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Int2 stride,
              const Conv2dPadding& padding, Int2 dilation = {1, 1}, int64_t groups = 1);

// The two halves of conv2d's backward as differentiable ops (torch.nn.grad.conv2d_input / conv2d_weight):
//   conv2d_input_grad(input_shape, weight, grad_output) = d<grad_output, conv2d(x, weight)>/dx
//   conv2d_weight_grad(input, weight_shape, grad_output) = d<grad_output, conv2d(input, w)>/dw
// input_shape is (N, Cin, H, W) or (Cin, H, W); grad_output has conv2d's output shape for it.
// Each records one node ("conv2d_input_grad" / "conv2d_weight_grad") whose backward is again a
// convolution or one of these, so gradients of any order are available.
Tensor conv2d_input_grad(const Shape& input_shape, const Tensor& weight, const Tensor& grad_output, Int2 stride,
                         const Conv2dPadding& padding, Int2 dilation = {1, 1}, int64_t groups = 1);
Tensor conv2d_weight_grad(const Tensor& input, const Shape& weight_shape, const Tensor& grad_output, Int2 stride,
                          const Conv2dPadding& padding, Int2 dilation = {1, 1}, int64_t groups = 1);

// Kernel choice, for tests and benchmarks. Auto (the default) picks per shape; Gemm forces im2col +
// GEMM everywhere; Direct uses the direct kernels wherever they apply (an AVX2 build, stride 1 along W,
// and for the input gradient along H too). Process-wide.
enum class Conv2dAlgorithm { Auto, Gemm, Direct };
void set_conv2d_algorithm(Conv2dAlgorithm algorithm);
Conv2dAlgorithm conv2d_algorithm();

}  // namespace tapegrad
