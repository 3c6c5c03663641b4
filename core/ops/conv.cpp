// Convolution: forward kernels and the fused backward, side by side.
//
// Two kernel families (chosen per pass and shape by use_direct):
//   - im2col + GEMM (OpenBLAS), any stride;
//   - direct AVX2 kernels for stride 1 along W, computing from a zero-padded copy of each image.
// Work is spread over the batch: each OpenMP thread takes whole images with its own scratch buffers,
// and GEMMs called there run on one thread (OpenBLAS's OpenMP build does so inside a parallel region).
// With fewer images than threads the images run one after the other and the work inside each image
// is split instead (output-channel blocks, or OpenBLAS's own threads).
#include "conv.h"

#include "../autograd.h"
#include "reduce.h"

#include <cblas.h>
#include <omp.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TAPEGRAD_CONV_DIRECT 1  // the direct kernels below are compiled
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

struct ConvParams {
  Int2 stride;
  Conv2dPadding padding;
  Int2 dilation;
  int64_t groups;
};

// The sizes of one convolution.
struct ConvGeom {
  int64_t n, cin, h, w;  // input (n = 1 for an unbatched input)
  int64_t cout, kh, kw;  // weight
  int64_t groups;
  int64_t sh, sw;  // stride
  int64_t ph, pw;  // padding before (top, left); the bottom/right padding only shows in ho, wo
  int64_t dh, dw;  // dilation
  int64_t ho, wo;  // output
  bool batched;
  DType dtype;

  int64_t cin_g() const { return cin / groups; }
  int64_t cout_g() const { return cout / groups; }
  int64_t k() const { return cin_g() * kh * kw; }  // GEMM depth: rows of one group's column matrix
  int64_t hwo() const { return ho * wo; }
  int64_t in_image() const { return cin * h * w; }
  int64_t out_image() const { return cout * hwo(); }
  // A 1x1, stride-1, unpadded conv reads the input planes as its column matrix: no im2col.
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && ho == h && wo == w;
  }
  Shape input_shape() const { return batched ? Shape{n, cin, h, w} : Shape{cin, h, w}; }
  Shape weight_shape() const { return {cout, cin_g(), kh, kw}; }
  Shape output_shape() const { return batched ? Shape{n, cout, ho, wo} : Shape{cout, ho, wo}; }
};

ConvGeom make_geom(const Shape& in, const Shape& wt, DType dtype, const ConvParams& p) {
  ConvGeom g{};
  g.dtype = dtype;
  g.batched = in.size() == 4;
  const size_t o = g.batched ? 1 : 0;
  g.n = g.batched ? in[0] : 1;
  g.cin = in[o];
  g.h = in[o + 1];
  g.w = in[o + 2];
  g.cout = wt[0];
  g.kh = wt[2];
  g.kw = wt[3];
  g.groups = p.groups;
  g.sh = p.stride[0];
  g.sw = p.stride[1];
  g.ph = p.padding.before[0];
  g.pw = p.padding.before[1];
  g.dh = p.dilation[0];
  g.dw = p.dilation[1];
  g.ho = conv2d_output_size(g.h, g.kh, p.padding.before[0], p.padding.after[0], g.sh, g.dh);
  g.wo = conv2d_output_size(g.w, g.kw, p.padding.before[1], p.padding.after[1], g.sw, g.dw);
  return g;
}

// ---- BLAS and scratch ----

// Row-major C (m x n) = op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
          float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
          int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// Per-thread scratch that grows to the largest request and is kept for the next call, so that the
// loops over images allocate nothing once a layer has run.
void* thread_scratch(size_t bytes) {
  struct Buffer {
    void* data = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buf;
  if (bytes > buf.size) {
    std::free(buf.data);
    buf.size = (bytes + 63) / 64 * 64;
    buf.data = std::aligned_alloc(64, buf.size);
    if (!buf.data) {
      buf.size = 0;
      std::abort();  // inside a parallel region nothing can be thrown
    }
  }
  return buf.data;
}

// Threads to spread `n` images over: all of them when every thread gets an image, else one (and the
// GEMMs thread themselves).
int batch_threads(int64_t n) {
  if (omp_in_parallel()) return 1;
  const int t = omp_get_max_threads();
  return n >= t ? t : 1;
}

// fn(image, thread, scratch) for every image, `threads` ways in parallel.
template <typename T, typename F>
void for_each_image(int64_t n, int threads, size_t scratch_elems, F&& fn) {
  if (threads <= 1) {
    T* s = static_cast<T*>(thread_scratch(scratch_elems * sizeof(T)));
    for (int64_t i = 0; i < n; ++i) fn(i, 0, s);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    T* s = static_cast<T*>(thread_scratch(scratch_elems * sizeof(T)));
    const int t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) fn(i, t, s);
  }
}

// ---- im2col / col2im for one group of one image ----

// ceil(a / b) for b > 0 and any sign of a.
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Output columns [lo, hi) whose tap at offset dx = q dW - pW lands inside a row of width w.
void valid_range(const ConvGeom& g, int64_t dx, int64_t& lo, int64_t& hi) {
  lo = std::clamp<int64_t>(ceil_div(-dx, g.sw), 0, g.wo);
  hi = std::clamp<int64_t>(ceil_div(g.w - dx, g.sw), lo, g.wo);
}

// x: (Cin_g, H, W) -> cols: (Cin_g kH kW, Ho Wo). Row (c, p, q) holds the pixel that kernel tap (p, q)
// of channel c meets at each output position, zero where the tap falls into the padding.
template <typename T>
void im2col(const ConvGeom& g, const T* x, T* cols) {
  const int64_t hwo = g.hwo();
  for (int64_t c = 0; c < g.cin_g(); ++c) {
    const T* xc = x + c * g.h * g.w;
    for (int64_t p = 0; p < g.kh; ++p) {
      for (int64_t q = 0; q < g.kw; ++q) {
        T* row = cols + ((c * g.kh + p) * g.kw + q) * hwo;
        const int64_t dx = q * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(g, dx, lo, hi);
        for (int64_t oh = 0; oh < g.ho; ++oh) {
          T* r = row + oh * g.wo;
          const int64_t ih = oh * g.sh + p * g.dh - g.ph;
          if (ih < 0 || ih >= g.h) {
            std::fill(r, r + g.wo, T(0));
            continue;
          }
          const T* xr = xc + ih * g.w;
          std::fill(r, r + lo, T(0));
          if (g.sw == 1) {
            std::memcpy(r + lo, xr + lo + dx, static_cast<size_t>(hi - lo) * sizeof(T));
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw + dx];
          }
          std::fill(r + hi, r + g.wo, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col: x (Cin_g, H, W) += scatter of cols (Cin_g kH kW, Ho Wo).
template <typename T>
void col2im(const ConvGeom& g, const T* cols, T* x) {
  const int64_t hwo = g.hwo();
  for (int64_t c = 0; c < g.cin_g(); ++c) {
    T* xc = x + c * g.h * g.w;
    for (int64_t p = 0; p < g.kh; ++p) {
      for (int64_t q = 0; q < g.kw; ++q) {
        const T* row = cols + ((c * g.kh + p) * g.kw + q) * hwo;
        const int64_t dx = q * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(g, dx, lo, hi);
        for (int64_t oh = 0; oh < g.ho; ++oh) {
          const int64_t ih = oh * g.sh + p * g.dh - g.ph;
          if (ih < 0 || ih >= g.h) continue;
          const T* r = row + oh * g.wo;
          T* xr = xc + ih * g.w;
          if (g.sw == 1) {
            T* d = xr + dx;
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] += r[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw + dx] += r[ow];
          }
        }
      }
    }
  }
}

// ---- kernel choice ----

std::atomic<Conv2dAlgorithm> g_algorithm{Conv2dAlgorithm::Auto};

enum class Pass { Forward, Input, Weight };  // what a kernel computes: y, dX or dW

// Whether a pass runs on the direct kernels. They need an AVX2 build and stride 1 along W (and along
// H for the input gradient). Auto (measured on Zen 3) keeps GEMM where it does as well: 1x1 convs
// (no im2col), rows shorter than two vectors with deep column matrices, and weight gradients of
// deep column matrices; it takes the direct kernels for shallow ones (a network's first layer) and
// for groups of fewer than 4 output channels (depthwise), where GEMMs of a few rows crawl.
#ifdef TAPEGRAD_CONV_DIRECT
bool use_direct(const ConvGeom& g, Pass pass, int lanes) {
  const Conv2dAlgorithm a = g_algorithm.load(std::memory_order_relaxed);
  if (a == Conv2dAlgorithm::Gemm || g.sw != 1 || g.k() == 0) return false;
  if (pass == Pass::Input && g.sh != 1) return false;
  if (a == Conv2dAlgorithm::Direct) return true;
  switch (pass) {
    case Pass::Forward: {
      const bool few_rows = g.cout_g() < 4;
      if (g.pointwise() && !few_rows) return false;
      return few_rows || g.k() <= 64 || g.wo >= 2 * lanes;
    }
    case Pass::Input: {  // a forward conv producing Cin_g channels from Cout_g kH kW taps
      const bool few_rows = g.cin_g() < 4;
      if (g.pointwise() && !few_rows) return false;
      return few_rows || g.cout_g() * g.kh * g.kw <= 64 || g.w >= 2 * lanes;
    }
    case Pass::Weight: {
      const bool few_rows = g.cout_g() < 4;
      if (g.pointwise() && !few_rows) return false;
      return few_rows || g.k() <= 128;
    }
  }
  return false;
}
#endif

// ---- direct kernels (AVX2 + FMA): stride 1 along W ----
//
// For convolutions whose column matrix is short (few input channels x taps, as in a network's first
// layer) a GEMM spends its time loading and storing C. These kernels compute straight from a
// zero-padded copy of each image instead: a register tile of CB output channels x NV vectors of one
// output row accumulates over all (ci, p, q) taps, every input vector load is shared by the CB
// channels, and each output element is written once (bias included). The input gradient of a stride-1
// conv is the same kernel run on the padded upstream gradient with the flipped, transposed weight;
// the weight gradient tiles CB channels x KB taps and reduces across the row at the end.

#ifdef TAPEGRAD_CONV_DIRECT

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int kLanes = 8;
  static __m256i mask(int n) {
    alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - n));
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_n(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int kLanes = 4;
  static __m256i mask(int n) {
    alignas(32) static const int64_t bits[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 4 - n));
  }
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double v) { return _mm256_set1_pd(v); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V load_n(const double* p, int n) { return _mm256_maskload_pd(p, mask(n)); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_n(double* p, V v, int n) { _mm256_maskstore_pd(p, mask(n), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static double sum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

// Register tiles (16 ymm registers), tuned on Zen 3:
//   forward / input gradient: CB = 6 output channels x NV = 2 vectors of a row (12 accumulators, the
//     row vectors loaded once per tap, the weight broadcast per channel); blocks of fewer channels
//     (depthwise, a first layer's input gradient) take more vectors so that enough accumulators stay
//     in flight;
//   weight gradient: CB = 4 channels x KB = 3 taps (12 accumulators, the tap vectors loaded once per
//     position, dY loaded per channel).
constexpr int kTileChannels = 6;
constexpr int kMaxTileVectors = 6;
constexpr int kTileVectors[kTileChannels] = {6, 4, 3, 2, 2, 2};  // NV for CB = 1 .. 6
constexpr int kWeightTileChannels = 4;
constexpr int kTileTaps = 3;

// Keeps a loaded vector in a register: without it GCC folds the load into every FMA that uses the
// value (one load per FMA), which makes the tiles load-bound.
template <typename V>
inline void in_register(V& v) {
  asm("" : "+x"(v));
}

// A convolution with stride 1 along W, as the direct kernels see it: a source image (cin, h, w) read
// through a zero-padded copy (hp, wp) whose row r, col c hold source row r - pt, col c - pl (negative
// pt / pl crop), and an output image (cout, ho, wo).
struct DirectPlan {
  int64_t cin = 0, h = 0, w = 0;
  int64_t cout = 0, kh = 0, kw = 0, groups = 1;
  int64_t sh = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0;
  int64_t ho = 0, wo = 0;
  int64_t hp = 0, wp = 0;
  int64_t cin_g = 0, cout_g = 0, k = 0;
  std::vector<int64_t> off;  // tap (ci, p, q) -> offset of its first element in a group's padded copy

  int64_t tile = kTileChannels;  // output channels per block of work
  int64_t padded_size() const { return cin * hp * wp; }
  int64_t blocks_per_group() const { return (cout_g + tile - 1) / tile; }
  int64_t blocks() const { return groups * blocks_per_group(); }
  // Output channels [co, co + cb) of block b; a block never straddles two groups.
  void block(int64_t b, int64_t& co, int64_t& cb) const {
    const int64_t grp = b / blocks_per_group(), first = grp * cout_g + (b % blocks_per_group()) * tile;
    co = first;
    cb = std::min<int64_t>(tile, (grp + 1) * cout_g - first);
  }
};

DirectPlan direct_plan(int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t kh, int64_t kw, int64_t groups,
                       int64_t sh, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t ho, int64_t wo, int lanes) {
  DirectPlan d;
  d.cin = cin, d.h = h, d.w = w, d.cout = cout, d.kh = kh, d.kw = kw, d.groups = groups;
  d.sh = sh, d.dh = dh, d.dw = dw, d.pt = pt, d.pl = pl, d.ho = ho, d.wo = wo;
  d.cin_g = cin / groups;
  d.cout_g = cout / groups;
  d.k = d.cin_g * kh * kw;
  d.hp = (ho - 1) * sh + (kh - 1) * dh + 1;
  d.wp = (wo + lanes - 1) / lanes * lanes + (kw - 1) * dw;  // the last vector of a row may run past wo
  d.off.resize(static_cast<size_t>(d.k));
  for (int64_t ci = 0; ci < d.cin_g; ++ci)
    for (int64_t p = 0; p < kh; ++p)
      for (int64_t q = 0; q < kw; ++q) d.off[(ci * kh + p) * kw + q] = (ci * d.hp + p * dh) * d.wp + q * dw;
  return d;
}

// The forward problem itself.
DirectPlan forward_plan(const ConvGeom& g, int lanes) {
  return direct_plan(g.cin, g.h, g.w, g.cout, g.kh, g.kw, g.groups, g.sh, g.dh, g.dw, g.ph, g.pw, g.ho, g.wo, lanes);
}

// dX of a stride-1 conv as a forward conv: source dY (Cout, Ho, Wo), weight (Cin, Cout_g, kH, kW)
// flipped, padding d (k - 1) - p on the top/left, output (Cin, H, W).
DirectPlan input_grad_plan(const ConvGeom& g, int lanes) {
  return direct_plan(g.cout, g.ho, g.wo, g.cin, g.kh, g.kw, g.groups, 1, g.dh, g.dw, (g.kh - 1) * g.dh - g.ph,
                     (g.kw - 1) * g.dw - g.pw, g.h, g.w, lanes);
}

// wt[g Cin_g + ci][co][p][q] = w[g Cout_g + co][ci][kH-1-p][kW-1-q]: the weight of input_grad_plan.
template <typename T>
std::vector<T> flip_transpose(const ConvGeom& g, const T* w) {
  const int64_t cin_g = g.cin_g(), cout_g = g.cout_g(), taps = g.kh * g.kw;
  std::vector<T> wt(static_cast<size_t>(g.cout * cin_g * taps));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t co = 0; co < cout_g; ++co)
      for (int64_t ci = 0; ci < cin_g; ++ci)
        for (int64_t t = 0; t < taps; ++t)
          wt[((grp * cin_g + ci) * cout_g + co) * taps + (taps - 1 - t)] = w[((grp * cout_g + co) * cin_g + ci) * taps + t];
  return wt;
}

// xp (cin, hp, wp) <- the source image x (cin, h, w) shifted by (pt, pl), zeros elsewhere.
template <typename T>
void pad_image(const DirectPlan& d, const T* x, T* xp) {
  const int64_t lo = std::clamp<int64_t>(d.pl, 0, d.wp), hi = std::clamp<int64_t>(d.pl + d.w, lo, d.wp);
  for (int64_t c = 0; c < d.cin; ++c)
    for (int64_t r = 0; r < d.hp; ++r) {
      T* dst = xp + (c * d.hp + r) * d.wp;
      const int64_t sr = r - d.pt;
      if (sr < 0 || sr >= d.h) {
        std::fill(dst, dst + d.wp, T(0));
        continue;
      }
      const T* src = x + (c * d.h + sr) * d.w;
      std::fill(dst, dst + lo, T(0));
      std::memcpy(dst + lo, src + (lo - d.pl), static_cast<size_t>(hi - lo) * sizeof(T));
      std::fill(dst + hi, dst + d.wp, T(0));
    }
}

// y[c][j-th vector] = bias[c] + sum_k w[c][k] xrow[off[k] + j-th vector], for CB channels and NV
// vectors; the last vector keeps its first `tail` lanes.
template <typename T, int CB, int NV>
void forward_tile(const T* xrow, const int64_t* off, int64_t K, const T* w, const T* bias, T* y, int64_t ystride,
                  int tail) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::kLanes;
  V acc[CB][NV];
  for (int c = 0; c < CB; ++c) {
    const V b = bias ? S::set1(bias[c]) : S::zero();
    for (int j = 0; j < NV; ++j) acc[c][j] = b;
  }
  for (int64_t k = 0; k < K; ++k) {
    const T* xk = xrow + off[k];
    V xv[NV];
    for (int j = 0; j < NV; ++j) {
      xv[j] = S::load(xk + j * L);
      in_register(xv[j]);
    }
    for (int c = 0; c < CB; ++c) {
      const V wv = S::set1(w[c * K + k]);
      for (int j = 0; j < NV; ++j) acc[c][j] = S::fma(wv, xv[j], acc[c][j]);
    }
  }
  for (int c = 0; c < CB; ++c)
    for (int j = 0; j < NV; ++j) {
      if (j == NV - 1 && tail != L) {
        S::store_n(y + c * ystride + j * L, acc[c][j], tail);
      } else {
        S::store(y + c * ystride + j * L, acc[c][j]);
      }
    }
}

template <typename T>
using ForwardTileFn = void (*)(const T*, const int64_t*, int64_t, const T*, const T*, T*, int64_t, int);

template <typename T, int CB, int... NV>
constexpr std::array<ForwardTileFn<T>, sizeof...(NV)> forward_row(std::integer_sequence<int, NV...>) {
  return {&forward_tile<T, CB, NV + 1>...};
}

// One block of output channels [co, co + cb) of one image, all rows: y (cout, ho, wo).
template <typename T>
void forward_block(const DirectPlan& d, const T* xp, const T* w, const T* bias, T* y, int64_t co, int64_t cb) {
  constexpr int L = Simd<T>::kLanes;
  using Seq = std::make_integer_sequence<int, kMaxTileVectors>;
  static constexpr std::array<std::array<ForwardTileFn<T>, kMaxTileVectors>, kTileChannels> table = {
      forward_row<T, 1>(Seq{}), forward_row<T, 2>(Seq{}), forward_row<T, 3>(Seq{}),
      forward_row<T, 4>(Seq{}), forward_row<T, 5>(Seq{}), forward_row<T, 6>(Seq{})};
  const T* xg = xp + (co / d.cout_g) * d.cin_g * d.hp * d.wp;
  const int64_t hwo = d.ho * d.wo;
  const int max_nv = kTileVectors[cb - 1];
  for (int64_t oh = 0; oh < d.ho; ++oh) {
    const T* xrow = xg + oh * d.sh * d.wp;
    for (int64_t ow = 0; ow < d.wo; ow += max_nv * L) {
      const int64_t rem = d.wo - ow;
      const int nv = static_cast<int>(std::min<int64_t>(max_nv, (rem + L - 1) / L));
      const int tail = static_cast<int>(rem - (nv - 1) * L >= L ? L : rem - (nv - 1) * L);
      table[cb - 1][nv - 1](xrow + ow, d.off.data(), d.k, w + co * d.k, bias ? bias + co : nullptr,
                            y + co * hwo + oh * d.wo + ow, hwo, tail);
    }
  }
}

// gw[c][t] += sum over the image of dy[c] * x[tap t], for CB channels and KB taps starting at off.
template <typename T, int CB, int KB>
void weight_tile(const DirectPlan& d, const T* dy, const T* xg, const int64_t* off, T* gw) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::kLanes;
  const int64_t hwo = d.ho * d.wo;
  V acc[CB][KB];
  for (int c = 0; c < CB; ++c)
    for (int t = 0; t < KB; ++t) acc[c][t] = S::zero();
  auto step = [&](const T* xrow, const T* grow, int n) {  // n < L: a masked row tail
    V xv[KB];
    for (int t = 0; t < KB; ++t) {
      xv[t] = n == L ? S::load(xrow + off[t]) : S::load_n(xrow + off[t], n);
      in_register(xv[t]);
    }
    for (int c = 0; c < CB; ++c) {
      V gv = n == L ? S::load(grow + c * hwo) : S::load_n(grow + c * hwo, n);
      in_register(gv);
      for (int t = 0; t < KB; ++t) acc[c][t] = S::fma(gv, xv[t], acc[c][t]);
    }
  };
  for (int64_t oh = 0; oh < d.ho; ++oh) {
    const T* xrow = xg + oh * d.sh * d.wp;
    const T* grow = dy + oh * d.wo;
    int64_t ow = 0;
    for (; ow + L <= d.wo; ow += L) step(xrow + ow, grow + ow, L);
    // Masked on both sides, so that an inf beyond the row cannot make 0 * inf.
    if (ow < d.wo) step(xrow + ow, grow + ow, static_cast<int>(d.wo - ow));
  }
  for (int c = 0; c < CB; ++c)
    for (int t = 0; t < KB; ++t) gw[c * d.k + t] += S::sum(acc[c][t]);
}

template <typename T>
using WeightTileFn = void (*)(const DirectPlan&, const T*, const T*, const int64_t*, T*);

template <typename T, int CB, int... KB>
constexpr std::array<WeightTileFn<T>, sizeof...(KB)> weight_row(std::integer_sequence<int, KB...>) {
  return {&weight_tile<T, CB, KB + 1>...};
}

// gw rows [co, co + cb) += this image's contribution: dy (cout, ho, wo), xp the padded input.
template <typename T>
void weight_block(const DirectPlan& d, const T* xp, const T* dy, T* gw, int64_t co, int64_t cb) {
  using Seq = std::make_integer_sequence<int, kTileTaps>;
  static constexpr std::array<std::array<WeightTileFn<T>, kTileTaps>, kWeightTileChannels> table = {
      weight_row<T, 1>(Seq{}), weight_row<T, 2>(Seq{}), weight_row<T, 3>(Seq{}), weight_row<T, 4>(Seq{})};
  const T* xg = xp + (co / d.cout_g) * d.cin_g * d.hp * d.wp;
  for (int64_t c = co; c < co + cb; c += kWeightTileChannels) {
    const int n = static_cast<int>(std::min<int64_t>(kWeightTileChannels, co + cb - c));
    for (int64_t k = 0; k < d.k; k += kTileTaps) {
      const int kb = static_cast<int>(std::min<int64_t>(kTileTaps, d.k - k));
      table[n - 1][kb - 1](d, dy + c * d.ho * d.wo, xg, d.off.data() + k, gw + c * d.k + k);
    }
  }
}

// fn(block) for every output-channel block, on all threads when `parallel`.
template <typename F>
void for_each_block(int64_t blocks, bool parallel, F&& fn) {
  if (parallel) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) fn(b);
  } else {
    for (int64_t b = 0; b < blocks; ++b) fn(b);
  }
}

#endif  // AVX2 + FMA

// ---- forward ----

// x (N, Cin, H, W), w (Cout, Cin_g, kH, kW), b (Cout) or null -> y (N, Cout, Ho, Wo).
// Per image and group: y_g (Cout_g, HoWo) = W_g (Cout_g, K) cols_g (K, HoWo), on top of the bias.
template <typename T>
void conv_forward(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  const int64_t hwo = g.hwo(), K = g.k(), cin_g = g.cin_g(), cout_g = g.cout_g();
  if (g.n == 0 || g.out_image() == 0) return;
#ifdef TAPEGRAD_CONV_DIRECT
  if (use_direct(g, Pass::Forward, Simd<T>::kLanes)) {
    const DirectPlan d = forward_plan(g, Simd<T>::kLanes);
    const int threads = batch_threads(g.n);
    const bool inner = threads <= 1 && !omp_in_parallel() && omp_get_max_threads() > 1;
    for_each_image<T>(g.n, threads, static_cast<size_t>(d.padded_size()), [&](int64_t n, int, T* xp) {
      pad_image(d, x + n * g.in_image(), xp);
      for_each_block(d.blocks(), inner, [&](int64_t blk) {
        int64_t co, cb;
        d.block(blk, co, cb);
        forward_block(d, xp, w, b, y + n * g.out_image(), co, cb);
      });
    });
    return;
  }
#endif
  const bool pw = g.pointwise();
  for_each_image<T>(g.n, batch_threads(g.n), pw ? 0 : static_cast<size_t>(K * hwo), [&](int64_t n, int, T* cols) {
    T* yn = y + n * g.out_image();
    if (b) {
      for (int64_t co = 0; co < g.cout; ++co) std::fill(yn + co * hwo, yn + (co + 1) * hwo, b[co]);
    } else if (K == 0) {
      std::fill(yn, yn + g.out_image(), T(0));
    }
    if (K == 0) return;  // no input channels: the bias alone
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* src = x + n * g.in_image() + grp * cin_g * g.h * g.w;
      if (!pw) {
        im2col(g, src, cols);
        src = cols;
      }
      gemm(false, false, cout_g, hwo, K, w + grp * cout_g * K, K, src, hwo, b ? T(1) : T(0), yn + grp * cout_g * hwo,
           hwo);
    }
  });
}

// ---- backward ----

// Sum of n values in double with independent partial sums (vectorizes; no serial dependency).
template <typename T>
double sum_row(const T* v, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += static_cast<double>(v[i + j]);
  double t = 0;
  for (; i < n; ++i) t += static_cast<double>(v[i]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

// One pass over the batch computing the requested gradients (null pointers are skipped):
//   gx (N, Cin, H, W)      = per image and group: col2im(W_g^T dY_g)          needs w
//   gw (Cout, Cin_g, kH, kW) = sum_n dY_g cols_g^T (per-thread partial sums)   needs x
//   gb (Cout)              = sum over n, i, j of dY
template <typename T>
void conv_backward(const ConvGeom& g, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb) {
  const int64_t hwo = g.hwo(), K = g.k(), cin_g = g.cin_g(), cout_g = g.cout_g();
  const int64_t wnumel = g.cout * K, plane = g.h * g.w;
  const int threads = batch_threads(g.n);
  if (gw) std::fill(gw, gw + wnumel, T(0));
  if (gx && (hwo == 0 || g.cout == 0)) std::fill(gx, gx + g.n * g.in_image(), T(0));
  if (gb && (g.n == 0 || hwo == 0)) std::fill(gb, gb + g.cout, T(0));
  if (g.n == 0 || hwo == 0 || g.cout == 0) return;
  // Thread 0 accumulates dW straight into gw; the others into partial sums added at the end.
  std::vector<T> gw_part(gw && K > 0 ? static_cast<size_t>((threads - 1) * wnumel) : 0, T(0));
  std::vector<double> gb_part(gb ? static_cast<size_t>(threads * g.cout) : 0, 0.0);
  const bool pw = g.pointwise();
#ifdef TAPEGRAD_CONV_DIRECT
  // With fewer images than threads, the images run one by one and the work inside each is split.
  const bool inner = threads <= 1 && !omp_in_parallel() && omp_get_max_threads() > 1;
  constexpr int L = Simd<T>::kLanes;
  const bool direct_w = gw && K > 0 && use_direct(g, Pass::Weight, L);
  const bool direct_x = gx && K > 0 && use_direct(g, Pass::Input, L);
  DirectPlan wplan = direct_w ? forward_plan(g, L) : DirectPlan();
  wplan.tile = kWeightTileChannels;
  const DirectPlan xplan = direct_x ? input_grad_plan(g, L) : DirectPlan();
  const std::vector<T> wt = direct_x ? flip_transpose(g, w) : std::vector<T>();
#else
  const bool direct_w = false, direct_x = false;
#endif
  // Per-thread scratch: [column matrix | padded input | padded dY], each 64-byte aligned.
  auto round = [](int64_t e) { return (e + 15) / 16 * 16; };
  const int64_t cols_n = !pw && ((gw && !direct_w) || (gx && !direct_x)) ? round(K * hwo) : 0;
#ifdef TAPEGRAD_CONV_DIRECT
  const int64_t xpad_n = direct_w ? round(wplan.padded_size()) : 0;
  const int64_t gpad_n = direct_x ? round(xplan.padded_size()) : 0;
#else
  const int64_t xpad_n = 0, gpad_n = 0;
#endif

  for_each_image<T>(g.n, threads, static_cast<size_t>(cols_n + xpad_n + gpad_n), [&](int64_t n, int t, T* scratch) {
    T* cols = scratch;
    const T* xn = x ? x + n * g.in_image() : nullptr;
    const T* gyn = gy + n * g.out_image();
    T* gxn = gx ? gx + n * g.in_image() : nullptr;
    if (gb) {
      double* acc = gb_part.data() + t * g.cout;
      for (int64_t co = 0; co < g.cout; ++co) acc[co] += sum_row(gyn + co * hwo, hwo);
    }
    if (K == 0) return;
    T* gw_acc = gw ? (t == 0 ? gw : gw_part.data() + (t - 1) * wnumel) : nullptr;
#ifdef TAPEGRAD_CONV_DIRECT
    if (direct_w) {
      T* xp = scratch + cols_n;
      pad_image(wplan, xn, xp);
      for_each_block(wplan.blocks(), inner, [&](int64_t blk) {
        int64_t co, cb;
        wplan.block(blk, co, cb);
        weight_block(wplan, xp, gyn, gw_acc, co, cb);
      });
    }
    if (direct_x) {
      T* gp = scratch + cols_n + xpad_n;
      pad_image(xplan, gyn, gp);
      for_each_block(xplan.blocks(), inner, [&](int64_t blk) {
        int64_t co, cb;
        xplan.block(blk, co, cb);
        forward_block(xplan, gp, wt.data(), static_cast<const T*>(nullptr), gxn, co, cb);
      });
    }
#endif
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* gyg = gyn + grp * cout_g * hwo;  // (Cout_g, HoWo)
      if (gw && !direct_w) {
        const T* src = xn + grp * cin_g * plane;
        if (!pw) {
          im2col(g, src, cols);
          src = cols;
        }
        gemm(false, true, cout_g, K, hwo, gyg, hwo, src, hwo, T(1), gw_acc + grp * cout_g * K, K);  // += dY_g cols^T
      }
      if (gx && !direct_x) {
        const T* wg = w + grp * cout_g * K;
        T* gxg = gxn + grp * cin_g * plane;
        if (pw) {
          gemm(true, false, K, hwo, cout_g, wg, K, gyg, hwo, T(0), gxg, hwo);  // (Cin_g, HW) = W_g^T dY_g
        } else {
          gemm(true, false, K, hwo, cout_g, wg, K, gyg, hwo, T(0), cols, hwo);  // (K, HoWo) = W_g^T dY_g
          std::fill(gxg, gxg + cin_g * plane, T(0));
          col2im(g, cols, gxg);
        }
      }
    }
  });
  if (gw && K > 0) {
    for (int t = 1; t < threads; ++t) {
      const T* part = gw_part.data() + (t - 1) * wnumel;
      for (int64_t i = 0; i < wnumel; ++i) gw[i] += part[i];
    }
  }
  if (gx && K == 0) std::fill(gx, gx + g.n * g.in_image(), T(0));
  if (gb) {
    for (int64_t co = 0; co < g.cout; ++co) {
      double s = 0;
      for (int t = 0; t < threads; ++t) s += gb_part[t * g.cout + co];
      gb[co] = static_cast<T>(s);
    }
  }
}

// ---- checks ----

std::string type_name(DType t) { return t == kFloat64 ? "double" : t == kFloat32 ? "float" : std::string(dtype_name(t)); }

// PyTorch's checks of F.conv2d, in its order, after the input's rank (checked by the caller). Shapes
// and dtypes only, so that the gradient ops can check a size they are given.
ConvGeom check_conv2d(const Shape& in, DType in_dtype, const Shape& ws, DType w_dtype, const Tensor& bias,
                      const ConvParams& p) {
  const Int2& pb = p.padding.before;
  const Int2& pa = p.padding.after;
  TG_CHECK(pb[0] >= 0 && pb[1] >= 0 && pa[0] >= 0 && pa[1] >= 0, "conv2d: negative padding is not supported");
  TG_CHECK(p.stride[0] > 0 && p.stride[1] > 0, "conv2d: non-positive stride is not supported");
  TG_CHECK(p.dilation[0] > 0 && p.dilation[1] > 0, "conv2d: non-positive dilation is not supported");
  TG_CHECK(p.groups > 0, "conv2d: non-positive groups is not supported");
  TG_CHECK(ws.size() == 4,
           "conv2d: Expected 4D weight (out_channels, in_channels/groups, kH, kW), but got weight of size {}",
           shape_list(ws));
  TG_CHECK(ws[0] >= p.groups,
           "conv2d: Given groups={}, expected weight to be at least {} at dimension 0, but got weight of size {} instead",
           p.groups, p.groups, shape_list(ws));
  // PyTorch prints this size list in double brackets.
  TG_CHECK(ws[0] % p.groups == 0,
           "conv2d: Given groups={}, expected weight to be divisible by {} at dimension 0, but got weight of size [{}] "
           "instead",
           p.groups, p.groups, shape_list(ws));
  TG_CHECK(ws[2] > 0 && ws[3] > 0, "conv2d: Expected weight with a non-empty kernel, but got weight of size {}",
           shape_list(ws));
  const Shape shown = in.size() == 4 ? in : Shape{1, in[0], in[1], in[2]};  // PyTorch reports the batched size
  TG_CHECK(shown[1] == ws[1] * p.groups,
           "conv2d: Given groups={}, weight of size {}, expected input{} to have {} channels, but got {} channels "
           "instead",
           p.groups, shape_list(ws), shape_list(shown), ws[1] * p.groups, shown[1]);
  TG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == ws[0]),
           "conv2d: Given weight of size {}, expected bias to be 1-dimensional with {} elements, but got bias of size "
           "{} instead",
           shape_list(ws), ws[0], shape_list(bias.shape()));
  const int64_t ih = shown[2] + pb[0] + pa[0], iw = shown[3] + pb[1] + pa[1];
  const int64_t kh = p.dilation[0] * (ws[2] - 1) + 1, kw = p.dilation[1] * (ws[3] - 1) + 1;
  TG_CHECK(ih >= kh && iw >= kw,
           "conv2d: Calculated padded input size per channel: ({} x {}). Kernel size: ({} x {}). Kernel size can't be "
           "greater than actual input size",
           ih, iw, kh, kw);
  TG_CHECK(in_dtype == w_dtype, "conv2d: Input type ({}) and weight type ({}) should be the same", type_name(in_dtype),
           type_name(w_dtype));
  TG_CHECK(!bias.defined() || bias.dtype() == in_dtype, "conv2d: Input type ({}) and bias type ({}) should be the same",
           type_name(in_dtype), type_name(bias.dtype()));
  dispatch_floating(in_dtype, "conv2d", []<typename T>() {});
  return make_geom(in, ws, in_dtype, p);
}

// Checks that an explicitly given gradient matches the shape the convolution produces.
void check_grad_output(const ConvGeom& g, const Tensor& grad_output, const char* op) {
  TG_CHECK(grad_output.shape() == g.output_shape(), "{}: expected grad_output of size {}, but got {}", op,
           shape_list(g.output_shape()), shape_list(grad_output.shape()));
  TG_CHECK(grad_output.dtype() == g.dtype, "{}: expected grad_output of type {}, but got {}", op, dtype_name(g.dtype),
           dtype_name(grad_output.dtype()));
}

Tensor conv2d_impl(const Tensor& input, const Tensor& weight, const Tensor& bias, const ConvParams& p);
Tensor input_grad_impl(const ConvGeom& g, const ConvParams& p, const Tensor& weight, const Tensor& grad_output);
Tensor weight_grad_impl(const ConvGeom& g, const ConvParams& p, const Tensor& input, const Tensor& grad_output);

// Sum of dY over every dim but the channel: the bias gradient.
Tensor bias_grad(const ConvGeom& g, const Tensor& grad_output) {
  return sum(grad_output, g.batched ? Shape{0, 2, 3} : Shape{1, 2});
}

Tensor conv2d_impl(const Tensor& input, const Tensor& weight, const Tensor& bias, const ConvParams& p) {
  TG_CHECK(input.dim() == 3 || input.dim() == 4,
           "conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: {}",
           shape_list(input.shape()));
  const ConvGeom g = check_conv2d(input.shape(), input.dtype(), weight.shape(), weight.dtype(), bias, p);
  Tensor out = Tensor::empty(g.output_shape(), {.dtype = input.dtype()});
  {
    const Tensor x = input.contiguous(), w = weight.contiguous();
    const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
    dispatch_floating(input.dtype(), "conv2d", [&]<typename T>() {
      conv_forward<T>(g, x.data_ptr<T>(), w.data_ptr<T>(), b.defined() ? b.data_ptr<T>() : nullptr,
                      out.data_ptr<T>());
    });
  }
  // saved: input, weight
  autograd::record(
      "conv2d", {input, weight, bias}, {out}, {input, weight},
      [g, p](Context& ctx) -> Grads {
        const Tensor& gy = ctx.grad();
        const Tensor x = ctx.saved(0), w = ctx.saved(1);
        const bool nx = ctx.needs_grad(0), nw = ctx.needs_grad(1), nb = ctx.needs_grad(2);
        if (autograd::grad_enabled()) {  // create_graph: differentiable pieces
          return {nx ? input_grad_impl(g, p, w, gy) : Tensor(), nw ? weight_grad_impl(g, p, x, gy) : Tensor(),
                  nb ? bias_grad(g, gy) : Tensor()};
        }
        const Tensor dy = gy.contiguous();
        const Tensor xc = nw ? x.contiguous() : Tensor(), wc = nx ? w.contiguous() : Tensor();
        Tensor gx = nx ? Tensor::empty(g.input_shape(), {.dtype = dy.dtype()}) : Tensor();
        Tensor gw = nw ? Tensor::empty(g.weight_shape(), {.dtype = dy.dtype()}) : Tensor();
        Tensor gb = nb ? Tensor::empty({g.cout}, {.dtype = dy.dtype()}) : Tensor();
        dispatch_floating(dy.dtype(), "conv2d", [&]<typename T>() {
          auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
          conv_backward<T>(g, ptr(xc), ptr(wc), dy.data_ptr<T>(), ptr(gx), ptr(gw), ptr(gb));
        });
        return {gx, gw, gb};
      },
      {"input", "weight"});
  return out;
}

// dX of conv2d as an op of (weight, dY). Its own backward, for an upstream u shaped like x:
//   d/d(dY) = conv2d(u, weight)         d/d(weight) = conv2d_weight_grad(u, dY)
Tensor input_grad_impl(const ConvGeom& g, const ConvParams& p, const Tensor& weight, const Tensor& grad_output) {
  const Tensor w = weight.contiguous(), dy = grad_output.contiguous();
  Tensor gx = Tensor::empty(g.input_shape(), {.dtype = dy.dtype()});
  dispatch_floating(dy.dtype(), "conv2d_input_grad", [&]<typename T>() {
    conv_backward<T>(g, nullptr, w.data_ptr<T>(), dy.data_ptr<T>(), gx.data_ptr<T>(), nullptr, nullptr);
  });
  // saved: weight, grad_output
  autograd::record(
      "conv2d_input_grad", {weight, grad_output}, {gx}, {weight, grad_output},
      [g, p](Context& ctx) -> Grads {
        const Tensor& u = ctx.grad();
        const Tensor w = ctx.saved(0), dy = ctx.saved(1);
        return {ctx.needs_grad(0) ? weight_grad_impl(g, p, u, dy) : Tensor(),
                ctx.needs_grad(1) ? conv2d_impl(u, w, {}, p) : Tensor()};
      },
      {"weight", "grad_output"});
  return gx;
}

// dW of conv2d as an op of (input, dY). Its own backward, for an upstream v shaped like the weight:
//   d/d(input) = conv2d_input_grad(v, dY)         d/d(dY) = conv2d(input, v)
Tensor weight_grad_impl(const ConvGeom& g, const ConvParams& p, const Tensor& input, const Tensor& grad_output) {
  const Tensor x = input.contiguous(), dy = grad_output.contiguous();
  Tensor gw = Tensor::empty(g.weight_shape(), {.dtype = dy.dtype()});
  dispatch_floating(dy.dtype(), "conv2d_weight_grad", [&]<typename T>() {
    conv_backward<T>(g, x.data_ptr<T>(), nullptr, dy.data_ptr<T>(), nullptr, gw.data_ptr<T>(), nullptr);
  });
  // saved: input, grad_output
  autograd::record(
      "conv2d_weight_grad", {input, grad_output}, {gw}, {input, grad_output},
      [g, p](Context& ctx) -> Grads {
        const Tensor& v = ctx.grad();
        const Tensor x = ctx.saved(0), dy = ctx.saved(1);
        return {ctx.needs_grad(0) ? input_grad_impl(g, p, v, dy) : Tensor(),
                ctx.needs_grad(1) ? conv2d_impl(x, v, {}, p) : Tensor()};
      },
      {"input", "grad_output"});
  return gw;
}

}  // namespace

void set_conv2d_algorithm(Conv2dAlgorithm algorithm) { g_algorithm.store(algorithm, std::memory_order_relaxed); }
Conv2dAlgorithm conv2d_algorithm() { return g_algorithm.load(std::memory_order_relaxed); }

int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t pad_before, int64_t pad_after, int64_t stride,
                           int64_t dilation) {
  const int64_t span = input + pad_before + pad_after - dilation * (kernel - 1) - 1;
  // floor division (span may be negative for a kernel that does not fit)
  return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
}

Conv2dPadding conv2d_padding(std::string_view mode, Int2 kernel, Int2 dilation, Int2 stride) {
  if (mode == "valid") return {};
  TG_CHECK(mode == "same", "conv2d: Invalid padding string: '{}'", mode);
  TG_CHECK(stride[0] == 1 && stride[1] == 1, "conv2d: padding='same' is not supported for strided convolutions");
  Conv2dPadding p;
  for (int d = 0; d < 2; ++d) {
    const int64_t total = dilation[d] * (kernel[d] - 1);
    p.before[d] = total / 2;
    p.after[d] = total - p.before[d];
  }
  return p;
}

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Int2 stride, Int2 padding, Int2 dilation,
              int64_t groups) {
  return conv2d_impl(input, weight, bias, {stride, Conv2dPadding::symmetric(padding), dilation, groups});
}

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Int2 stride, const Conv2dPadding& padding,
              Int2 dilation, int64_t groups) {
  return conv2d_impl(input, weight, bias, {stride, padding, dilation, groups});
}

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, Int2 stride, PaddingString padding,
              Int2 dilation, int64_t groups) {
  TG_CHECK(input.dim() == 3 || input.dim() == 4,
           "conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: {}",
           shape_list(input.shape()));
  TG_CHECK(weight.dim() == 4,
           "conv2d: Expected 4D weight (out_channels, in_channels/groups, kH, kW), but got weight of size {}",
           shape_list(weight.shape()));
  const Conv2dPadding p = conv2d_padding(padding.value, {weight.size(2), weight.size(3)}, dilation, stride);
  return conv2d_impl(input, weight, bias, {stride, p, dilation, groups});
}

Tensor conv2d_input_grad(const Shape& input_shape, const Tensor& weight, const Tensor& grad_output, Int2 stride,
                         const Conv2dPadding& padding, Int2 dilation, int64_t groups) {
  TG_CHECK(input_shape.size() == 3 || input_shape.size() == 4,
           "conv2d_input_grad: Expected a 3D (unbatched) or 4D (batched) input size, but got {}",
           shape_list(input_shape));
  const ConvParams p{stride, padding, dilation, groups};
  const ConvGeom g = check_conv2d(input_shape, weight.dtype(), weight.shape(), weight.dtype(), {}, p);
  check_grad_output(g, grad_output, "conv2d_input_grad");
  return input_grad_impl(g, p, weight, grad_output);
}

Tensor conv2d_weight_grad(const Tensor& input, const Shape& weight_shape, const Tensor& grad_output, Int2 stride,
                          const Conv2dPadding& padding, Int2 dilation, int64_t groups) {
  TG_CHECK(input.dim() == 3 || input.dim() == 4,
           "conv2d_weight_grad: Expected 3D (unbatched) or 4D (batched) input, but got input of size: {}",
           shape_list(input.shape()));
  const ConvParams p{stride, padding, dilation, groups};
  const ConvGeom g = check_conv2d(input.shape(), input.dtype(), weight_shape, input.dtype(), {}, p);
  check_grad_output(g, grad_output, "conv2d_weight_grad");
  return weight_grad_impl(g, p, input, grad_output);
}

}  // namespace tapegrad
