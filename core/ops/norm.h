// Normalization: batch, instance, layer and group norm over one shared core.
//
// The four ops differ only in which elements share a mean and a variance and in what they keep as
// running state. The core views a contiguous input as (N, G, K, S):
//
//   op             N          G    K       S              statistics per   affine per
//   batch_norm     N          C    1       prod(*)        g over (N, S)    channel g
//   instance_norm  N          C    1       prod(*)        (n, g) over S    channel g
//   group_norm     N          G    C / G   prod(*)        (n, g) over K·S  channel g·K + k
//   layer_norm     prod(lead) 1    D       1              n over D         element k
//
// Forward: y = (x - mean) · rstd · w + b with rstd = 1 / sqrt(var + eps) and var the biased variance.
// Statistics accumulate in float64 per L1-sized chunk (float32 data: one pass over shifted values;
// float64 data: two passes), chunks merged with Chan's formula, so a large mean never cancels the
// variance and the input is read from memory once for them; the normalizing read usually comes from
// cache, and outputs of 8 MB or more are written past the caches. Backward is closed form
// (xhat = (x - mean)·rstd, gw = dy·w, n = group size):
//
//   dx = rstd · (gw - mean_grp(gw) - xhat · mean_grp(gw · xhat))     (statistics from the batch)
//   dx = rstd · gw                                                     (running statistics: constants)
//   dw_c = Σ dy · xhat ,  db_c = Σ dy                                  (over everything but channel c)
//
// Each op records one node ("batch_norm", "instance_norm", "layer_norm", "group_norm") whose fused
// backward produces dx, dw and db in two passes over (x, dy); its per-group sums are float64 (a
// float32 layer-norm row sums blocks of 256 elements in float32 vectors, and its per-element dw, db
// blocks of 16 rows in float32, before adding them in float64). Under
// create_graph the backward is built from differentiable ops instead, so higher-order gradients work.
// Batch norm on (N, C, *) with N > 4 runs as two streaming passes through the per-channel primitives
// below (a channel's N runs lie C·S apart and would collide in the L2), otherwise one task per channel.
//
// Error messages are PyTorch's (F.batch_norm & co. and the ATen checks), prefixed with the op name.
#pragma once

#include "../tensor.h"

#include <functional>

namespace tapegrad {

// ---- batch norm ----

// x: (N, C, *). running_mean, running_var: C elements each, or undefined. weight, bias: C elements or
// undefined (then 1 and 0).
//   training: statistics of the batch (biased variance) normalize x; running stats, when given, are
//     updated in place outside autograd: r ← (1 - momentum)·r + momentum·s, with the *unbiased*
//     variance var·n/(n-1) for running_var (n = N·prod(*)). `momentum` is the plain factor (a module
//     with momentum=None passes 1/num_batches_tracked).
//     Throws "batch_norm: Expected more than 1 value per channel when training, got input size
//     torch.Size([1, 3])" when N·prod(*) == 1.
//   !training: running statistics normalize x (both must be given); nothing is updated.
// An empty batch (numel 0) returns an empty output and leaves the running stats alone.
// With eps = 0, a constant channel in training gives y = b (rstd taken as 0, as PyTorch's InvStd);
// running_var = 0 with eps = 0 in eval gives NaN, as in PyTorch.
// saved: x, mean, rstd (float64, per channel), weight
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight = {},
                  const Tensor& bias = {}, bool training = false, double momentum = 0.1, double eps = 1e-5);

// ---- instance norm ----

// x: (N, C, *) (a module unsqueezes unbatched input first). Statistics per (n, c) over *.
//   use_input_stats: normalize with each instance's statistics; running stats, when given, are updated
//     with the averages over n of the instance means and of the *unbiased* instance variances.
//     Throws "instance_norm: Expected more than 1 spatial element when training, got input size
//     torch.Size([2, 3, 1])" when prod(*) == 1.
//   !use_input_stats: normalize with running_mean / running_var (required).
// Channel checks use PyTorch's wording for its repeated parameters: "weight should contain 6 elements
// not 10" for input (2, 3, *) and a weight of 5 elements. An empty batch returns an empty output and
// leaves the running stats alone (PyTorch 1.13 would write NaN into them).
// saved: x, mean, rstd (float64, per instance), weight
Tensor instance_norm(const Tensor& x, const Tensor& running_mean = {}, const Tensor& running_var = {},
                     const Tensor& weight = {}, const Tensor& bias = {}, bool use_input_stats = true,
                     double momentum = 0.1, double eps = 1e-5);

// ---- layer norm ----

// x: (*, *normalized_shape); statistics per row over the trailing normalized_shape; weight and bias
// have shape normalized_shape (elementwise affine) or are undefined. Same in train and eval.
// A normalized size of 1 gives y = bias.
// saved: x, mean, rstd (float64, per row), weight
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// ---- group norm ----

// x: (N, C, *), C divisible by num_groups; statistics per (n, group) over (C / num_groups, *);
// weight and bias: (C,) per channel, or undefined. Same in train and eval.
// Like F.group_norm it throws "group_norm: Expected more than 1 value per channel when training, got
// input size [1, 2, 1]" when N·C/G·prod(*) == 1, and keeps PyTorch's bias message that prints the
// weight's shape.
// saved: x, mean, rstd (float64, per (n, group)), weight
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// ---- synchronized batch norm ----
//
// Training-mode batch norm whose statistics are those of the union of every rank's batch. The caller
// (SyncBatchNorm) supplies the two collectives; everything else is the batch norm core:
//   forward:  local stats → all_gather → merge with counts (running stats updated with the global
//             count) → normalize with the global mean / invstd.
//   backward: local (sum_dy, sum_dy_xmu) → all_reduce → dx with the global sums and count; dweight and
//             dbias stay local (the data-parallel wrapper all-reduces parameter gradients).
// A rank with an empty batch still takes part in both collectives.
struct BatchNormSyncHooks {
  // Receives this rank's packed stats, float64 (2C + 1,) = [mean (C), invstd (C), count], and returns
  // every rank's, (world_size, 2C + 1), in rank order.
  std::function<Tensor(const Tensor&)> all_gather;
  // Receives this rank's float64 (2C,) = [sum_dy (C), sum_dy_xmu (C)] and returns the sum over ranks.
  std::function<Tensor(const Tensor&)> all_reduce_sum;
};

// x: (N, C, *) with any N (a rank may hold a single sample, or none). Records "sync_batch_norm".
// Double backward is not supported (throws).
// saved: x, mean, invstd (float64, global), weight
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps, const BatchNormSyncHooks& hooks);

// ---- batch norm primitives (no autograd; PyTorch's torch.batch_norm_* family) ----
// x, dy: (N, C, *) of a floating dtype. mean, invstd, sum_dy, sum_dy_xmu: float64 (C,).

struct BatchNormStats {
  Tensor mean;        // float64 (C,)
  Tensor invstd;      // float64 (C,): 1 / sqrt(var + eps), biased var; 0 when var == 0 and eps == 0
  int64_t count = 0;  // N · prod(*)
};
// Per-channel statistics of the local batch (torch.batch_norm_stats). An empty batch gives zeros.
BatchNormStats batch_norm_stats(const Tensor& x, double eps);

// Merges per-rank statistics (torch.batch_norm_gather_stats_with_counts) with Chan's parallel formula:
// mean_all, invstd_all: (W, C); counts: (W,) (any floating dtype). Ranks with count < 1 are skipped.
// Returns the global (mean, invstd) with invstd = 1 / sqrt(M2 / n + eps), and updates the running
// stats in place when given: rm ← (1-m)·rm + m·mean, rv ← (1-m)·rv + m·M2 / (n - 1).
std::pair<Tensor, Tensor> batch_norm_gather_stats_with_counts(const Tensor& mean_all, const Tensor& invstd_all,
                                                              const Tensor& counts, const Tensor& running_mean,
                                                              const Tensor& running_var, double momentum, double eps);

// y = (x - mean) · invstd · w + b (torch.batch_norm_elemt); weight / bias may be undefined.
Tensor batch_norm_elemt(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                        const Tensor& invstd);

struct BatchNormBackwardReduce {
  Tensor sum_dy;       // float64 (C,): Σ dy
  Tensor sum_dy_xmu;   // float64 (C,): Σ dy · (x - mean)
  Tensor grad_weight;  // weight's dtype (C,): sum_dy_xmu · invstd, when asked for
  Tensor grad_bias;    // weight's (or x's) dtype (C,): sum_dy, when asked for
};
// Local per-channel sums of the backward (torch.batch_norm_backward_reduce).
BatchNormBackwardReduce batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                                   const Tensor& invstd, const Tensor& weight, bool weight_grad,
                                                   bool bias_grad);

// dx = (dy - sum_dy / n - (x - mean) · invstd² · sum_dy_xmu / n) · invstd · w with the global sums and
// the global count n (torch.batch_norm_backward_elemt).
Tensor batch_norm_backward_elemt(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                 const Tensor& weight, const Tensor& sum_dy, const Tensor& sum_dy_xmu, int64_t count);

// In-place running-statistics update r ← (1 - momentum)·r + momentum·value (float64 value per element),
// outside autograd; a no-op for an undefined r. What the ops above use; exposed for the modules.
void update_running_stat(const Tensor& r, const Tensor& value, double momentum);

}  // namespace tapegrad
