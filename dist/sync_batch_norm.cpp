#include "sync_batch_norm.h"

#include "../core/ops/norm.h"

namespace tapegrad::dist {

SyncBatchNorm::SyncBatchNorm(int64_t num_features, nn::NormOptions options, std::shared_ptr<ProcessGroup> group)
    : BatchNorm("SyncBatchNorm", num_features, options), group_(std::move(group)) {}

void SyncBatchNorm::check_input_dim(const Tensor& x) const {
  TG_CHECK(x.dim() >= 2, "SyncBatchNorm: expected at least 2D input (got {}D input)", x.dim());
}

Tensor SyncBatchNorm::forward(const Tensor& x) {
  check_input_dim(x);
  TG_CHECK(x.size(1) > 0, "SyncBatchNorm: SyncBatchNorm number of input channels should be non-zero");
  const double factor = step_factor();
  const bool bn_training = is_training() || (!running_mean.defined() && !running_var.defined());
  const bool pass_stats = !is_training() || options.track_running_stats;
  const Tensor rm = pass_stats ? running_mean : Tensor(), rv = pass_stats ? running_var : Tensor();
  const auto pg = group();
  if (!(bn_training && is_training()) || pg->size() == 1)
    return batch_norm(x, rm, rv, weight, bias, bn_training, factor, options.eps);
  BatchNormSyncHooks hooks;
  hooks.all_gather = [pg](const Tensor& local) { return pg->all_gather(local); };
  hooks.all_reduce_sum = [pg](const Tensor& local) {
    Tensor t = local.contiguous().clone();
    pg->all_reduce(t);
    return t;
  };
  return sync_batch_norm(x, rm, rv, weight, bias, factor, options.eps, hooks);
}

nn::ModulePtr convert_sync_batchnorm(const nn::ModulePtr& module, std::shared_ptr<ProcessGroup> group) {
  TG_CHECK(module != nullptr, "convert_sync_batchnorm: expected a module");
  nn::ModulePtr out = module;
  if (auto* bn = dynamic_cast<nn::BatchNorm*>(module.get())) {
    auto sync = std::make_shared<SyncBatchNorm>(bn->num_features, bn->options, group);
    sync->share_state_with(*bn);
    sync->train(bn->is_training());
    out = sync;
  }
  for (const auto& [name, child] : module->named_children()) {
    nn::ModulePtr converted = convert_sync_batchnorm(child, group);
    if (converted != child) module->replace_module(name, converted);
  }
  return out;
}

}  // namespace tapegrad::dist
