// Stochastic gradient descent with momentum, dampening, Nesterov momentum, L2 weight decay and
// maximize, exactly as torch.optim.SGD. Per parameter with a gradient:
//
//   g = -grad if maximize else grad
//   if weight_decay != 0: g = g + weight_decay * p                 (coupled L2)
//   if momentum != 0:
//     buf = g                            on the first step (no dampening)
//     buf = momentum * buf + (1 - dampening) * g   afterwards
//     g = g + momentum * buf if nesterov else buf
//   p = p - lr * g
//
// State: "momentum_buffer" (only when momentum != 0, as PyTorch 2.x).
#pragma once

#include "optimizer.h"

namespace tapegrad::optim {

struct SGDOptions {
  double lr = 1e-3;  // PyTorch >= 2.2's default (required before)
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool maximize = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  // Groups set only the options that differ from `defaults` ({"lr", 0.01}, {"momentum", 0.5}, ...).
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions defaults = {});

  void step() override;

 protected:
  void validate(const GroupOptions& options) const override;
};

}  // namespace tapegrad::optim
