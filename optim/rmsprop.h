// RMSprop, exactly as torch.optim.RMSprop. Per parameter with a gradient:
//
//   g = -grad if maximize else grad
//   if weight_decay != 0: g = g + weight_decay * p
//   sq = alpha * sq + (1 - alpha) * g * g
//   centered: ga = alpha * ga + (1 - alpha) * g ; avg = sqrt(sq - ga * ga) + eps
//   else:     avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum * buf + g / avg ; p = p - lr * buf
//   else:         p = p - lr * g / avg
//
// State (created on a parameter's first step): "step" (float32 0-dim tensor), "square_avg",
// "momentum_buffer" (momentum > 0), "grad_avg" (centered).
#pragma once

#include "optimizer.h"

namespace tapegrad::optim {

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;
  bool maximize = false;
};

class RMSprop : public Optimizer {
 public:
  explicit RMSprop(std::vector<Tensor> params, RMSpropOptions options = {});
  explicit RMSprop(std::vector<ParamGroup> groups, RMSpropOptions defaults = {});

  void step() override;

 protected:
  void validate(const GroupOptions& options) const override;
};

}  // namespace tapegrad::optim
