// softmax / log_softmax: forward kernels and backward side by side.
//
// Both view the input as (outer, n, inner) with the softmax taken along n. The last dim of a contiguous
// tensor (inner = 1) is one pass per row; other dims keep a row of inner accumulators and read the
// input row by row. Sums accumulate in double.
#include "softmax.h"

#include "../autograd.h"
#include "../simd.h"
#include "elementwise.h"
#include "reduce.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

constexpr int64_t kGrain = 32768;  // elements below which a kernel runs on one thread

struct Geometry {
  int64_t outer = 1, n = 1, inner = 1;
};

Geometry geometry(const Shape& shape, int64_t d) {
  Geometry g;
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < d) g.outer *= shape[i];
    else if (i == d) g.n = shape[i];
    else g.inner *= shape[i];
  }
  return g;
}

// Runs body(lo, hi) over [0, count) split across threads when work (elements) is large.
template <typename Body>
void parallel_range(int64_t count, int64_t work, Body&& body) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1 || work < kGrain || count == 1) {
    body(int64_t{0}, count);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int t = 0; t < threads; ++t) body(count * t / threads, count * (t + 1) / threads);
}

// y = softmax(x) or log_softmax(x) along n; x and y contiguous (outer, n, inner).
template <typename T, bool Log>
void softmax_forward(const T* x, T* y, const Geometry& g) {
  const int64_t n = g.n, inner = g.inner;
  if (inner == 1) {
    parallel_range(g.outer, g.outer * n, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const T* xr = x + r * n;
        T* yr = y + r * n;
        // (a NaN anywhere makes the sum, and so the whole row, NaN; the max may skip it)
        const T m = simd::max_of(xr, n, -std::numeric_limits<T>::infinity());
        simd::exp_shift(xr, m, yr, n);
        const double s = simd::sum_double(yr, n);
        if constexpr (Log) {
          const T ls = static_cast<T>(std::log(s));
          for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) - ls;
        } else {
          const T inv = static_cast<T>(1.0 / s);
          for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
        }
      }
    });
    return;
  }
  // A tile of `inner` columns at a time: max, sum and output rows over n.
  constexpr int64_t kTile = 256;
  const int64_t tiles = (inner + kTile - 1) / kTile;
  parallel_range(g.outer * tiles, g.outer * n * inner, [&](int64_t lo, int64_t hi) {
    T m[kTile], e[kTile];
    double s[kTile];
    for (int64_t u = lo; u < hi; ++u) {
      const int64_t o = u / tiles, j0 = (u % tiles) * kTile, w = std::min(kTile, inner - j0);
      const T* xb = x + o * n * inner + j0;
      T* yb = y + o * n * inner + j0;
      for (int64_t j = 0; j < w; ++j) {
        m[j] = -std::numeric_limits<T>::infinity();
        s[j] = 0;
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < w; ++j) m[j] = xb[i * inner + j] > m[j] ? xb[i * inner + j] : m[j];
      for (int64_t i = 0; i < n; ++i) {
        T* er = Log ? e : yb + i * inner;
        simd::exp_diff(xb + i * inner, m, er, w);
        for (int64_t j = 0; j < w; ++j) s[j] += static_cast<double>(er[j]);
      }
      if constexpr (Log) {
        T ls[kTile];
        for (int64_t j = 0; j < w; ++j) ls[j] = static_cast<T>(std::log(s[j]));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < w; ++j) yb[i * inner + j] = (xb[i * inner + j] - m[j]) - ls[j];
      } else {
        T inv[kTile];
        for (int64_t j = 0; j < w; ++j) inv[j] = static_cast<T>(1.0 / s[j]);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < w; ++j) yb[i * inner + j] *= inv[j];
      }
    }
  });
}

// Fused backward, one pass over each row:
//   softmax:      dx = y (g - sum(g y))
//   log_softmax:  dx = g - exp(y) sum(g)
// g, y, dx contiguous (outer, n, inner).
template <typename T, bool Log>
void softmax_backward_fused(const T* g, const T* y, T* dx, const Geometry& geo) {
  const int64_t n = geo.n, inner = geo.inner;
  if (inner == 1) {
    parallel_range(geo.outer, geo.outer * n, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const T* gr = g + r * n;
        const T* yr = y + r * n;
        T* dr = dx + r * n;
        if constexpr (Log) {
          const T st = static_cast<T>(simd::sum_double(gr, n));
          simd::exp_shift(yr, T(0), dr, n);
          for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] - dr[i] * st;
        } else {
          const T st = static_cast<T>(simd::dot_double(gr, yr, n));
          for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - st);
        }
      }
    });
    return;
  }
  constexpr int64_t kTile = 256;
  const int64_t tiles = (inner + kTile - 1) / kTile;
  parallel_range(geo.outer * tiles, geo.outer * n * inner, [&](int64_t lo, int64_t hi) {
    double s[kTile];
    T st[kTile];
    for (int64_t u = lo; u < hi; ++u) {
      const int64_t o = u / tiles, j0 = (u % tiles) * kTile, w = std::min(kTile, inner - j0);
      const int64_t base = o * n * inner + j0;
      for (int64_t j = 0; j < w; ++j) s[j] = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T* gr = g + base + i * inner;
        const T* yr = y + base + i * inner;
        if constexpr (Log) {
          for (int64_t j = 0; j < w; ++j) s[j] += static_cast<double>(gr[j]);
        } else {
          for (int64_t j = 0; j < w; ++j) s[j] += static_cast<double>(gr[j]) * static_cast<double>(yr[j]);
        }
      }
      for (int64_t j = 0; j < w; ++j) st[j] = static_cast<T>(s[j]);
      for (int64_t i = 0; i < n; ++i) {
        const T* gr = g + base + i * inner;
        const T* yr = y + base + i * inner;
        T* dr = dx + base + i * inner;
        if constexpr (Log) {
          simd::exp_shift(yr, T(0), dr, w);
          for (int64_t j = 0; j < w; ++j) dr[j] = gr[j] - dr[j] * st[j];
        } else {
          for (int64_t j = 0; j < w; ++j) dr[j] = yr[j] * (gr[j] - st[j]);
        }
      }
    }
  });
}

template <bool Log>
Tensor softmax_impl(const Tensor& x_in, int64_t dim, const char* op) {
  const int64_t d = wrap_dim(dim, x_in.dim(), op);
  const Tensor x = [&] {
    autograd::NoGradGuard ng;  // the copy is internal: the node below differentiates w.r.t. x_in
    return x_in.contiguous();
  }();
  Tensor y = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  const Geometry geo = geometry(x.shape(), x.dim() == 0 ? 0 : d);
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    if (x.numel() > 0) softmax_forward<T, Log>(x.data_ptr<T>(), y.data_ptr<T>(), geo);
  });
  // saved: result.  With create_graph the backward is composed of differentiable ops (second order);
  // otherwise it is one fused pass.
  autograd::record(
      op, {x_in}, {y}, {y},
      [d, geo, op](Context& ctx) -> Grads {
        const Tensor out = ctx.saved(0);
        const Tensor& g = ctx.grad();
        if (!autograd::grad_enabled() && g.dtype() == out.dtype()) {
          const Tensor gc = g.contiguous();
          Tensor dx = Tensor::empty(out.shape(), {.dtype = out.dtype()});
          dispatch_floating(out.dtype(), op, [&]<typename T>() {
            if (dx.numel() > 0) softmax_backward_fused<T, Log>(gc.data_ptr<T>(), out.data_ptr<T>(), dx.data_ptr<T>(), geo);
          });
          return {dx};
        }
        if constexpr (Log) return {g - exp(out) * sum(g, {d}, true)};
        return {out * (g - sum(g * out, {d}, true))};
      },
      {"result"});
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl<false>(x, dim, "softmax"); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl<true>(x, dim, "log_softmax"); }
Tensor Tensor::softmax(int64_t dim) const { return tapegrad::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return tapegrad::log_softmax(*this, dim); }

}  // namespace tapegrad
