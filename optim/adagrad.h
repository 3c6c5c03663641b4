// Adagrad, exactly as torch.optim.Adagrad. Per parameter with a gradient:
//
//   t += 1 ; g = -grad if maximize else grad
//   if weight_decay != 0: g = g + weight_decay * p
//   clr = lr / (1 + (t - 1) * lr_decay)
//   sum = sum + g * g
//   p = p - clr * g / (sqrt(sum) + eps)
//
// State: "step" (float32 0-dim tensor) and "sum" (filled with initial_accumulator_value), created for
// every parameter when its group is added, as PyTorch does in the constructor.
#pragma once

#include "optimizer.h"

namespace tapegrad::optim {

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0;
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
  bool maximize = false;
};

class Adagrad : public Optimizer {
 public:
  explicit Adagrad(std::vector<Tensor> params, AdagradOptions options = {});
  explicit Adagrad(std::vector<ParamGroup> groups, AdagradOptions defaults = {});

  void step() override;

 protected:
  void validate(const GroupOptions& options) const override;
  void on_group_added(ParamGroup& group) override;
};

}  // namespace tapegrad::optim
