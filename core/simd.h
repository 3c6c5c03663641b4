// Small SIMD helpers on GCC/Clang vector extensions (internal to the library).
//
// Vec<T> is a native-width vector of float or double (8 / 4 lanes with AVX, 4 / 2 without); loads and
// stores are unaligned. exp(Vec<float>) is a vectorized exp for the kernels where exp dominates
// (softmax, log_softmax, logsumexp); the scalar loops around std::exp cannot be vectorized.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace tapegrad::simd {

#if defined(__AVX__)
inline constexpr int kBytes = 32;
#else
inline constexpr int kBytes = 16;
#endif

template <typename T>
struct VecTraits;
template <>
struct VecTraits<float> {
  typedef float vec __attribute__((vector_size(kBytes)));
  typedef int32_t ivec __attribute__((vector_size(kBytes)));
};
template <>
struct VecTraits<double> {
  typedef double vec __attribute__((vector_size(kBytes)));
  typedef int64_t ivec __attribute__((vector_size(kBytes)));
};

template <typename T>
using Vec = typename VecTraits<T>::vec;
// Lane masks of comparisons (all ones where true) and integer lanes of T's width.
template <typename T>
using IVec = typename VecTraits<T>::ivec;
template <typename T>
inline constexpr int64_t kLanes = kBytes / static_cast<int64_t>(sizeof(T));

template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
inline Vec<T> broadcast(T x) {
  return Vec<T>{} + x;
}

// Largest lane, and whether any lane is NaN.
template <typename T>
inline T hmax(Vec<T> v) {
  T m = v[0];
  for (int64_t j = 1; j < kLanes<T>; ++j) m = v[j] > m ? v[j] : m;
  return m;
}
template <typename T>
inline bool any(IVec<T> mask) {
  for (int64_t j = 0; j < kLanes<T>; ++j)
    if (mask[j]) return true;
  return false;
}

// exp of every lane, within 2 ulp of the correctly rounded result over the whole float range:
// Cephes' expf (Cody-Waite reduction x = n ln2 + r, degree-6 polynomial on |r| <= ln2 / 2) with the
// scale 2^n applied in two halves, so results that overflow give inf and results in the denormal
// range are rounded once. NaN stays NaN; -inf gives 0 and +inf gives inf.
inline Vec<float> exp(Vec<float> x) {
  using V = Vec<float>;
  using I = IVec<float>;
  const V xo = x;
  x = x < broadcast(-104.0f) ? broadcast(-104.0f) : x;  // below: 0 after rounding
  x = x > broadcast(89.0f) ? broadcast(89.0f) : x;      // above: inf
  const V magic = broadcast(12582912.0f);                // 1.5 * 2^23: adding it rounds to an integer
  const V n = (x * 1.44269504088896341f + magic) - magic;
  // r = x - n ln2 with ln2 split in two; n * 0.693359375f is exact.
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = broadcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  V y = p * (r * r) + r + 1.0f;
  // 2^n = 2^h * 2^(n - h), each half a normal float for n in [-150, 128].
  const I ni = __builtin_convertvector(n, I);
  const I h = ni >> 1;
  const I s1 = (h + 127) << 23, s2 = (ni - h + 127) << 23;
  V f1, f2;
  std::memcpy(&f1, &s1, sizeof f1);
  std::memcpy(&f2, &s2, sizeof f2);
  y = y * f1 * f2;
  return xo != xo ? xo : y;
}

// Scalar exp with the same results as the vector one (for loop tails).
inline float exp1(float x) {
  Vec<float> v = broadcast(x);
  return exp(v)[0];
}

// y[i] = exp(x[i] - m): vectorized for float, std::exp for double. y may alias x.
template <typename T>
inline void exp_shift(const T* x, T m, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    const Vec<float> mv = broadcast(m);
    int64_t i = 0;
    for (; i + kLanes<float> <= n; i += kLanes<float>) store(y + i, exp(load(x + i) - mv));
    for (; i < n; ++i) y[i] = exp1(x[i] - m);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m);
  }
}

// y[i] = exp(x[i] - m[i]), as exp_shift. y may alias x.
template <typename T>
inline void exp_diff(const T* x, const T* m, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    int64_t i = 0;
    for (; i + kLanes<float> <= n; i += kLanes<float>) store(y + i, exp(load(x + i) - load(m + i)));
    for (; i < n; ++i) y[i] = exp1(x[i] - m[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m[i]);
  }
}

// Sum of p[0, n), accumulated in double: sixteen independent accumulators (the adds overlap; the
// compiler vectorizes them), with float blocks first for float input.
template <typename T>
inline double sum_double(const T* p, int64_t n) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    // float: blocks of 16 vectors add in float lanes (four chains, so the adds overlap), and each
    // block's lane sums go into double. As fast as a float sum (no conversion per element), while the
    // rounding error is that of 16-term float sums, not one growing with n.
    constexpr int64_t L = kLanes<float>;
    double d[L] = {};
    for (; i + 16 * L <= n; i += 16 * L) {
      Vec<float> a0 = load(p + i), a1 = load(p + i + L), a2 = load(p + i + 2 * L), a3 = load(p + i + 3 * L);
      for (int64_t k = 4 * L; k < 16 * L; k += 4 * L) {
        a0 += load(p + i + k);
        a1 += load(p + i + k + L);
        a2 += load(p + i + k + 2 * L);
        a3 += load(p + i + k + 3 * L);
      }
      const Vec<float> b = (a0 + a1) + (a2 + a3);
      for (int64_t j = 0; j < L; ++j) d[j] += static_cast<double>(b[j]);
    }
    double t = 0;
    for (int64_t j = 0; j < L; ++j) t += d[j];
    for (; i < n; ++i) t += static_cast<double>(p[i]);
    return t;
  }
  double l[16] = {};
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) l[j] += static_cast<double>(p[i + j]);
  for (int j = 8; j > 0; j /= 2)
    for (int k = 0; k < j; ++k) l[k] += l[k + j];
  double t = l[0];
  for (; i < n; ++i) t += static_cast<double>(p[i]);
  return t;
}

// Sum of a[i] b[i] over [0, n) in double, as sum_double.
template <typename T>
inline double dot_double(const T* a, const T* b, int64_t n) {
  double l[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) l[j] += static_cast<double>(a[i + j]) * static_cast<double>(b[i + j]);
  for (int j = 8; j > 0; j /= 2)
    for (int k = 0; k < j; ++k) l[k] += l[k + j];
  double t = l[0];
  for (; i < n; ++i) t += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return t;
}

// Largest element of p[0, n), starting from `init`. NaNs are skipped (callers that care check them).
template <typename T>
inline T max_of(const T* p, int64_t n, T init) {
  int64_t i = 0;
  T m = init;
  if (n >= 2 * kLanes<T>) {
    Vec<T> l0 = broadcast(init), l1 = l0;
    for (; i + 2 * kLanes<T> <= n; i += 2 * kLanes<T>) {
      const Vec<T> v0 = load(p + i), v1 = load(p + i + kLanes<T>);
      l0 = v0 > l0 ? v0 : l0;
      l1 = v1 > l1 ? v1 : l1;
    }
    l0 = l1 > l0 ? l1 : l0;
    m = hmax<T>(l0);
  }
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  return m;
}

}  // namespace tapegrad::simd
