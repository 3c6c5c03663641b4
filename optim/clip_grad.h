// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_. Both modify the .grad of
// the given parameters in place; parameters without a gradient are ignored.
#pragma once

#include <limits>
#include <vector>

#include "../core/tensor.h"

namespace tapegrad::optim {

// The p-norm of all gradients together (as if concatenated into one vector), computed like PyTorch:
// the norm of each gradient, then the norm of those norms, in the gradients' dtype (float64 if any
// gradient is float64). norm_type may be any p > 0, 0 (count of non-zeros) or infinity (max |g|).
// When clip_coef = max_norm / (total_norm + 1e-6) is below 1 (or NaN), every gradient is multiplied
// by it. Returns the total norm (0 when no parameter has a gradient). With error_if_nonfinite, a NaN
// or infinite total norm throws instead of scaling:
//   "clip_grad_norm_: The total norm of order 2.0 for gradients from `parameters` is non-finite, so it
//    cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway,
//    set `error_if_nonfinite=False`"
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element into [-clip_value, clip_value] (NaN stays NaN).
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

}  // namespace tapegrad::optim
