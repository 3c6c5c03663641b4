// Reductions over dims. `dims` may be negative; an empty `dims` list means every dim.
// Floating reductions accumulate in float64.
#pragma once

#include "../tensor.h"

#include <utility>

namespace tapegrad {

Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
// Variance; unbiased divides by n - 1.
Tensor var(const Tensor& x, const Shape& dims = {}, bool unbiased = true, bool keepdim = false);
Tensor std(const Tensor& x, const Shape& dims = {}, bool unbiased = true, bool keepdim = false);
// Largest / smallest values over dims; the gradient is split evenly between ties, as PyTorch's amax.
Tensor amax(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
// Max / min of all elements (0-dim); the gradient is split evenly between ties.
Tensor max(const Tensor& x);
Tensor min(const Tensor& x);
// (values, int64 indices) along one dim; the gradient goes to the first maximal element.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
// Index of the first maximal element along dim (int64, not differentiable). argmax(x) flattens.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// log(sum(exp(x))) over dims, computed stably.
Tensor logsumexp(const Tensor& x, const Shape& dims, bool keepdim = false);

// Sums a tensor down to `shape` (which must broadcast to x's shape): the reverse of broadcasting.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace tapegrad
