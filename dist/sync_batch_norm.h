// SyncBatchNorm: BatchNorm whose training statistics are those of the union of every rank's batch.
//
// In training, each rank's (mean, invstd, count) are all-gathered and merged with their counts, so
// unequal per-rank batches are exact; backward all-reduces (sum_dy, sum_dy_xmu). Weight and bias
// gradients stay local: DistributedDataParallel averages parameter gradients. Eval mode does not
// communicate, and neither does a world of one: both are plain BatchNorm.
#pragma once

#include "../layers/normalization.h"
#include "process_group.h"

namespace tapegrad::dist {

class SyncBatchNorm : public nn::BatchNorm {
 public:
  explicit SyncBatchNorm(int64_t num_features, nn::NormOptions options = {},
                         std::shared_ptr<ProcessGroup> group = nullptr);
  Tensor forward(const Tensor& x) override;
  // The group statistics are synchronized over (world() when none was given).
  std::shared_ptr<ProcessGroup> group() const { return group_ ? group_ : world(); }

 protected:
  void check_input_dim(const Tensor& x) const override;

 private:
  std::shared_ptr<ProcessGroup> group_;
};

// Replaces every BatchNorm1d/2d/3d (and SyncBatchNorm) in the tree under `module` by a SyncBatchNorm
// that shares its parameters and buffers (the same tensors) and keeps its train/eval flag. Children are
// replaced in place; returns the new module when `module` itself is a batch norm, else `module`.
nn::ModulePtr convert_sync_batchnorm(const nn::ModulePtr& module, std::shared_ptr<ProcessGroup> group = nullptr);

}  // namespace tapegrad::dist
