// Conv2d and the 2-d pooling modules: thin wrappers over core/ops/conv.h and core/ops/pool.h.
//
//   nn::Conv2d conv(3, 64, {.kernel_size = 3, .padding = 1});        // like nn.Conv2d(3, 64, 3, padding=1)
//   nn::Conv2d same(8, 8, {.kernel_size = {3, 5}, .padding = "same"});
//   nn::MaxPool2d pool(2);                                             // stride defaults to the kernel size
#pragma once

#include "../core/ops/conv.h"
#include "module.h"

#include <optional>
#include <string>

namespace tapegrad::nn {

// An int or a pair, printed the way it was given (PyTorch's modules keep what they were passed).
struct Size2 {
  Size2(int64_t v) : value{v, v}, scalar(true) {}                      // NOLINT: implicit on purpose
  Size2(std::initializer_list<int64_t> v);                             // NOLINT: {h, w}
  Size2(Int2 v) : value(v) {}                                          // NOLINT
  Int2 value;
  bool scalar = false;
  std::string str() const;  // "2" or "(2, 3)"
};

// Conv2d's padding: an int, a pair, or "same" / "valid".
struct Conv2dPaddingArg {
  Conv2dPaddingArg(int v) : value(static_cast<int64_t>(v)) {}          // NOLINT: 0 must not mean nullptr
  Conv2dPaddingArg(int64_t v) : value(v) {}                            // NOLINT
  Conv2dPaddingArg(std::initializer_list<int64_t> v) : value(v) {}     // NOLINT
  Conv2dPaddingArg(const char* s) : value(0), mode(s) {}               // NOLINT
  Size2 value;
  std::string mode;  // "same", "valid", or empty for numbers
};

struct Conv2dOptions {
  Size2 kernel_size = 1;
  Size2 stride = 1;
  Conv2dPaddingArg padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  std::string padding_mode = "zeros";  // only "zeros" is implemented
  DType dtype = DType::Float32;
};

// weight (out, in / groups, kH, kW) and bias (out,) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
// in / groups * kH * kW (PyTorch's kaiming_uniform_(a = sqrt(5))).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Conv2dOptions options);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters();

  int64_t in_channels, out_channels;
  Conv2dOptions options;
  Tensor weight, bias;
};

struct MaxPool2dOptions {
  std::optional<Size2> stride = std::nullopt;  // default: kernel_size
  Size2 padding = 0;
  Size2 dilation = 1;
  bool ceil_mode = false;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2 kernel_size, MaxPool2dOptions options = {});
  Tensor forward(const Tensor& x) override;
  // (values, indices), PyTorch's return_indices=True.
  std::pair<Tensor, Tensor> forward_with_indices(const Tensor& x);
  std::string extra_repr() const override;
  Size2 kernel_size;
  MaxPool2dOptions options;
};

struct AvgPool2dOptions {
  std::optional<Size2> stride = std::nullopt;
  Size2 padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
  std::optional<int64_t> divisor_override = std::nullopt;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel_size, AvgPool2dOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  Size2 kernel_size;
  AvgPool2dOptions options;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size) : Module("AdaptiveAvgPool2d"), output_size(output_size) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return "output_size=" + output_size.str(); }
  Size2 output_size;
};

}  // namespace tapegrad::nn
