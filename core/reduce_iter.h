// Reduction loops over a set of dims (internal to the library).
//
// plan_reduce() splits a tensor's dims into kept and reduced ones; for_each_output() visits every
// output element (in parallel when the work is large) with a pointer to its first input element, and
// for_each_reduced() walks the reduced elements behind it. Reduced dims that are contiguous are merged,
// so reducing the last dim of a contiguous tensor is a tight loop.
#pragma once

#include "tensor.h"

#include <omp.h>

#include <algorithm>

namespace tapegrad::detail {

struct ReducePlan {
  Shape out_shape;      // result shape (with keepdim applied)
  Shape kept_shape;     // kept dims, in order
  Shape kept_strides;   // input strides of the kept dims (elements)
  Shape red_shape;      // reduced dims, merged where contiguous
  Shape red_strides;
  std::vector<bool> reduced;  // per input dim
  int64_t out_numel = 1;
  int64_t red_numel = 1;
};

// An empty `dims` reduces every dim. Dims may be negative; duplicates are an error.
ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, std::string_view op);

// Calls fn(p, k) for each reduced element behind `base`: p points at it, k counts 0..red_numel-1 in
// row-major order of the reduced dims.
template <typename T, typename Fn>
inline void for_each_reduced(const T* base, const ReducePlan& plan, Fn&& fn) {
  const int64_t nd = static_cast<int64_t>(plan.red_shape.size());
  if (nd == 0) {
    fn(base, 0);
    return;
  }
  const int64_t inner = plan.red_shape.back(), inner_stride = plan.red_strides.back();
  const int64_t outer = plan.red_numel / std::max<int64_t>(inner, 1);
  int64_t idx[16] = {0};
  const T* p = base;
  int64_t k = 0;
  for (int64_t o = 0; o < outer; ++o) {
    if (inner_stride == 1) {
      for (int64_t i = 0; i < inner; ++i) fn(p + i, k + i);
    } else {
      for (int64_t i = 0; i < inner; ++i) fn(p + i * inner_stride, k + i);
    }
    k += inner;
    for (int64_t d = nd - 2; d >= 0; --d) {
      p += plan.red_strides[d];
      if (++idx[d] < plan.red_shape[d]) break;
      p -= plan.red_strides[d] * plan.red_shape[d];
      idx[d] = 0;
    }
  }
}

// Calls fn(out_index, base) for every output element, base pointing at its first input element.
template <typename T, typename Fn>
inline void for_each_output(const T* data, const ReducePlan& plan, Fn&& fn) {
  const int64_t nk = static_cast<int64_t>(plan.kept_shape.size());
  auto base_of = [&](int64_t i) {
    const T* p = data;
    for (int64_t d = nk - 1; d >= 0; --d) {
      p += (i % plan.kept_shape[d]) * plan.kept_strides[d];
      i /= plan.kept_shape[d];
    }
    return p;
  };
  const int64_t work = plan.out_numel * plan.red_numel;
  if (work >= 32768 && plan.out_numel > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < plan.out_numel; ++i) fn(i, base_of(i));
  } else {
    for (int64_t i = 0; i < plan.out_numel; ++i) fn(i, base_of(i));
  }
}

}  // namespace tapegrad::detail
