// Pooling: forward kernels and their adjoints (the backward passes), side by side.
//
// Every kernel works on one (H, W) plane; the N*C planes are spread over OpenMP threads. The backward
// of each pool is the adjoint of its forward (linear in the upstream gradient), recorded as an op of
// its own whose backward is the forward again, so create_graph differentiates through it.
#include "pool.h"

#include "../autograd.h"
#include "elementwise.h"

#include <omp.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

constexpr int64_t kPoolGrain = 32768;  // elements touched below which a pool runs on one thread

// Sizes shared by every pool: the planes and their windows along each dim.
struct PlaneGeom {
  Shape in_shape, out_shape;  // full shapes, (N, C, H, W) or (C, H, W)
  int64_t planes = 0, h = 0, w = 0, ho = 0, wo = 0;
  int64_t in_plane() const { return h * w; }
  int64_t out_plane() const { return ho * wo; }
};

PlaneGeom plane_geom(const Shape& in, int64_t ho, int64_t wo) {
  PlaneGeom g;
  g.in_shape = in;
  const size_t nd = in.size();
  g.h = in[nd - 2];
  g.w = in[nd - 1];
  g.ho = ho;
  g.wo = wo;
  g.planes = nd == 4 ? in[0] * in[1] : in[0];
  g.out_shape = in;
  g.out_shape[nd - 2] = ho;
  g.out_shape[nd - 1] = wo;
  return g;
}

// fn(plane) for every plane, in parallel when the work is large.
template <typename F>
void for_each_plane(const PlaneGeom& g, F&& fn) {
  const int64_t work = g.planes * std::max(g.in_plane(), g.out_plane());
  if (work >= kPoolGrain && g.planes > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < g.planes; ++p) fn(p);
  } else {
    for (int64_t p = 0; p < g.planes; ++p) fn(p);
  }
}

// floor(a / b) for b > 0 and any sign of a.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
// ceil(a / b) for b > 0 and any sign of a.
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// ---- shared checks of max_pool2d and avg_pool2d (PyTorch's pooling_output_shape + pool2d_shape_check) ----

struct PoolParams {
  Int2 kernel, stride, padding, dilation;
  bool ceil_mode;
};

// One dim's output size, with the checks PyTorch makes while computing it.
int64_t checked_output_size(std::string_view op, int64_t input, int64_t k, int64_t pad, int64_t s, int64_t d,
                            bool ceil_mode) {
  TG_CHECK(s != 0, "{}: stride should not be zero", op);
  TG_CHECK(pad >= 0, "{}: pad must be non-negative, but got pad: {}", op, pad);
  TG_CHECK(pad <= k / 2, "{}: pad should be at most half of kernel size, but got pad={} and kernel_size={}", op, pad,
           k);
  return pool2d_output_size(input, k, pad, s, d, ceil_mode);
}

PlaneGeom check_pool(std::string_view op, const Tensor& input, const PoolParams& p) {
  const Shape& s = input.shape();
  const int64_t nd = input.dim();
  const int64_t h = s[nd - 2], w = s[nd - 1];
  const int64_t ho = checked_output_size(op, h, p.kernel[0], p.padding[0], p.stride[0], p.dilation[0], p.ceil_mode);
  const int64_t wo = checked_output_size(op, w, p.kernel[1], p.padding[1], p.stride[1], p.dilation[1], p.ceil_mode);
  TG_CHECK(p.kernel[0] > 0 && p.kernel[1] > 0, "{}: kernel size should be greater than zero, but got kH: {} kW: {}",
           op, p.kernel[0], p.kernel[1]);
  TG_CHECK(p.stride[0] > 0 && p.stride[1] > 0, "{}: stride should be greater than zero, but got dH: {} dW: {}", op,
           p.stride[0], p.stride[1]);
  TG_CHECK(p.dilation[0] > 0 && p.dilation[1] > 0,
           "{}: dilation should be greater than zero, but got dilationH: {} dilationW: {}", op, p.dilation[0],
           p.dilation[1]);
  const bool valid_dims = s[nd - 3] != 0 && h != 0 && w != 0;  // the batch alone may be empty
  TG_CHECK(valid_dims, "{}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:{}",
           op, shape_list(s));
  TG_CHECK(ho >= 1 && wo >= 1,
           "{}: Given input size: ({}x{}x{}). Calculated output size: ({}x{}x{}). Output size is too small", op,
           s[nd - 3], h, w, s[nd - 3], ho, wo);
  dispatch_floating(input.dtype(), op, []<typename T>() {});
  return plane_geom(s, ho, wo);
}

// ---- max pooling ----

struct MaxGeom {
  PlaneGeom g;
  PoolParams p;
};

// Output columns [lo, hi) whose tap at column offset dx lands inside a row of width w.
void valid_columns(int64_t w, int64_t wo, int64_t stride, int64_t dx, int64_t& lo, int64_t& hi) {
  lo = std::clamp<int64_t>(ceil_div(-dx, stride), 0, wo);
  hi = std::clamp<int64_t>(ceil_div(w - dx, stride), lo, wo);
}

// One plane: x (H, W) -> y (Ho, Wo).
// Values only: row by row, every tap of the window is one vectorizable pass over the output row.
// With indices: output by output with branch-free selects (random data would mispredict every
// comparison). Either way each output sees its taps in row-major window order, so ties keep the first
// maximum and a NaN replaces any value (PyTorch's `val > max || isnan(val)`); an output whose window
// has no tap inside the input keeps -inf and PyTorch's start index.
template <typename T, bool kIndices>
void max_pool_plane(const MaxGeom& m, const T* x, T* y, int64_t* ind) {
  const PlaneGeom& g = m.g;
  const auto [kh, kw] = m.p.kernel;
  const auto [sh, sw] = m.p.stride;
  const auto [ph, pw] = m.p.padding;
  const auto [dh, dw] = m.p.dilation;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const int64_t hs = oh * sh - ph;
    const int64_t he = std::min(hs + (kh - 1) * dh + 1, g.h);
    int64_t h0 = hs;
    while (h0 < 0) h0 += dh;
    T* yr = y + oh * g.wo;
    if constexpr (kIndices) {
      int64_t* ir = ind + oh * g.wo;
      for (int64_t ow = 0; ow < g.wo; ++ow) {
        int64_t w0 = ow * sw - pw;
        while (w0 < 0) w0 += dw;
        yr[ow] = -std::numeric_limits<T>::infinity();
        ir[ow] = h0 * g.w + w0;  // PyTorch's start value: the first tap inside the input
      }
      for (int64_t ih = h0; ih < he; ih += dh) {
        const T* xr = x + ih * g.w;
        for (int64_t q = 0; q < kw; ++q) {
          const int64_t dx = q * dw - pw;
          int64_t lo, hi;
          valid_columns(g.w, g.wo, sw, dx, lo, hi);
          const int64_t base = ih * g.w + dx;
          // Selects without branches, so that the loop vectorizes.
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow * sw + dx];
            const bool take = (v > yr[ow]) | (v != v);
            yr[ow] = take ? v : yr[ow];
            ir[ow] = take ? base + ow * sw : ir[ow];
          }
        }
      }
    } else {
      std::fill(yr, yr + g.wo, -std::numeric_limits<T>::infinity());
      for (int64_t ih = h0; ih < he; ih += dh) {
        const T* xr = x + ih * g.w;
        for (int64_t q = 0; q < kw; ++q) {
          const int64_t dx = q * dw - pw;
          int64_t lo, hi;
          valid_columns(g.w, g.wo, sw, dx, lo, hi);
          for (int64_t ow = lo; ow < hi; ++ow) {
            const T v = xr[ow * sw + dx];
            yr[ow] = (v > yr[ow] || v != v) ? v : yr[ow];
          }
        }
      }
    }
  }
}

// gx = scatter-add of gy into the argmax positions (zero elsewhere): the adjoint of gathering x[ind].
Tensor max_pool_scatter(const MaxGeom& m, const Tensor& grad_output, const Tensor& indices);

// out[o] = u[ind[o]] plane by plane: the adjoint of max_pool_scatter.
Tensor max_pool_gather(const MaxGeom& m, const Tensor& u, const Tensor& indices) {
  const PlaneGeom& g = m.g;
  const Tensor uc = u.contiguous();
  Tensor out = Tensor::empty(g.out_shape, {.dtype = u.dtype()});
  dispatch_floating(u.dtype(), "max_pool2d", [&]<typename T>() {
    const T* src = uc.data_ptr<T>();
    const int64_t* ind = indices.data_ptr<int64_t>();
    T* dst = out.data_ptr<T>();
    const int64_t n = g.in_plane();
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.in_plane();
      const int64_t* i = ind + pl * g.out_plane();
      T* d = dst + pl * g.out_plane();
      for (int64_t o = 0; o < g.out_plane(); ++o) d[o] = (i[o] >= 0 && i[o] < n) ? s[i[o]] : T(0);
    });
  });
  // saved: indices
  autograd::record(
      "max_pool2d_gather", {u}, {out}, {indices},
      [m](Context& ctx) -> Grads { return {max_pool_scatter(m, ctx.grad(), ctx.saved(0))}; }, {"indices"});
  return out;
}

Tensor max_pool_scatter(const MaxGeom& m, const Tensor& grad_output, const Tensor& indices) {
  const PlaneGeom& g = m.g;
  const Tensor gy = grad_output.contiguous();
  Tensor gx = Tensor::empty(g.in_shape, {.dtype = gy.dtype()});
  dispatch_floating(gy.dtype(), "max_pool2d", [&]<typename T>() {
    const T* src = gy.data_ptr<T>();
    const int64_t* ind = indices.data_ptr<int64_t>();
    T* dst = gx.data_ptr<T>();
    const int64_t n = g.in_plane();
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.out_plane();
      const int64_t* i = ind + pl * g.out_plane();
      T* d = dst + pl * n;
      std::fill(d, d + n, T(0));
      for (int64_t o = 0; o < g.out_plane(); ++o)
        if (i[o] >= 0 && i[o] < n) d[i[o]] += s[o];  // a window entirely in the padding has no argmax
    });
  });
  // saved: indices
  autograd::record(
      "max_pool2d_backward", {grad_output}, {gx}, {indices},
      [m](Context& ctx) -> Grads { return {max_pool_gather(m, ctx.grad(), ctx.saved(0))}; }, {"indices"});
  return gx;
}

std::pair<Tensor, Tensor> max_pool_impl(const Tensor& input, Int2 kernel, std::optional<Int2> stride, Int2 padding,
                                        Int2 dilation, bool ceil_mode, bool want_indices) {
  TG_CHECK(input.dim() == 3 || input.dim() == 4,
           "max_pool2d: non-empty 3D or 4D (batch mode) tensor expected for input");
  MaxGeom geom{{}, {kernel, stride.value_or(kernel), padding, dilation, ceil_mode}};
  geom.g = check_pool("max_pool2d", input, geom.p);
  const PlaneGeom& g = geom.g;
  const bool record = autograd::needs_grad({input});
  const bool with_indices = want_indices || record;
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty(g.out_shape, {.dtype = input.dtype()});
  Tensor ind = with_indices ? Tensor::empty(g.out_shape, {.dtype = kInt64}) : Tensor();
  dispatch_floating(input.dtype(), "max_pool2d", [&]<typename T>() {
    const T* src = x.data_ptr<T>();
    T* dst = out.data_ptr<T>();
    int64_t* id = with_indices ? ind.data_ptr<int64_t>() : nullptr;
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.in_plane();
      T* d = dst + pl * g.out_plane();
      if (with_indices) {
        max_pool_plane<T, true>(geom, s, d, id + pl * g.out_plane());
      } else {
        max_pool_plane<T, false>(geom, s, d, nullptr);
      }
    });
  });
  // saved: indices
  autograd::record(
      "max_pool2d", {input}, {out}, {ind},
      [geom](Context& ctx) -> Grads { return {max_pool_scatter(geom, ctx.grad(), ctx.saved(0))}; }, {"indices"});
  return {out, ind};
}

// ---- relu followed by a 2x2 max pool, fused ----
//
// y = max_pool2d(relu(x), 2) in one pass over x. relu is monotone, so the pooled value is the relu of the
// window's maximum; the gradient reaches x[i] when i is the window's argmax in the relu output (first
// maximum in row-major order, as max_pool2d) and that maximum is positive (relu's mask). Instead of
// relu's output (numel floats) and the pool's int64 indices, the op keeps one bool per input element:
// `winner`, true where the gradient goes. An odd last row or column lies in no window.

// max(v, 0) with NaN -> 0: relu as tapegrad computes it.
template <typename T>
inline T relu_value(T v) {
  return v > T(0) ? v : T(0);
}

#if defined(__AVX2__)
// kBytes[b]: the 8 bits of b as 8 bytes of 0 or 1 (a bool per float lane of a movemask).
constexpr std::array<uint64_t, 256> make_byte_table() {
  std::array<uint64_t, 256> t{};
  for (int b = 0; b < 256; ++b)
    for (int i = 0; i < 8; ++i)
      if (b & (1 << i)) t[b] |= uint64_t{1} << (8 * i);
  return t;
}
constexpr std::array<uint64_t, 256> kBytes = make_byte_table();

// Outputs [0, 8 * (wo / 8)) of one output row from input rows r0, r1: 16 input columns (8 windows) per
// step, in the input's layout. m = the window maximum, broadcast to both columns of each pair; the
// winners are the first lanes equal to m in window order (row 0 even, row 0 odd, row 1 even, row 1
// odd), where m > 0. Returns the number of outputs done.
template <bool kWinner>
int64_t relu_max2_row_avx2(const float* r0, const float* r1, float* yr, bool* w0, bool* w1, int64_t wo) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
  int64_t ow = 0;
  for (; ow + 8 <= wo; ow += 8) {
    __m256 m[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t c = 2 * ow + 8 * h;
      // max_ps(v, 0) returns 0 for a NaN v: relu as tapegrad computes it.
      const __m256 v0 = _mm256_max_ps(_mm256_loadu_ps(r0 + c), zero);
      const __m256 v1 = _mm256_max_ps(_mm256_loadu_ps(r1 + c), zero);
      const __m256 vm = _mm256_max_ps(v0, v1);
      m[h] = _mm256_max_ps(vm, _mm256_permute_ps(vm, 0xB1));  // 0xB1: swap the columns of each pair
      if constexpr (kWinner) {
        const __m256 pos = _mm256_cmp_ps(m[h], zero, _CMP_GT_OQ);
        const __m256 e0 = _mm256_cmp_ps(v0, m[h], _CMP_EQ_OQ), e1 = _mm256_cmp_ps(v1, m[h], _CMP_EQ_OQ);
        const __m256 e0s = _mm256_permute_ps(e0, 0xB1), e1s = _mm256_permute_ps(e1, 0xB1);
        // row 0: an odd lane loses to its even partner; row 1: loses to any row-0 hit and to its partner
        const __m256 win0 = _mm256_and_ps(_mm256_andnot_ps(_mm256_and_ps(e0s, odd), e0), pos);
        const __m256 taken = _mm256_or_ps(_mm256_or_ps(e0, e0s), _mm256_and_ps(e1s, odd));
        const __m256 win1 = _mm256_and_ps(_mm256_andnot_ps(taken, e1), pos);
        const uint64_t b0 = kBytes[_mm256_movemask_ps(win0)], b1 = kBytes[_mm256_movemask_ps(win1)];
        std::memcpy(w0 + c, &b0, 8);
        std::memcpy(w1 + c, &b1, 8);
      }
    }
    // the even lanes of m[0], m[1] in order: shuffle gives (0 2 | 8 10 | 4 6 | 12 14), the permute fixes it
    const __m256 ev = _mm256_shuffle_ps(m[0], m[1], _MM_SHUFFLE(2, 0, 2, 0));
    _mm256_storeu_ps(yr + ow, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0))));
  }
  return ow;
}
#endif

template <typename T, bool kWinner>
void relu_max2_plane(const PlaneGeom& g, const T* x, T* y, bool* winner) {
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const T* r0 = x + 2 * oh * g.w;
    const T* r1 = r0 + g.w;
    T* yr = y + oh * g.wo;
    int64_t ow0 = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {
      bool* w0 = kWinner ? winner + 2 * oh * g.w : nullptr;
      ow0 = relu_max2_row_avx2<kWinner>(r0, r1, yr, w0, kWinner ? w0 + g.w : nullptr, g.wo);
    }
#endif
    for (int64_t ow = ow0; ow < g.wo; ++ow) {
      const T a = relu_value(r0[2 * ow]), b = relu_value(r0[2 * ow + 1]);
      const T c = relu_value(r1[2 * ow]), d = relu_value(r1[2 * ow + 1]);
      // the first maximum in window order a, b, c, d
      T m = a;
      int k = 0;
      k = b > m ? 1 : k;
      m = b > m ? b : m;
      k = c > m ? 2 : k;
      m = c > m ? c : m;
      k = d > m ? 3 : k;
      m = d > m ? d : m;
      yr[ow] = m;
      if constexpr (kWinner) {
        bool* w0 = winner + 2 * oh * g.w + 2 * ow;
        bool* w1 = w0 + g.w;
        const bool pos = m > T(0);
        w0[0] = pos && k == 0;
        w0[1] = pos && k == 1;
        w1[0] = pos && k == 2;
        w1[1] = pos && k == 3;
      }
    }
    if constexpr (kWinner) {
      if (g.w % 2 != 0) winner[2 * oh * g.w + g.w - 1] = winner[(2 * oh + 1) * g.w + g.w - 1] = false;
    }
  }
  if constexpr (kWinner) {
    if (g.h % 2 != 0) std::fill(winner + (g.h - 1) * g.w, winner + g.h * g.w, false);
  }
}

Tensor relu_max2_gather(const PlaneGeom& g, const Tensor& u, const Tensor& winner);

// gx[i] = winner[i] ? gy[window of i] : 0: the backward of the fused op, linear in gy.
Tensor relu_max2_scatter(const PlaneGeom& g, const Tensor& grad_output, const Tensor& winner) {
  const Tensor gy = grad_output.contiguous();
  Tensor gx = Tensor::empty(g.in_shape, {.dtype = gy.dtype()});
  dispatch_floating(gy.dtype(), "relu_max_pool2d", [&]<typename T>() {
    const T* src = gy.data_ptr<T>();
    const bool* win = winner.data_ptr<bool>();
    T* dst = gx.data_ptr<T>();
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.out_plane();
      const bool* wp = win + pl * g.in_plane();
      T* d = dst + pl * g.in_plane();
      for (int64_t ih = 0; ih < 2 * g.ho; ++ih) {
        const T* sr = s + (ih / 2) * g.wo;
        const bool* wr = wp + ih * g.w;
        T* dr = d + ih * g.w;
        int64_t iw = 0;
#if defined(__AVX2__)
        if constexpr (std::is_same_v<T, float>) {
          // 8 columns: 4 gradients, each duplicated, kept where the winner byte is set
          const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
          for (; iw + 8 <= 2 * g.wo; iw += 8) {
            const __m256 gv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sr + iw / 2)), dup);
            uint64_t bytes;
            std::memcpy(&bytes, wr + iw, 8);
            const __m256i keep = _mm256_cmpgt_epi32(
                _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(bytes))), _mm256_setzero_si256());
            _mm256_storeu_ps(dr + iw, _mm256_and_ps(gv, _mm256_castsi256_ps(keep)));
          }
        }
#endif
        for (; iw < 2 * g.wo; ++iw) dr[iw] = wr[iw] ? sr[iw / 2] : T(0);
        if (g.w % 2 != 0) dr[g.w - 1] = T(0);
      }
      if (g.h % 2 != 0) std::fill(d + (g.h - 1) * g.w, d + g.h * g.w, T(0));
    });
  });
  // saved: winner
  autograd::record("relu_max_pool2d_backward", {grad_output}, {gx}, {winner},
                   [g](Context& ctx) -> Grads { return {relu_max2_gather(g, ctx.grad(), ctx.saved(0))}; }, {"winner"});
  return gx;
}

// out[o] = the sum over window o of winner * u (one term at most): the adjoint of relu_max2_scatter.
Tensor relu_max2_gather(const PlaneGeom& g, const Tensor& u, const Tensor& winner) {
  const Tensor uc = u.contiguous();
  Tensor out = Tensor::empty(g.out_shape, {.dtype = u.dtype()});
  dispatch_floating(u.dtype(), "relu_max_pool2d", [&]<typename T>() {
    const T* src = uc.data_ptr<T>();
    const bool* win = winner.data_ptr<bool>();
    T* dst = out.data_ptr<T>();
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.in_plane();
      const bool* wp = win + pl * g.in_plane();
      T* d = dst + pl * g.out_plane();
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        for (int64_t ow = 0; ow < g.wo; ++ow) {
          const int64_t i0 = 2 * oh * g.w + 2 * ow, i1 = i0 + g.w;
          T v = T(0);
          v += wp[i0] ? s[i0] : T(0);
          v += wp[i0 + 1] ? s[i0 + 1] : T(0);
          v += wp[i1] ? s[i1] : T(0);
          v += wp[i1 + 1] ? s[i1 + 1] : T(0);
          d[oh * g.wo + ow] = v;
        }
      }
    });
  });
  // saved: winner
  autograd::record("relu_max_pool2d_gather", {u}, {out}, {winner},
                   [g](Context& ctx) -> Grads { return {relu_max2_scatter(g, ctx.grad(), ctx.saved(0))}; }, {"winner"});
  return out;
}

// ---- average pooling (fixed and adaptive windows) ----

// The window of every output row and column: [start, end) clipped to the input, and the length
// counting padding (count_include_pad's divisor).
struct AvgGeom {
  PlaneGeom g;
  std::vector<int64_t> h0, h1, hp, w0, w1, wp;
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
  std::string name;               // of the forward op

  double divisor(int64_t oh, int64_t ow) const {
    if (divisor_override != 0) return static_cast<double>(divisor_override);
    if (count_include_pad) return static_cast<double>(hp[oh] * wp[ow]);
    return static_cast<double>((h1[oh] - h0[oh]) * (w1[ow] - w0[ow]));
  }
};

// y = mean of each window, plane by plane (sums in double).
template <typename T>
void avg_pool_plane(const AvgGeom& a, const T* x, T* y) {
  const PlaneGeom& g = a.g;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      T& out = y[oh * g.wo + ow];
      if (a.h0[oh] >= a.h1[oh] || a.w0[ow] >= a.w1[ow]) {
        out = T(0);  // the window lies in the padding
        continue;
      }
      double s = 0;
      for (int64_t ih = a.h0[oh]; ih < a.h1[oh]; ++ih) {
        const T* xr = x + ih * g.w;
        for (int64_t iw = a.w0[ow]; iw < a.w1[ow]; ++iw) s += static_cast<double>(xr[iw]);
      }
      out = static_cast<T>(s / a.divisor(oh, ow));
    }
  }
}

// gx = each gy / divisor spread over its window, plane by plane: the adjoint of avg_pool_plane.
template <typename T>
void avg_pool_backward_plane(const AvgGeom& a, const T* gy, T* gx) {
  const PlaneGeom& g = a.g;
  std::fill(gx, gx + g.in_plane(), T(0));
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      if (a.h0[oh] >= a.h1[oh] || a.w0[ow] >= a.w1[ow]) continue;
      const T d = static_cast<T>(static_cast<double>(gy[oh * g.wo + ow]) / a.divisor(oh, ow));
      for (int64_t ih = a.h0[oh]; ih < a.h1[oh]; ++ih) {
        T* xr = gx + ih * g.w;
        for (int64_t iw = a.w0[ow]; iw < a.w1[ow]; ++iw) xr[iw] += d;
      }
    }
  }
}

Tensor avg_pool_backward(const AvgGeom& a, const Tensor& grad_output);

// The forward as an op: records a.name, whose backward is avg_pool_backward.
Tensor avg_pool_forward(const AvgGeom& a, const Tensor& input) {
  const PlaneGeom& g = a.g;
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty(g.out_shape, {.dtype = input.dtype()});
  dispatch_floating(input.dtype(), a.name, [&]<typename T>() {
    const T* src = x.data_ptr<T>();
    T* dst = out.data_ptr<T>();
    for_each_plane(g, [&](int64_t pl) { avg_pool_plane<T>(a, src + pl * g.in_plane(), dst + pl * g.out_plane()); });
  });
  autograd::record(a.name, {input}, {out}, {},
                   [a](Context& ctx) -> Grads { return {avg_pool_backward(a, ctx.grad())}; });
  return out;
}

Tensor avg_pool_backward(const AvgGeom& a, const Tensor& grad_output) {
  const PlaneGeom& g = a.g;
  const Tensor gy = grad_output.contiguous();
  Tensor gx = Tensor::empty(g.in_shape, {.dtype = gy.dtype()});
  dispatch_floating(gy.dtype(), a.name, [&]<typename T>() {
    const T* src = gy.data_ptr<T>();
    T* dst = gx.data_ptr<T>();
    for_each_plane(g, [&](int64_t pl) {
      avg_pool_backward_plane<T>(a, src + pl * g.out_plane(), dst + pl * g.in_plane());
    });
  });
  autograd::record(a.name + "_backward", {grad_output}, {gx}, {},
                   [a](Context& ctx) -> Grads { return {avg_pool_forward(a, ctx.grad())}; });
  return gx;
}

}  // namespace

int64_t pool2d_output_size(int64_t input, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                           bool ceil_mode) {
  int64_t out = floor_div(input + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= input + pad) --out;  // the last window must start inside
  return out;
}

std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride,
                                                  Int2 padding, Int2 dilation, bool ceil_mode) {
  return max_pool_impl(input, kernel_size, stride, padding, dilation, ceil_mode, true);
}

Tensor max_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride, Int2 padding, Int2 dilation,
                  bool ceil_mode) {
  return max_pool_impl(input, kernel_size, stride, padding, dilation, ceil_mode, false).first;
}

Tensor relu_max_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride, Int2 padding, Int2 dilation,
                       bool ceil_mode) {
  const Int2 st = stride.value_or(kernel_size);
  const bool fused = (input.dim() == 3 || input.dim() == 4) && kernel_size == Int2{2, 2} && st == Int2{2, 2} &&
                     padding == Int2{0, 0} && dilation == Int2{1, 1} && !ceil_mode;
  if (!fused) return max_pool2d(relu(input), kernel_size, stride, padding, dilation, ceil_mode);
  const PlaneGeom g = check_pool("max_pool2d", input, {kernel_size, st, padding, dilation, ceil_mode});
  const bool record = autograd::needs_grad({input});
  const Tensor x = input.contiguous();
  Tensor out = Tensor::empty(g.out_shape, {.dtype = input.dtype()});
  Tensor winner = record ? Tensor::empty(g.in_shape, {.dtype = kBool}) : Tensor();
  dispatch_floating(input.dtype(), "relu_max_pool2d", [&]<typename T>() {
    const T* src = x.data_ptr<T>();
    T* dst = out.data_ptr<T>();
    bool* win = record ? winner.data_ptr<bool>() : nullptr;
    for_each_plane(g, [&](int64_t pl) {
      const T* s = src + pl * g.in_plane();
      T* d = dst + pl * g.out_plane();
      if (record) {
        relu_max2_plane<T, true>(g, s, d, win + pl * g.in_plane());
      } else {
        relu_max2_plane<T, false>(g, s, d, nullptr);
      }
    });
  });
  // saved: winner
  autograd::record("relu_max_pool2d", {input}, {out}, {winner},
                   [g](Context& ctx) -> Grads { return {relu_max2_scatter(g, ctx.grad(), ctx.saved(0))}; }, {"winner"});
  return out;
}

Tensor avg_pool2d(const Tensor& input, Int2 kernel_size, std::optional<Int2> stride, Int2 padding, bool ceil_mode,
                  bool count_include_pad, std::optional<int64_t> divisor_override) {
  TG_CHECK(!divisor_override || *divisor_override != 0, "avg_pool2d: divisor must be not zero");
  TG_CHECK(input.dim() == 3 || input.dim() == 4,
           "avg_pool2d: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:{}",
           shape_list(input.shape()));
  const PoolParams p{kernel_size, stride.value_or(kernel_size), padding, {1, 1}, ceil_mode};
  AvgGeom a;
  a.g = check_pool("avg_pool2d", input, p);
  a.count_include_pad = count_include_pad;
  a.divisor_override = divisor_override.value_or(0);
  a.name = "avg_pool2d";
  // Window of output o along a dim: [o s - p, min(o s - p + k, L + p)), its length counted with the
  // padding, then clipped to [0, L).
  auto windows = [](int64_t n, int64_t len, int64_t k, int64_t s, int64_t pad, std::vector<int64_t>& lo,
                    std::vector<int64_t>& hi, std::vector<int64_t>& padded) {
    for (int64_t o = 0; o < n; ++o) {
      const int64_t start = o * s - pad, end = std::min(start + k, len + pad);
      padded.push_back(end - start);
      lo.push_back(std::max<int64_t>(start, 0));
      hi.push_back(std::min(end, len));
    }
  };
  windows(a.g.ho, a.g.h, p.kernel[0], p.stride[0], p.padding[0], a.h0, a.h1, a.hp);
  windows(a.g.wo, a.g.w, p.kernel[1], p.stride[1], p.padding[1], a.w0, a.w1, a.wp);
  return avg_pool_forward(a, input);
}

Tensor adaptive_avg_pool2d(const Tensor& input, Int2 output_size) {
  TG_CHECK(output_size[0] >= 0 && output_size[1] >= 0,
           "adaptive_avg_pool2d: elements of output_size must be greater than or equal to 0 but received {{{}, {}}}",
           output_size[0], output_size[1]);
  TG_CHECK(input.dim() == 3 || input.dim() == 4, "adaptive_avg_pool2d: Expected 3D or 4D tensor, but got {}",
           shape_list(input.shape()));
  for (int64_t d = input.dim() - 2; d < input.dim(); ++d)
    TG_CHECK(input.size(d) > 0,
             "adaptive_avg_pool2d: Expected input to have non-zero size for non-batch dimensions, but input has sizes "
             "{} with dimension {} being empty",
             shape_list(input.shape()), d);
  dispatch_floating(input.dtype(), "adaptive_avg_pool2d", []<typename T>() {});
  AvgGeom a;
  a.g = plane_geom(input.shape(), output_size[0], output_size[1]);
  a.name = "adaptive_avg_pool2d";
  // Cell o of n over a length L: [floor(o L / n), ceil((o + 1) L / n)).
  auto windows = [](int64_t n, int64_t len, std::vector<int64_t>& lo, std::vector<int64_t>& hi,
                    std::vector<int64_t>& count) {
    for (int64_t o = 0; o < n; ++o) {
      lo.push_back(o * len / n);
      hi.push_back(((o + 1) * len + n - 1) / n);
      count.push_back(hi.back() - lo.back());
    }
  };
  windows(a.g.ho, a.g.h, a.h0, a.h1, a.hp);
  windows(a.g.wo, a.g.w, a.w0, a.w1, a.wp);
  return avg_pool_forward(a, input);
}

}  // namespace tapegrad
