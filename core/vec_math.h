// Branch-free exp, log and erf for float and double, and blocked row reductions, written so that the
// compiler vectorizes the plain loops that call them (internal to the library).
//
// Without -ffast-math, std::exp and std::log are opaque scalar calls and floating-point reductions
// are never vectorized (they would reassociate the sum). These functions are straight-line
// arithmetic and bit manipulation (always inlined), and the reductions keep 8 independent partial
// results, so loops over contiguous rows become SIMD code.
//
// Accuracy (tests/test_activation.cpp sweeps them against the C library; the bound tested is 2 ulp,
// the worst case measured is 1 ulp for each):
//   vexp: overflow gives +inf, gradual underflow gives subnormals then 0; exp(-inf) = 0,
//         exp(+inf) = +inf, exp(NaN) = NaN.
//   vlog: normal and subnormal inputs; log(0) = -inf, log(+inf) = +inf, log(x < 0) = NaN.
//   vlog1p: on [-1, inf]; log1p(-1) = -inf.
//   verf (float; the double overload is std::erf): erf(+-inf) = +-1, erf(NaN) = NaN.
//   vsigmoid, vtanh (float; vtanh double is std::tanh): within 3 ulp of the double-precision function.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

// For the lambdas that carry a kernel's per-element math into a loop: GCC does not always inline a
// lambda called through another one, and a call per element stops vectorization.
#define TG_ALWAYS_INLINE __attribute__((always_inline))

namespace tapegrad::detail {

// c ? a : b as bit operations on both (already computed) values. A plain ?: on floats is kept as a
// branch under GCC's default -ftrapping-math when the condition could be sunk into it, which stops
// vectorization; the masked blend cannot be.
template <typename T>
[[gnu::always_inline]] inline T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U m = U(0) - static_cast<U>(c);
  return std::bit_cast<T>(static_cast<U>((std::bit_cast<U>(a) & m) | (std::bit_cast<U>(b) & ~m)));
}

// ---- exp ----
// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in two
// parts so r is exact), exp(r) by a polynomial; 2^n is applied in two halves so that results in the
// subnormal range are rounded once.

[[gnu::always_inline]] inline float vexp(float x) {
  constexpr float kMax = 88.72283935546875f;    // above: +inf
  constexpr float kMin = -103.97208404541016f;  // below: 0
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const bool over = x > kMax, under = x < kMin;
  const float xc = select(over, kMax, select(under, kMin, x));
  const float t = xc * kLog2e + kRound;
  // n = round(xc / ln 2), in unsigned (modular) arithmetic: for a NaN x the bits are garbage, the result
  // is NaN whatever they are, and signed arithmetic on them would overflow.
  const uint32_t nu = std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kRound);
  const float nf = t - kRound;
  const float r = (xc - nf * kLn2Hi) - nf * kLn2Lo;
  // Cephes expf polynomial on [-ln2/2, ln2/2]
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n = 2^n1 2^n2, n1 = floor(n / 2) (n in [-150, 128], so both halves are normal)
  const uint32_t n1 = ((nu + 256u) >> 1) - 128u;
  const uint32_t n2 = nu - n1;
  const float s1 = std::bit_cast<float>((n1 + 127u) << 23);
  const float s2 = std::bit_cast<float>((n2 + 127u) << 23);
  const float y = p * s1 * s2;
  return select(over, std::numeric_limits<float>::infinity(), select(under, 0.0f, y));
}

[[gnu::always_inline]] inline double vexp(double x) {
  constexpr double kMax = 709.782712893384;    // above: +inf
  constexpr double kMin = -745.1332191019412;  // below: 0
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;  // fdlibm
  constexpr double kRound = 6755399441055744.0;                                               // 1.5 * 2^52
  const bool over = x > kMax, under = x < kMin;
  const double xc = select(over, kMax, select(under, kMin, x));
  const double t = xc * kLog2e + kRound;
  const uint64_t nu = std::bit_cast<uint64_t>(t) - std::bit_cast<uint64_t>(kRound);  // modular, as for float
  const double nf = t - kRound;
  const double r = (xc - nf * kLn2Hi) - nf * kLn2Lo;
  // Taylor polynomial of degree 13: the truncation error is below 5e-18 on |r| <= ln2/2.
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  // n in [-1075, 1024]; the halves stay normal
  const uint64_t n1 = ((nu + 2048u) >> 1) - 1024u;
  const uint64_t n2 = nu - n1;
  const double s1 = std::bit_cast<double>((n1 + 1023u) << 52);
  const double s2 = std::bit_cast<double>((n2 + 1023u) << 52);
  const double y = p * s1 * s2;
  return select(over, std::numeric_limits<double>::infinity(), select(under, 0.0, y));
}

// ---- log ----
// x = 2^e m with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172,
// by its odd series; log(x) = e ln 2 + log(m) (ln 2 in two parts). Subnormals are scaled first.

[[gnu::always_inline]] inline float vlog(float x) {
  const bool sub = x < 1.17549435e-38f;  // subnormal (or zero / negative: fixed up below)
  const float scaled = x * 8388608.0f;   // * 2^23
  const float xs = select(sub, scaled, x);
  const uint32_t bits = std::bit_cast<uint32_t>(xs);
  float m = std::bit_cast<float>((bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23)) - select(sub, 150.0f, 127.0f);
  const bool big = m > 1.41421356f;
  m = select(big, 0.5f * m, m);
  e = select(big, e + 1.0f, e);
  // log(1 + f) = f - (f^2/2 - s (f^2/2 + R)), R = 2 z (1/3 + z/5 + z^2/7 + ...) (fdlibm's form)
  const float f = m - 1.0f;
  const float s = f / (m + 1.0f);
  const float z = s * s;
  float q = 1.0f / 11.0f;
  q = q * z + 1.0f / 9.0f;
  q = q * z + 1.0f / 7.0f;
  q = q * z + 1.0f / 5.0f;
  q = q * z + 1.0f / 3.0f;
  const float hfsq = 0.5f * f * f;
  const float lm = f - (hfsq - s * (hfsq + 2.0f * z * q));
  const float y = e * 0.693359375f + (e * -2.12194440e-4f + lm);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const bool zero = x == 0.0f, neg = x < 0.0f, inf = x == kInf, nan = x != x;
  return select(zero, -kInf, select(neg, std::numeric_limits<float>::quiet_NaN(), select(inf | nan, x, y)));
}

[[gnu::always_inline]] inline double vlog(double x) {
  const bool sub = x < 2.2250738585072014e-308;
  const double scaled = x * 18014398509481984.0;  // * 2^54
  const double xs = select(sub, scaled, x);
  const uint64_t bits = std::bit_cast<uint64_t>(xs);
  double m = std::bit_cast<double>((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  // The exponent field as a double without an int64 -> double conversion (not in AVX2).
  double e =
      std::bit_cast<double>((bits >> 52) | 0x4330000000000000ull) - 4503599627370496.0 - select(sub, 1077.0, 1023.0);
  const bool big = m > 1.4142135623730951;
  m = select(big, 0.5 * m, m);
  e = select(big, e + 1.0, e);
  const double f = m - 1.0;
  const double s = f / (m + 1.0);
  const double z = s * s;
  // R = 2 z sum_k z^k / (2k + 3), k = 0..10 (|s| < 0.172: the rest is below 1e-18)
  double q = 1.0 / 23.0;
  q = q * z + 1.0 / 21.0;
  q = q * z + 1.0 / 19.0;
  q = q * z + 1.0 / 17.0;
  q = q * z + 1.0 / 15.0;
  q = q * z + 1.0 / 13.0;
  q = q * z + 1.0 / 11.0;
  q = q * z + 1.0 / 9.0;
  q = q * z + 1.0 / 7.0;
  q = q * z + 1.0 / 5.0;
  q = q * z + 1.0 / 3.0;
  const double hfsq = 0.5 * f * f;
  const double lm = f - (hfsq - s * (hfsq + 2.0 * z * q));
  const double y = e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + lm);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const bool zero = x == 0.0, neg = x < 0.0, inf = x == kInf, nan = x != x;
  return select(zero, -kInf, select(neg, std::numeric_limits<double>::quiet_NaN(), select(inf | nan, x, y)));
}

// ---- erf ----
// float: |x| < 0.921875: x + x p(x^2); |x| < 4: 1 - exp(-x^2) r(u), u = (|x| - 2.4609375) / 1.5390625
// mapped onto [-1, 1], r fitted to erfc(x) exp(x^2); beyond: +-1 (the float nearest erf). The
// coefficients are least-squares fits on Chebyshev nodes against a 40-digit erf, each rounded to
// float in turn with the rest refitted. Within 1 ulp of erf rounded to float (vs glibc's erff: 1).
[[gnu::always_inline]] inline float verf(float x) {
  const float ax = std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0x7fffffffu);
  const float t = ax * ax;
  float p = 8.320448e-05f;
  p = p * t - 0.00081290613f;
  p = p * t + 0.0051995935f;
  p = p * t - 0.026858672f;
  p = p * t + 0.11283678f;
  p = p * t - 0.37612632f;
  p = p * t + 0.12837917f;  // 2/sqrt(pi) - 1: the leading x stays exact
  const float small = ax + ax * p;
  const float u = ax * 0.6497462f - 1.5989847f;
  float q = -5.094996e-05f;
  q = q * u + 0.00014230676f;
  q = q * u - 0.0002121708f;
  q = q * u + 0.000488799f;
  q = q * u - 0.0013140852f;
  q = q * u + 0.003061191f;
  q = q * u - 0.0067797517f;
  q = q * u + 0.014665872f;
  q = q * u - 0.030617096f;
  q = q * u + 0.061347317f;
  q = q * u - 0.11748106f;
  q = q * u + 0.21374908f;
  const float mid = 1.0f - vexp(-t) * q;
  const float r = select(ax < 0.921875f, small, select(ax < 4.0f, mid, 1.0f));
  const float with_sign = std::bit_cast<float>(std::bit_cast<uint32_t>(r) | (std::bit_cast<uint32_t>(x) & 0x80000000u));
  return select(x != x, x, with_sign);
}

// double: the C library's (not vectorized; double-precision gelu is for checking, not speed).
inline double verf(double x) { return std::erf(x); }

// ---- sigmoid and tanh (the recurrent cells' gates) ----
// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|) (so that tiny results
// underflow gradually instead of to 0); NaN stays NaN.
template <typename T>
[[gnu::always_inline]] inline T vsigmoid(T x) {
  const T e = vexp(-std::abs(x));
  const T r = T(1) / (T(1) + e);
  return select(x < T(0), e * r, r);
}

// float: |x| < 0.4: its odd Taylor series to x^13 (the next term is below 2e-9 relative); else
// 1 - 2 / (1 + exp(2|x|)) (exp overflowing to inf gives 1), with the sign of x; NaN stays NaN.
[[gnu::always_inline]] inline float vtanh(float x) {
  const float ax = std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0x7fffffffu);
  const float t = ax * ax;
  float p = 21844.0f / 6081075.0f;
  p = p * t - 1382.0f / 155925.0f;
  p = p * t + 62.0f / 2835.0f;
  p = p * t - 17.0f / 315.0f;
  p = p * t + 2.0f / 15.0f;
  p = p * t - 1.0f / 3.0f;
  const float small = ax + ax * t * p;
  const float large = 1.0f - 2.0f / (1.0f + vexp(2.0f * ax));
  const float r = select(ax < 0.4f, small, large);
  const float with_sign = std::bit_cast<float>(std::bit_cast<uint32_t>(r) | (std::bit_cast<uint32_t>(x) & 0x80000000u));
  return select(x != x, x, with_sign);
}

// double: the C library's (not vectorized; double-precision recurrent layers are for checking).
inline double vtanh(double x) { return std::tanh(x); }

// log(1 + y) for y >= -1 (NaN below): log(u) + (y - (u - 1)) / u with u = 1 + y, the correction
// restoring what the rounding of u lost; ~1 ulp, and exact (y) for tiny y.
template <typename T>
[[gnu::always_inline]] inline T vlog1p(T y) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const T u = T(1) + y;
  const T l = vlog(u) + (y - (u - T(1))) / u;
  return select(u == kInf, kInf, select(u == T(0), -kInf, l));
}

// ---- blocked reductions over contiguous rows ----

// sum_i f(i) over [0, n) in double. Blocks of up to 64 values of f are computed by a plain loop
// (which vectorizes, short rows included) and added into 8 interleaved partial sums, value i into
// sum i % 8; the order is fixed, so the result does not depend on the machine.
template <typename F>
inline double blocked_sum(int64_t n, F&& f) {
  using R = decltype(f(int64_t{0}));
  constexpr int64_t kBlock = 64;
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  R buf[kBlock];
  for (int64_t base = 0; base < n; base += kBlock) {
    const int64_t len = std::min(kBlock, n - base), padded = (len + 7) / 8 * 8;
    for (int64_t j = 0; j < len; ++j) buf[j] = f(base + j);
    for (int64_t j = len; j < padded; ++j) buf[j] = R(0);
    for (int64_t j = 0; j < padded; j += 8)
      for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(buf[j + k]);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// max of x[0..n) (-inf for n = 0). NaN is ignored here; callers see it through their sums.
template <typename T>
inline T blocked_max(const T* x, int64_t n) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T acc[8] = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] = select(x[i + j] > acc[j], x[i + j], acc[j]);
  T m = kNegInf;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (int j = 0; j < 8; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

}  // namespace tapegrad::detail
