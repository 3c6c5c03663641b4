// Internal helpers for the optimizer kernels (not part of the public API).
//
// Include this header FIRST in every optim/*.cpp: the pragma below must precede all code.
//
// PyTorch's float32 results depend on which multiply-adds are fused. Its CPU kernels fuse exactly
// these (measured on the CPU kernels PyTorch dispatches to):
//   a.add_(b, alpha=s)           -> fma(s, b, a)
//   a.addcmul_(b, c, value=s)    -> fma(s * b, c, a)
//   a.addcdiv_(b, c, value=s)    -> a + (s * b) / c        (nothing to fuse)
// and nothing else. So contraction is switched off for these files and the fused operations are
// written out with fmadd(); everything else rounds after every operation, as PyTorch does. The
// learning-rate schedulers need the same: Python evaluates `x * y + z` with two roundings.
#pragma once

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <omp.h>

#include <cmath>
#include <cstdint>
#if __has_include(<experimental/simd>)
#include <experimental/simd>
#define TAPEGRAD_OPTIM_SIMD 1
#endif

#include "../core/iter.h"
#include "../core/tensor.h"

namespace tapegrad::optim::detail {

// a * b + c with one rounding where the CPU has a fused multiply-add (as PyTorch's kernels), else
// with two.
template <typename T>
inline T fmadd(T a, T b, T c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// Elements processed per block by the kernels that take square roots: small enough that the block's
// temporaries stay in L1.
inline constexpr int64_t kBlock = 512;

// x[i] = sqrt(x[i]) for i < n, with the vector square-root instruction. A plain loop over std::sqrt
// does not vectorize unless the whole build uses -fno-math-errno (the call may set errno), which
// makes Adam 5x slower; the results are the same (IEEE square roots are correctly rounded).
template <typename T>
inline void sqrt_inplace(T* x, int64_t n) {
  int64_t i = 0;
#ifdef TAPEGRAD_OPTIM_SIMD
  using V = std::experimental::native_simd<T>;
  constexpr auto width = static_cast<int64_t>(V::size());
  for (; i + width <= n; i += width) {
    V v(x + i, std::experimental::element_aligned);
    v = std::experimental::sqrt(v);
    v.copy_to(x + i, std::experimental::element_aligned);
  }
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// torch.maximum: NaN in either operand gives NaN.
template <typename T>
inline T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// Runs body(lo, hi) over [0, n): in one call below the grain, else split evenly across the OpenMP
// threads (each chunk a plain loop the compiler vectorizes).
template <typename Body>
void parallel_chunks(int64_t n, Body&& body, int64_t grain = tapegrad::detail::kParallelGrain) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (n < grain || threads <= 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int t = 0; t < threads; ++t) body(n * t / threads, n * (t + 1) / threads);
}

// Calls f.template operator()<B...>() with the runtime flags turned into template arguments, so that
// every combination gets its own branch-free loop, which the compiler vectorizes:
//   with_flags([&]<bool Maximize, bool Decay>() { ... }, maximize, weight_decay != 0);
template <bool... Bs, typename F>
void with_flags(F&& f) {
  f.template operator()<Bs...>();
}
template <bool... Bs, typename F, typename... Rest>
void with_flags(F&& f, bool flag, Rest... rest) {
  if (flag)
    with_flags<Bs..., true>(f, rest...);
  else
    with_flags<Bs..., false>(f, rest...);
}

// Calls update(p, g) with contiguous tensors standing for a parameter and its gradient, then marks
// the parameter as modified in place (version bump). The common case (both contiguous) costs nothing;
// a non-contiguous parameter is updated through a contiguous copy that is written back.
template <typename Update>
void update_contiguous(const Tensor& param, const Tensor& grad, Update&& update) {
  const Tensor g = grad.is_contiguous() ? grad : grad.contiguous();
  if (param.is_contiguous()) {
    update(param, g);
    param.storage()->bump_version();
    return;
  }
  Tensor p = param.contiguous();
  update(p, g);
  Tensor(param).copy_(p);  // bumps the version
}

}  // namespace tapegrad::optim::detail
