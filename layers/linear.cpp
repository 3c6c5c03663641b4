#include "linear.h"

#include "../core/ops/linalg.h"
#include "init.h"

#include <cmath>

namespace tapegrad::nn {

Linear::Linear(int64_t in, int64_t out, LinearOptions o) : Module("Linear"), in_features(in), out_features(out) {
  TG_CHECK(in >= 0 && out >= 0, "Linear: in_features and out_features must be non-negative, got {} and {}", in, out);
  weight = register_parameter("weight", Tensor::empty({out, in}, {.dtype = o.dtype}));
  if (o.bias) bias = register_parameter("bias", Tensor::empty({out}, {.dtype = o.dtype}));
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features, out_features,
                     bias.defined() ? "True" : "False");
}

}  // namespace tapegrad::nn
