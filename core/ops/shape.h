// Joining, splitting and indexing. (The view ops — view, permute, narrow, ... — are Tensor members.)
#pragma once

#include "../tensor.h"

#include <vector>

namespace tapegrad {

// Concatenates along an existing dim; all other dims must match.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Stacks along a new dim; all shapes must match.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views of consecutive pieces of `split_size` (the last may be smaller).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// Views of pieces with the given sizes, which must add up to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
// `chunks` views of (nearly) equal size, as torch.chunk.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// Rows of x at int64 `index` (1-D) along dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j] = x[index[i][j]][j] for dim 0, etc. index is int64 with x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// out = copy of x with src added at index along dim (the backward of gather).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// One-hot encoding of int64 labels: shape (*, num_classes), int64 like PyTorch. num_classes = -1
// means max(label) + 1.
Tensor one_hot(const Tensor& labels, int64_t num_classes = -1);

}  // namespace tapegrad
