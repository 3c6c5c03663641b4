// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "clip_grad.h"

#include <algorithm>
#include <cmath>

#include "../core/autograd.h"
#include "optimizer.h"

namespace tapegrad::optim {

namespace {

// Accumulates one gradient into the reduction for norm_type: sum |x|^p (or x^2), count of non-zeros,
// or max |x|. Double accumulation; the caller rounds the per-tensor norm to the gradient's dtype.
template <typename T>
double reduce_tensor(const T* x, int64_t n, double p) {
  if (std::isinf(p)) {
    double r = p > 0 ? 0.0 : INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::abs(static_cast<double>(x[i]));
      if (a != a) return a;  // NaN wins
      r = p > 0 ? std::max(r, a) : std::min(r, a);
    }
    return r;
  }
  double s = 0;
  if (p == 0) {
    for (int64_t i = 0; i < n; ++i) s += x[i] != 0 ? 1.0 : 0.0;
    return s;
  }
  if (p == 2) {
#pragma omp parallel for reduction(+ : s) if (n >= tapegrad::detail::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return std::sqrt(s);
  }
  if (p == 1) {
#pragma omp parallel for reduction(+ : s) if (n >= tapegrad::detail::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) s += std::abs(static_cast<double>(x[i]));
    return s;
  }
#pragma omp parallel for reduction(+ : s) if (n >= tapegrad::detail::kParallelGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) s += std::pow(std::abs(static_cast<double>(x[i])), p);
  return std::pow(s, 1.0 / p);
}

// The p-norm of a list of (already computed) norms, in double.
double norm_of(const std::vector<double>& v, double p) {
  if (std::isinf(p)) {
    double r = p > 0 ? 0.0 : INFINITY;
    for (double a : v) {
      if (a != a) return a;
      r = p > 0 ? std::max(r, a) : std::min(r, a);
    }
    return r;
  }
  if (p == 0) {
    double s = 0;
    for (double a : v) s += a != 0 ? 1.0 : 0.0;
    return s;
  }
  double s = 0;
  for (double a : v) s += p == 2 ? a * a : std::pow(std::abs(a), p);
  return p == 2 ? std::sqrt(s) : std::pow(s, 1.0 / p);
}

// grad *= c, in place, for a contiguous or strided gradient.
void scale_grad(Tensor grad, double c) {
  if (!grad.is_contiguous()) {
    autograd::NoGradGuard no_grad;
    grad.mul_(c);
    return;
  }
  dispatch_floating(grad.dtype(), "clip_grad_norm_", [&]<typename T>() {
    T* g = grad.data_ptr<T>();
    const T k = static_cast<T>(c);
    detail::parallel_chunks(grad.numel(), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) g[i] = g[i] * k;
    });
  });
  grad.storage()->bump_version();
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  std::vector<Tensor> grads;
  DType dtype = DType::Float32;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    dtype = promote_types(dtype, g.dtype());
    grads.push_back(std::move(g));
  }
  if (grads.empty()) return 0.0;

  // Per-gradient norms, each rounded to its gradient's dtype (PyTorch returns them as tensors), then
  // the norm of the norms, rounded to the common dtype.
  std::vector<double> norms;
  norms.reserve(grads.size());
  for (const Tensor& g : grads) {
    const Tensor gc = g.contiguous();
    norms.push_back(dispatch_floating(gc.dtype(), "clip_grad_norm_", [&]<typename T>() {
      return static_cast<double>(static_cast<T>(reduce_tensor<T>(gc.data_ptr<T>(), gc.numel(), norm_type)));
    }));
  }
  const double total = dispatch_floating(dtype, "clip_grad_norm_", [&]<typename T>() {
    return static_cast<double>(static_cast<T>(norm_of(norms, norm_type)));
  });

  TG_CHECK(!error_if_nonfinite || std::isfinite(total),
           "clip_grad_norm_: The total norm of order {} for gradients from `parameters` is non-finite, so it cannot "
           "be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
           "`error_if_nonfinite=False`",
           py_float(norm_type));

  // clip_coef = max_norm / (total_norm + 1e-6), evaluated as PyTorch does on a tensor of the norm's
  // dtype: reciprocal(total + 1e-6) * max_norm.
  const double coef = dispatch_floating(dtype, "clip_grad_norm_", [&]<typename T>() {
    const T denom = static_cast<T>(total) + static_cast<T>(1e-6);
    return static_cast<double>((T(1) / denom) * static_cast<T>(max_norm));
  });
  if (!(coef >= 1.0)) {  // below 1, or NaN (PyTorch scales by the clamped coefficient: NaN stays NaN)
    for (const Tensor& g : grads) scale_grad(g, coef);
  }
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  for (const Tensor& p : params) {
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    if (!grad.is_contiguous()) {
      autograd::NoGradGuard no_grad;
      grad.clamp_(-clip_value, clip_value);
      continue;
    }
    dispatch_floating(grad.dtype(), "clip_grad_value_", [&]<typename T>() {
      T* g = grad.data_ptr<T>();
      const T lo = static_cast<T>(-clip_value), hi = static_cast<T>(clip_value);
      detail::parallel_chunks(grad.numel(), [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; ++i) {
          const T x = g[i];
          g[i] = x != x ? x : std::min(std::max(x, lo), hi);  // min > max gives max, as PyTorch
        }
      });
    });
    grad.storage()->bump_version();
  }
}

}  // namespace tapegrad::optim
