#include "conv.h"

#include "../core/ops/pool.h"
#include "init.h"

#include <cmath>

namespace tapegrad::nn {

Size2::Size2(std::initializer_list<int64_t> v) {
  TG_CHECK(v.size() == 2, "expected an int or a pair of ints, got {} values", v.size());
  value = {*v.begin(), *(v.begin() + 1)};
}

std::string Size2::str() const { return scalar ? std::to_string(value[0]) : fmt::format("({}, {})", value[0], value[1]); }

namespace {
// PyTorch keeps Conv2d's sizes as tuples: kernel_size=(3, 3) even when given 3.
std::string pair(const Int2& v) { return fmt::format("({}, {})", v[0], v[1]); }
}  // namespace

Conv2d::Conv2d(int64_t in, int64_t out, Conv2dOptions o) : Module("Conv2d"), in_channels(in), out_channels(out), options(o) {
  TG_CHECK(o.groups > 0, "Conv2d: groups must be a positive integer");
  TG_CHECK(in % o.groups == 0, "Conv2d: in_channels must be divisible by groups");
  TG_CHECK(out % o.groups == 0, "Conv2d: out_channels must be divisible by groups");
  const std::string& m = o.padding.mode;
  TG_CHECK(m.empty() || m == "same" || m == "valid",
           "Conv2d: Invalid padding string '{}', should be one of {{'valid', 'same'}}", m);
  TG_CHECK(m != "same" || (o.stride.value[0] == 1 && o.stride.value[1] == 1),
           "Conv2d: padding='same' is not supported for strided convolutions");
  TG_CHECK(o.padding_mode == "zeros" || o.padding_mode == "reflect" || o.padding_mode == "replicate" ||
               o.padding_mode == "circular",
           "Conv2d: padding_mode must be one of {{'zeros', 'reflect', 'replicate', 'circular'}}, but got "
           "padding_mode='{}'",
           o.padding_mode);
  TG_CHECK(o.padding_mode == "zeros", "Conv2d: padding_mode='{}' is not implemented; only 'zeros' is", o.padding_mode);
  const Int2 k = o.kernel_size.value;
  weight = register_parameter("weight", Tensor::empty({out, in / o.groups, k[0], k[1]}, {.dtype = o.dtype}));
  if (o.bias) bias = register_parameter("bias", Tensor::empty({out}, {.dtype = o.dtype}));
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  const auto& o = options;
  if (!o.padding.mode.empty())
    return conv2d(x, weight, bias, o.stride.value, PaddingString(o.padding.mode), o.dilation.value, o.groups);
  return conv2d(x, weight, bias, o.stride.value, o.padding.value.value, o.dilation.value, o.groups);
}

std::string Conv2d::extra_repr() const {
  const auto& o = options;
  std::string s = fmt::format("{}, {}, kernel_size={}, stride={}", in_channels, out_channels, pair(o.kernel_size.value),
                              pair(o.stride.value));
  if (!o.padding.mode.empty())
    s += ", padding=" + o.padding.mode;
  else if (o.padding.value.value != Int2{0, 0})
    s += ", padding=" + pair(o.padding.value.value);
  if (o.dilation.value != Int2{1, 1}) s += ", dilation=" + pair(o.dilation.value);
  if (o.groups != 1) s += fmt::format(", groups={}", o.groups);
  if (!bias.defined()) s += ", bias=False";
  if (o.padding_mode != "zeros") s += ", padding_mode=" + o.padding_mode;
  return s;
}

// ---- pooling ----

MaxPool2d::MaxPool2d(Size2 k, MaxPool2dOptions o) : Module("MaxPool2d"), kernel_size(k), options(o) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  return max_pool2d(x, kernel_size.value, options.stride ? std::optional<Int2>(options.stride->value) : std::nullopt,
                    options.padding.value, options.dilation.value, options.ceil_mode);
}

std::pair<Tensor, Tensor> MaxPool2d::forward_with_indices(const Tensor& x) {
  return max_pool2d_with_indices(x, kernel_size.value,
                                 options.stride ? std::optional<Int2>(options.stride->value) : std::nullopt,
                                 options.padding.value, options.dilation.value, options.ceil_mode);
}

std::string MaxPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={}", kernel_size.str(),
                     (options.stride ? *options.stride : kernel_size).str(), options.padding.str(),
                     options.dilation.str(), options.ceil_mode ? "True" : "False");
}

AvgPool2d::AvgPool2d(Size2 k, AvgPool2dOptions o) : Module("AvgPool2d"), kernel_size(k), options(o) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  return avg_pool2d(x, kernel_size.value, options.stride ? std::optional<Int2>(options.stride->value) : std::nullopt,
                    options.padding.value, options.ceil_mode, options.count_include_pad, options.divisor_override);
}

std::string AvgPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", kernel_size.str(),
                     (options.stride ? *options.stride : kernel_size).str(), options.padding.str());
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, output_size.value); }

}  // namespace tapegrad::nn
