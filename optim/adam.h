// Adam and AdamW, exactly as torch.optim.Adam / torch.optim.AdamW. Per parameter with a gradient:
//
//   t += 1 ; g = -grad if maximize else grad
//   Adam  (coupled L2):   if weight_decay != 0: g = g + weight_decay * p
//   AdamW (decoupled):    p = p * (1 - lr * weight_decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   bc1 = 1 - beta1^t ; bc2 = 1 - beta2^t
//   amsgrad: v_max = max(v_max, v) ; denom = sqrt(v_max) / sqrt(bc2) + eps
//   else:    denom = sqrt(v) / sqrt(bc2) + eps         (eps added after the bias correction)
//   p = p - (lr / bc1) * m / denom
//
// State (created on a parameter's first step): "step" (float32 0-dim tensor), "exp_avg",
// "exp_avg_sq", and "max_exp_avg_sq" with amsgrad. The float32 arithmetic follows PyTorch 1.13's
// single-tensor loop operation by operation (PyTorch 2.x writes the first moment with lerp_, which can
// differ in the last bit).
#pragma once

#include "optimizer.h"

namespace tapegrad::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
  bool maximize = false;
  // AdamW's rule: decay the parameter itself instead of adding weight_decay * p to the gradient.
  bool decoupled_weight_decay = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});

  void step() override;

 protected:
  Adam(std::string name, std::vector<ParamGroup> groups, AdamOptions defaults);
  void validate(const GroupOptions& options) const override;
};

// AdamW's defaults differ from Adam's only in weight_decay (1e-2) and decoupled_weight_decay (true).
struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
};

}  // namespace tapegrad::optim
