#include "ddp.h"

#include "../core/autograd.h"

#include <cstring>

namespace tapegrad::dist {

DistributedDataParallel::DistributedDataParallel(nn::ModulePtr module, std::shared_ptr<ProcessGroup> group,
                                                 DdpOptions options)
    : Module("DistributedDataParallel"), group_(std::move(group)), options_(options) {
  TG_CHECK(group_ != nullptr, "DistributedDataParallel: expected a process group");
  inner_ = register_module("module", std::move(module));
  if (group_->size() == 1) return;
  autograd::NoGradGuard ng;
  for (Tensor& p : inner_.module()->parameters()) {
    TG_CHECK(p.is_contiguous(), "DistributedDataParallel: parameters must be contiguous");
    group_->broadcast(p, 0);
  }
  broadcast_buffers();
}

void DistributedDataParallel::broadcast_buffers() {
  for (Tensor& b : inner_.module()->buffers()) {
    if (b.is_contiguous()) group_->broadcast(b, 0);
  }
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  if (group_->size() > 1 && options_.broadcast_buffers && is_training()) {
    autograd::NoGradGuard ng;
    broadcast_buffers();
  }
  return inner_(x);
}

void DistributedDataParallel::sync_gradients() {
  if (group_->size() == 1) return;
  autograd::NoGradGuard ng;
  const auto cap = static_cast<int64_t>(options_.bucket_cap_mb * 1024 * 1024);
  std::vector<Tensor> params = inner_.module()->parameters();
  for (DType dt : {kFloat32, kFloat64}) {
    const int64_t esize = static_cast<int64_t>(element_size(dt));
    size_t i = 0;
    while (i < params.size()) {
      // One bucket: consecutive parameters of this dtype up to the size cap.
      std::vector<Tensor> bucket;
      int64_t n = 0;
      for (; i < params.size(); ++i) {
        if (params[i].dtype() != dt) continue;
        if (!bucket.empty() && (n + params[i].numel()) * esize > cap) break;
        bucket.push_back(params[i]);
        n += params[i].numel();
      }
      if (bucket.empty()) break;
      Tensor flat = Tensor::zeros({n}, {.dtype = dt});
      int64_t off = 0;
      for (const Tensor& p : bucket) {
        if (p.grad().defined()) flat.narrow(0, off, p.numel()).copy_(p.grad().reshape({p.numel()}));
        off += p.numel();
      }
      group_->all_reduce(flat);
      flat.div_(static_cast<double>(group_->size()));
      off = 0;
      for (const Tensor& p : bucket) {
        Tensor avg = flat.narrow(0, off, p.numel()).reshape(p.shape());
        if (p.grad().defined())
          p.grad().copy_(avg);
        else
          const_cast<Tensor&>(p).set_grad(avg.clone());
        off += p.numel();
      }
    }
  }
}

}  // namespace tapegrad::dist
