// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "clip_grad.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/autograd.h"
#include "optimizer.h"

namespace tapegrad::optim {

namespace {

// Reduces f(x[i]) over [0, n) in double with `combine` (a sum, max or min): 16 independent partial
// results (they vectorize and have no serial dependency), split across threads for large n. Parts
// are combined in a fixed order, so the result does not depend on scheduling.
template <typename T, typename F, typename Combine>
double reduce(const T* x, int64_t n, double init, F f, Combine combine) {
  auto range = [&](int64_t lo, int64_t hi) {
    constexpr int K = 16;
    double acc[K];
    for (double& a : acc) a = init;
    int64_t i = lo;
    for (; i + K <= hi; i += K)
      for (int k = 0; k < K; ++k) acc[k] = combine(acc[k], f(static_cast<double>(x[i + k])));
    double r = init;
    for (; i < hi; ++i) r = combine(r, f(static_cast<double>(x[i])));
    for (int k = 0; k < K; ++k) r = combine(r, acc[k]);
    return r;
  };
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (n < tapegrad::detail::kParallelGrain || threads <= 1) return range(0, n);
  std::vector<double> parts(threads);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < threads; ++t) parts[t] = range(n * t / threads, n * (t + 1) / threads);
  double r = init;
  for (double v : parts) r = combine(r, v);
  return r;
}

// max / min that let NaN win, as torch.max / torch.norm(p=inf) do.
double nan_max(double a, double b) { return (a != a || a > b) ? a : b; }
double nan_min(double a, double b) { return (a != a || a < b) ? a : b; }

// The p-norm of one gradient, in double: (sum |x|^p)^(1/p), the count of non-zeros for p = 0, or the
// largest (smallest) |x| for p = inf (-inf). The caller rounds it to the gradient's dtype.
template <typename T>
double tensor_norm(const T* x, int64_t n, double p) {
  auto abs = [](double v) { return std::abs(v); };
  auto add = [](double a, double b) { return a + b; };
  if (p == INFINITY) return reduce(x, n, 0.0, abs, nan_max);
  if (p == -INFINITY) return reduce(x, n, INFINITY, abs, nan_min);
  if (p == 0)
    return reduce(
        x, n, 0.0, [](double v) { return v != 0 ? 1.0 : 0.0; }, add);
  if (p == 1) return reduce(x, n, 0.0, abs, add);
  if (p == 2)
    return std::sqrt(reduce(
        x, n, 0.0, [](double v) { return v * v; }, add));
  return std::pow(reduce(
                      x, n, 0.0, [p](double v) { return std::pow(std::abs(v), p); }, add),
                  1.0 / p);
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
      return static_cast<double>(static_cast<T>(tensor_norm<T>(gc.data_ptr<T>(), gc.numel(), norm_type)));
    }));
  }
  const double total = dispatch_floating(dtype, "clip_grad_norm_", [&]<typename T>() {
    return static_cast<double>(static_cast<T>(tensor_norm<double>(norms.data(), std::ssize(norms), norm_type)));
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
