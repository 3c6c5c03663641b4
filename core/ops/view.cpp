// View ops: new geometry over the same storage, no copy. Each records a node whose backward maps the
// gradient back to the input's geometry.
#include "../autograd.h"
#include "elementwise.h"
#include "reduce.h"

#include <functional>
#include <numeric>

namespace tapegrad {

namespace {

using autograd::Context;
using autograd::Grads;

// Resolves one -1 in a requested shape against numel.
Shape infer_shape(const Shape& requested, int64_t numel, std::string_view op) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      TG_CHECK(infer < 0, "{}: only one dimension can be inferred", op);
      infer = static_cast<int64_t>(i);
    } else {
      TG_CHECK(s[i] >= 0, "{}: invalid shape dimension {}", op, s[i]);
      known *= s[i];
    }
  }
  if (infer >= 0) {
    TG_CHECK(known != 0 && numel % known == 0, "{}: shape '{}' is invalid for input of size {}", op,
             shape_list(requested), numel);
    s[infer] = numel / known;
  }
  TG_CHECK(numel_of(s) == numel, "{}: shape '{}' is invalid for input of size {}", op, shape_list(requested), numel);
  return s;
}

// Strides for viewing (shape, strides) as new_shape without a copy, if possible (PyTorch's computeStride).
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size());
  // Nothing to preserve: no elements, or a 0-dim tensor's single one.
  if (numel_of(shape) == 0 || shape.empty()) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Records a view node whose backward reshapes the gradient to the input's shape.
Tensor record_reshape_like(const char* name, const Tensor& in, Tensor out) {
  const Shape in_shape = in.shape();
  autograd::record(name, {in}, {out}, {}, [in_shape](Context& ctx) -> Grads { return {ctx.grad().reshape(in_shape)}; });
  return out;
}

// The gradient of a view that picks part of its input (slice, select): zeros of the input's shape
// with g written where the view was. Recorded itself, so that a create_graph backward can
// differentiate through it: its own backward takes the same view of the incoming gradient.
Tensor embed_grad(const Tensor& g, const Shape& in_shape, std::function<Tensor(const Tensor&)> pick) {
  Tensor out = Tensor::zeros(in_shape, {.dtype = g.dtype()});
  {
    autograd::NoGradGuard ng;
    pick(out).copy_(g);
  }
  autograd::record("embed_grad", {g}, {out}, {}, [pick](Context& ctx) -> Grads { return {pick(ctx.grad())}; });
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape s = infer_shape(requested, numel(), "view");
  auto st = view_strides(shape(), strides(), s);
  TG_CHECK(st.has_value(),
           "view: view size is not compatible with input tensor's size and stride (at least one dimension spans across "
           "two contiguous subspaces). Use .reshape(...) instead.");
  return record_reshape_like("view", *this, make_view(*this, s, *st, offset()));
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape s = infer_shape(requested, numel(), "reshape");
  if (auto st = view_strides(shape(), strides(), s)) return record_reshape_like("view", *this, make_view(*this, s, *st, offset()));
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  TG_CHECK(s <= e, "flatten: flatten() has invalid args: start_dim cannot come after end_dim");
  Shape out(shape().begin(), shape().begin() + s);
  int64_t n = 1;
  for (int64_t d = s; d <= e; ++d) n *= shape()[d];
  out.push_back(n);
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

Tensor Tensor::permute(const Shape& dims) const {
  TG_CHECK(static_cast<int64_t>(dims.size()) == dim(),
           "permute: number of dimensions in the tensor input does not match the length of the desired ordering of "
           "dimensions i.e. input.dim() = {} is not equal to len(dims) = {}",
           dim(), dims.size());
  Shape s(dims.size()), st(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    TG_CHECK(!seen[d], "permute: duplicate dims are not allowed (dim {} appears twice in {})", d, shape_list(dims));
    seen[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, s, st, offset());
  autograd::record("permute", {*this}, {out}, {}, [inverse](Context& ctx) -> Grads { return {ctx.grad().permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape s = shape(), st = strides();
  std::swap(s[d0], s[d1]);
  std::swap(st[d0], st[d1]);
  Tensor out = make_view(*this, s, st, offset());
  autograd::record("transpose", {*this}, {out}, {}, [d0, d1](Context& ctx) -> Grads { return {ctx.grad().transpose(d0, d1)}; });
  return out;
}

Tensor Tensor::t() const {
  TG_CHECK(dim() <= 2, "t: t() expects a tensor with <= 2 dimensions, but self is {}D", dim());
  if (dim() < 2) return *this;
  Tensor out = make_view(*this, {shape()[1], shape()[0]}, {strides()[1], strides()[0]}, offset());
  autograd::record("t", {*this}, {out}, {}, [](Context& ctx) -> Grads { return {ctx.grad().t()}; });
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  TG_CHECK(step > 0, "slice: slice step must be positive, got {}", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  autograd::record("slice", {*this}, {out}, {}, [in_shape, d, start, end, step](Context& ctx) -> Grads {
    return {embed_grad(ctx.grad(), in_shape, [=](const Tensor& t) { return t.slice(d, start, end, step); })};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  const int64_t n = shape()[d];
  TG_CHECK(start >= -n && start <= n, "narrow: start out of range (expected to be in range of [{}, {}], but got {})",
           -n, n, start);
  if (start < 0) start += n;
  TG_CHECK(length >= 0 && start + length <= n, "narrow: start ({}) + length ({}) exceeds dimension size ({}).", start,
           length, n);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  TG_CHECK(dim() > 0, "select: select() cannot be applied to a 0-dim tensor.");
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  TG_CHECK(index >= -n && index < n, "select: index {} out of range for tensor of size {} at dimension {}", index,
           shape_list(shape()), d);
  if (index < 0) index += n;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, offset() + index * strides()[d]);
  const Shape in_shape = shape();
  autograd::record("select", {*this}, {out}, {}, [in_shape, d, index](Context& ctx) -> Grads {
    return {embed_grad(ctx.grad(), in_shape, [=](const Tensor& t) { return t.select(d, index); })};
  });
  return out;
}

Tensor Tensor::squeeze() const {
  Shape s, st;
  for (int64_t d = 0; d < dim(); ++d) {
    if (shape()[d] == 1) continue;
    s.push_back(shape()[d]);
    st.push_back(strides()[d]);
  }
  return record_reshape_like("squeeze", *this, make_view(*this, s, st, offset()));
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return record_reshape_like("squeeze", *this, make_view(*this, s, st, offset()));
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  const int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return record_reshape_like("unsqueeze", *this, make_view(*this, s, st, offset()));
}

Tensor Tensor::expand(const Shape& target) const {
  TG_CHECK(static_cast<int64_t>(target.size()) >= dim(),
           "expand: the number of sizes provided ({}) must be greater or equal to the number of dimensions in the "
           "tensor ({})",
           target.size(), dim());
  const int64_t lead = static_cast<int64_t>(target.size()) - dim();
  Shape s(target.size()), st(target.size());
  for (int64_t i = 0; i < static_cast<int64_t>(target.size()); ++i) {
    if (i < lead) {
      TG_CHECK(target[i] >= 0, "expand: The expanded size of the tensor ({}) isn't allowed in a leading, non-existing dimension {}", target[i], i);
      s[i] = target[i];
      st[i] = 0;
      continue;
    }
    const int64_t have = shape()[i - lead];
    const int64_t want = target[i] == -1 ? have : target[i];
    TG_CHECK(have == want || have == 1,
             "expand: The expanded size of the tensor ({}) must match the existing size ({}) at non-singleton dimension "
             "{}.  Target sizes: {}.  Tensor sizes: {}",
             want, have, i, shape_list(target), shape_list(shape()));
    s[i] = want;
    st[i] = have == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, s, st, offset());
  // The engine sums the broadcast gradient back to the input's shape.
  autograd::record("expand", {*this}, {out}, {}, [](Context& ctx) -> Grads { return {ctx.grad()}; });
  return out;
}

}  // namespace tapegrad
