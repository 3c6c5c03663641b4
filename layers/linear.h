// Linear, Identity, Flatten.
#pragma once

#include "module.h"

namespace tapegrad::nn {

struct LinearOptions {
  bool bias = true;
  DType dtype = DType::Float32;
};

// y = x W^T + b. x: (*, in_features) -> (*, out_features).
// weight (out_features, in_features) and bias (out_features,) ~ U(-1/sqrt(in_features), 1/sqrt(in_features)),
// PyTorch's kaiming_uniform_(a = sqrt(5)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  void reset_parameters();

  int64_t in_features, out_features;
  Tensor weight, bias;
};

class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

// Flattens dims start_dim..end_dim (default: all but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  std::string extra_repr() const override { return fmt::format("start_dim={}, end_dim={}", start_dim, end_dim); }
  int64_t start_dim, end_dim;
};

}  // namespace tapegrad::nn
