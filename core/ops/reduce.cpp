// Reductions: forward kernel and backward formula side by side.
#include "reduce.h"

#include "../autograd.h"
#include "../reduce_iter.h"
#include "../simd.h"
#include "elementwise.h"

#include <cmath>
#include <limits>
#include <type_traits>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace detail {

ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, std::string_view op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  p.reduced.assign(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;
    TG_CHECK(!p.reduced[w], "{}: dim {} appears multiple times in the list of dims", op, w);
    p.reduced[w] = true;
  }
  for (int64_t d = 0; d < nd; ++d) {
    const int64_t n = x.shape()[d], st = x.strides()[d];
    if (p.reduced[d]) {
      if (keepdim) p.out_shape.push_back(1);
      p.red_numel *= n;
      if (n == 1) continue;
      // Merge with the previous reduced dim when contiguous with it.
      if (!p.red_shape.empty() && p.red_strides.back() == st * n) {
        p.red_shape.back() *= n;
        p.red_strides.back() = st;
      } else {
        p.red_shape.push_back(n);
        p.red_strides.push_back(st);
      }
    } else {
      p.out_shape.push_back(n);
      p.kept_shape.push_back(n);
      p.kept_strides.push_back(st);
      p.out_numel *= n;
    }
  }
  TG_CHECK(p.red_shape.size() <= 16, "{}: too many reduced dims", op);
  return p;
}

}  // namespace detail

// ---- kernel operations for detail::reduce_kernel ----

namespace {

// Floating inputs accumulate in double, integers in int64.
template <typename T>
using AccOf = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// Sum of f(p[i s]) for i < n. Contiguous runs use sixteen independent accumulators, so the adds do
// not wait on each other and the compiler can vectorize them.
template <typename Acc, typename T, typename F>
inline Acc sum_run(const T* p, int64_t s, int64_t n, F f) {
  if (s != 1) {
    Acc t = 0;
    for (int64_t i = 0; i < n; ++i) t += f(p[i * s]);
    return t;
  }
  Acc l[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) l[j] += f(p[i + j]);
  for (int j = 8; j > 0; j /= 2)
    for (int k = 0; k < j; ++k) l[k] += l[k + j];
  Acc t = l[0];
  for (; i < n; ++i) t += f(p[i]);
  return t;
}

// Work buffers of the block-wise loops below (elements).
constexpr int64_t kBlock = 256;

// sum(x); fin(o, acc) stores output o.
template <typename T, typename F>
struct SumOp {
  using Acc = AccOf<T>;
  F fin;
  Acc init() const { return 0; }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t, int64_t) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (s == 1) {
        a += simd::sum_double(p, n);
        return;
      }
    }
    a += sum_run<Acc>(p, s, n, [](T x) { return static_cast<Acc>(x); });
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t, int64_t, int64_t) const {
    if (vs == 1) {
      for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<Acc>(p[j]);
    } else {
      for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<Acc>(p[j * vs]);
    }
  }
  void merge(Acc& a, const Acc& b) const { a += b; }
  void finish(int64_t o, const Acc& a) const { fin(o, a); }
};
template <typename T, typename F>
SumOp<T, F> sum_op(F f) {
  return {f};
}

// sum((x - mean[o])^2): the second pass of the variance.
template <typename T, typename F>
struct SqDevOp {
  using Acc = double;
  const double* mean;
  F fin;
  Acc init() const { return 0; }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t, int64_t o) const {
    const double mu = mean[o];
    a += sum_run<double>(p, s, n, [mu](T x) {
      const double d = static_cast<double>(x) - mu;
      return d * d;
    });
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t, int64_t o0, int64_t os) const {
    for (int64_t j = 0; j < n; ++j) {
      const double d = static_cast<double>(p[j * vs]) - mean[o0 + j * os];
      acc[j] += d * d;
    }
  }
  void merge(Acc& a, const Acc& b) const { a += b; }
  void finish(int64_t o, const Acc& a) const { fin(o, a); }
};
template <typename T, typename F>
SqDevOp<T, F> sqdev_op(const double* mean, F f) {
  return {mean, f};
}

// sum(exp(x - m[o])): the second pass of logsumexp.
template <typename T, typename F>
struct ExpSumOp {
  using Acc = double;
  const T* m;
  F fin;
  Acc init() const { return 0; }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t, int64_t o) const {
    const T mo = m[o];
    if (s == 1) {  // exp of a block at a time (vectorized), then its sum
      T buf[kBlock];
      for (int64_t i = 0; i < n; i += kBlock) {
        const int64_t b = std::min(kBlock, n - i);
        simd::exp_shift(p + i, mo, buf, b);
        a += simd::sum_double(buf, b);
      }
      return;
    }
    for (int64_t i = 0; i < n; ++i) a += static_cast<double>(std::exp(p[i * s] - mo));
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t, int64_t o0, int64_t os) const {
    if (vs == 1 && os == 1) {
      T buf[kBlock];
      for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
        const int64_t b = std::min(kBlock, n - j0);
        simd::exp_diff(p + j0, m + o0 + j0, buf, b);
        for (int64_t j = 0; j < b; ++j) acc[j0 + j] += static_cast<double>(buf[j]);
      }
      return;
    }
    for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(std::exp(p[j * vs] - m[o0 + j * os]));
  }
  void merge(Acc& a, const Acc& b) const { a += b; }
  void finish(int64_t o, const Acc& a) const { fin(o, a); }
};
template <typename T, typename F>
ExpSumOp<T, F> expsum_op(const T* m, F f) {
  return {m, f};
}

// v is strictly better than a: larger for max, smaller for min.
template <bool IsMax, typename T>
inline bool better(T v, T a) {
  return IsMax ? v > a : v < a;
}
// The identity of max / min: -inf / +inf, or the extreme integers.
template <bool IsMax, typename T>
constexpr T worst() {
  if constexpr (std::is_floating_point_v<T>)
    return IsMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  else
    return IsMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
}

// The max (min) of a contiguous run and `a`; NaN if either holds a NaN. Two vectors of lanes of a
// NaN-ignoring select (one max/min instruction each) plus a NaN mask.
template <bool IsMax, typename T>
T extreme_run(const T* p, int64_t n, T a) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  auto step = [](T& acc, T v) {
    if (better<IsMax>(v, acc) || v != v) acc = v;
  };
  int64_t i = 0;
  if (n >= 2 * L) {
    V l0 = simd::broadcast(a), l1 = l0;
    simd::IVec<T> bad = {};
    for (; i + 2 * L <= n; i += 2 * L) {
      const V v0 = simd::load(p + i), v1 = simd::load(p + i + L);
      if constexpr (IsMax) {
        l0 = v0 > l0 ? v0 : l0;
        l1 = v1 > l1 ? v1 : l1;
      } else {
        l0 = v0 < l0 ? v0 : l0;
        l1 = v1 < l1 ? v1 : l1;
      }
      bad |= (v0 != v0) | (v1 != v1);
    }
    if (simd::any<T>(bad)) return std::numeric_limits<T>::quiet_NaN();
    for (int64_t j = 0; j < L; ++j) {
      step(a, l0[j]);
      step(a, l1[j]);
    }
  }
  for (; i < n; ++i) step(a, p[i]);
  return a;
}

// amax / amin; NaN wins (propagates), like PyTorch.
template <typename T, bool IsMax, typename F>
struct ExtremeOp {
  using Acc = T;
  F fin;
  static void step(T& a, T v) {
    if (better<IsMax>(v, a) || v != v) a = v;
  }
  Acc init() const { return worst<IsMax, T>(); }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t, int64_t) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (s == 1) {
        a = extreme_run<IsMax>(p, n, a);
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) step(a, p[i * s]);
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t, int64_t, int64_t) const {
    for (int64_t j = 0; j < n; ++j) step(acc[j], p[j * vs]);
  }
  void merge(Acc& a, const Acc& b) const { step(a, b); }
  void finish(int64_t o, const Acc& a) const { fin(o, a); }
};
template <typename T, bool IsMax, typename F>
ExtremeOp<T, IsMax, F> extreme_op(F f) {
  return {f};
}

// (value, index) of the first maximal / minimal element; the first NaN counts as maximal (and minimal).
template <typename T, bool IsMax, typename F>
struct ArgOp {
  struct Acc {
    T v;
    int64_t i;
  };
  F fin;
  static void step(Acc& a, T v, int64_t k) {
    if (a.v == a.v && (better<IsMax>(v, a.v) || v != v)) a = {v, k};
  }
  Acc init() const { return {worst<IsMax, T>(), 0}; }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t k0, int64_t) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (s == 1) {
        // A block at a time: its extreme with the vector loop, then, only when it beats the best so far
        // (or is NaN), a scan of the block for the first element holding it.
        for (int64_t i = 0; i < n && a.v == a.v; i += kBlock) {
          const int64_t b = std::min(kBlock, n - i);
          const T e = extreme_run<IsMax>(p + i, b, worst<IsMax, T>());
          if (e != e) {
            int64_t j = 0;
            while (p[i + j] == p[i + j]) ++j;
            a = {e, k0 + i + j};
          } else if (better<IsMax>(e, a.v)) {
            int64_t j = 0;
            while (p[i + j] != e) ++j;
            a = {e, k0 + i + j};
          }
        }
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) step(a, p[i * s], k0 + i);
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t k, int64_t, int64_t) const {
    for (int64_t j = 0; j < n; ++j) step(acc[j], p[j * vs], k);
  }
  void merge(Acc& a, const Acc& b) const {
    if (a.v == a.v && (better<IsMax>(b.v, a.v) || b.v != b.v)) a = b;
  }
  void finish(int64_t o, const Acc& a) const { fin(o, a.v, a.i); }
};
template <typename T, bool IsMax, typename F>
ArgOp<T, IsMax, F> arg_op(F f) {
  return {f};
}

// logsumexp in one pass over each run: a run's max m and sum of exp(x - shift(m)), merged with the
// partial so far by rescaling (shift(m) = m, or 0 for an infinite m as PyTorch). Used when each output
// reads contiguous runs (the inner loop order); the outer order takes two passes instead.
template <typename T, typename F>
struct LseOp {
  struct Acc {
    T m;       // max so far, NaN propagating
    double s;  // sum of exp(x - shift(m))
  };
  F fin;
  static double shift(T m) { return std::isinf(m) ? 0.0 : static_cast<double>(m); }
  static void merge_into(Acc& a, const Acc& b) {
    T m = a.m;
    if (b.m > m || b.m != b.m || m != m) m = m != m ? m : b.m;
    const double sh = shift(m);
    // (a partial of nothing but -inf has s = 0 and must not meet exp(+large))
    const double sa = a.s == 0 ? 0.0 : a.s * std::exp(shift(a.m) - sh);
    const double sb = b.s == 0 ? 0.0 : b.s * std::exp(shift(b.m) - sh);
    a = {m, sa + sb};
  }
  Acc init() const { return {-std::numeric_limits<T>::infinity(), 0.0}; }
  void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t, int64_t) const {
    Acc r{-std::numeric_limits<T>::infinity(), 0.0};
    if (s == 1) {
      r.m = extreme_run<true>(p, n, r.m);
      const T sh = static_cast<T>(shift(r.m));
      T buf[kBlock];
      for (int64_t i = 0; i < n; i += kBlock) {
        const int64_t b = std::min(kBlock, n - i);
        simd::exp_shift(p + i, sh, buf, b);
        r.s += simd::sum_double(buf, b);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T v = p[i * s];
        if (v > r.m || v != v) r.m = r.m != r.m ? r.m : v;
      }
      const T sh = static_cast<T>(shift(r.m));
      for (int64_t i = 0; i < n; ++i) r.s += static_cast<double>(std::exp(p[i * s] - sh));
    }
    merge_into(a, r);
  }
  void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t, int64_t, int64_t) const {
    for (int64_t j = 0; j < n; ++j) {
      const T v = p[j * vs];
      merge_into(acc[j], {v, std::exp(static_cast<double>(v) - shift(v))});
    }
  }
  void merge(Acc& a, const Acc& b) const { merge_into(a, b); }
  void finish(int64_t o, const Acc& a) const { fin(o, std::log(a.s) + shift(a.m)); }
};
template <typename T, typename F>
LseOp<T, F> lse_op(F f) {
  return {f};
}

// A keepdim=false result with its reduced dims put back as size 1, so it broadcasts against the input.
Tensor restore_dims(const Tensor& t, const std::vector<bool>& reduced, bool keepdim) {
  if (keepdim) return t;
  Tensor r = t;
  for (size_t d = 0; d < reduced.size(); ++d)
    if (reduced[d]) r = r.unsqueeze(static_cast<int64_t>(d));
  return r;
}

}  // namespace

// ---- sum ----

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "sum");
  // Integers and bools sum to int64, like PyTorch.
  const DType out_dtype = is_floating(x.dtype()) ? x.dtype() : DType::Int64;
  Tensor out = Tensor::empty(plan.out_shape, {.dtype = out_dtype});
  const Tensor xin = is_floating(x.dtype()) ? x : x.to(DType::Int64);
  dispatch_numeric(out_dtype, "sum", [&]<typename T>() {
    T* o = out.data_ptr<T>();
    detail::reduce_kernel(xin.data_ptr<T>(), plan,
                          sum_op<T>([o](int64_t i, AccOf<T> acc) { o[i] = static_cast<T>(acc); }));
  });
  const Shape in_shape = x.shape();
  const auto reduced = plan.reduced;
  autograd::record("sum", {x}, {out}, {}, [in_shape, reduced, keepdim](Context& ctx) -> Grads {
    // Put the reduced dims back as size 1 and broadcast.
    return {restore_dims(ctx.grad(), reduced, keepdim).expand(in_shape)};
  });
  return out;
}

Tensor Tensor::sum() const { return tapegrad::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return tapegrad::sum(*this, dims, keepdim); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  TG_CHECK(lead >= 0, "sum_to: cannot sum a tensor of shape {} to the larger shape {}", shape_str(x.shape()),
           shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead];
    TG_CHECK(want == x.shape()[d] || want == 1, "sum_to: shape {} is not broadcastable to {}", shape_str(shape),
             shape_str(x.shape()));
    if (want == 1 && x.shape()[d] != 1) dims.push_back(d);
  }
  Tensor r = dims.empty() ? x : sum(x, dims, true);
  return lead > 0 || r.shape() != shape ? r.reshape(shape) : r;
}

}  // namespace tapegrad

namespace tapegrad {

// ---- mean ----

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "mean");
  TG_CHECK(is_floating(x.dtype()),
           "mean: mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
           "Got: {}",
           dtype_name(x.dtype()));
  Tensor out;
  {
    autograd::NoGradGuard ng;
    out = sum(x, dims, keepdim) / static_cast<double>(plan.red_numel);
  }
  // d/dx = g / n broadcast back over the reduced dims (composed: double backward works).
  const Shape in_shape = x.shape();
  const auto reduced = plan.reduced;
  const auto n = static_cast<double>(plan.red_numel);
  autograd::record("mean", {x}, {out}, {}, [in_shape, reduced, keepdim, n](Context& ctx) -> Grads {
    Tensor g = ctx.grad();
    if (!keepdim) {
      for (size_t d = 0; d < reduced.size(); ++d)
        if (reduced[d]) g = g.unsqueeze(static_cast<int64_t>(d));
    }
    return {g.expand(in_shape) / n};
  });
  return out;
}

Tensor Tensor::mean() const { return tapegrad::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return tapegrad::mean(*this, dims, keepdim); }

// ---- var / std ----

namespace {

// Two passes in double: the mean, then the sum of squared deviations, divided by max(0, n - correction)
// (0 / 0 = nan for a single element with correction 1, like PyTorch).
Tensor var_kernel(const Tensor& x, const detail::ReducePlan& plan, int64_t correction, const char* op) {
  TG_CHECK(is_floating(x.dtype()), "{}: std and var only support floating point and complex dtypes", op);
  Tensor out = Tensor::empty(plan.out_shape, {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    const T* xp = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const double n = static_cast<double>(plan.red_numel);
    std::vector<double> mu(static_cast<size_t>(plan.out_numel));
    double* m = mu.data();
    detail::reduce_kernel(xp, plan, sum_op<T>([m, n](int64_t i, double acc) { m[i] = acc / n; }));
    const double dof = std::max(0.0, n - static_cast<double>(correction));
    detail::reduce_kernel(xp, plan, sqdev_op<T>(m, [o, dof](int64_t i, double acc) { o[i] = static_cast<T>(acc / dof); }));
  });
  return out;
}

// d var / dx = 2 (x - mean) / (n - correction), times the upstream gradient (restored to keepdim shape).
Tensor var_backward(const Tensor& g, const Tensor& x, const Shape& dims, double n, int64_t correction) {
  return g * (2.0 / (n - static_cast<double>(correction))) * (x - mean(x, dims, true));
}

}  // namespace

Tensor var(const Tensor& x, const Shape& dims, bool unbiased, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "var");
  const int64_t correction = unbiased ? 1 : 0;
  Tensor out = var_kernel(x, plan, correction, "var");
  // saved: self
  const auto reduced = plan.reduced;
  const double n = static_cast<double>(plan.red_numel);
  autograd::record(
      "var", {x}, {out}, {x},
      [dims, reduced, keepdim, n, correction](Context& ctx) -> Grads {
        return {var_backward(restore_dims(ctx.grad(), reduced, keepdim), ctx.saved(0), dims, n, correction)};
      },
      {"self"});
  return out;
}

Tensor std(const Tensor& x, const Shape& dims, bool unbiased, bool keepdim) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, "std");
  const int64_t correction = unbiased ? 1 : 0;
  Tensor out = var_kernel(x, plan, correction, "std");
  dispatch_floating(out.dtype(), "std", [&]<typename T>() {
    T* o = out.data_ptr<T>();
    for (int64_t i = 0; i < out.numel(); ++i) o[i] = std::sqrt(o[i]);
  });
  // saved: self, result.  d std = d var / (2 std), and 0 where std = 0 (as PyTorch)
  const auto reduced = plan.reduced;
  const double n = static_cast<double>(plan.red_numel);
  autograd::record(
      "std", {x}, {out}, {x, out},
      [dims, reduced, keepdim, n, correction](Context& ctx) -> Grads {
        const Tensor g = restore_dims(ctx.grad(), reduced, keepdim);
        const Tensor r = restore_dims(ctx.saved(1), reduced, keepdim);
        const Tensor gv = where(r == 0.0, scalar_like(0, g), g / (r * 2.0));
        return {var_backward(gv, ctx.saved(0), dims, n, correction)};
      },
      {"self", "result"});
  return out;
}

Tensor Tensor::var(const Shape& dims, bool unbiased, bool keepdim) const {
  return tapegrad::var(*this, dims, unbiased, keepdim);
}
Tensor Tensor::std(const Shape& dims, bool unbiased, bool keepdim) const {
  return tapegrad::std(*this, dims, unbiased, keepdim);
}

// ---- amax / amin ----

namespace {

// Values of the largest / smallest elements over the plan, NaN propagating.
template <bool IsMax>
Tensor extreme_kernel(const Tensor& x, const detail::ReducePlan& plan, const char* op) {
  Tensor out = Tensor::empty(plan.out_shape, {.dtype = x.dtype()});
  dispatch_numeric(x.dtype(), op, [&]<typename T>() {
    T* o = out.data_ptr<T>();
    detail::reduce_kernel(x.data_ptr<T>(), plan, extreme_op<T, IsMax>([o](int64_t i, T v) { o[i] = v; }));
  });
  return out;
}

// PyTorch refuses to take the max of nothing.
void check_nonempty_dims(const Tensor& x, const Shape& dims, const char* op) {
  if (dims.empty() && x.numel() == 0)
    fail("{0}: {0}(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with "
         "the 'dim' argument.",
         op);
  if (x.dim() == 0) return;
  for (int64_t d : dims)
    TG_CHECK(x.shape()[wrap_dim(d, x.dim(), op)] != 0, "{0}: {0}(): Expected reduction dim {1} to have non-zero size.",
             op, d);
}

template <bool IsMax>
Tensor amax_impl(const Tensor& x, const Shape& dims, bool keepdim, const char* op) {
  const auto plan = detail::plan_reduce(x, dims, keepdim, op);
  check_nonempty_dims(x, dims, op);
  Tensor out = extreme_kernel<IsMax>(x, plan, op);
  // saved: self, result.  The gradient is split evenly between the elements equal to the result:
  // d/dx = g * mask / count(mask), mask = (x == result), as PyTorch.
  const auto reduced = plan.reduced;
  autograd::record(
      op, {x}, {out}, {x, out},
      [dims, reduced, keepdim](Context& ctx) -> Grads {
        const Tensor g = restore_dims(ctx.grad(), reduced, keepdim);
        const Tensor mask = (ctx.saved(0) == restore_dims(ctx.saved(1), reduced, keepdim)).to(g.dtype());
        return {g / sum(mask, dims, true) * mask};
      },
      {"self", "result"});
  return out;
}

}  // namespace

Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) { return amax_impl<true>(x, dims, keepdim, "amax"); }
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) { return amax_impl<false>(x, dims, keepdim, "amin"); }
Tensor Tensor::amax(const Shape& dims, bool keepdim) const { return tapegrad::amax(*this, dims, keepdim); }
Tensor Tensor::amin(const Shape& dims, bool keepdim) const { return tapegrad::amin(*this, dims, keepdim); }

// ---- max / min of all elements ----

namespace {

template <bool IsMax>
Tensor max_all(const Tensor& x, const char* op) {
  check_nonempty_dims(x, {}, op);
  const auto plan = detail::plan_reduce(x, {}, false, op);
  Tensor out = extreme_kernel<IsMax>(x, plan, op);
  // saved: self, result.  The gradient is split evenly between the elements equal to the result (the
  // NaNs when the result is NaN), as PyTorch's evenly_distribute_backward.
  autograd::record(
      op, {x}, {out}, {x, out},
      [](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        const Tensor in = ctx.saved(0), value = ctx.saved(1);
        const Tensor mask = (std::isnan(value.item()) ? in != in : in == value).to(g.dtype());
        return {mask * (g / sum(mask))};
      },
      {"self", "result"});
  return out;
}

}  // namespace

Tensor max(const Tensor& x) { return max_all<true>(x, "max"); }
Tensor min(const Tensor& x) { return max_all<false>(x, "min"); }

// ---- max / min along a dim, argmax / argmin ----

namespace {

// (values, int64 indices) of the first maximal / minimal element along dim.
template <bool IsMax>
std::pair<Tensor, Tensor> arg_kernel(const Tensor& x, int64_t dim, bool keepdim, const char* op, bool want_values) {
  const int64_t d = wrap_dim(dim, x.dim(), op);
  TG_CHECK(x.dim() == 0 || x.shape()[d] != 0, "{0}: {0}(): Expected reduction dim {1} to have non-zero size.", op, d);
  const auto plan = detail::plan_reduce(x, {d}, keepdim, op);
  Tensor values = want_values ? Tensor::empty(plan.out_shape, {.dtype = x.dtype()}) : Tensor();
  Tensor indices = Tensor::empty(plan.out_shape, {.dtype = kInt64});
  dispatch_numeric(x.dtype(), op, [&]<typename T>() {
    T* vo = want_values ? values.data_ptr<T>() : nullptr;
    int64_t* io = indices.data_ptr<int64_t>();
    detail::reduce_kernel(x.data_ptr<T>(), plan, arg_op<T, IsMax>([vo, io](int64_t i, T v, int64_t k) {
                            if (vo) vo[i] = v;
                            io[i] = k;
                          }));
  });
  return {values, indices};
}

template <bool IsMax>
std::pair<Tensor, Tensor> max_dim(const Tensor& x, int64_t dim, bool keepdim, const char* op) {
  auto [values, indices] = arg_kernel<IsMax>(x, dim, keepdim, op, true);
  if (x.dim() == 0) {
    autograd::record(op, {x}, {values, indices}, {}, [](Context& ctx) -> Grads { return {ctx.grad(0)}; });
    return {values, indices};
  }
  // saved: indices.  The gradient goes to the selected element: where(iota == index, g, 0) along dim.
  const int64_t d = wrap_dim(dim, x.dim(), op);
  const int64_t n = x.shape()[d];
  autograd::record(
      op, {x}, {values, indices}, {indices},
      [d, n, keepdim, rank = x.dim()](Context& ctx) -> Grads {
        Tensor g = ctx.grad(0), idx = ctx.saved(0).detach();
        if (!keepdim) {
          g = g.unsqueeze(d);
          idx = idx.unsqueeze(d);
        }
        Shape iota_shape(static_cast<size_t>(rank), 1);
        iota_shape[static_cast<size_t>(d)] = n;
        const Tensor iota = Tensor::arange(n).reshape(iota_shape);
        return {where(iota == idx, g, scalar_like(0, g))};
      },
      {"indices"});
  return {values, indices};
}

}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return max_dim<true>(x, dim, keepdim, "max"); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return max_dim<false>(x, dim, keepdim, "min"); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_kernel<true>(x, dim, keepdim, "argmax", false).second;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_kernel<false>(x, dim, keepdim, "argmin", false).second;
}
Tensor argmax(const Tensor& x) {
  TG_CHECK(x.numel() != 0, "argmax: argmax(): Expected reduction dim to be specified for input.numel() == 0.");
  autograd::NoGradGuard ng;  // the index is not differentiable; no need to record the reshape
  return argmax(x.reshape({-1}), 0);
}
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return tapegrad::argmax(*this, dim, keepdim); }

// ---- logsumexp ----

Tensor logsumexp(const Tensor& x_in, const Shape& dims, bool keepdim) {
  // Integer inputs give float32, like PyTorch's default dtype.
  const Tensor x = is_floating(x_in.dtype()) ? x_in : x_in.to(kFloat32);
  const auto plan = detail::plan_reduce(x, dims, keepdim, "logsumexp");
  Tensor out = Tensor::empty(plan.out_shape, {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), "logsumexp", [&]<typename T>() {
    const T* xp = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    // m = max over the reduced elements, with +-inf replaced by 0 (as PyTorch): a row of -inf then gives
    // log(0) = -inf and a row holding +inf gives +inf, instead of inf - inf = nan.
    if (detail::outer_dim(plan) < 0) {
      detail::reduce_kernel(xp, plan, lse_op<T>([o](int64_t i, double r) { o[i] = static_cast<T>(r); }));
      return;
    }
    std::vector<T> mx(static_cast<size_t>(plan.out_numel));
    T* m = mx.data();
    detail::reduce_kernel(xp, plan, extreme_op<T, true>([m](int64_t i, T v) { m[i] = std::isinf(v) ? T(0) : v; }));
    // out = log(sum(exp(x - m))) + m
    detail::reduce_kernel(xp, plan, expsum_op<T>(m, [o, m](int64_t i, double s) {
                            o[i] = static_cast<T>(std::log(s) + static_cast<double>(m[i]));
                          }));
  });
  // saved: self, result.  d/dx = g exp(x - result)
  const auto reduced = plan.reduced;
  autograd::record(
      "logsumexp", {x}, {out}, {x, out},
      [reduced, keepdim](Context& ctx) -> Grads {
        const Tensor g = restore_dims(ctx.grad(), reduced, keepdim);
        return {g * exp(ctx.saved(0) - restore_dims(ctx.saved(1), reduced, keepdim))};
      },
      {"self", "result"});
  return out;
}

}  // namespace tapegrad
