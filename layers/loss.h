// Loss modules: thin wrappers over core/ops/loss.h. Call them with (input, target).
//   nn::CrossEntropyLoss ce({.label_smoothing = 0.1});
//   Tensor loss = ce(logits, labels);
#pragma once

#include "../core/ops/loss.h"
#include "module.h"

namespace tapegrad::nn {

// The shared shape of every loss module: forward(input, target), a reduction, an optional class weight
// (registered as the buffer "weight", as PyTorch does).
class Loss : public Module {
 public:
  virtual Tensor forward(const Tensor& input, const Tensor& target) = 0;
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
  Tensor forward(const Tensor&) override { fail("{}: a loss takes (input, target)", type_name()); }
  Reduction reduction;

 protected:
  Loss(const char* name, Reduction r) : Module(name), reduction(r) {}
};

struct CrossEntropyLossOptions {
  Tensor weight = {};
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;
};

class CrossEntropyLoss : public Loss {
 public:
  explicit CrossEntropyLoss(CrossEntropyLossOptions options = {});
  Tensor forward(const Tensor& input, const Tensor& target) override;
  CrossEntropyLossOptions options;
};

struct NLLLossOptions {
  Tensor weight = {};
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
};

class NLLLoss : public Loss {
 public:
  explicit NLLLoss(NLLLossOptions options = {});
  Tensor forward(const Tensor& input, const Tensor& target) override;
  NLLLossOptions options;
};

class MSELoss : public Loss {
 public:
  explicit MSELoss(Reduction r = Reduction::Mean) : Loss("MSELoss", r) {}
  Tensor forward(const Tensor& input, const Tensor& target) override { return mse_loss(input, target, reduction); }
};

class L1Loss : public Loss {
 public:
  explicit L1Loss(Reduction r = Reduction::Mean) : Loss("L1Loss", r) {}
  Tensor forward(const Tensor& input, const Tensor& target) override { return l1_loss(input, target, reduction); }
};

class SmoothL1Loss : public Loss {
 public:
  explicit SmoothL1Loss(Reduction r = Reduction::Mean, double beta = 1.0) : Loss("SmoothL1Loss", r), beta(beta) {}
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return smooth_l1_loss(input, target, reduction, beta);
  }
  double beta;
};

class BCELoss : public Loss {
 public:
  explicit BCELoss(Tensor weight = {}, Reduction r = Reduction::Mean);
  Tensor forward(const Tensor& input, const Tensor& target) override;
  Tensor weight;
};

class BCEWithLogitsLoss : public Loss {
 public:
  explicit BCEWithLogitsLoss(Tensor weight = {}, Reduction r = Reduction::Mean, Tensor pos_weight = {});
  Tensor forward(const Tensor& input, const Tensor& target) override;
  Tensor weight, pos_weight;
};

}  // namespace tapegrad::nn
