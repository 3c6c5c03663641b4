// Joining, splitting and indexing: forward kernels and backward formulas side by side.
#include "shape.h"

#include "../autograd.h"
#include "../iter.h"
#include "elementwise.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

// t narrowed / selected along dim, with no autograd record: where a kernel writes into a fresh output.
Tensor raw_narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  Shape s = t.shape();
  s[dim] = length;
  return make_view(t, s, t.strides(), t.offset() + start * t.strides()[dim]);
}

Tensor raw_select(const Tensor& t, int64_t dim, int64_t index) {
  Shape s = t.shape(), st = t.strides();
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  return make_view(t, s, st, t.offset() + index * t.strides()[dim]);
}

// dst <- src (src broadcast to dst's shape), converting the dtype. dst is a fresh output: no autograd,
// no version bump.
void copy_convert(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  dispatch_all(dst.dtype(), [&]<typename D>() {
    dispatch_all(src.dtype(), [&]<typename S>() {
      detail::apply_inplace<D, S>(dst, src, [](D, S s) { return static_cast<D>(s); });
    });
  });
}

// A contiguous copy of x (x itself when already contiguous) that records nothing.
Tensor contiguous_no_grad(const Tensor& x) {
  autograd::NoGradGuard ng;
  return x.contiguous();
}

// PyTorch's name of a dtype in "Expected ... but got: Float" style messages.
std::string_view scalar_type_name(DType t) {
  switch (t) {
    case DType::Float32: return "Float";
    case DType::Float64: return "Double";
    case DType::Int64: return "Long";
    case DType::Bool: return "Bool";
  }
  return "?";
}

// Shape and strides with a 0-dim tensor seen as 1-D of size 1 (PyTorch's ensure_nonempty_dim).
Shape nonempty_shape(const Tensor& t) { return t.dim() == 0 ? Shape{1} : t.shape(); }
Shape nonempty_strides(const Tensor& t) { return t.dim() == 0 ? Shape{1} : t.strides(); }

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t d = begin; d < end; ++d) n *= s[d];
  return n;
}

int threads_for(int64_t work) {
  if (work < detail::kParallelGrain || omp_in_parallel()) return 1;
  return omp_get_max_threads();
}

// Splits an (outer x inner) loop across threads: by rows when there are enough of them, else by
// column blocks, so that no two threads ever touch the same (row, column). f(o_lo, o_hi, j_lo, j_hi).
template <typename F>
void for_blocks(int64_t outer, int64_t inner, int64_t work, F f) {
  const int threads = threads_for(work);
  if (threads == 1) {
    f(int64_t{0}, outer, int64_t{0}, inner);
  } else if (outer >= threads) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) f(outer * t / threads, outer * (t + 1) / threads, int64_t{0}, inner);
  } else {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) f(int64_t{0}, outer, inner * t / threads, inner * (t + 1) / threads);
  }
}

// Visits every line along `dim` of `shape`: f(base) gets, for each of N operands, the element offset of
// the line's first element under that operand's strides. Lines run in parallel when the work is large;
// distinct lines differ in some coordinate other than `dim`.
template <int N, typename F>
void for_each_line(const Shape& shape, int64_t dim, const std::array<Shape, N>& strides, F f) {
  Shape ls;
  std::array<Shape, N> lst;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d == dim) continue;
    ls.push_back(shape[d]);
    for (int k = 0; k < N; ++k) lst[k].push_back(strides[k][d]);
  }
  const int64_t lines = numel_of(ls), nl = static_cast<int64_t>(ls.size());
  auto run = [&](int64_t lo, int64_t hi) {
    if (lo >= hi) return;
    std::vector<int64_t> c(static_cast<size_t>(nl), 0);
    std::array<int64_t, N> base{};
    int64_t r = lo;
    for (int64_t d = nl - 1; d >= 0; --d) {
      c[d] = r % ls[d];
      r /= ls[d];
      for (int k = 0; k < N; ++k) base[k] += c[d] * lst[k][d];
    }
    for (int64_t l = lo; l < hi; ++l) {
      f(base);
      for (int64_t d = nl - 1; d >= 0; --d) {  // advance the odometer
        for (int k = 0; k < N; ++k) base[k] += lst[k][d];
        if (++c[d] < ls[d]) break;
        for (int k = 0; k < N; ++k) base[k] -= lst[k][d] * ls[d];
        c[d] = 0;
      }
    }
  };
  const int threads = lines > 1 ? threads_for(numel_of(shape)) : 1;
  if (threads == 1) {
    run(0, lines);
  } else {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) run(lines * t / threads, lines * (t + 1) / threads);
  }
}

// The first element of a contiguous int64 buffer outside [0, size), or nullptr.
const int64_t* first_out_of_range(const int64_t* idx, int64_t n, int64_t size) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= size) return idx + i;
  return nullptr;
}

}  // namespace

// ---- cat / stack ----

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  TG_CHECK(!tensors.empty(), "cat: expected a non-empty list of Tensors");
  // PyTorch's legacy rule: a 1-D empty tensor is skipped, whatever the shapes of the others.
  auto skipped = [](const Tensor& t) { return t.dim() == 1 && t.numel() == 0; };
  DType dt = tensors[0].dtype();
  size_t ref = 0;
  bool found = false;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    TG_CHECK(t.dim() > 0, "cat: zero-dimensional tensor (at position {}) cannot be concatenated", i);
    dt = promote_types(dt, t.dtype());
    if (!found && !skipped(t)) {
      ref = i;
      found = true;
    }
  }
  const Tensor& r = tensors[ref];
  dim = wrap_dim(dim, r.dim(), "cat");
  // starts[i]: where input i begins along dim in the output, -1 for a skipped input.
  std::vector<int64_t> starts(tensors.size(), -1), lengths(tensors.size(), 0);
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (i != ref && skipped(t)) continue;
    TG_CHECK(t.dim() == r.dim(), "cat: Tensors must have same number of dimensions: got {} and {}", r.dim(), t.dim());
    for (int64_t d = 0; d < r.dim(); ++d) {
      TG_CHECK(d == dim || t.shape()[d] == r.shape()[d],
               "cat: Sizes of tensors must match except in dimension {}. Expected size {} but got size {} for tensor "
               "number {} in the list.",
               dim, r.shape()[d], t.shape()[d], i);
    }
    starts[i] = total;
    lengths[i] = t.shape()[dim];
    total += lengths[i];
  }
  Shape out_shape = r.shape();
  out_shape[dim] = total;
  Tensor out = Tensor::empty(out_shape, {.dtype = dt});
  for (size_t i = 0; i < tensors.size(); ++i)
    if (starts[i] >= 0) copy_convert(raw_narrow(out, dim, starts[i], lengths[i]), tensors[i]);
  // The engine casts each slice back to its input's dtype.
  autograd::record("cat", tensors, {out}, {}, [dim, starts, lengths](Context& ctx) -> Grads {
    Grads gs(starts.size());
    for (size_t i = 0; i < starts.size(); ++i)
      if (starts[i] >= 0 && ctx.needs_grad(i)) gs[i] = ctx.grad().narrow(dim, starts[i], lengths[i]);
    return gs;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  TG_CHECK(!tensors.empty(), "stack: stack expects a non-empty TensorList");
  const Shape& s0 = tensors[0].shape();
  DType dt = tensors[0].dtype();
  for (size_t i = 1; i < tensors.size(); ++i) {
    TG_CHECK(tensors[i].shape() == s0,
             "stack: stack expects each tensor to be equal size, but got {} at entry 0 and {} at entry {}",
             shape_list(s0), shape_list(tensors[i].shape()), i);
    dt = promote_types(dt, tensors[i].dtype());
  }
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  Shape out_shape = s0;
  out_shape.insert(out_shape.begin() + dim, static_cast<int64_t>(tensors.size()));
  Tensor out = Tensor::empty(out_shape, {.dtype = dt});
  for (size_t i = 0; i < tensors.size(); ++i) copy_convert(raw_select(out, dim, static_cast<int64_t>(i)), tensors[i]);
  autograd::record("stack", tensors, {out}, {}, [dim](Context& ctx) -> Grads {
    Grads gs(ctx.node().next.size());
    for (size_t i = 0; i < gs.size(); ++i)
      if (ctx.needs_grad(i)) gs[i] = ctx.grad().select(dim, static_cast<int64_t>(i));
    return gs;
  });
  return out;
}

// ---- split / chunk: views, whose backward is narrow's ----

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  TG_CHECK(x.dim() > 0, "split: split expects at least a 1-dimensional tensor");
  TG_CHECK(split_size >= 0, "split: split expects split_size be non-negative, but got split_size={}", split_size);
  dim = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.shape()[dim];
  TG_CHECK(split_size > 0 || n == 0,
           "split: split_size can only be 0 if dimension size is 0, but got dimension size of {}", n);
  const int64_t pieces = split_size == 0 ? 1 : std::max<int64_t>((n + split_size - 1) / split_size, 1);
  std::vector<Tensor> out;
  out.reserve(static_cast<size_t>(pieces));
  for (int64_t k = 0; k < pieces; ++k) {
    const int64_t start = k * split_size;
    out.push_back(x.narrow(dim, start, std::min(split_size, n - start)));
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  TG_CHECK(x.dim() > 0, "split: split expects at least a 1-dimensional tensor");
  dim = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.shape()[dim];
  int64_t total = 0;
  for (int64_t s : sizes) {
    TG_CHECK(s >= 0,
             "split: split_with_sizes expects split_sizes have only non-negative entries, but got split_sizes={}",
             shape_list(sizes));
    total += s;
  }
  TG_CHECK(total == n,
           "split: split_with_sizes expects split_sizes to sum exactly to {} (input tensor's size at dimension {}), "
           "but got split_sizes={}",
           n, dim, shape_list(sizes));
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, start, s));
    start += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  TG_CHECK(x.dim() > 0, "chunk: chunk expects at least a 1-dimensional tensor");
  TG_CHECK(chunks > 0, "chunk: chunk expects `chunks` to be greater than 0, got: {}", chunks);
  dim = wrap_dim(dim, x.dim(), "chunk");
  const int64_t n = x.shape()[dim];
  const int64_t split_size = (n + chunks - 1) / chunks;
  // An empty dim gives `chunks` empty pieces, as PyTorch.
  if (split_size == 0) return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), 0), dim);
  return split(x, split_size, dim);
}

// ---- index_select / index_add ----

namespace {

// out.select(dim, idx[i]) += src.select(dim, i) for the contiguous `out` and `src`. Threads own
// disjoint rows or columns, so repeated indices never race and always add in index order.
void index_add_kernel(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  const int64_t outer = prod(out.shape(), 0, static_cast<size_t>(dim)), n = out.shape()[dim];
  const int64_t inner = prod(out.shape(), static_cast<size_t>(dim) + 1, out.shape().size());
  const int64_t k = idx.numel();
  const int64_t* ip = idx.data_ptr<int64_t>();
  dispatch_numeric(out.dtype(), "index_add", [&]<typename T>() {
    T* o = out.data_ptr<T>();
    const T* s = src.data_ptr<T>();
    for_blocks(outer, inner, outer * k * inner, [&](int64_t o_lo, int64_t o_hi, int64_t j_lo, int64_t j_hi) {
      for (int64_t a = o_lo; a < o_hi; ++a) {
        for (int64_t i = 0; i < k; ++i) {
          T* dst = o + (a * n + ip[i]) * inner;
          const T* row = s + (a * k + i) * inner;
          for (int64_t j = j_lo; j < j_hi; ++j) dst[j] += row[j];
        }
      }
    });
  });
}

// index_add with its checks done; `out` is x itself when x is a fresh zeros tensor owned by the caller
// (the backward of index_select), else a copy of x.
Tensor index_add_impl(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& src, bool x_is_scratch) {
  Tensor out = x;
  if (!x_is_scratch) {
    out = Tensor::empty(x.shape(), {.dtype = x.dtype()});
    copy_convert(out, x);
  }
  if (src.numel() > 0) index_add_kernel(out, dim, idx, contiguous_no_grad(src));
  // saved: index.  d/dx = g ; d/dsrc = index_select(g, dim, index)
  autograd::record(
      "index_add", {x, src}, {out}, {idx},
      [dim](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        return {ctx.needs_grad(0) ? g : Tensor(), ctx.needs_grad(1) ? index_select(g, dim, ctx.saved(0)) : Tensor()};
      },
      {"index"});
  return out;
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap_dim(dim, x.dim(), "index_select");
  TG_CHECK(index.dim() <= 1, "index_select: index_select(): Index is supposed to be a vector");
  TG_CHECK(index.dtype() == kInt64, "index_select: index_select(): Expected dtype int64 for index");
  const Tensor idx = contiguous_no_grad(index);
  const int64_t k = idx.numel();
  const int64_t* ip = idx.data_ptr<int64_t>();
  const int64_t n = x.dim() == 0 ? 1 : x.shape()[dim];
  TG_CHECK(first_out_of_range(ip, k, n) == nullptr, "index_select: index out of range in self");
  if (x.dim() == 0) return x.clone();  // PyTorch keeps a 0-dim self as it is

  // out[o][i][j] = x[o][index[i]][j] over (outer, n, inner) = x's dims before / at / after dim.
  Shape out_shape = x.shape();
  out_shape[dim] = k;
  Tensor out = Tensor::empty(out_shape, {.dtype = x.dtype()});
  const Tensor xc = contiguous_no_grad(x);
  const int64_t outer = prod(x.shape(), 0, static_cast<size_t>(dim));
  const int64_t inner = prod(x.shape(), static_cast<size_t>(dim) + 1, x.shape().size());
  dispatch_all(x.dtype(), [&]<typename T>() {
    const T* src = static_cast<const T*>(xc.data());
    T* dst = static_cast<T*>(out.data());
    const int64_t rows = outer * k;
    const int threads = rows > 1 ? threads_for(rows * inner) : 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t a = r / std::max<int64_t>(k, 1), i = r % std::max<int64_t>(k, 1);
      const T* from = src + (a * n + ip[i]) * inner;
      if (inner == 1)
        dst[r] = *from;
      else
        std::memcpy(dst + r * inner, from, static_cast<size_t>(inner) * sizeof(T));
    }
  });
  const Shape in_shape = x.shape();
  // saved: index.  d/dx = index_add(zeros, dim, index, g)
  autograd::record(
      "index_select", {x}, {out}, {idx},
      [dim, in_shape](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        return {index_add_impl(Tensor::zeros(in_shape, {.dtype = g.dtype()}), dim, ctx.saved(0), g, true)};
      },
      {"index"});
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  dim = wrap_dim(dim, x.dim(), "index_add");
  TG_CHECK(index.dim() <= 1,
           "index_add: index_add_(): Index is supposed to be a vector, but got dim: {} with type: {} and size: {}",
           index.dim(), scalar_type_name(index.dtype()), shape_list(index.shape()));
  TG_CHECK(index.dtype() == kInt64, "index_add: index_add_(): Expected dtype int32/int64 for index but got: {}",
           scalar_type_name(index.dtype()));
  TG_CHECK(x.dtype() == src.dtype(),
           "index_add: index_add_(): self ({}) and source ({}) must have the same scalar type",
           scalar_type_name(x.dtype()), scalar_type_name(src.dtype()));
  const Shape xs = nonempty_shape(x), ss = nonempty_shape(src);
  TG_CHECK(ss.size() != xs.size() || index.numel() == ss[dim],
           "index_add: index_add_(): Number of indices ({}) should be equal to source.size(dim): ({}), for dim: {}",
           index.numel(), ss[dim], dim);
  bool same = ss.size() == xs.size();
  for (size_t d = 0; same && d < xs.size(); ++d) same = static_cast<int64_t>(d) == dim || xs[d] == ss[d];
  TG_CHECK(same,
           "index_add: source tensor shape must match self tensor shape, excluding the specified dimension. Got "
           "self.shape = {} source.shape = {}",
           shape_list(x.shape()), shape_list(src.shape()));
  const Tensor idx = contiguous_no_grad(index);
  TG_CHECK(first_out_of_range(idx.data_ptr<int64_t>(), idx.numel(), xs[dim]) == nullptr,
           "index_add: index out of range in self");
  // A 0-dim x (and src) is handled as 1-D of size 1.
  if (x.dim() == 0) return index_add(x.reshape({1}), 0, idx, src.reshape({-1})).reshape({});
  return index_add_impl(x, dim, idx, src, false);
}

// ---- gather / scatter_add ----

namespace {

// Pads g with zeros at the end of each dim up to `shape` (differentiably: cat of zeros).
Tensor pad_to(Tensor g, const Shape& shape) {
  for (int64_t d = 0; d < g.dim(); ++d) {
    if (g.shape()[d] == shape[d]) continue;
    Shape zs = g.shape();
    zs[d] = shape[d] - g.shape()[d];
    g = cat({g, Tensor::zeros(zs, {.dtype = g.dtype()})}, d);
  }
  return g;
}

// out[p with p[dim] = index[p]] += src[p] over index's positions p; out is contiguous.
Tensor scatter_add_impl(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& src, bool x_is_scratch);

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  TG_CHECK(index.dtype() == kInt64, "gather: gather(): Expected dtype int64 for index");
  dim = wrap_dim(dim, x.dim(), "gather");
  const Shape xs = nonempty_shape(x), is = nonempty_shape(index);
  TG_CHECK(is.size() == xs.size(), "gather: Index tensor must have the same number of dimensions as input tensor");
  for (int64_t d = 0; d < static_cast<int64_t>(xs.size()); ++d) {
    TG_CHECK(d == dim || is[d] <= xs[d],
             "gather: Size does not match at dimension {} expected index {} to be smaller than self {} apart from "
             "dimension {}",
             d, shape_list(index.shape()), shape_list(x.shape()), dim);
  }
  const Tensor idx = contiguous_no_grad(index);
  const int64_t* ip = idx.data_ptr<int64_t>();
  if (const int64_t* bad = first_out_of_range(ip, idx.numel(), xs[dim]))
    fail("gather: index {} is out of bounds for dimension {} with size {}", *bad, dim, xs[dim]);

  // out and idx share index's contiguous layout; x is read through its own strides.
  Tensor out = Tensor::empty(index.shape(), {.dtype = x.dtype()});
  if (out.numel() > 0) {
    const Shape cs = contiguous_strides(is), xst = nonempty_strides(x);
    const int64_t len = is[dim], step = cs[dim], xstep = xst[dim];
    dispatch_all(x.dtype(), [&]<typename T>() {
      const T* xp = static_cast<const T*>(x.data());
      T* op = static_cast<T*>(out.data());
      for_each_line<2>(is, dim, {cs, xst}, [&](const std::array<int64_t, 2>& base) {
        for (int64_t k = 0; k < len; ++k) {
          const int64_t p = base[0] + k * step;
          op[p] = xp[base[1] + ip[p] * xstep];
        }
      });
    });
  }
  const Shape in_shape = x.shape();
  // saved: index.  d/dx = scatter_add(zeros, dim, index, g)
  autograd::record(
      "gather", {x}, {out}, {idx},
      [dim, in_shape](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        return {scatter_add_impl(Tensor::zeros(in_shape, {.dtype = g.dtype()}), dim, ctx.saved(0), g, true)};
      },
      {"index"});
  return out;
}

namespace {

Tensor scatter_add_impl(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& src, bool x_is_scratch) {
  Tensor out = x;
  if (!x_is_scratch) {
    out = Tensor::empty(x.shape(), {.dtype = x.dtype()});
    copy_convert(out, x);
  }
  const Shape is = nonempty_shape(idx);
  if (idx.numel() > 0) {
    // One line per position of index outside dim: all its targets lie on the same line of out, so
    // lines never collide and repeated indices add in order.
    const Shape os = contiguous_strides(nonempty_shape(out)), ics = contiguous_strides(is), sst = nonempty_strides(src);
    const int64_t len = is[dim];
    const int64_t* ip = idx.data_ptr<int64_t>();
    dispatch_numeric(out.dtype(), "scatter_add", [&]<typename T>() {
      T* op = static_cast<T*>(out.data());
      const T* sp = static_cast<const T*>(src.data());
      for_each_line<3>(is, dim, {os, ics, sst}, [&](const std::array<int64_t, 3>& base) {
        for (int64_t k = 0; k < len; ++k)
          op[base[0] + ip[base[1] + k * ics[dim]] * os[dim]] += sp[base[2] + k * sst[dim]];
      });
    });
  }
  const Shape src_shape = src.shape();
  // saved: index.  d/dx = g ; d/dsrc = gather(g, dim, index), zero where index does not reach
  autograd::record(
      "scatter_add", {x, src}, {out}, {idx},
      [dim, src_shape](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        Tensor gs;
        if (ctx.needs_grad(1)) {
          gs = gather(g, dim, ctx.saved(0));
          if (gs.shape() != src_shape) gs = pad_to(gs, src_shape);
        }
        return {ctx.needs_grad(0) ? g : Tensor(), gs};
      },
      {"index"});
  return out;
}

}  // namespace

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  TG_CHECK(index.dtype() == kInt64, "scatter_add: scatter(): Expected dtype int64 for index");
  TG_CHECK(x.dtype() == src.dtype(), "scatter_add: scatter(): Expected self.dtype to be equal to src.dtype");
  dim = wrap_dim(dim, x.dim(), "scatter_add");
  const Shape xs = nonempty_shape(x), is = nonempty_shape(index), ss = nonempty_shape(src);
  TG_CHECK(is.size() == xs.size(), "scatter_add: Index tensor must have the same number of dimensions as self tensor");
  TG_CHECK(is.size() == ss.size(), "scatter_add: Index tensor must have the same number of dimensions as src tensor");
  bool fits = true;
  for (int64_t d = 0; d < static_cast<int64_t>(xs.size()); ++d)
    fits = fits && (d == dim || is[d] <= xs[d]) && is[d] <= ss[d];
  TG_CHECK(fits || index.numel() == 0,
           "scatter_add: Expected index {} to be smaller than self {} apart from dimension {} and to be smaller size "
           "than src {}",
           shape_list(index.shape()), shape_list(x.shape()), dim, shape_list(src.shape()));
  const Tensor idx = contiguous_no_grad(index);
  if (const int64_t* bad = first_out_of_range(idx.data_ptr<int64_t>(), idx.numel(), xs[dim]))
    fail("scatter_add: index {} is out of bounds for dimension {} with size {}", *bad, dim, xs[dim]);
  return scatter_add_impl(x, dim, idx, src, false);
}

// ---- one_hot ----

Tensor one_hot(const Tensor& labels, int64_t num_classes) {
  TG_CHECK(labels.dtype() == kInt64, "one_hot: one_hot is only applicable to index tensor.");
  Shape out_shape = labels.shape();
  const Tensor l = contiguous_no_grad(labels);
  const int64_t n = l.numel();
  if (n == 0) {
    TG_CHECK(num_classes > 0, "one_hot: Can not infer total number of classes from empty tensor.");
    out_shape.push_back(num_classes);
    return Tensor::zeros(out_shape, {.dtype = kInt64});
  }
  const int64_t* lp = l.data_ptr<int64_t>();
  const int64_t lo = *std::min_element(lp, lp + n), hi = *std::max_element(lp, lp + n);
  TG_CHECK(lo >= 0, "one_hot: Class values must be non-negative.");
  if (num_classes == -1) num_classes = hi + 1;
  TG_CHECK(num_classes > hi, "one_hot: Class values must be smaller than num_classes.");
  out_shape.push_back(num_classes);
  Tensor out = Tensor::zeros(out_shape, {.dtype = kInt64});
  int64_t* op = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) op[i * num_classes + lp[i]] = 1;
  return out;
}

}  // namespace tapegrad
