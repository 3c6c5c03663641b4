// Loss functions, with PyTorch's shapes, reductions, denominators and error messages.
//
// Every loss reduces with a Reduction: None keeps one value per element (or per sample for the
// classification losses), Sum adds them, Mean divides the sum by the loss's own denominator
// (documented per function). Mean over zero elements is NaN, like PyTorch.
//
// Class weights and pos_weight are constants: passing one that requires grad (in grad mode) is an
// error, as in PyTorch ("... is not differentiable with respect to argument 'weight' ...").
//
// Backward: each loss has a fused first-order kernel; when a backward is itself recorded
// (create_graph) the same gradient is composed from differentiable ops, so higher-order gradients
// are exact too.
#pragma once

#include "../tensor.h"

#include <string_view>

namespace tapegrad {

enum class Reduction { None, Mean, Sum };

// "none" | "mean" | "sum" ("elementwise_mean" is PyTorch's legacy spelling of "mean"). Anything else
// throws "<op>: avg is not a valid value for reduction".
Reduction parse_reduction(std::string_view name, std::string_view op);
std::string_view reduction_name(Reduction r);

// ---- classification ----

// Softmax cross-entropy over the class dim (dim 1, or dim 0 for a 1-D input), fused with the
// log-softmax and numerically stable for any logits.
//
// Class-index targets (int64): input (C) & target (), (N, C) & (N), (N, C, d1..dK) & (N, d1..dK).
//   Targets lie in [0, C) or equal ignore_index (those elements contribute 0 and are left out of
//   the mean). With weight w (C,), element k with target t costs -w[t] * log_softmax(input)[k, t].
//   Mean divides by sum_k w[t_k] over non-ignored k (their count without weights): all ignored
//   gives NaN, Sum gives 0.
//   label_smoothing ls in (0, 1] gives (1 - ls) * nll + ls / C * smooth, smooth_k =
//   -sum_c w[c] * log_softmax[k, c] (0 where ignored), reduced with the same denominator.
//   A label_smoothing <= 0 is no smoothing (PyTorch ignores it too); > 1 is an error.
// Probability targets: same shape as input, floating. The target distribution is
//   q = target * (1 - ls) + ls / C and element k costs -sum_c w[c] q[k, c] log_softmax[k, c]. Mean
//   divides by N * d1 * ... * dK (not by the weights). ignore_index must stay negative.
//   These targets are differentiable.
// Output: a scalar for Mean/Sum; for None the target's shape (class-index) or the input's shape
// without the class dim (probabilities).
// saved: input, target, weight, per-row (max, log-sum-exp) in float64 [, per-row sum_c w[c] q[c]
// for probability targets].
Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight = {}, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean, double label_smoothing = 0.0);

// Negative log-likelihood of log-probabilities: the class-index half of cross_entropy without the
// log-softmax. Same shapes, weights, ignore_index and Mean denominator (sum of the weights of the
// non-ignored targets; all ignored gives NaN). saved: target, weight.
Tensor nll_loss(const Tensor& input, const Tensor& target, const Tensor& weight = {}, int64_t ignore_index = -100,
                Reduction reduction = Reduction::Mean);

// ---- regression ----
// input and target broadcast against each other (PyTorch warns when their sizes differ and then
// broadcasts; so does this, without the warning). Mean divides by the broadcast numel. Both input
// and target are differentiable.

// (input - target)^2. saved: input, target.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

// |input - target|; the gradient is sign(input - target), 0 where they are equal. saved: input, target.
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

// Huber-like: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target). beta = 0
// is l1_loss; beta < 0 is an error. saved: input, target.
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
                      double beta = 1.0);

// ---- binary classification ----

// -w * (t * log(x) + (1 - t) * log(1 - x)) with each log clamped to >= -100, for probabilities x in
// [0, 1] (anything else, NaN included, is an error). target must have input's shape and dtype;
// weight broadcasts to it. The input gradient is w (x - t) / max(x (1 - x), 1e-12); the target's is
// w (log(1 - x) - log(x)). saved: input, target, weight.
Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight = {},
                            Reduction reduction = Reduction::Mean);

// binary_cross_entropy(sigmoid(x), t) computed stably from logits x:
//   l = w * ((1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)).
// target must have input's shape; weight and pos_weight (typically (C,) for input (N, C))
// broadcast to it. saved: input, target, weight, pos_weight.
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const Tensor& weight = {},
                                        Reduction reduction = Reduction::Mean, const Tensor& pos_weight = {});

}  // namespace tapegrad
