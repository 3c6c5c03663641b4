#include "loss.h"

namespace tapegrad::nn {

CrossEntropyLoss::CrossEntropyLoss(CrossEntropyLossOptions o) : Loss("CrossEntropyLoss", o.reduction), options(o) {
  TG_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1,
           "CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0. Got: {}", o.label_smoothing);
  options.weight = register_buffer("weight", o.weight);
}

Tensor CrossEntropyLoss::forward(const Tensor& input, const Tensor& target) {
  return cross_entropy(input, target, options.weight, options.ignore_index, reduction, options.label_smoothing);
}

NLLLoss::NLLLoss(NLLLossOptions o) : Loss("NLLLoss", o.reduction), options(o) {
  options.weight = register_buffer("weight", o.weight);
}

Tensor NLLLoss::forward(const Tensor& input, const Tensor& target) {
  return nll_loss(input, target, options.weight, options.ignore_index, reduction);
}

BCELoss::BCELoss(Tensor w, Reduction r) : Loss("BCELoss", r) { weight = register_buffer("weight", w); }

Tensor BCELoss::forward(const Tensor& input, const Tensor& target) {
  return binary_cross_entropy(input, target, weight, reduction);
}

BCEWithLogitsLoss::BCEWithLogitsLoss(Tensor w, Reduction r, Tensor pw) : Loss("BCEWithLogitsLoss", r) {
  weight = register_buffer("weight", w);
  pos_weight = register_buffer("pos_weight", pw);
}

Tensor BCEWithLogitsLoss::forward(const Tensor& input, const Tensor& target) {
  return binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight);
}

}  // namespace tapegrad::nn
