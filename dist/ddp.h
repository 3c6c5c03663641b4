// DistributedDataParallel: the same model on every rank, each rank on its own shard of the data.
//
// At construction rank 0's parameters and buffers are broadcast, so every rank starts identical.
// After backward(), sync_gradients() averages the gradients over the ranks with a few large all-reduces
// (parameters packed into buckets of about bucket_cap_mb per dtype), so every rank takes the same
// optimizer step. Buffers (running statistics) are broadcast from rank 0 before each forward in
// training, as PyTorch's broadcast_buffers=True does.
#pragma once

#include "../layers/module.h"
#include "process_group.h"

namespace tapegrad::dist {

struct DdpOptions {
  double bucket_cap_mb = 25;
  bool broadcast_buffers = true;
};

class DistributedDataParallel : public nn::Module {
 public:
  explicit DistributedDataParallel(nn::ModulePtr module, std::shared_ptr<ProcessGroup> group = world(),
                                   DdpOptions options = {});
  Tensor forward(const Tensor& x) override;
  // Averages every parameter's .grad over the ranks. A parameter without a gradient on some rank
  // counts as zero there; afterwards every rank has the same, defined gradient.
  void sync_gradients();
  const nn::ModulePtr& module() const { return inner_.module(); }
  const std::shared_ptr<ProcessGroup>& group() const { return group_; }

 private:
  void broadcast_buffers();
  nn::ModuleRef<nn::Module> inner_;
  std::shared_ptr<ProcessGroup> group_;
  DdpOptions options_;
};

}  // namespace tapegrad::dist
