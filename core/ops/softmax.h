// softmax and log_softmax along one dim, stable (max subtracted), with closed-form backward.
#pragma once

#include "../tensor.h"

namespace tapegrad {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace tapegrad
