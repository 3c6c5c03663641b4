// Strided, broadcasting loops for elementwise kernels (internal to the library).
//
// for_each_run() walks the broadcast shape of up to four operands as a set of 1-D runs: adjacent
// dims that are contiguous for every operand are merged first, so contiguous tensors become one run
// and the body's inner loop vectorizes. Large loops are split across OpenMP threads.
//
// The typed helpers on top (map_unary, map_binary, map_ternary) allocate a contiguous output and are
// what most ops in core/ops/elementwise.cpp use.
#pragma once

#include "tensor.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace tapegrad::detail {

// Below this many elements a loop runs on one thread.
inline constexpr int64_t kParallelGrain = 32768;

// Broadcasts shapes a and b (NumPy rules); `op` names the operation in the error.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);

// Sets every element of t (any geometry) to value, without touching its version counter.
void fill(const Tensor& t, double value);

// Strides (in elements) of `t` viewed with the broadcast shape `shape` (stride 0 where broadcast).
Shape broadcast_strides(const Tensor& t, const Shape& shape);

// Geometry of a loop: the merged shape and, for each operand, its byte strides.
template <int N>
struct LoopGeometry {
  std::vector<int64_t> shape;  // innermost dim last
  std::array<std::vector<int64_t>, N> strides;
  std::array<char*, N> base;
};

// Merges dims that are contiguous for all operands and drops size-1 dims.
template <int N>
LoopGeometry<N> make_geometry(const Shape& shape, const std::array<char*, N>& base,
                              const std::array<Shape, N>& elem_strides, const std::array<size_t, N>& elem_sizes) {
  LoopGeometry<N> g;
  g.base = base;
  const int64_t nd = static_cast<int64_t>(shape.size());
  for (int64_t d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    bool merge = !g.shape.empty();
    if (merge) {
      for (int k = 0; k < N; ++k) {
        const int64_t inner = elem_strides[k][d] * static_cast<int64_t>(elem_sizes[k]);
        if (g.strides[k].back() != inner * shape[d]) {
          merge = false;
          break;
        }
      }
    }
    if (merge) {
      g.shape.back() *= shape[d];
      for (int k = 0; k < N; ++k) g.strides[k].back() = elem_strides[k][d] * static_cast<int64_t>(elem_sizes[k]);
    } else {
      g.shape.push_back(shape[d]);
      for (int k = 0; k < N; ++k) g.strides[k].push_back(elem_strides[k][d] * static_cast<int64_t>(elem_sizes[k]));
    }
  }
  if (g.shape.empty()) {  // a single element
    g.shape.push_back(1);
    for (int k = 0; k < N; ++k) g.strides[k].push_back(0);
  }
  return g;
}

// Calls body(ptrs, strides, n) on runs covering the geometry. ptrs[k] is operand k's first element in
// the run and strides[k] its byte stride along the run.
template <int N, typename Body>
void for_each_run(const LoopGeometry<N>& g, Body&& body) {
  const int64_t nd = static_cast<int64_t>(g.shape.size());
  const int64_t inner = g.shape.back();
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) outer *= g.shape[d];
  std::array<int64_t, N> inner_strides;
  for (int k = 0; k < N; ++k) inner_strides[k] = g.strides[k].back();
  const int64_t total = outer * inner;
  if (total == 0) return;  // an empty tensor (and no row index to compute modulo a 0 size)

  auto rows = [&](int64_t lo, int64_t hi) {
    // Position of row `lo` as a multi-index over the outer dims.
    std::vector<int64_t> idx(nd > 1 ? nd - 1 : 0, 0);
    int64_t r = lo;
    for (int64_t d = nd - 2; d >= 0; --d) {
      idx[d] = r % g.shape[d];
      r /= g.shape[d];
    }
    std::array<char*, N> p;
    for (int k = 0; k < N; ++k) {
      p[k] = g.base[k];
      for (int64_t d = 0; d + 1 < nd; ++d) p[k] += idx[d] * g.strides[k][d];
    }
    for (int64_t row = lo; row < hi; ++row) {
      body(p, inner_strides, inner);
      for (int64_t d = nd - 2; d >= 0; --d) {  // advance the odometer
        for (int k = 0; k < N; ++k) p[k] += g.strides[k][d];
        if (++idx[d] < g.shape[d]) break;
        for (int k = 0; k < N; ++k) p[k] -= g.strides[k][d] * g.shape[d];
        idx[d] = 0;
      }
    }
  };

  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (total < kParallelGrain || threads == 1) {
    rows(0, outer);
  } else if (outer >= threads) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) rows(outer * t / threads, outer * (t + 1) / threads);
  } else {
    // Few long rows: split every row into chunks.
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) {
      const int64_t lo = inner * t / threads, hi = inner * (t + 1) / threads;
      for (int64_t row = 0; row < outer; ++row) {
        int64_t r = row;
        std::array<char*, N> p = g.base;
        for (int64_t d = nd - 2; d >= 0; --d) {
          for (int k = 0; k < N; ++k) p[k] += (r % g.shape[d]) * g.strides[k][d];
          r /= g.shape[d];
        }
        for (int k = 0; k < N; ++k) p[k] += lo * inner_strides[k];
        body(p, inner_strides, hi - lo);
      }
    }
  }
}

// out[i] = f(a[i]) with out a new contiguous tensor of dtype R.
template <typename T, typename R, typename F>
Tensor map_unary(const Tensor& a, DType out_dtype, F f) {
  Tensor out = Tensor::empty(a.shape(), {.dtype = out_dtype});
  auto g = make_geometry<2>(a.shape(), {static_cast<char*>(out.data()), static_cast<char*>(a.data())},
                            {out.strides(), a.strides()}, {sizeof(R), sizeof(T)});
  for_each_run<2>(g, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    R* o = reinterpret_cast<R*>(p[0]);
    const char* x = p[1];
    if (s[1] == static_cast<int64_t>(sizeof(T))) {
      const T* xs = reinterpret_cast<const T*>(x);
      for (int64_t i = 0; i < n; ++i) o[i] = f(xs[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i] = f(*reinterpret_cast<const T*>(x + i * s[1]));
    }
  });
  return out;
}

// out = f(a, b) over the broadcast shape; a and b are read as TA and TB, out is written as R.
template <typename TA, typename TB, typename R, typename F>
Tensor map_binary(const Tensor& a, const Tensor& b, DType out_dtype, std::string_view op, F f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, {.dtype = out_dtype});
  auto g = make_geometry<3>(
      shape, {static_cast<char*>(out.data()), static_cast<char*>(a.data()), static_cast<char*>(b.data())},
      {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)}, {sizeof(R), sizeof(TA), sizeof(TB)});
  for_each_run<3>(g, [&](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
    R* o = reinterpret_cast<R*>(p[0]);
    if (s[1] == static_cast<int64_t>(sizeof(TA)) && s[2] == static_cast<int64_t>(sizeof(TB))) {
      const TA* x = reinterpret_cast<const TA*>(p[1]);
      const TB* y = reinterpret_cast<const TB*>(p[2]);
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (s[2] == 0 && s[1] == static_cast<int64_t>(sizeof(TA))) {
      const TA* x = reinterpret_cast<const TA*>(p[1]);
      const TB y = *reinterpret_cast<const TB*>(p[2]);
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y);
    } else {
      for (int64_t i = 0; i < n; ++i)
        o[i] = f(*reinterpret_cast<const TA*>(p[1] + i * s[1]), *reinterpret_cast<const TB*>(p[2] + i * s[2]));
    }
  });
  return out;
}

// out = f(a, b, c) over the broadcast shape of all three.
template <typename TA, typename TB, typename TC, typename R, typename F>
Tensor map_ternary(const Tensor& a, const Tensor& b, const Tensor& c, DType out_dtype, std::string_view op, F f) {
  const Shape shape = broadcast_shapes(broadcast_shapes(a.shape(), b.shape(), op), c.shape(), op);
  Tensor out = Tensor::empty(shape, {.dtype = out_dtype});
  auto g = make_geometry<4>(shape,
                            {static_cast<char*>(out.data()), static_cast<char*>(a.data()),
                             static_cast<char*>(b.data()), static_cast<char*>(c.data())},
                            {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape),
                             broadcast_strides(c, shape)},
                            {sizeof(R), sizeof(TA), sizeof(TB), sizeof(TC)});
  for_each_run<4>(g, [&](const std::array<char*, 4>& p, const std::array<int64_t, 4>& s, int64_t n) {
    R* o = reinterpret_cast<R*>(p[0]);
    for (int64_t i = 0; i < n; ++i)
      o[i] = f(*reinterpret_cast<const TA*>(p[1] + i * s[1]), *reinterpret_cast<const TB*>(p[2] + i * s[2]),
               *reinterpret_cast<const TC*>(p[3] + i * s[3]));
  });
  return out;
}

// dst[i] = f(src[i]) (dst is written, never read; src broadcast to dst's shape).
template <typename TD, typename TS, typename F>
void assign(const Tensor& dst, const Tensor& src, F f) {
  auto g = make_geometry<2>(dst.shape(), {static_cast<char*>(dst.data()), static_cast<char*>(src.data())},
                            {dst.strides(), broadcast_strides(src, dst.shape())}, {sizeof(TD), sizeof(TS)});
  for_each_run<2>(g, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    if (s[0] == static_cast<int64_t>(sizeof(TD)) && s[1] == static_cast<int64_t>(sizeof(TS))) {
      TD* d = reinterpret_cast<TD*>(p[0]);
      const TS* x = reinterpret_cast<const TS*>(p[1]);
      for (int64_t i = 0; i < n; ++i) d[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<TD*>(p[0] + i * s[0]) = f(*reinterpret_cast<const TS*>(p[1] + i * s[1]));
    }
  });
}

// dst[i] = f(dst[i], src[i]) in place, src broadcast to dst's shape (dst may be non-contiguous).
template <typename TD, typename TS, typename F>
void apply_inplace(const Tensor& dst, const Tensor& src, F f) {
  auto g = make_geometry<2>(dst.shape(), {static_cast<char*>(dst.data()), static_cast<char*>(src.data())},
                            {dst.strides(), broadcast_strides(src, dst.shape())}, {sizeof(TD), sizeof(TS)});
  for_each_run<2>(g, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    if (s[0] == static_cast<int64_t>(sizeof(TD)) && s[1] == static_cast<int64_t>(sizeof(TS))) {
      TD* d = reinterpret_cast<TD*>(p[0]);
      const TS* x = reinterpret_cast<const TS*>(p[1]);
      for (int64_t i = 0; i < n; ++i) d[i] = f(d[i], x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        TD* d = reinterpret_cast<TD*>(p[0] + i * s[0]);
        *d = f(*d, *reinterpret_cast<const TS*>(p[1] + i * s[1]));
      }
    }
  });
}

}  // namespace tapegrad::detail
