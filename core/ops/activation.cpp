// Activations, dropout and embedding: forward kernel and backward formula side by side.
#include "activation.h"

#include "../autograd.h"
#include "../iter.h"
#include "../random.h"
#include "../vec_math.h"
#include "elementwise.h"

#include <omp.h>

#include <atomic>
#include <cmath>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

// y = f(x) with dy/dx = deriv(x). The backward is one fused kernel g * deriv(x); when it is itself
// recorded (create_graph), composed(g, x) builds the same product from differentiable ops.
template <typename Fwd, typename Deriv, typename Composed>
Tensor pointwise(const char* name, const Tensor& x, Fwd fwd, Deriv deriv, Composed composed) {
  Tensor out = dispatch_floating(x.dtype(), name, [&]<typename T>() {
    return detail::map_unary<T, T>(x, x.dtype(), [&](T v) TG_ALWAYS_INLINE { return fwd.template operator()<T>(v); });
  });
  // saved: self
  autograd::record(name, {x}, {out}, {x},
                   [name, deriv, composed](Context& ctx) -> Grads {
                     const Tensor xs = ctx.saved(0);
                     if (autograd::grad_enabled()) return {composed(ctx.grad(), xs)};
                     // x first: an upstream gradient broadcast from a scalar (a sum) takes map_binary's
                     // contiguous-with-scalar loop.
                     return {dispatch_floating(xs.dtype(), name, [&]<typename T>() {
                       return detail::map_binary<T, T, T>(xs, ctx.grad().to(xs.dtype()), xs.dtype(), name,
                                                          [&](T v, T g) TG_ALWAYS_INLINE {
                                                            return static_cast<T>(g * deriv.template operator()<T>(v));
                                                          });
                     })};
                   },
                   {"self"});
  return out;
}

// erf as a differentiable op (for the composed gelu derivative): d/dx erf(x) = 2 / sqrt(pi) exp(-x^2).
Tensor erf_op(const Tensor& x) {
  Tensor out = dispatch_floating(x.dtype(), "erf", [&]<typename T>() {
    return detail::map_unary<T, T>(x, x.dtype(), [](T v) { return std::erf(v); });
  });
  // saved: self
  autograd::record("erf", {x}, {out}, {x},
                   [](Context& ctx) -> Grads {
                     const Tensor xs = ctx.saved(0);
                     return {ctx.grad() * exp(-(xs * xs)) * M_2_SQRTPI};
                   },
                   {"self"});
  return out;
}

// Python's repr of a float ("1.5", "2.0"): how PyTorch's Python-side messages print numbers.
std::string py_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

constexpr double kSqrt1_2 = M_SQRT1_2;
constexpr double kGeluAlpha = M_2_SQRTPI * M_SQRT1_2 * 0.5;  // 1 / sqrt(2 pi)
constexpr double kGeluBeta = M_SQRT2 * M_2_SQRTPI * 0.5;     // sqrt(2 / pi)
constexpr double kGeluKappa = 0.044715;

}  // namespace

Tensor leaky_relu(const Tensor& x, double negative_slope) {
  // y = x > 0 ? x : slope x ;  dy/dx = x > 0 ? 1 : slope
  return pointwise(
      "leaky_relu", x,
      [negative_slope]<typename T>(T v)
          TG_ALWAYS_INLINE { return detail::select(v > T(0), v, v * static_cast<T>(negative_slope)); },
      [negative_slope]<typename T>(T v)
          TG_ALWAYS_INLINE { return detail::select(v > T(0), T(1), static_cast<T>(negative_slope)); },
      [negative_slope](const Tensor& g, const Tensor& xs) { return where(xs > 0.0, g, g * negative_slope); });
}

Tensor gelu(const Tensor& x, std::string_view approximate) {
  TG_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate argument must be either none or tanh.");
  if (approximate == "tanh") {
    // u = beta (x + kappa x^3), y = 0.5 x (1 + tanh(u)) = x s with s = sigmoid(2u) (1 + tanh(u) = 2 s)
    // dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) beta (1 + 3 kappa x^2)
    //       = s + 2 x s (1 - s) beta (1 + 3 kappa x^2)
    return pointwise(
        "gelu", x,
        []<typename T>(T v) TG_ALWAYS_INLINE {
          const T u = static_cast<T>(kGeluBeta) * (v + static_cast<T>(kGeluKappa) * v * v * v);
          return v / (T(1) + detail::vexp(T(-2) * u));
        },
        []<typename T>(T v) TG_ALWAYS_INLINE {
          const T x2 = v * v;
          const T u = static_cast<T>(kGeluBeta) * (v + static_cast<T>(kGeluKappa) * x2 * v);
          const T s = T(1) / (T(1) + detail::vexp(T(-2) * u));
          return s + T(2) * v * s * (T(1) - s) * static_cast<T>(kGeluBeta) *
                         (T(1) + T(3) * static_cast<T>(kGeluKappa) * x2);
        },
        [](const Tensor& g, const Tensor& xs) {
          const Tensor x2 = xs * xs;
          const Tensor th = tanh((xs + x2 * xs * kGeluKappa) * kGeluBeta);
          return g * ((1.0 + th) * 0.5 + xs * (1.0 - th * th) * (1.0 + x2 * (3 * kGeluKappa)) * (0.5 * kGeluBeta));
        });
  }
  // y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)) ;  dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
  return pointwise(
      "gelu", x,
      []<typename T>(T v) TG_ALWAYS_INLINE { return v * T(0.5) * (T(1) + detail::verf(v * static_cast<T>(kSqrt1_2))); },
      []<typename T>(T v) TG_ALWAYS_INLINE {
        const T cdf = T(0.5) * (T(1) + detail::verf(v * static_cast<T>(kSqrt1_2)));
        const T pdf = static_cast<T>(kGeluAlpha) * detail::vexp(T(-0.5) * v * v);
        return cdf + v * pdf;
      },
      [](const Tensor& g, const Tensor& xs) {
        const Tensor cdf = (erf_op(xs * kSqrt1_2) + 1.0) * 0.5;
        const Tensor pdf = exp(xs * xs * -0.5) * kGeluAlpha;
        return g * (cdf + xs * pdf);
      });
}

Tensor silu(const Tensor& x) {
  // y = x s, s = sigmoid(x) ;  dy/dx = s (1 + x (1 - s))
  return pointwise(
      "silu", x, []<typename T>(T v) TG_ALWAYS_INLINE { return v / (T(1) + detail::vexp(-v)); },
      []<typename T>(T v) TG_ALWAYS_INLINE {
        const T s = T(1) / (T(1) + detail::vexp(-v));
        return s * (T(1) + v * (T(1) - s));
      },
      [](const Tensor& g, const Tensor& xs) {
        const Tensor s = sigmoid(xs);
        return g * s * (1.0 + xs * (1.0 - s));
      });
}

Tensor softplus(const Tensor& x, double beta, double threshold) {
  // y = beta x > threshold ? x : log1p(exp(beta x)) / beta ;  dy/dx = beta x > threshold ? 1 : sigmoid(beta x)
  return pointwise(
      "softplus", x,
      [beta, threshold]<typename T>(T v) TG_ALWAYS_INLINE {
        const T b = static_cast<T>(beta), bx = v * b;
        return detail::select(bx > static_cast<T>(threshold), v, detail::vlog1p(detail::vexp(bx)) / b);
      },
      [beta, threshold]<typename T>(T v) TG_ALWAYS_INLINE {
        const T bx = v * static_cast<T>(beta);
        const T z = detail::vexp(bx);
        return detail::select(bx > static_cast<T>(threshold), T(1), z / (z + T(1)));
      },
      [beta, threshold](const Tensor& g, const Tensor& xs) {
        const Tensor bx = xs * beta;
        return where(bx.detach() > threshold, g, g * sigmoid(bx));
      });
}

Tensor elu(const Tensor& x, double alpha) {
  // y = x > 0 ? x : alpha (exp(x) - 1) ;  dy/dx = x > 0 ? 1 : alpha exp(x)
  return pointwise(
      "elu", x,
      [alpha]<typename T>(T v) TG_ALWAYS_INLINE {
        return detail::select(v > T(0), v, static_cast<T>(alpha) * (detail::vexp(v) - T(1)));  // PyTorch: exp - 1
      },
      [alpha]<typename T>(T v)
          TG_ALWAYS_INLINE { return detail::select(v > T(0), T(1), static_cast<T>(alpha) * detail::vexp(v)); },
      [alpha](const Tensor& g, const Tensor& xs) { return where(xs > 0.0, g, g * exp(xs) * alpha); });
}

// ---- dropout ----

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  TG_CHECK(p >= 0 && p <= 1, "dropout: dropout probability has to be between 0 and 1, but got {}", py_float(p));
  if (p == 0 || !training) return x;
  if (p == 1) return x * 0.0;
  Generator& g = gen ? *gen : default_generator();
  // mask = (u < 1 - p) / (1 - p), one uniform u per element in row-major order
  const Tensor mask = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  Tensor out = dispatch_floating(x.dtype(), "dropout", [&]<typename T>() {
    T* m = mask.data_ptr<T>();
    const double keep = 1 - p;
    const T scale = static_cast<T>(1 / keep);
    for (int64_t i = 0, n = mask.numel(); i < n; ++i) m[i] = g.uniform() < keep ? scale : T(0);
    return detail::map_binary<T, T, T>(x, mask, x.dtype(), "dropout", [](T v, T k) { return v * k; });
  });
  // saved: mask.  d/dx = g mask
  autograd::record("dropout", {x}, {out}, {mask}, [](Context& ctx) -> Grads { return {ctx.grad() * ctx.saved(0)}; },
                   {"mask"});
  return out;
}

// ---- embedding ----

namespace {

Tensor scatter_rows(const Tensor& g, const Tensor& idx, int64_t V, int64_t pad);

// out[i] = w[idx[i]] for idx (n,) int64 in range, w (V, D); rows with idx[i] == pad are zeros when
// zero_pad (the adjoint of scatter_rows, which skips them). Its backward is scatter_rows.
Tensor gather_rows(const Tensor& w, const Tensor& idx, int64_t pad, bool zero_pad) {
  const int64_t n = idx.numel(), V = w.size(0), D = w.size(1);
  Tensor wc;
  {
    autograd::NoGradGuard ng;
    wc = w.contiguous();
  }
  Tensor out = Tensor::empty({n, D}, {.dtype = w.dtype()});
  dispatch_floating(w.dtype(), "embedding", [&]<typename T>() {
    const T* src = wc.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const int64_t* ip = idx.data_ptr<int64_t>();
    auto rows = [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        T* dst = o + i * D;
        if (zero_pad && ip[i] == pad) {
          std::fill(dst, dst + D, T(0));
        } else {
          std::copy(src + ip[i] * D, src + ip[i] * D + D, dst);
        }
      }
    };
    if (n * D >= detail::kParallelGrain && n > 1 && !omp_in_parallel()) {
      const int threads = omp_get_max_threads();
#pragma omp parallel for schedule(static)
      for (int t = 0; t < threads; ++t) rows(n * t / threads, n * (t + 1) / threads);
    } else {
      rows(0, n);
    }
  });
  // saved: indices
  autograd::record("embedding", {w}, {out}, {idx},
                   [V, pad](Context& ctx) -> Grads { return {scatter_rows(ctx.grad(), ctx.saved(0), V, pad)}; },
                   {"indices"});
  return out;
}

// out (V, D) = zeros with row g[i] added into row idx[i] for every i with idx[i] != pad. Each
// thread owns a range of output rows, so there are no races and the sums are deterministic.
// Its backward is gather_rows with the padding rows zeroed.
Tensor scatter_rows(const Tensor& g, const Tensor& idx, int64_t V, int64_t pad) {
  const int64_t n = idx.numel(), D = g.size(1);
  Tensor gc;
  {
    autograd::NoGradGuard ng;
    gc = g.contiguous();
  }
  Tensor out = Tensor::zeros({V, D}, {.dtype = g.dtype()});
  dispatch_floating(g.dtype(), "embedding_backward", [&]<typename T>() {
    const T* src = gc.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const int64_t* ip = idx.data_ptr<int64_t>();
    auto owned = [&](int64_t lo, int64_t hi) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t r = ip[i];
        if (r < lo || r >= hi || r == pad) continue;
        T* dst = o + r * D;
        const T* row = src + i * D;
        for (int64_t d = 0; d < D; ++d) dst[d] += row[d];
      }
    };
    if (n * D >= detail::kParallelGrain && V > 1 && !omp_in_parallel()) {
      const int threads = omp_get_max_threads();
#pragma omp parallel for schedule(static)
      for (int t = 0; t < threads; ++t) owned(V * t / threads, V * (t + 1) / threads);
    } else {
      owned(0, V);
    }
  });
  // saved: indices
  autograd::record(
      "embedding_backward", {g}, {out}, {idx},
      [pad](Context& ctx) -> Grads { return {gather_rows(ctx.grad(), ctx.saved(0), pad, /*zero_pad=*/true)}; },
      {"indices"});
  return out;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx) {
  constexpr std::string_view op = "embedding";
  int64_t pad = -1;
  if (padding_idx) {
    const int64_t V = weight.dim() > 0 ? weight.size(0) : 0;
    pad = *padding_idx;
    TG_CHECK(pad < V && pad >= -V, "{}: Padding_idx must be within num_embeddings", op);
    if (pad < 0) pad += V;
  }
  TG_CHECK(weight.dim() == 2, "{}: 'weight' must be 2-D", op);
  TG_CHECK(indices.dtype() == DType::Int64,
           "{}: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but "
           "got torch.{}Tensor instead (while checking arguments for embedding)",
           op,
           indices.dtype() == DType::Float32   ? "Float"
           : indices.dtype() == DType::Float64 ? "Double"
                                               : "Bool");
  const int64_t V = weight.size(0), D = weight.size(1);
  Tensor idx;
  {
    autograd::NoGradGuard ng;
    idx = indices.contiguous();
  }
  const int64_t* ip = idx.data_ptr<int64_t>();
  const int64_t n = idx.numel();
  std::atomic<bool> bad{false};
#pragma omp parallel for schedule(static) if (n >= detail::kParallelGrain && !omp_in_parallel())
  for (int64_t i = 0; i < n; ++i)
    if (ip[i] < 0 || ip[i] >= V) bad.store(true, std::memory_order_relaxed);
  TG_CHECK(!bad.load(), "{}: index out of range in self", op);
  Shape out_shape = indices.shape();
  out_shape.push_back(D);
  return gather_rows(weight, idx.reshape({n}), pad, /*zero_pad=*/false).reshape(out_shape);
}

}  // namespace tapegrad
