// Joining, splitting and indexing. (The view ops — view, permute, narrow, ... — are Tensor members.)
//
// Indices are int64 tensors. Every index is checked against the size it selects from before anything
// is written, so a bad index throws and never reads or writes out of bounds.
#pragma once

#include "../tensor.h"

#include <vector>

namespace tapegrad {

// Concatenates along an existing dim; all other dims must match. The result has the promoted dtype of
// the inputs. As in PyTorch, 1-D empty tensors (shape (0,)) are skipped whatever the other shapes are.
// Backward: each input gets its slice of the gradient.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Stacks along a new dim; all shapes must match. Backward: input i gets grad.select(dim, i).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views of consecutive pieces of `split_size` (the last may be smaller).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// Views of pieces with the given sizes, which must add up to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
// `chunks` views of (nearly) equal size, as torch.chunk: pieces of ceil(size / chunks), so there may be
// fewer than `chunks` of them.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// Rows of x at int64 `index` (0-D or 1-D) along dim: out.size(dim) = index.numel().
// Backward: index_add of the gradient into zeros (saved: index).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out = copy of x with src's slices added along dim: out.select(dim, index[i]) += src.select(dim, i).
// index is 1-D int64 with src.size(dim) entries; src has x's shape except along dim. Repeated indices
// accumulate. Backward: x gets the gradient, src gets index_select of it (saved: index).
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// out[i][j] = x[index[i][j]][j] for dim 0, etc. index is int64 with x's rank and, in every dim but
// `dim`, a size no larger than x's; out has index's shape. Backward: scatter_add into zeros (saved: index).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// out = copy of x with src added at index along dim: out[index[i][j]][j] += src[i][j] for dim 0 (the
// backward of gather). index has x's rank, is no larger than src in any dim and no larger than x in any
// dim but `dim`; only src's elements covered by index are used. Repeated indices accumulate.
// Backward: x gets the gradient, src gets gather of it, zero where index does not reach (saved: index).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// One-hot encoding of int64 labels: shape (*, num_classes), int64 like PyTorch. num_classes = -1
// means max(label) + 1. Not differentiable.
Tensor one_hot(const Tensor& labels, int64_t num_classes = -1);

}  // namespace tapegrad
