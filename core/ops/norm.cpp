// Normalization: the shared core (statistics, normalize, fused backward) and the ops built on it.
//
// Layout of this file:
//   1. run kernels: one contiguous run of elements (sums, normalize, dx), float64 accumulation
//   2. the grouped core: x as (N, G, K, S), one OpenMP task per statistics group, fused passes
//   3. the per-channel batch-norm primitives (two-phase; also what sync_batch_norm is made of)
//   4. the autograd glue shared by the ops (fused backward, composed backward for create_graph)
//   5. the ops: batch_norm, instance_norm, layer_norm, group_norm, sync_batch_norm
#include "norm.h"

#include "../autograd.h"
#include "../iter.h"
#include "elementwise.h"
#include "reduce.h"

#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

// ======================================================================================================
// 1. run kernels
// ======================================================================================================

// Count, mean and sum of squared deviations of a set of values.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

// Chan et al.'s parallel merge: the moments of the union of two disjoint sets.
inline void merge(Moments& a, const Moments& b) {
  if (b.n == 0) return;
  if (a.n == 0) {
    a = b;
    return;
  }
  const double n = a.n + b.n, delta = b.mean - a.mean;
  a.mean += delta * (b.n / n);
  a.m2 += b.m2 + delta * delta * (a.n * b.n / n);
  a.n = n;
}

// Independent accumulators: a float64 sum vectorizes without reassociating one dependency chain, and
// the result does not depend on the thread count. Eight lanes (two AVX registers per sum) leave room
// for several sums per loop without spilling.
constexpr int kLanes = 8;
// Elements whose moments are taken before merging with Chan's formula: small enough to stay in L1.
constexpr int64_t kChunk = 2048;

// float32 data accumulated in float64 with explicit AVX vectors (GCC/Clang vector extensions plus
// two intrinsics). Auto-vectorization of these mixed-width reductions is not reliable, and a single
// accumulator would be latency-bound. Without AVX the scalar-lane loops are used instead and the
// vector lambdas given to write_run are replaced by stubs (TG_VEC), so no 32-byte vector is ever
// passed by value there (GCC's -Wpsabi note, which a pragma cannot silence).
#if defined(__AVX__)
#define TG_NORM_VECTORS 1
#define TG_VEC(...) __VA_ARGS__
using d4 = double __attribute__((vector_size(32)));
using f8 = float __attribute__((vector_size(32)));
inline f8 load8(const float* p) {
  f8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline d4 load4(const double* p) {
  d4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(double* p, d4 v) { std::memcpy(p, &v, sizeof v); }
// Four floats from memory widened to float64: one vcvtps2pd with a memory operand (GCC lowers the
// generic __builtin_convertvector form to 128-bit halves).
inline d4 cvt4(const float* p) { return (d4)_mm256_cvtps_pd(_mm_loadu_ps(p)); }
inline double hsum(d4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
inline d4 splat(double x) { return d4{x, x, x, x}; }
#else
#define TG_NORM_VECTORS 0
#define TG_VEC(...) [](auto) { return 0.0f; }
#endif

// Reading passes prefetch this far ahead: groups follow each other in memory, and the hardware
// prefetchers stop at every 4 KB page, which is one row of a typical group.
constexpr int64_t kPrefetchBytes = 2048;
inline void prefetch_ahead(const void* p) { __builtin_prefetch(static_cast<const char*>(p) + kPrefetchBytes); }

// Outputs larger than this are written with non-temporal stores (float32 on x86 with AVX): every
// line is overwritten entirely, so reading it in first (read-for-ownership) would only add a third
// memory stream, and an output this large would not stay in cache anyway. A thread that streamed
// ends its share of the work with store_fence().
constexpr int64_t kStreamBytes = int64_t{8} << 20;

template <typename T>
bool should_stream(int64_t numel) {
  return std::is_same_v<T, float> && numel * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
}

inline void store_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

// out[i] = one(i) for i in [0, n); for float32, vec(i) gives the 8 values at i (taking `auto` so that
// its body is only instantiated for float32).
template <typename T, typename Vec, typename One>
inline void write_run(T* out, int64_t n, bool stream, Vec&& vec, One&& one) {
  int64_t i = 0;
#if TG_NORM_VECTORS
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      for (; i < n && (reinterpret_cast<uintptr_t>(out + i) & 31) != 0; ++i) out[i] = one(i);
      for (; i + 8 <= n; i += 8) _mm256_stream_ps(out + i, (__m256)vec(i));
      for (; i < n; ++i) out[i] = one(i);
      return;
    }
    for (; i + 8 <= n; i += 8) {
      const f8 v = vec(i);
      std::memcpy(out + i, &v, sizeof v);
    }
  }
#endif
  (void)stream;
  (void)vec;
  for (; i < n; ++i) out[i] = one(i);
}

template <typename T>
double lane_sum(const T* p, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(p[i + j]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(p[i]);
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

template <typename T>
double lane_sq_dev(const T* p, int64_t n, double mu) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double d = static_cast<double>(p[i + j]) - mu;
      acc[j] += d * d;
    }
  double s = 0;
  for (; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - mu;
    s += d * d;
  }
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Moments of a chunk of float32 values in one pass over shifted data: d = x - x0 with x0 a value of the
// chunk, then M2 = Σd² - (Σd)²/n. Shifting by a value of the data keeps (Σd)²/n within a few times M2,
// so the subtraction does not cancel M2 away even when |mean| >> std.
// The sums are taken in float32 over blocks in which each lane adds kTermsPerLane terms (relative
// error below 8 ulp, ~5e-7) and the block sums in float64, which keeps a long run's total from
// drifting: float64 accumulation where float32 would lose digits, at the arithmetic cost of a float32
// pass. Widening every element to float64 made this pass, not the memory, the limit of the forward.
constexpr int64_t kTermsPerLane = 8;

inline Moments chunk_moments(const float* q, int64_t c) {
  const float shift = q[0];
  double t1 = 0, t2 = 0;
  int64_t i = 0;
#if TG_NORM_VECTORS
  const f8 sh = {shift, shift, shift, shift, shift, shift, shift, shift};
  while (i + 32 <= c) {
    const int64_t end = i + std::min<int64_t>(32 * kTermsPerLane, (c - i) & ~int64_t{31});
    f8 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
    for (; i < end; i += 32) {
      prefetch_ahead(q + i);
      prefetch_ahead(q + i + 16);
      const f8 d0 = load8(q + i) - sh, d1 = load8(q + i + 8) - sh, d2 = load8(q + i + 16) - sh,
               d3 = load8(q + i + 24) - sh;
      a0 += d0, a1 += d1, a2 += d2, a3 += d3;
      b0 += d0 * d0, b1 += d1 * d1, b2 += d2 * d2, b3 += d3 * d3;
    }
    const f8 a = (a0 + a1) + (a2 + a3), b = (b0 + b1) + (b2 + b3);
    double sa = 0, sb = 0;
    for (int j = 0; j < 8; ++j) sa += static_cast<double>(a[j]), sb += static_cast<double>(b[j]);
    t1 += sa;
    t2 += sb;
  }
#else
  while (i + kLanes <= c) {
    const int64_t end = i + std::min<int64_t>(kLanes * kTermsPerLane, (c - i) / kLanes * kLanes);
    float s1[kLanes] = {}, s2[kLanes] = {};
    for (; i < end; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const float d = q[i + j] - shift;
        s1[j] += d;
        s2[j] += d * d;
      }
    for (int j = 0; j < kLanes; ++j) t1 += static_cast<double>(s1[j]), t2 += static_cast<double>(s2[j]);
  }
#endif
  for (; i < c; ++i) {
    const double d = static_cast<double>(q[i]) - static_cast<double>(shift);
    t1 += d;
    t2 = std::fma(d, d, t2);
  }
  const double n = static_cast<double>(c);
  return {n, static_cast<double>(shift) + t1 / n, std::max(0.0, t2 - t1 * t1 / n)};
}

// float64 input: exact two-pass (mean, then squared deviations) over the chunk in L1.
inline Moments chunk_moments(const double* q, int64_t c) {
  const double mu = lane_sum(q, c) / static_cast<double>(c);
  return {static_cast<double>(c), mu, lane_sq_dev(q, c, mu)};
}

// Moments of a contiguous run: per L1-sized chunk, chunks merged with Chan's formula, so the run is
// read from memory once and a large mean does not cancel the variance away.
template <typename T>
Moments run_moments(const T* p, int64_t len) {
  Moments m;
  for (int64_t i0 = 0; i0 < len; i0 += kChunk) merge(m, chunk_moments(p + i0, std::min(kChunk, len - i0)));
  return m;
}

// sdy += Σ dy ; sdyx += Σ dy · (x - m)
template <typename T>
void run_sums_lanes(const T* dy, const T* x, int64_t n, double m, double& sdy, double& sdyx);

inline void run_sums(const float* dy, const float* x, int64_t n, double m, double& sdy, double& sdyx) {
#if !TG_NORM_VECTORS
  return run_sums_lanes(dy, x, n, m, sdy, sdyx);
#else
  const d4 mm = splat(m);
  d4 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead(dy + i);
    prefetch_ahead(x + i);
    const d4 g0 = cvt4(dy + i), g1 = cvt4(dy + i + 4), g2 = cvt4(dy + i + 8), g3 = cvt4(dy + i + 12);
    a0 += g0, a1 += g1, a2 += g2, a3 += g3;
    b0 += g0 * (cvt4(x + i) - mm), b1 += g1 * (cvt4(x + i + 4) - mm);
    b2 += g2 * (cvt4(x + i + 8) - mm), b3 += g3 * (cvt4(x + i + 12) - mm);
  }
  double s0 = hsum((a0 + a1) + (a2 + a3)), s1 = hsum((b0 + b1) + (b2 + b3));
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]);
    s0 += g;
    s1 = std::fma(g, static_cast<double>(x[i]) - m, s1);
  }
  sdy += s0;
  sdyx += s1;
#endif
}

inline void run_sums(const double* dy, const double* x, int64_t n, double m, double& sdy, double& sdyx) {
  run_sums_lanes(dy, x, n, m, sdy, sdyx);
}

template <typename T>
void run_sums_lanes(const T* dy, const T* x, int64_t n, double m, double& sdy, double& sdyx) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double g = static_cast<double>(dy[i + j]);
      a[j] += g;
      b[j] = std::fma(g, static_cast<double>(x[i + j]) - m, b[j]);
    }
  double s0 = 0, s1 = 0;
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]);
    s0 += g;
    s1 = std::fma(g, static_cast<double>(x[i]) - m, s1);
  }
  for (int j = 0; j < kLanes; ++j) {
    s0 += a[j];
    s1 += b[j];
  }
  sdy += s0;
  sdyx += s1;
}

// The float64 mean as an unevaluated sum hi + lo of two T values: (x - hi) - lo is x - mean to within
// one rounding even when |mean| >> std, where x - T(mean) would lose the mean's low bits.
template <typename T>
struct Center {
  T hi = 0, lo = 0;
};
template <typename T>
Center<T> center_of(double mean) {
  const T hi = static_cast<T>(mean);
  return {hi, static_cast<T>(mean - static_cast<double>(hi))};
}

// y = (x - mean) · scale + shift
// ahead (may be null): a run to prefetch alongside, element for element (the next group's, while this
// pass reads its own from cache).
template <typename T>
void run_normalize(const T* x, T* y, int64_t n, Center<T> m, T scale, T shift, bool stream, const T* ahead = nullptr) {
  write_run(y, n, stream, TG_VEC([&](auto i) {
              if (ahead) __builtin_prefetch(ahead + i);
              return ((load8(x + i) - m.hi) - m.lo) * scale + shift;
            }),
            [&](int64_t i) { return ((x[i] - m.hi) - m.lo) * scale + shift; });
}

// Every closed-form backward here is dx = (dy·w - aq - (x - mean)·kq) · r: centred first and scaled
// last, so a large rstd multiplies a small difference instead of the rounding of two large terms.
// With batch statistics aq = Σgw / n and kq = r²·Σgw·(x - mean) / n; with constant ones aq = kq = 0.
template <typename T>
struct DxCoef {
  Center<T> m;
  T w = 1, aq = 0, kq = 0, r = 0;
};
template <typename T>
DxCoef<T> dx_coef(double mean, double r, double w, double A, double B, double inv_n, bool stats_constant) {
  DxCoef<T> c;
  c.m = center_of<T>(mean);
  c.w = static_cast<T>(w);
  c.r = static_cast<T>(r);
  if (!stats_constant) {
    c.aq = static_cast<T>(A * inv_n);
    c.kq = static_cast<T>(r * r * B * inv_n);
  }
  return c;
}
// dy_ahead, x_ahead (null or both given): runs to prefetch alongside, as in run_normalize.
template <typename T>
void run_dx(const T* dy, const T* x, T* dx, int64_t n, const DxCoef<T>& c, bool stream, const T* dy_ahead = nullptr,
            const T* x_ahead = nullptr) {
  write_run(dx, n, stream, TG_VEC([&](auto i) {
              if (dy_ahead) {
                __builtin_prefetch(dy_ahead + i);
                __builtin_prefetch(x_ahead + i);
              }
              return (load8(dy + i) * c.w - c.aq - ((load8(x + i) - c.m.hi) - c.m.lo) * c.kq) * c.r;
            }),
            [&](int64_t i) { return (dy[i] * c.w - c.aq - ((x[i] - c.m.hi) - c.m.lo) * c.kq) * c.r; });
}

// PyTorch's InvStd for batch and instance norm: a zero variance with eps = 0 gives 0, not inf.
inline double inv_std(double var, double eps, bool zero_rule) {
  if (zero_rule && var == 0 && eps == 0) return 0;
  return 1 / std::sqrt(var + eps);
}

int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Whether a loop over `tasks` tasks covering `numel` elements is worth a parallel region.
bool worth_parallel(int64_t numel, int64_t tasks) {
  return numel >= detail::kParallelGrain && tasks > 1 && max_threads() > 1;
}

// ======================================================================================================
// 2. the grouped core
// ======================================================================================================

// A contiguous x viewed as (N, G, K, S). Statistics are per g over (N, K, S) when across_batch
// (batch norm), else per (n, g) over (K, S). Affine parameters are per channel c = g·K + k.
struct Geom {
  int64_t N = 0, G = 1, K = 1, S = 1;
  bool across_batch = false;
  int64_t groups() const { return across_batch ? G : N * G; }
  int64_t group_size() const { return (across_batch ? N : 1) * K * S; }
  int64_t channels() const { return G * K; }
  int64_t numel() const { return N * G * K * S; }
  // Group q is block g of samples [n0, n1); the block of (n, g) is K·S contiguous elements.
  int64_t g_of(int64_t q) const { return across_batch ? q : q % G; }
  int64_t n0_of(int64_t q) const { return across_batch ? 0 : q / G; }
  int64_t n1_of(int64_t q) const { return across_batch ? N : q / G + 1; }
  int64_t block(int64_t n, int64_t g) const { return (n * G + g) * K * S; }
};

template <typename T>
Moments group_moments(const T* x, const Geom& ge, int64_t q) {
  Moments m;
  const int64_t g = ge.g_of(q);
  for (int64_t n = ge.n0_of(q); n < ge.n1_of(q); ++n) merge(m, run_moments(x + ge.block(n, g), ge.K * ge.S));
  return m;
}

// y for group q given its statistics. w, b: per channel, or null.
template <typename T>
void normalize_group(const T* x, T* y, const T* w, const T* b, const Geom& ge, int64_t q, double mean, double rstd,
                     bool stream) {
  const int64_t g = ge.g_of(q), K = ge.K, S = ge.S;
  const Center<T> m = center_of<T>(mean);
  const T r = static_cast<T>(rstd);
  for (int64_t n = ge.n0_of(q); n < ge.n1_of(q); ++n) {
    const T* xs = x + ge.block(n, g);
    T* ys = y + ge.block(n, g);
    // Groups of one sample are single blocks that follow each other in memory: while this one is
    // normalized from cache, the next one is fetched, so that memory is not idle during this pass.
    const T* ahead = ge.across_batch || ge.block(n, g) + K * S >= ge.numel() ? nullptr : xs + K * S;
    if (S == 1) {
      // Layer norm: the affine parameters change along the run.
      const T* wk = w ? w + g * K : nullptr;
      const T* bk = b ? b + g * K : nullptr;
      auto xhat = TG_VEC([&](auto k) {
        if (ahead) __builtin_prefetch(ahead + k);
        return ((load8(xs + k) - m.hi) - m.lo) * r;
      });
      auto xhat1 = [&](int64_t k) { return ((xs[k] - m.hi) - m.lo) * r; };
      if (wk && bk) {
        write_run(ys, K, stream, TG_VEC([&](auto k) { return xhat(k) * load8(wk + k) + load8(bk + k); }),
                  [&](int64_t k) { return xhat1(k) * wk[k] + bk[k]; });
      } else if (wk) {
        write_run(ys, K, stream, TG_VEC([&](auto k) { return xhat(k) * load8(wk + k); }),
                  [&](int64_t k) { return xhat1(k) * wk[k]; });
      } else if (bk) {
        write_run(ys, K, stream, TG_VEC([&](auto k) { return xhat(k) + load8(bk + k); }),
                  [&](int64_t k) { return xhat1(k) + bk[k]; });
      } else {
        write_run(ys, K, stream, xhat, xhat1);
      }
      continue;
    }
    for (int64_t k = 0; k < K; ++k) {
      const int64_t c = g * K + k;
      const T scale = static_cast<T>(rstd * (w ? static_cast<double>(w[c]) : 1.0));
      run_normalize(xs + k * S, ys + k * S, S, m, scale, b ? b[c] : T(0), stream, ahead ? ahead + k * S : nullptr);
    }
  }
}

// Forward over every group: statistics (unless given in mean/rstd) and normalize, fused per group so
// the second read of the group comes from cache.
// var (may be null) receives the biased variance of each group.
template <typename T>
void grouped_forward(const T* x, T* y, const T* w, const T* b, double* mean, double* rstd, double* var, const Geom& ge,
                     bool compute_stats, bool zero_rule, double eps) {
  const int64_t Q = ge.groups();
  const bool stream = should_stream<T>(ge.numel());
#pragma omp parallel if (worth_parallel(ge.numel(), Q))
  {
#pragma omp for schedule(static) nowait
    for (int64_t q = 0; q < Q; ++q) {
      if (compute_stats) {
        const Moments mo = group_moments(x, ge, q);
        const double v = mo.m2 / mo.n;
        mean[q] = mo.mean;
        rstd[q] = inv_std(v, eps, zero_rule);
        if (var) var[q] = v;
      }
      normalize_group(x, y, w, b, ge, q, mean[q], rstd[q], stream);
    }
    if (stream) store_fence();
  }
}

// One pass over a layer-norm row (one channel per element): A += Σ dy·w, B += Σ dy·w·(x - m), and
// per element dw += dy·(x - m)·r, db += dy into buffers of the input's type (for float32 the caller
// flushes them into float64 every kFlushRows rows). The flags pick a branch-free loop.
// float32: everything in float32 vectors, A and B over blocks of kRowBlock elements that are then added
// in float64 (a block's sum is within ~1e-6 relative; the row's total keeps float64's range), so that
// the row costs about as much arithmetic as the normalizing pass of the forward: the float64 widening
// made this pass, not the memory, the limit of layer norm's backward.
constexpr int64_t kRowBlock = 256;

template <bool HasW, bool HasDw, bool HasDb, typename T>
void row_sums_impl(const T* dy, const T* x, int64_t K, double m, double r, const T* w, T* dw, T* db, double& A,
                   double& B) {
  auto step = [&](int64_t k, double& sa, double& sb) {
    const double g = static_cast<double>(dy[k]), xm = static_cast<double>(x[k]) - m;
    const double gw = HasW ? g * static_cast<double>(w[k]) : g;
    sa += gw;
    sb = std::fma(gw, xm, sb);
    if constexpr (HasDw) dw[k] = static_cast<T>(std::fma(g, xm * r, static_cast<double>(dw[k])));
    if constexpr (HasDb) db[k] = static_cast<T>(static_cast<double>(db[k]) + g);
  };
  int64_t k = 0;
#if TG_NORM_VECTORS
  if constexpr (std::is_same_v<T, float>) {
    const Center<float> c = center_of<float>(m);
    const float rf = static_cast<float>(r);
    while (k + 16 <= K) {
      // One block: two independent chains per sum, 16 elements per step.
      const int64_t end = k + std::min<int64_t>(kRowBlock, (K - k) & ~int64_t{15});
      f8 a0 = {}, a1 = {}, b0 = {}, b1 = {};
      for (; k < end; k += 16) {
        prefetch_ahead(dy + k);
        prefetch_ahead(x + k);
        const f8 g0 = load8(dy + k), g1 = load8(dy + k + 8);
        const f8 xm0 = (load8(x + k) - c.hi) - c.lo, xm1 = (load8(x + k + 8) - c.hi) - c.lo;
        f8 gw0 = g0, gw1 = g1;
        if constexpr (HasW) {
          gw0 *= load8(w + k);
          gw1 *= load8(w + k + 8);
        }
        a0 += gw0, a1 += gw1;
        b0 += gw0 * xm0, b1 += gw1 * xm1;
        if constexpr (HasDw) {
          f8 d0 = load8(dw + k), d1 = load8(dw + k + 8);
          d0 += g0 * (xm0 * rf), d1 += g1 * (xm1 * rf);
          std::memcpy(dw + k, &d0, sizeof d0);
          std::memcpy(dw + k + 8, &d1, sizeof d1);
        }
        if constexpr (HasDb) {
          f8 d0 = load8(db + k), d1 = load8(db + k + 8);
          d0 += g0, d1 += g1;
          std::memcpy(db + k, &d0, sizeof d0);
          std::memcpy(db + k + 8, &d1, sizeof d1);
        }
      }
      const f8 a = a0 + a1, b = b0 + b1;
      double sa = 0, sb = 0;
      for (int j = 0; j < 8; ++j) sa += static_cast<double>(a[j]), sb += static_cast<double>(b[j]);
      A += sa;
      B += sb;
    }
  } else
#endif
  {
    double a[kLanes] = {}, b[kLanes] = {};
    for (; k + kLanes <= K; k += kLanes)
      for (int j = 0; j < kLanes; ++j) step(k + j, a[j], b[j]);
    for (int j = 0; j < kLanes; ++j) {
      A += a[j];
      B += b[j];
    }
  }
  for (; k < K; ++k) step(k, A, B);
}

template <typename T>
void row_sums(const T* dy, const T* x, int64_t K, double m, double r, const T* w, T* dw, T* db, double& A, double& B) {
  const int flags = (w ? 4 : 0) | (dw ? 2 : 0) | (db ? 1 : 0);
  switch (flags) {
    case 7:
      return row_sums_impl<true, true, true>(dy, x, K, m, r, w, dw, db, A, B);
    case 6:
      return row_sums_impl<true, true, false>(dy, x, K, m, r, w, dw, db, A, B);
    case 5:
      return row_sums_impl<true, false, true>(dy, x, K, m, r, w, dw, db, A, B);
    case 4:
      return row_sums_impl<true, false, false>(dy, x, K, m, r, w, dw, db, A, B);
    case 3:
      return row_sums_impl<false, true, true>(dy, x, K, m, r, w, dw, db, A, B);
    case 2:
      return row_sums_impl<false, true, false>(dy, x, K, m, r, w, dw, db, A, B);
    case 1:
      return row_sums_impl<false, false, true>(dy, x, K, m, r, w, dw, db, A, B);
    default:
      return row_sums_impl<false, false, false>(dy, x, K, m, r, w, dw, db, A, B);
  }
}

// One thread's zeroed accumulator rows, allocated and zeroed by the thread that adds into them (built
// inside the parallel region). With the rows of every thread allocated and zeroed by the calling
// thread, the worker's half of LayerNorm(1024)'s backward on (4096, 1024) took 1.5x as long as the
// calling thread's half (per-thread timings on two vCPUs of a shared host), also when each row had
// pages of its own and when the worker zeroed its row itself; with its own allocation both halves take
// the same time. Row i holds len[i] values of the i-th type (none when 0), on cache lines of its own.
template <typename... Ts>
class PrivateRows {
 public:
  static constexpr size_t kRows = sizeof...(Ts);

  explicit PrivateRows(const std::array<int64_t, kRows>& len) {
    constexpr int64_t kLine = 64;
    constexpr std::array<int64_t, kRows> size{static_cast<int64_t>(sizeof(Ts))...};
    std::array<int64_t, kRows> at{};
    int64_t end = 0;
    for (size_t i = 0; i < kRows; ++i) {
      at[i] = end;
      end += (len[i] * size[i] + kLine - 1) / kLine * kLine;
    }
    if (end == 0) return;
    buf_ = std::make_unique<std::byte[]>(static_cast<size_t>(end + kLine));  // zeroed, by this thread
    std::byte* base = buf_.get() + (kLine - reinterpret_cast<uintptr_t>(buf_.get()) % kLine) % kLine;
    for (size_t i = 0; i < kRows; ++i) row_[i] = len[i] == 0 ? nullptr : base + at[i];
  }
  template <size_t I>
  auto* row() const {
    using T = std::tuple_element_t<I, std::tuple<Ts...>>;
    return reinterpret_cast<T*>(row_[I]);
  }

 private:
  std::unique_ptr<std::byte[]> buf_;
  std::array<std::byte*, kRows> row_{};
};

// Called by every thread of a parallel region once each has filled its rows: out_a[c] += rows_a[u][c]
// over the threads u in order (likewise b; a null out is skipped), each thread adding up a slice of
// the C values. Ends with a barrier: a thread frees its rows on leaving, after every thread read them.
inline void add_thread_rows(double* out_a, double* out_b, const std::vector<const double*>& rows_a,
                            const std::vector<const double*>& rows_b, int64_t C) {
#pragma omp barrier
  const int t = omp_get_thread_num(), team = omp_get_num_threads();
  const int64_t c0 = C * t / team, c1 = C * (t + 1) / team;
  for (int u = 0; u < team; ++u)
    for (int64_t c = c0; c < c1; ++c) {
      if (out_a) out_a[c] += rows_a[u][c];
      if (out_b) out_b[c] += rows_b[u][c];
    }
#pragma omp barrier
}

// Rows of layer-norm parameter gradients summed in float32 before joining the float64 total: 16
// terms keep the partial sums within ~1e-6 relative in the worst case.
constexpr int64_t kFlushRows = 16;

// Fused backward over every group. Pass 1 (per group): A = Σ gw, B = Σ gw·(x - mean) and the
// per-channel sums for dw, db; pass 2 (same group, from cache): dx. With constant statistics,
// dx = dy·w·rstd needs no pass 1. dx, dw, db may each be null (not needed).
//   dx = rstd · (gw - A/n - (x - mean)·rstd²·B/n)
template <typename T>
void grouped_backward(const T* x, const T* dy, const T* w, const double* mean, const double* rstd, const Geom& ge,
                      bool stats_constant, T* dx, double* dw, double* db) {
  const int64_t Q = ge.groups(), C = ge.channels(), K = ge.K, S = ge.S;
  const bool need_ab = dx && !stats_constant;
  const bool need_pass1 = need_ab || dw || db;
  const bool par = worth_parallel(ge.numel(), Q);
  // Groups of different samples add into the same channel: per-thread partial sums, added in thread
  // order at the end (deterministic for a given thread count). Batch norm owns its channel.
  const bool private_sums = !ge.across_batch && (dw || db);
  const int nt = par ? max_threads() : 1;
  // Layer norm accumulates dw, db per element: in rows of T, flushed into the float64 rows every
  // kFlushRows rows when T is float32 (float64 read-modify-writes per element would double the time).
  constexpr bool flushed = std::is_same_v<T, float>;
  const bool per_element = S == 1;
  if (dw) std::fill(dw, dw + C, 0.0);
  if (db) std::fill(db, db + C, 0.0);
  std::vector<const double*> sums_w(nt), sums_b(nt);  // each thread's float64 rows, for the final sum
  const double inv_n = 1.0 / static_cast<double>(ge.group_size());
  const bool stream = dx && should_stream<T>(ge.numel());

#pragma omp parallel num_threads(nt) if (par)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    const bool rows_w = private_sums && dw, rows_b = private_sums && db;
    const bool f32_w = per_element && flushed && dw, f32_b = per_element && flushed && db;
    const PrivateRows<double, double, T, T> mine({rows_w ? C : 0, rows_b ? C : 0, f32_w ? C : 0, f32_b ? C : 0});
    double* my_w = dw ? (private_sums ? mine.template row<0>() : dw) : nullptr;
    double* my_b = db ? (private_sums ? mine.template row<1>() : db) : nullptr;
    sums_w[t] = my_w;
    sums_b[t] = my_b;
    T* const fw_t = mine.template row<2>();
    T* const fb_t = mine.template row<3>();
    T* row_w = !my_w ? nullptr : flushed ? fw_t : reinterpret_cast<T*>(my_w);
    T* row_b = !my_b ? nullptr : flushed ? fb_t : reinterpret_cast<T*>(my_b);
    int64_t pending = 0;
    auto flush = [&] {
      if constexpr (flushed) {
        if (fw_t)
          for (int64_t c = 0; c < C; ++c) my_w[c] += static_cast<double>(std::exchange(fw_t[c], 0.0f));
        if (fb_t)
          for (int64_t c = 0; c < C; ++c) my_b[c] += static_cast<double>(std::exchange(fb_t[c], 0.0f));
      }
      pending = 0;
    };
    const int64_t q0 = Q * t / team, q1 = Q * (t + 1) / team;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t g = ge.g_of(q);
      const double m = mean[q], r = rstd[q];
      double A = 0, B = 0;
      if (need_pass1) {
        for (int64_t n = ge.n0_of(q); n < ge.n1_of(q); ++n) {
          const T* xs = x + ge.block(n, g);
          const T* gs = dy + ge.block(n, g);
          if (S == 1) {
            // Layer norm: one channel per element of the run.
            row_sums(gs, xs, K, m, r, w ? w + g * K : nullptr, row_w ? row_w + g * K : nullptr,
                     row_b ? row_b + g * K : nullptr, A, B);
            if (++pending == kFlushRows) flush();
            continue;
          }
          for (int64_t k = 0; k < K; ++k) {
            const int64_t c = g * K + k;
            double sdy = 0, sdyx = 0;
            run_sums(gs + k * S, xs + k * S, S, m, sdy, sdyx);
            const double wc = w ? static_cast<double>(w[c]) : 1.0;
            A += wc * sdy;
            B += wc * sdyx;
            if (my_w) my_w[c] += sdyx * r;
            if (my_b) my_b[c] += sdy;
          }
        }
      }
      if (!dx) continue;
      for (int64_t n = ge.n0_of(q); n < ge.n1_of(q); ++n) {
        const T* xs = x + ge.block(n, g);
        const T* gs = dy + ge.block(n, g);
        T* ds = dx + ge.block(n, g);
        // As in normalize_group: the next group's block is fetched while this pass reads from cache.
        const bool has_next = !ge.across_batch && ge.block(n, g) + K * S < ge.numel();
        const T* next_x = has_next ? xs + K * S : nullptr;
        const T* next_dy = has_next ? gs + K * S : nullptr;
        if (S == 1) {
          const DxCoef<T> cf = dx_coef<T>(m, r, 1.0, A, B, inv_n, stats_constant);
          const T* wk = w ? w + g * K : nullptr;
          if (wk) {
            write_run(
                ds, K, stream, TG_VEC([&](auto k) {
                  if (has_next) {
                    __builtin_prefetch(next_x + k);
                    __builtin_prefetch(next_dy + k);
                  }
                  return (load8(gs + k) * load8(wk + k) - cf.aq - ((load8(xs + k) - cf.m.hi) - cf.m.lo) * cf.kq) * cf.r;
                }),
                [&](int64_t k) { return (gs[k] * wk[k] - cf.aq - ((xs[k] - cf.m.hi) - cf.m.lo) * cf.kq) * cf.r; });
          } else {
            run_dx(gs, xs, ds, K, cf, stream, next_dy, next_x);
          }
          continue;
        }
        for (int64_t k = 0; k < K; ++k) {
          const int64_t c = g * K + k;
          const double wc = w ? static_cast<double>(w[c]) : 1.0;
          run_dx(gs + k * S, xs + k * S, ds + k * S, S, dx_coef<T>(m, r, wc, A, B, inv_n, stats_constant), stream,
                 next_dy ? next_dy + k * S : nullptr, next_x ? next_x + k * S : nullptr);
        }
      }
    }
    flush();
    if (stream) store_fence();
    if (private_sums) add_thread_rows(dw, db, sums_w, sums_b, C);
  }
}

// ======================================================================================================
// 3. per-channel batch-norm primitives: x as (N, C, S), statistics per c
// ======================================================================================================
//
// Work is split into items that are independent of the channel count, so few channels still use
// every thread: rows (n, c) of S elements cut into pieces, or, when S == 1 ((N, C) input), blocks of
// rows reduced column-wise. Partial results are merged per channel in a fixed order.

constexpr int64_t kPiece = 32768;

struct Pieces {
  int64_t rows = 0, S = 0, per_row = 0, len = 0;
  Pieces(int64_t rows_, int64_t S_) : rows(rows_), S(S_) {
    per_row = S == 0 ? 0 : (S + kPiece - 1) / kPiece;
    len = per_row == 0 ? 0 : (S + per_row - 1) / per_row;
  }
  int64_t count() const { return rows * per_row; }
  int64_t row(int64_t i) const { return i / per_row; }
  int64_t lo(int64_t i) const { return (i % per_row) * len; }
  int64_t hi(int64_t i) const { return std::min(S, lo(i) + len); }
};

// Rows [r0, r1) of thread t out of nt.
inline std::pair<int64_t, int64_t> row_block(int64_t rows, int t, int nt) {
  return {rows * t / nt, rows * (t + 1) / nt};
}

template <typename T>
void channel_moments(const T* x, int64_t N, int64_t C, int64_t S, Moments* out) {
  std::fill(out, out + C, Moments{});
  if (N * S == 0) return;
  if (S == 1) {
    // Column statistics of an (N, C) matrix: per thread a block of rows, cut into chunks of ~kChunk
    // elements whose two-pass float64 column moments are merged.
    const int nt = worth_parallel(N * C, N) ? max_threads() : 1;
    std::vector<Moments> part(static_cast<size_t>(nt * C));
    const int64_t R = std::max<int64_t>(1, kChunk / C);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = omp_get_thread_num();
      auto [r0, r1] = row_block(N, t, nt);
      Moments* acc = part.data() + t * C;
      std::vector<double> sum(static_cast<size_t>(C)), ss(static_cast<size_t>(C));
      for (int64_t a = r0; a < r1; a += R) {
        const int64_t b = std::min(r1, a + R);
        const double cnt = static_cast<double>(b - a);
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(ss.begin(), ss.end(), 0.0);
        for (int64_t r = a; r < b; ++r)
          for (int64_t c = 0; c < C; ++c) sum[c] += static_cast<double>(x[r * C + c]);
        for (int64_t c = 0; c < C; ++c) sum[c] /= cnt;
        for (int64_t r = a; r < b; ++r)
          for (int64_t c = 0; c < C; ++c) {
            const double d = static_cast<double>(x[r * C + c]) - sum[c];
            ss[c] += d * d;
          }
        for (int64_t c = 0; c < C; ++c) merge(acc[c], {cnt, sum[c], ss[c]});
      }
    }
    for (int t = 0; t < nt; ++t)
      for (int64_t c = 0; c < C; ++c) merge(out[c], part[static_cast<size_t>(t * C + c)]);
    return;
  }
  const Pieces pc(N * C, S);
  std::vector<Moments> part(static_cast<size_t>(pc.count()));
#pragma omp parallel for schedule(static) if (worth_parallel(N * C * S, pc.count()))
  for (int64_t i = 0; i < pc.count(); ++i) part[i] = run_moments(x + pc.row(i) * S + pc.lo(i), pc.hi(i) - pc.lo(i));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < pc.per_row; ++p) merge(out[c], part[static_cast<size_t>((n * C + c) * pc.per_row + p)]);
}

// Per-channel coefficients of y = (x - mean_c)·scale_c + shift_c, one array each (vectorizes over c).
template <typename T>
struct ChannelAffine {
  std::vector<T> hi, lo, scale, shift;
};

template <typename T>
void channel_normalize(const T* x, T* y, int64_t N, int64_t C, int64_t S, const ChannelAffine<T>& f) {
  const T *hi = f.hi.data(), *lo = f.lo.data(), *scale = f.scale.data(), *shift = f.shift.data();
  const bool stream = should_stream<T>(N * C * S);
  if (S == 1) {
#pragma omp parallel if (worth_parallel(N * C, N))
    {
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < N; ++r) {
        const T* xr = x + r * C;
        write_run(y + r * C, C, stream, TG_VEC([&](auto c) {
                    return ((load8(xr + c) - load8(hi + c)) - load8(lo + c)) * load8(scale + c) + load8(shift + c);
                  }),
                  [&](int64_t c) { return ((xr[c] - hi[c]) - lo[c]) * scale[c] + shift[c]; });
      }
      if (stream) store_fence();
    }
    return;
  }
  const Pieces pc(N * C, S);
#pragma omp parallel if (worth_parallel(N * C * S, pc.count()))
  {
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < pc.count(); ++i) {
      const int64_t row = pc.row(i), c = row % C, off = row * S + pc.lo(i);
      run_normalize(x + off, y + off, pc.hi(i) - pc.lo(i), Center<T>{hi[c], lo[c]}, scale[c], shift[c], stream);
    }
    if (stream) store_fence();
  }
}

// Column sums over rows [r0, r1) of (N, C) dy and x: a[c] += Σ dy, b[c] += Σ dy·(x - mean[c]).
// float32: in float32 rows of this thread, flushed into a, b every kFlushRows rows, as layer norm's dw
// and db (the float64 loop made this pass twice as slow as the elementwise dx pass after it).
template <typename T>
void column_sums(const T* dy, const T* x, int64_t r0, int64_t r1, int64_t C, const double* mean, const T* m_hi,
                 const T* m_lo, double* a, double* b) {
#if TG_NORM_VECTORS
  if constexpr (std::is_same_v<T, float>) {
    const PrivateRows<float, float> rows({C, C});
    float* fa = rows.template row<0>();
    float* fb = rows.template row<1>();
    int64_t pending = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = dy + r * C;
      const float* xr = x + r * C;
      int64_t c = 0;
      for (; c + 8 <= C; c += 8) {
        const f8 gv = load8(g + c);
        const f8 xm = (load8(xr + c) - load8(m_hi + c)) - load8(m_lo + c);
        const f8 sa = load8(fa + c) + gv, sb = load8(fb + c) + gv * xm;
        std::memcpy(fa + c, &sa, sizeof sa);
        std::memcpy(fb + c, &sb, sizeof sb);
      }
      for (; c < C; ++c) {
        fa[c] += g[c];
        fb[c] += g[c] * ((xr[c] - m_hi[c]) - m_lo[c]);
      }
      if (++pending == kFlushRows || r + 1 == r1) {
        for (int64_t k = 0; k < C; ++k) {
          a[k] += static_cast<double>(std::exchange(fa[k], 0.0f));
          b[k] += static_cast<double>(std::exchange(fb[k], 0.0f));
        }
        pending = 0;
      }
    }
    return;
  }
#endif
  (void)m_hi;
  (void)m_lo;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double g = static_cast<double>(dy[r * C + c]);
      a[c] += g;
      b[c] += g * (static_cast<double>(x[r * C + c]) - mean[c]);
    }
}

// sdy_c = Σ dy, sdyx_c = Σ dy·(x - mean_c)
template <typename T>
void channel_sums(const T* dy, const T* x, int64_t N, int64_t C, int64_t S, const double* mean, double* sdy,
                  double* sdyx) {
  std::fill(sdy, sdy + C, 0.0);
  std::fill(sdyx, sdyx + C, 0.0);
  if (N * S == 0) return;
  if (S == 1) {
    const int nt = worth_parallel(N * C, N) ? max_threads() : 1;
    std::vector<const double*> sums_dy(nt), sums_dyx(nt);  // each thread's rows, for the final sum
    // The mean of every column as hi + lo, for the float32 rows.
    std::vector<T> m_hi(static_cast<size_t>(C)), m_lo(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const Center<T> m = center_of<T>(mean[c]);
      m_hi[c] = m.hi;
      m_lo[c] = m.lo;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      auto [r0, r1] = row_block(N, t, team);
      const PrivateRows<double, double> mine({C, C});
      double* a = mine.template row<0>();
      double* b = mine.template row<1>();
      sums_dy[t] = a;
      sums_dyx[t] = b;
      column_sums(dy, x, r0, r1, C, mean, m_hi.data(), m_lo.data(), a, b);
      add_thread_rows(sdy, sdyx, sums_dy, sums_dyx, C);
    }
    return;
  }
  const Pieces pc(N * C, S);
  std::vector<double> p0(static_cast<size_t>(pc.count()), 0.0), p1(static_cast<size_t>(pc.count()), 0.0);
#pragma omp parallel for schedule(static) if (worth_parallel(N * C * S, pc.count()))
  for (int64_t i = 0; i < pc.count(); ++i) {
    const int64_t row = pc.row(i), off = row * S + pc.lo(i);
    run_sums(dy + off, x + off, pc.hi(i) - pc.lo(i), mean[row % C], p0[i], p1[i]);
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < pc.per_row; ++p) {
        const size_t i = static_cast<size_t>((n * C + c) * pc.per_row + p);
        sdy[c] += p0[i];
        sdyx[c] += p1[i];
      }
}

// Per-channel DxCoef, one array per field (vectorizes over c).
template <typename T>
struct ChannelDx {
  std::vector<T> hi, lo, w, aq, kq, r;
};

template <typename T>
void channel_dx(const T* dy, const T* x, T* dx, int64_t N, int64_t C, int64_t S, const ChannelDx<T>& f) {
  const T *hi = f.hi.data(), *lo = f.lo.data(), *w = f.w.data(), *aq = f.aq.data(), *kq = f.kq.data(), *rr = f.r.data();
  const bool stream = should_stream<T>(N * C * S);
  if (S == 1) {
#pragma omp parallel if (worth_parallel(N * C, N))
    {
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < N; ++r) {
        const T* gr = dy + r * C;
        const T* xr = x + r * C;
        write_run(dx + r * C, C, stream, TG_VEC([&](auto c) {
                    const auto xm = (load8(xr + c) - load8(hi + c)) - load8(lo + c);
                    return (load8(gr + c) * load8(w + c) - load8(aq + c) - xm * load8(kq + c)) * load8(rr + c);
                  }),
                  [&](int64_t c) { return (gr[c] * w[c] - aq[c] - ((xr[c] - hi[c]) - lo[c]) * kq[c]) * rr[c]; });
      }
      if (stream) store_fence();
    }
    return;
  }
  const Pieces pc(N * C, S);
#pragma omp parallel if (worth_parallel(N * C * S, pc.count()))
  {
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < pc.count(); ++i) {
      const int64_t row = pc.row(i), c = row % C, off = row * S + pc.lo(i);
      DxCoef<T> cf;
      cf.m = {hi[c], lo[c]};
      cf.w = w[c], cf.aq = aq[c], cf.kq = kq[c], cf.r = rr[c];
      run_dx(dy + off, x + off, dx + off, pc.hi(i) - pc.lo(i), cf, stream);
    }
    if (stream) store_fence();
  }
}

// ======================================================================================================
// 4. autograd glue
// ======================================================================================================

// N, C and S = prod(*) of an (N, C, *) tensor.
struct NCS {
  int64_t N, C, S;
};
NCS ncs_of(const Tensor& x) {
  const int64_t N = x.shape()[0], C = x.shape()[1];
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.shape()[d];
  return {N, C, S};
}

std::vector<double> to_doubles(const Tensor& t) { return t.to_vector<double>(); }

Tensor f64_tensor(const std::vector<double>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

// A parameter in x's dtype, contiguous (the engine casts its gradient back).
Tensor as_param(const Tensor& p, DType dt) { return p.defined() ? p.to(dt).contiguous() : Tensor(); }

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// How an op was computed, so that its backward retraces it.
struct Plan {
  Geom geom;
  bool stats_constant = false;  // running statistics were used: they are constants for autograd
  bool channel_path = false;    // batch norm through the per-channel primitives instead of the groups
  double eps = 0;
};

// The per-channel coefficients of dx for batch norm from the channel sums (A = w·Σdy, B = w·Σdy·(x-mean)).
template <typename T>
ChannelDx<T> channel_dx_coefs(int64_t C, const T* w, const double* mean, const double* invstd, const double* sdy,
                              const double* sdyx, double count, bool stats_constant) {
  ChannelDx<T> f;
  for (auto* v : {&f.hi, &f.lo, &f.w, &f.aq, &f.kq, &f.r}) v->resize(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double wc = w ? static_cast<double>(w[c]) : 1.0;
    const DxCoef<T> cf = dx_coef<T>(mean[c], invstd[c], wc, wc * sdy[c], wc * sdyx[c], 1.0 / count, stats_constant);
    f.hi[c] = cf.m.hi, f.lo[c] = cf.m.lo, f.w[c] = cf.w, f.aq[c] = cf.aq, f.kq[c] = cf.kq, f.r[c] = cf.r;
  }
  return f;
}

// The fused backward of every op: (dx, dw, db) as flat contiguous tensors (undefined where not needed).
struct FusedGrads {
  Tensor dx, dw, db;
};

FusedGrads fused_backward(const Plan& plan, const Tensor& dy_in, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, bool need_dx, bool need_dw, bool need_db) {
  const Tensor dy = dy_in.to(x.dtype()).contiguous();
  const Geom& ge = plan.geom;
  const int64_t C = ge.channels();
  FusedGrads out;
  std::vector<double> dw(need_dw ? C : 0), db(need_db ? C : 0);
  if (need_dx) out.dx = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), "norm backward", [&]<typename T>() {
    const T* xp = x.data_ptr<T>();
    const T* gp = dy.data_ptr<T>();
    const T* wp = ptr_or_null<T>(w);
    T* dxp = need_dx ? out.dx.data_ptr<T>() : nullptr;
    const double* mp = mean.data_ptr<double>();
    const double* rp = rstd.data_ptr<double>();
    if (!plan.channel_path) {
      grouped_backward<T>(xp, gp, wp, mp, rp, ge, plan.stats_constant, dxp, need_dw ? dw.data() : nullptr,
                          need_db ? db.data() : nullptr);
      return;
    }
    // Batch norm, per-channel primitives: sums, then dx.
    const int64_t N = ge.N, S = ge.S;
    std::vector<double> sdy(C), sdyx(C);
    if (need_dw || need_db || !plan.stats_constant) channel_sums<T>(gp, xp, N, C, S, mp, sdy.data(), sdyx.data());
    for (int64_t c = 0; c < C; ++c) {
      if (need_dw) dw[c] = sdyx[c] * rp[c];
      if (need_db) db[c] = sdy[c];
    }
    if (need_dx) {
      channel_dx<T>(gp, xp, dxp, N, C, S,
                    channel_dx_coefs<T>(C, wp, mp, rp, sdy.data(), sdyx.data(), static_cast<double>(ge.group_size()),
                                        plan.stats_constant));
    }
  });
  if (need_dw) out.dw = f64_tensor(dw).to(x.dtype());
  if (need_db) out.db = f64_tensor(db).to(x.dtype());
  return out;
}

// The same backward built from differentiable ops, for create_graph (higher-order gradients). With
// batch statistics the mean and rstd are recomputed from x so that their dependence on x is seen.
Grads composed_backward(const Plan& plan, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                        const Tensor& rstd, const Shape& w_shape, const Shape& b_shape, bool need_dx, bool need_dw,
                        bool need_db) {
  const Geom& ge = plan.geom;
  const Shape shape4{ge.N, ge.G, ge.K, ge.S};
  const Shape red = ge.across_batch ? Shape{0, 2, 3} : Shape{2, 3};
  const Shape stat_shape = ge.across_batch ? Shape{1, ge.G, 1, 1} : Shape{ge.N, ge.G, 1, 1};
  const Tensor x4 = x.reshape(shape4), g4 = dy.to(x.dtype()).reshape(shape4);
  Tensor mu, r;
  if (plan.stats_constant) {
    mu = mean.to(x.dtype()).reshape(stat_shape);
    r = rstd.to(x.dtype()).reshape(stat_shape);
  } else {
    mu = x4.mean(red, true);
    const Tensor xc = x4 - mu;
    r = rsqrt((xc * xc).mean(red, true) + plan.eps);
  }
  const Tensor xhat = (x4 - mu) * r;
  const Tensor gw = w.defined() ? g4 * w.reshape({1, ge.G, ge.K, 1}) : g4;
  Grads out(3);
  if (need_dx) {
    const Tensor dx = plan.stats_constant ? gw * r : r * (gw - gw.mean(red, true) - xhat * (gw * xhat).mean(red, true));
    out[0] = dx.reshape(x.shape());
  }
  if (need_dw) out[1] = (g4 * xhat).sum({0, 3}).reshape(w_shape);
  if (need_db) out[2] = g4.sum({0, 3}).reshape(b_shape);
  return out;
}

// Records the node of a grouped op: inputs (x, weight, bias), output y.
// saved: x, mean, rstd, weight (when defined)
void record_norm(const char* op, const Plan& plan, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                 const Tensor& mean, const Tensor& rstd) {
  if (!autograd::needs_grad({x, w, b})) return;
  std::vector<Tensor> saved{x, mean, rstd};
  std::vector<std::string> labels{"input", "mean", "rstd"};
  if (w.defined()) {
    saved.push_back(w);
    labels.push_back("weight");
  }
  const Shape w_shape = w.defined() ? w.shape() : Shape{}, b_shape = b.defined() ? b.shape() : Shape{};
  const bool has_w = w.defined();
  autograd::record(
      op, {x, w, b}, {y}, saved,
      [plan, w_shape, b_shape, has_w](Context& ctx) -> Grads {
        const Tensor xs = ctx.saved(0), mean = ctx.saved(1), rstd = ctx.saved(2);
        const Tensor ws = has_w ? ctx.saved(3) : Tensor();
        const bool ndx = ctx.needs_grad(0), ndw = ctx.needs_grad(1), ndb = ctx.needs_grad(2);
        if (autograd::grad_enabled())  // create_graph: differentiable backward
          return composed_backward(plan, ctx.grad(0), xs, ws, mean, rstd, w_shape, b_shape, ndx, ndw, ndb);
        FusedGrads g = fused_backward(plan, ctx.grad(0), xs, ws, mean, rstd, ndx, ndw, ndb);
        return {g.dx, g.dw.defined() ? g.dw.reshape(w_shape) : Tensor(),
                g.db.defined() ? g.db.reshape(b_shape) : Tensor()};
      },
      labels);
}

// An empty input: an empty output whose backward gives an empty dx and zero parameter gradients.
Tensor empty_norm(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  const Shape xs = x.shape(), ws = w.defined() ? w.shape() : Shape{}, bs = b.defined() ? b.shape() : Shape{};
  const DType dt = x.dtype();
  autograd::record(op, {x, w, b}, {y}, {}, [xs, ws, bs, dt](Context& ctx) -> Grads {
    return {Tensor::zeros(xs, {.dtype = dt}), ctx.needs_grad(1) ? Tensor::zeros(ws, {.dtype = dt}) : Tensor(),
            ctx.needs_grad(2) ? Tensor::zeros(bs, {.dtype = dt}) : Tensor()};
  });
  return y;
}

// Runs the grouped forward: statistics from x when mean/rstd are undefined on entry, else the given ones.
// var (may be null) receives the biased variance per group when computed.
Tensor grouped_op(const char* op, const Geom& ge, const Tensor& x, const Tensor& w, const Tensor& b, Tensor& mean,
                  Tensor& rstd, std::vector<double>* var, bool zero_rule, double eps) {
  const bool compute = !mean.defined();
  if (compute) {
    mean = Tensor::empty({ge.groups()}, {.dtype = kFloat64});
    rstd = Tensor::empty({ge.groups()}, {.dtype = kFloat64});
    if (var) var->assign(static_cast<size_t>(ge.groups()), 0.0);
  }
  Tensor y = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    grouped_forward<T>(x.data_ptr<T>(), y.data_ptr<T>(), ptr_or_null<T>(w), ptr_or_null<T>(b), mean.data_ptr<double>(),
                       rstd.data_ptr<double>(), compute && var ? var->data() : nullptr, ge, compute, zero_rule, eps);
  });
  Plan plan{ge, !compute, false, eps};
  record_norm(op, plan, x, w, b, y, mean, rstd);
  return y;
}

std::string torch_size(const Shape& s) { return fmt::format("torch.Size({})", shape_list(s)); }

void check_floating(const Tensor& x, const char* op) {
  TG_CHECK(is_floating(x.dtype()), "{}: expected a floating point tensor (float32 or float64), got {}", op,
           dtype_name(x.dtype()));
}

// "running_mean should contain 5 elements not 3"
void check_numel(const char* op, const char* name, const Tensor& t, int64_t expected, int64_t repeat = 1) {
  if (!t.defined()) return;
  TG_CHECK(t.numel() == expected, "{}: {} should contain {} elements not {}", op, name, expected * repeat,
           t.numel() * repeat);
}

// Per-channel statistics (mean, rstd as float64 tensors) of an (N, C, S) batch through the primitives.
std::pair<Tensor, Tensor> channel_stats(const Tensor& x, const NCS& d, double eps, std::vector<double>* var) {
  std::vector<Moments> mo(static_cast<size_t>(d.C));
  dispatch_floating(x.dtype(), "batch_norm",
                    [&]<typename T>() { channel_moments<T>(x.data_ptr<T>(), d.N, d.C, d.S, mo.data()); });
  std::vector<double> mean(d.C), invstd(d.C);
  if (var) var->resize(d.C);
  for (int64_t c = 0; c < d.C; ++c) {
    const double v = mo[c].n > 0 ? mo[c].m2 / mo[c].n : 0.0;
    mean[c] = mo[c].mean;
    invstd[c] = mo[c].n > 0 ? inv_std(v, eps, true) : 0.0;
    if (var) (*var)[c] = v;
  }
  return {f64_tensor(mean), f64_tensor(invstd)};
}

// y = (x - mean)·invstd·w + b per channel through the primitives.
Tensor channel_apply(const Tensor& x, const NCS& d, const Tensor& w, const Tensor& b, const Tensor& mean,
                     const Tensor& invstd) {
  Tensor y = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  const double* mp = mean.data_ptr<double>();
  const double* rp = invstd.data_ptr<double>();
  dispatch_floating(x.dtype(), "batch_norm", [&]<typename T>() {
    const T* wp = ptr_or_null<T>(w);
    const T* bp = ptr_or_null<T>(b);
    ChannelAffine<T> f;
    for (auto* v : {&f.hi, &f.lo, &f.scale, &f.shift}) v->resize(static_cast<size_t>(d.C));
    for (int64_t c = 0; c < d.C; ++c) {
      const Center<T> m = center_of<T>(mp[c]);
      f.hi[c] = m.hi;
      f.lo[c] = m.lo;
      f.scale[c] = static_cast<T>(rp[c] * (wp ? static_cast<double>(wp[c]) : 1.0));
      f.shift[c] = bp ? bp[c] : T(0);
    }
    channel_normalize<T>(x.data_ptr<T>(), y.data_ptr<T>(), d.N, d.C, d.S, f);
  });
  return y;
}

// Running stats from the batch: mean, and the unbiased variance var·n/(n-1).
void update_from_batch(const Tensor& rm, const Tensor& rv, const std::vector<double>& mean,
                       const std::vector<double>& var, double n, double momentum) {
  if (rm.defined()) update_running_stat(rm, f64_tensor(mean), momentum);
  if (rv.defined()) {
    std::vector<double> unbiased(var.size());
    for (size_t i = 0; i < var.size(); ++i) unbiased[i] = var[i] * n / (n - 1);
    update_running_stat(rv, f64_tensor(unbiased), momentum);
  }
}

}  // namespace

// ======================================================================================================
// 5. the ops
// ======================================================================================================

void update_running_stat(const Tensor& r, const Tensor& value, double momentum) {
  if (!r.defined()) return;
  TG_CHECK(r.numel() == value.numel(), "update_running_stat: running stat has {} elements, update has {}", r.numel(),
           value.numel());
  const std::vector<double> v = to_doubles(value);
  autograd::NoGradGuard ng;
  dispatch_floating(r.dtype(), "update_running_stat", [&]<typename T>() {
    const Tensor dst = r.is_contiguous() ? r : r.contiguous();
    T* p = dst.data_ptr<T>();
    for (size_t i = 0; i < v.size(); ++i)
      p[i] = static_cast<T>(momentum * v[i] + (1 - momentum) * static_cast<double>(p[i]));
    if (!dst.same(r)) {
      Tensor target = r;
      target.copy_(dst);
    }
  });
  r.storage()->bump_version();
}

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  constexpr const char* op = "batch_norm";
  if (training) {
    // F.batch_norm's _verify_batch_size: size[0] · prod(size[2:]).
    int64_t p = x.dim() > 0 ? x.shape()[0] : 1;
    for (int64_t d = 2; d < x.dim(); ++d) p *= x.shape()[d];
    TG_CHECK(p != 1, "{}: Expected more than 1 value per channel when training, got input size {}", op,
             torch_size(x.shape()));
  }
  wrap_dim(1, x.dim(), op);
  check_floating(x, op);
  const DType dt = x.dtype();
  if (x.numel() == 0) return empty_norm(op, x, as_param(weight, dt), as_param(bias, dt));
  const NCS d = ncs_of(x);
  if (running_mean.defined())
    check_numel(op, "running_mean", running_mean, d.C);
  else
    TG_CHECK(training, "{}: running_mean must be defined in evaluation mode", op);
  if (running_var.defined())
    check_numel(op, "running_var", running_var, d.C);
  else
    TG_CHECK(training, "{}: running_var must be defined in evaluation mode", op);
  check_numel(op, "weight", weight, d.C);
  check_numel(op, "bias", bias, d.C);

  const Tensor xc = x.contiguous(), w = as_param(weight, dt), b = as_param(bias, dt);
  const Geom ge{d.N, d.C, 1, d.S, true};
  const int nt = max_threads();
  // One task per channel (statistics and normalize fused, the channel's second read from cache) only
  // when the channel's N runs, C·S elements apart, fit the L2's associativity and the channels spread
  // evenly over the threads. Otherwise the per-channel primitives: two streaming passes in memory
  // order, split inside channels.
  const bool grouped = d.N <= 4 && d.S > 1 && (d.C % nt == 0 || d.C >= 4 * nt);

  Tensor mean, rstd;
  if (!training) {
    // Running statistics: plain 1/sqrt(var + eps) (NaN for var = eps = 0, as PyTorch).
    const std::vector<double> rm = to_doubles(running_mean), rv = to_doubles(running_var);
    std::vector<double> inv(rv.size());
    for (size_t c = 0; c < rv.size(); ++c) inv[c] = 1 / std::sqrt(rv[c] + eps);
    mean = f64_tensor(rm);
    rstd = f64_tensor(inv);
  }
  Tensor y;
  std::vector<double> var;
  if (grouped) {
    y = grouped_op(op, ge, xc, w, b, mean, rstd, &var, true, eps);
  } else {
    if (training) std::tie(mean, rstd) = channel_stats(xc, d, eps, &var);
    y = channel_apply(xc, d, w, b, mean, rstd);
    record_norm(op, Plan{ge, !training, true, eps}, xc, w, b, y, mean, rstd);
  }
  if (training)
    update_from_batch(running_mean, running_var, to_doubles(mean), var, static_cast<double>(ge.group_size()), momentum);
  return y;
}

Tensor instance_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                     const Tensor& bias, bool use_input_stats, double momentum, double eps) {
  constexpr const char* op = "instance_norm";
  if (use_input_stats) {
    // F.instance_norm's _verify_spatial_size: prod(size[2:]).
    int64_t p = 1;
    for (int64_t d = 2; d < x.dim(); ++d) p *= x.shape()[d];
    TG_CHECK(p != 1, "{}: Expected more than 1 spatial element when training, got input size {}", op,
             torch_size(x.shape()));
  }
  TG_CHECK(use_input_stats || (running_mean.defined() && running_var.defined()),
           "{}: Expected running_mean and running_var to be defined when use_input_stats is false", op);
  wrap_dim(1, x.dim(), op);
  check_floating(x, op);
  const DType dt = x.dtype();
  if (x.numel() == 0) return empty_norm(op, x, as_param(weight, dt), as_param(bias, dt));
  const NCS d = ncs_of(x);
  // PyTorch repeats the per-channel tensors N times and checks them against N·C.
  check_numel(op, "running_mean", running_mean, d.C, d.N);
  check_numel(op, "running_var", running_var, d.C, d.N);
  check_numel(op, "weight", weight, d.C, d.N);
  check_numel(op, "bias", bias, d.C, d.N);

  const Tensor xc = x.contiguous(), w = as_param(weight, dt), b = as_param(bias, dt);
  const Geom ge{d.N, d.C, 1, d.S, false};
  Tensor mean, rstd;
  if (!use_input_stats) {
    // Every instance of channel c uses the running statistics of c.
    const std::vector<double> rm = to_doubles(running_mean), rv = to_doubles(running_var);
    std::vector<double> m(static_cast<size_t>(d.N * d.C)), r(m.size());
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t c = 0; c < d.C; ++c) {
        m[n * d.C + c] = rm[c];
        r[n * d.C + c] = 1 / std::sqrt(rv[c] + eps);
      }
    mean = f64_tensor(m);
    rstd = f64_tensor(r);
  }
  std::vector<double> var;
  Tensor y = grouped_op(op, ge, xc, w, b, mean, rstd, &var, true, eps);
  if (use_input_stats && (running_mean.defined() || running_var.defined())) {
    // Average over the batch of the instance means and of the unbiased instance variances.
    const std::vector<double> mv = to_doubles(mean);
    const double s = static_cast<double>(d.S);
    std::vector<double> avg_mean(d.C, 0.0), avg_var(d.C, 0.0);
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t c = 0; c < d.C; ++c) {
        avg_mean[c] += mv[n * d.C + c];
        avg_var[c] += var[n * d.C + c] * s / (s - 1);
      }
    for (int64_t c = 0; c < d.C; ++c) {
      avg_mean[c] /= static_cast<double>(d.N);
      avg_var[c] /= static_cast<double>(d.N);
    }
    update_running_stat(running_mean, f64_tensor(avg_mean), momentum);
    update_running_stat(running_var, f64_tensor(avg_var), momentum);
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  constexpr const char* op = "layer_norm";
  const Shape& ns = normalized_shape;
  const int64_t nd = static_cast<int64_t>(ns.size());
  TG_CHECK(nd >= 1,
           "{}: Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one element, but "
           "got normalized_shape = {}",
           op, shape_list(ns));
  TG_CHECK(!weight.defined() || weight.shape() == ns,
           "{}: Expected weight to be of same shape as normalized_shape, but got weight of shape {} and "
           "normalized_shape = {}",
           op, shape_list(weight.defined() ? weight.shape() : Shape{}), shape_list(ns));
  TG_CHECK(!bias.defined() || bias.shape() == ns,
           "{}: Expected bias to be of same shape as normalized_shape, but got bias of shape {} and "
           "normalized_shape = {}",
           op, shape_list(bias.defined() ? bias.shape() : Shape{}), shape_list(ns));
  const bool fits = x.dim() >= nd && Shape(x.shape().end() - nd, x.shape().end()) == ns;
  if (!fits) {
    std::string star = "[*";
    for (int64_t s : ns) star += fmt::format(", {}", s);
    fail("{}: Given normalized_shape={}, expected input with shape {}], but got input of size{}", op, shape_list(ns),
         star, shape_list(x.shape()));
  }
  check_floating(x, op);
  const DType dt = x.dtype();
  if (x.numel() == 0) return empty_norm(op, x, as_param(weight, dt), as_param(bias, dt));
  const int64_t D = numel_of(ns), M = x.numel() / D;
  const Tensor xc = x.contiguous(), w = as_param(weight, dt), b = as_param(bias, dt);
  Tensor mean, rstd;
  return grouped_op(op, Geom{M, 1, D, 1, false}, xc, w, b, mean, rstd, nullptr, false, eps);
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  constexpr const char* op = "group_norm";
  TG_CHECK(x.dim() >= 2, "{}: Expected at least 2 dimensions for input tensor but received {}", op, x.dim());
  TG_CHECK(num_groups > 0, "{}: Expected num groups to be greater than 0, got {}", op, num_groups);
  const NCS d = ncs_of(x);
  {
    // F.group_norm's _verify_batch_size([N·C/G, G] + spatial): runs in train and eval.
    Shape size{d.N * d.C / num_groups, num_groups};
    size.insert(size.end(), x.shape().begin() + 2, x.shape().end());
    TG_CHECK(size[0] * d.S != 1, "{}: Expected more than 1 value per channel when training, got input size {}", op,
             shape_list(size));
  }
  TG_CHECK(d.C % num_groups == 0,
           "{}: Expected number of channels in input to be divisible by num_groups, but got input of shape {} and "
           "num_groups={}",
           op, shape_list(x.shape()), num_groups);
  const Shape w_shown = weight.defined() ? weight.shape() : Shape{0};
  TG_CHECK(!weight.defined() || (weight.dim() == 1 && weight.numel() == d.C),
           "{}: Expected weight to be a vector of size equal to the number of channels in input, but got weight of "
           "shape {} and input of shape {}",
           op, shape_list(w_shown), shape_list(x.shape()));
  // PyTorch's message prints the weight's shape here (a long-standing bug kept for fidelity).
  TG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.numel() == d.C),
           "{}: Expected bias to be a vector of size equal to the number of channels in input, but got bias of "
           "shape {} and input of shape {}",
           op, shape_list(w_shown), shape_list(x.shape()));
  check_floating(x, op);
  const DType dt = x.dtype();
  if (x.numel() == 0) return empty_norm(op, x, as_param(weight, dt), as_param(bias, dt));
  const Tensor xc = x.contiguous(), w = as_param(weight, dt), b = as_param(bias, dt);
  Tensor mean, rstd;
  return grouped_op(op, Geom{d.N, num_groups, d.C / num_groups, d.S, false}, xc, w, b, mean, rstd, nullptr, false, eps);
}

// ---- batch norm primitives ----

namespace {
NCS checked_ncs(const Tensor& x, const char* op) {
  wrap_dim(1, x.dim(), op);
  check_floating(x, op);
  return ncs_of(x);
}

void check_channel_vec(const Tensor& t, int64_t C, const char* op, const char* name) {
  TG_CHECK(t.defined() && t.numel() == C, "{}: expected {} of {} elements, got {}", op, name, C,
           t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
}
}  // namespace

BatchNormStats batch_norm_stats(const Tensor& x, double eps) {
  const NCS d = checked_ncs(x, "batch_norm_stats");
  BatchNormStats s;
  s.count = d.N * d.S;
  if (x.numel() == 0) {
    s.mean = Tensor::zeros({d.C}, {.dtype = kFloat64});
    s.invstd = Tensor::zeros({d.C}, {.dtype = kFloat64});
    return s;
  }
  std::tie(s.mean, s.invstd) = channel_stats(x.contiguous(), d, eps, nullptr);
  return s;
}

std::pair<Tensor, Tensor> batch_norm_gather_stats_with_counts(const Tensor& mean_all, const Tensor& invstd_all,
                                                              const Tensor& counts, const Tensor& running_mean,
                                                              const Tensor& running_var, double momentum, double eps) {
  constexpr const char* op = "batch_norm_gather_stats_with_counts";
  TG_CHECK(mean_all.dim() == 2 && invstd_all.shape() == mean_all.shape() && counts.numel() == mean_all.size(0),
           "{}: expected mean and invstd of shape (world_size, C) and world_size counts, got {}, {} and {}", op,
           shape_str(mean_all.shape()), shape_str(invstd_all.shape()), shape_str(counts.shape()));
  const int64_t W = mean_all.size(0), C = mean_all.size(1);
  check_numel(op, "running_mean", running_mean, C);
  check_numel(op, "running_var", running_var, C);
  const std::vector<double> ma = to_doubles(mean_all), ia = to_doubles(invstd_all), cnt = to_doubles(counts);
  std::vector<double> mean(C), invstd(C), unbiased(C);
  for (int64_t c = 0; c < C; ++c) {
    // Sequential merge over ranks (M2 from invstd: var = 1/invstd² - eps).
    double n = 0, avg = 0, m2 = 0;
    for (int64_t j = 0; j < W; ++j) {
      const double nj = cnt[j];
      if (nj < 1) continue;  // an empty rank contributes nothing
      const double inv = ia[j * C + c], mj = ma[j * C + c];
      const double var_j = inv == 0 ? 0.0 : 1 / (inv * inv) - eps;
      const double f = 1 / (n + nj);
      m2 += var_j * nj + (avg - mj) * (avg - mj) * n * nj * f;
      avg = n * f * avg + nj * f * mj;
      n += nj;
    }
    mean[c] = avg;
    invstd[c] = 1 / std::sqrt(m2 / n + eps);
    unbiased[c] = m2 / (n - 1);
  }
  update_running_stat(running_mean, f64_tensor(mean), momentum);
  update_running_stat(running_var, f64_tensor(unbiased), momentum);
  return {f64_tensor(mean), f64_tensor(invstd)};
}

Tensor batch_norm_elemt(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                        const Tensor& invstd) {
  constexpr const char* op = "batch_norm_elemt";
  const NCS d = checked_ncs(x, op);
  check_channel_vec(mean, d.C, op, "mean");
  check_channel_vec(invstd, d.C, op, "invstd");
  check_numel(op, "weight", weight, d.C);
  check_numel(op, "bias", bias, d.C);
  if (x.numel() == 0) return Tensor::empty(x.shape(), {.dtype = x.dtype()});
  return channel_apply(x.contiguous(), d, as_param(weight, x.dtype()), as_param(bias, x.dtype()),
                       mean.to(kFloat64).contiguous(), invstd.to(kFloat64).contiguous());
}

BatchNormBackwardReduce batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                                   const Tensor& invstd, const Tensor& weight, bool weight_grad,
                                                   bool bias_grad) {
  constexpr const char* op = "batch_norm_backward_reduce";
  const NCS d = checked_ncs(x, op);
  TG_CHECK(dy.shape() == x.shape(), "{}: expected grad_output of shape {}, got {}", op, shape_str(x.shape()),
           shape_str(dy.shape()));
  check_channel_vec(mean, d.C, op, "mean");
  check_channel_vec(invstd, d.C, op, "invstd");
  const Tensor xc = x.contiguous(), gc = dy.to(x.dtype()).contiguous();
  const std::vector<double> mv = to_doubles(mean), iv = to_doubles(invstd);
  std::vector<double> sdy(d.C), sdyx(d.C);
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    channel_sums<T>(gc.data_ptr<T>(), xc.data_ptr<T>(), d.N, d.C, d.S, mv.data(), sdy.data(), sdyx.data());
  });
  BatchNormBackwardReduce r;
  r.sum_dy = f64_tensor(sdy);
  r.sum_dy_xmu = f64_tensor(sdyx);
  const DType pdt = weight.defined() ? weight.dtype() : x.dtype();
  if (weight_grad) {
    std::vector<double> gw(d.C);
    for (int64_t c = 0; c < d.C; ++c) gw[c] = sdyx[c] * iv[c];
    r.grad_weight = f64_tensor(gw).to(pdt);
  }
  if (bias_grad) r.grad_bias = r.sum_dy.to(pdt);
  return r;
}

Tensor batch_norm_backward_elemt(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                 const Tensor& weight, const Tensor& sum_dy, const Tensor& sum_dy_xmu, int64_t count) {
  constexpr const char* op = "batch_norm_backward_elemt";
  const NCS d = checked_ncs(x, op);
  TG_CHECK(dy.shape() == x.shape(), "{}: expected grad_output of shape {}, got {}", op, shape_str(x.shape()),
           shape_str(dy.shape()));
  check_channel_vec(mean, d.C, op, "mean");
  check_channel_vec(invstd, d.C, op, "invstd");
  check_channel_vec(sum_dy, d.C, op, "sum_dy");
  check_channel_vec(sum_dy_xmu, d.C, op, "sum_dy_xmu");
  check_numel(op, "weight", weight, d.C);
  Tensor dx = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  if (x.numel() == 0) return dx;
  const Tensor xc = x.contiguous(), gc = dy.to(x.dtype()).contiguous(), w = as_param(weight, x.dtype());
  const std::vector<double> mv = to_doubles(mean), iv = to_doubles(invstd), s0 = to_doubles(sum_dy),
                            s1 = to_doubles(sum_dy_xmu);
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    channel_dx<T>(gc.data_ptr<T>(), xc.data_ptr<T>(), dx.data_ptr<T>(), d.N, d.C, d.S,
                  channel_dx_coefs<T>(d.C, ptr_or_null<T>(w), mv.data(), iv.data(), s0.data(), s1.data(),
                                      static_cast<double>(count), false));
  });
  return dx;
}

// ---- synchronized batch norm ----

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps, const BatchNormSyncHooks& hooks) {
  constexpr const char* op = "sync_batch_norm";
  TG_CHECK(hooks.all_gather && hooks.all_reduce_sum, "{}: both collectives (all_gather, all_reduce_sum) are required",
           op);
  const NCS d = checked_ncs(x, op);
  check_numel(op, "running_mean", running_mean, d.C);
  check_numel(op, "running_var", running_var, d.C);
  check_numel(op, "weight", weight, d.C);
  check_numel(op, "bias", bias, d.C);
  const DType dt = x.dtype();
  const Tensor xc = x.contiguous(), w = as_param(weight, dt), b = as_param(bias, dt);
  const int64_t C = d.C;
  const bool empty = xc.numel() == 0;

  // Local statistics, packed [mean (C), invstd (C), count]; an empty batch sends zeros.
  std::vector<double> packed(static_cast<size_t>(2 * C + 1), 0.0);
  if (!empty) {
    const BatchNormStats s = batch_norm_stats(xc, eps);
    const std::vector<double> m = to_doubles(s.mean), iv = to_doubles(s.invstd);
    std::copy(m.begin(), m.end(), packed.begin());
    std::copy(iv.begin(), iv.end(), packed.begin() + C);
    packed[2 * C] = static_cast<double>(s.count);
  }
  const Tensor all = hooks.all_gather(f64_tensor(packed));
  TG_CHECK(all.dim() == 2 && all.size(1) == 2 * C + 1, "{}: all_gather must return (world_size, {}) stats, got {}", op,
           2 * C + 1, shape_str(all.shape()));
  const Tensor all64 = all.to(kFloat64).contiguous();
  const Tensor mean_all = all64.narrow(1, 0, C), invstd_all = all64.narrow(1, C, C);
  const Tensor counts = all64.select(1, 2 * C);
  auto [mean, invstd] =
      batch_norm_gather_stats_with_counts(mean_all, invstd_all, counts, running_mean, running_var, momentum, eps);
  double total = 0;
  for (double c : to_doubles(counts))
    if (c >= 1) total += c;

  Tensor y = empty ? Tensor::empty(x.shape(), {.dtype = dt}) : channel_apply(xc, d, w, b, mean, invstd);
  if (!autograd::needs_grad({xc, w, b})) return y;
  std::vector<Tensor> saved{xc, mean, invstd};
  if (w.defined()) saved.push_back(w);
  const bool has_w = w.defined();
  const auto all_reduce = hooks.all_reduce_sum;
  autograd::record(
      op, {xc, w, b}, {y}, saved,
      [has_w, all_reduce, total, C](Context& ctx) -> Grads {
        TG_CHECK(!autograd::grad_enabled(), "sync_batch_norm: double backward is not supported");
        const Tensor xs = ctx.saved(0), mean = ctx.saved(1), invstd = ctx.saved(2);
        const Tensor ws = has_w ? ctx.saved(3) : Tensor();
        const bool ndx = ctx.needs_grad(0), ndw = ctx.needs_grad(1), ndb = ctx.needs_grad(2);
        Grads out(3);
        if (xs.numel() == 0) {
          // Nothing local to reduce, but the peers wait for this rank in the all-reduce.
          if (ndx) {
            all_reduce(Tensor::zeros({2 * C}, {.dtype = kFloat64}));
            out[0] = Tensor::empty(xs.shape(), {.dtype = xs.dtype()});
          }
          return out;
        }
        const BatchNormBackwardReduce r = batch_norm_backward_reduce(ctx.grad(0), xs, mean, invstd, ws, ndw, ndb);
        out[1] = r.grad_weight;
        out[2] = r.grad_bias;
        if (ndx) {
          std::vector<double> sums = to_doubles(r.sum_dy), s1 = to_doubles(r.sum_dy_xmu);
          sums.insert(sums.end(), s1.begin(), s1.end());
          const Tensor global = all_reduce(f64_tensor(sums)).to(kFloat64).contiguous();
          TG_CHECK(global.numel() == 2 * C, "sync_batch_norm: all_reduce_sum must return {} values, got {}", 2 * C,
                   global.numel());
          out[0] = batch_norm_backward_elemt(ctx.grad(0), xs, mean, invstd, ws, global.narrow(0, 0, C).contiguous(),
                                             global.narrow(0, C, C).contiguous(), static_cast<int64_t>(total));
        }
        return out;
      },
      {"input", "mean", "invstd", "weight"});
  return y;
}

}  // namespace tapegrad
