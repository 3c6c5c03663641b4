// Reductions: forward kernel and backward formula side by side.
#include "reduce.h"

#include "../autograd.h"
#include "../reduce_iter.h"
#include "elementwise.h"

#include <cmath>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace detail {

ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, std::string_view op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  p.reduced.assign(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;
    TG_CHECK(!p.reduced[w], "{}: dim {} appears multiple times in the list of dims", op, w);
    p.reduced[w] = true;
  }
  for (int64_t d = 0; d < nd; ++d) {
    const int64_t n = x.shape()[d], st = x.strides()[d];
    if (p.reduced[d]) {
      if (keepdim) p.out_shape.push_back(1);
      p.red_numel *= n;
      if (n == 1) continue;
      // Merge with the previous reduced dim when contiguous with it.
      if (!p.red_shape.empty() && p.red_strides.back() == st * n) {
        p.red_shape.back() *= n;
        p.red_strides.back() = st;
      } else {
        p.red_shape.push_back(n);
        p.red_strides.push_back(st);
      }
    } else {
      p.out_shape.push_back(n);
      p.kept_shape.push_back(n);
      p.kept_strides.push_back(st);
      p.out_numel *= n;
    }
  }
  TG_CHECK(p.red_shape.size() <= 16, "{}: too many reduced dims", op);
  return p;
}

}  // namespace detail

// ---- sum ----

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "sum");
  // Integers and bools sum to int64, like PyTorch.
  const DType out_dtype = is_floating(x.dtype()) ? x.dtype() : DType::Int64;
  Tensor out = Tensor::empty(plan.out_shape, {.dtype = out_dtype});
  const Tensor xin = is_floating(x.dtype()) ? x : x.to(DType::Int64);
  dispatch_numeric(out_dtype, "sum", [&]<typename T>() {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    T* o = out.data_ptr<T>();
    detail::for_each_output(xin.data_ptr<T>(), plan, [&](int64_t i, const T* base) {
      Acc acc = 0;
      detail::for_each_reduced(base, plan, [&](const T* p, int64_t) { acc += static_cast<Acc>(*p); });
      o[i] = static_cast<T>(acc);
    });
  });
  const Shape in_shape = x.shape();
  const auto reduced = plan.reduced;
  autograd::record("sum", {x}, {out}, {}, [in_shape, reduced, keepdim](Context& ctx) -> Grads {
    // Put the reduced dims back as size 1 and broadcast.
    Tensor g = ctx.grad();
    if (!keepdim) {
      for (size_t d = 0; d < reduced.size(); ++d)
        if (reduced[d]) g = g.unsqueeze(static_cast<int64_t>(d));
    }
    return {g.expand(in_shape)};
  });
  return out;
}

Tensor Tensor::sum() const { return tapegrad::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return tapegrad::sum(*this, dims, keepdim); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  TG_CHECK(lead >= 0, "sum_to: cannot sum a tensor of shape {} to the larger shape {}", shape_str(x.shape()),
           shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead];
    TG_CHECK(want == x.shape()[d] || want == 1, "sum_to: shape {} is not broadcastable to {}", shape_str(shape),
             shape_str(x.shape()));
    if (want == 1 && x.shape()[d] != 1) dims.push_back(d);
  }
  Tensor r = dims.empty() ? x : sum(x, dims, true);
  return lead > 0 || r.shape() != shape ? r.reshape(shape) : r;
}

}  // namespace tapegrad

namespace tapegrad {

// ---- mean ----

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "mean");
  TG_CHECK(is_floating(x.dtype()),
           "mean: mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
           "Got: {}",
           dtype_name(x.dtype()));
  Tensor out;
  {
    autograd::NoGradGuard ng;
    out = sum(x, dims, keepdim) / static_cast<double>(plan.red_numel);
  }
  // d/dx = g / n broadcast back over the reduced dims (composed: double backward works).
  const Shape in_shape = x.shape();
  const auto reduced = plan.reduced;
  const auto n = static_cast<double>(plan.red_numel);
  autograd::record("mean", {x}, {out}, {}, [in_shape, reduced, keepdim, n](Context& ctx) -> Grads {
    Tensor g = ctx.grad();
    if (!keepdim) {
      for (size_t d = 0; d < reduced.size(); ++d)
        if (reduced[d]) g = g.unsqueeze(static_cast<int64_t>(d));
    }
    return {g.expand(in_shape) / n};
  });
  return out;
}

Tensor Tensor::mean() const { return tapegrad::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return tapegrad::mean(*this, dims, keepdim); }

}  // namespace tapegrad
