// The five normalization families, as PyTorch's torch.nn: BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d,
// LayerNorm, GroupNorm (and SyncBatchNorm in dist/). Thin modules over core/ops/norm.h: they differ in
// which axes share statistics and in what they keep as running state.
//
// Parameters and buffers carry PyTorch's names, shapes and initial values:
//   weight (ones) and bias (zeros) when affine; running_mean (zeros), running_var (ones) and
//   num_batches_tracked (int64 0-dim, 0) when track_running_stats.
//
// Semantics (pytorch-semantics.md sections 1-5): training normalizes with the batch's biased variance
// and updates running_var with the unbiased one; momentum = nullopt is the cumulative average (factor
// 1/num_batches_tracked); eval uses the running statistics when they are tracked and the batch's
// otherwise.
#pragma once

#include "module.h"

#include <optional>

namespace tapegrad::nn {

struct NormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative moving average
  bool affine = true;
  bool track_running_stats = true;
  DType dtype = DType::Float32;
};

// BatchNorm's and InstanceNorm's shared state (PyTorch's _NormBase).
class NormBase : public Module {
 public:
  std::string extra_repr() const override;
  void reset_running_stats();
  void reset_parameters();
  // Makes this module use `other`'s very parameter and buffer tensors (convert_sync_batchnorm).
  void share_state_with(const NormBase& other);

  int64_t num_features;
  NormOptions options;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 protected:
  NormBase(std::string name, int64_t num_features, NormOptions options);
  // The momentum factor of this step; increments num_batches_tracked in training when tracking.
  double step_factor();
};

// BatchNorm over (N, C, *): statistics per channel over the batch and all spatial positions.
class BatchNorm : public NormBase {
 public:
  Tensor forward(const Tensor& x) override;

 protected:
  BatchNorm(std::string name, int64_t num_features, NormOptions options) : NormBase(std::move(name), num_features, options) {}
  // Throws PyTorch's "expected 4D input (got 3D input)" for ranks this variant does not take.
  virtual void check_input_dim(const Tensor& x) const = 0;
};

class BatchNorm1d : public BatchNorm {  // (N, C) or (N, C, L)
 public:
  explicit BatchNorm1d(int64_t num_features, NormOptions options = {}) : BatchNorm("BatchNorm1d", num_features, options) {}

 protected:
  void check_input_dim(const Tensor& x) const override;
};

class BatchNorm2d : public BatchNorm {  // (N, C, H, W)
 public:
  explicit BatchNorm2d(int64_t num_features, NormOptions options = {}) : BatchNorm("BatchNorm2d", num_features, options) {}

 protected:
  void check_input_dim(const Tensor& x) const override;
};

class BatchNorm3d : public BatchNorm {  // (N, C, D, H, W)
 public:
  explicit BatchNorm3d(int64_t num_features, NormOptions options = {}) : BatchNorm("BatchNorm3d", num_features, options) {}

 protected:
  void check_input_dim(const Tensor& x) const override;
};

// InstanceNorm: statistics per sample and channel over the spatial positions. Defaults differ from
// BatchNorm: affine = false, track_running_stats = false. Unbatched input (C, *) is accepted.
struct InstanceNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt behaves as 0 (running stats never move), as PyTorch 2.x
  bool affine = false;
  bool track_running_stats = false;
  DType dtype = DType::Float32;
};

class InstanceNorm : public NormBase {
 public:
  Tensor forward(const Tensor& x) override;

 protected:
  InstanceNorm(std::string name, int64_t num_features, InstanceNormOptions o, int64_t spatial_dims);
  int64_t spatial_dims_;  // 1, 2 or 3: the input is (N, C, *spatial) or (C, *spatial)
};

class InstanceNorm1d : public InstanceNorm {  // (N, C, L) or (C, L)
 public:
  explicit InstanceNorm1d(int64_t num_features, InstanceNormOptions o = {}) : InstanceNorm("InstanceNorm1d", num_features, o, 1) {}
};
class InstanceNorm2d : public InstanceNorm {  // (N, C, H, W) or (C, H, W)
 public:
  explicit InstanceNorm2d(int64_t num_features, InstanceNormOptions o = {}) : InstanceNorm("InstanceNorm2d", num_features, o, 2) {}
};
class InstanceNorm3d : public InstanceNorm {  // (N, C, D, H, W) or (C, D, H, W)
 public:
  explicit InstanceNorm3d(int64_t num_features, InstanceNormOptions o = {}) : InstanceNorm("InstanceNorm3d", num_features, o, 3) {}
};

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;
  bool bias = true;
  DType dtype = DType::Float32;
};

// LayerNorm over the trailing normalized_shape dims of (*, *normalized_shape); weight and bias have
// shape normalized_shape. The same in train and eval.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  explicit LayerNorm(int64_t normalized_size, LayerNormOptions options = {})
      : LayerNorm(Shape{normalized_size}, options) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  Shape normalized_shape;
  LayerNormOptions options;
  Tensor weight, bias;
};

struct GroupNormOptions {
  double eps = 1e-5;
  bool affine = true;
  DType dtype = DType::Float32;
};

// GroupNorm over (N, C, *): statistics per sample and group of C / num_groups channels; weight and
// bias per channel. The same in train and eval.
class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, GroupNormOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  int64_t num_groups, num_channels;
  GroupNormOptions options;
  Tensor weight, bias;
};

// Python's repr of a float (1e-05, 0.1, 1.0): how PyTorch's module lines print hyper-parameters.
std::string python_float(double v);

}  // namespace tapegrad::nn
