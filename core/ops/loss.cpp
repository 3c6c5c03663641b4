// Losses: forward kernels and backward formulas side by side.
//
// Each backward has two forms: a fused kernel for the usual first-order pass, and the same formula
// composed from differentiable ops, used when the backward is itself recorded (create_graph, i.e.
// grad mode is on inside the backward), so that higher-order gradients are exact.
#include "loss.h"

#include "../autograd.h"
#include "../iter.h"
#include "../vec_math.h"
#include "activation.h"
#include "elementwise.h"
#include "reduce.h"

#include <omp.h>

#include <array>
#include <atomic>
#include <cmath>
#include <limits>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

Reduction parse_reduction(std::string_view name, std::string_view op) {
  if (name == "none") return Reduction::None;
  if (name == "mean" || name == "elementwise_mean") return Reduction::Mean;
  if (name == "sum") return Reduction::Sum;
  fail("{}: {} is not a valid value for reduction", op, name);
}

std::string_view reduction_name(Reduction r) {
  switch (r) {
    case Reduction::None:
      return "none";
    case Reduction::Mean:
      return "mean";
    case Reduction::Sum:
      return "sum";
  }
  return "?";
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// PyTorch's scalar type names, as its messages print them.
std::string_view torch_type_name(DType t) {
  switch (t) {
    case DType::Float32:
      return "Float";
    case DType::Float64:
      return "Double";
    case DType::Int64:
      return "Long";
    case DType::Bool:
      return "Bool";
  }
  return "?";
}

// Class weights and pos_weight carry no gradient; PyTorch refuses ones that require it.
void check_constant(const Tensor& t, std::string_view op, std::string_view arg) {
  TG_CHECK(!(t.defined() && t.requires_grad() && autograd::grad_enabled()),
           "{}: The function '{}' is not differentiable with respect to argument '{}'. This input cannot have "
           "requires_grad True.",
           op, op, arg);
}

// f(lo, hi) over [0, n) in chunks, on several threads when n is large.
template <typename F>
void parallel_chunks(int64_t n, F&& f) {
  constexpr int64_t kChunk = 8192;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (n < detail::kParallelGrain || chunks < 2 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) f(c * kChunk, std::min(n, (c + 1) * kChunk));
}

// sum_i f(i) over [0, n) in double. Fixed chunks summed in order: the result does not depend on the
// number of threads.
template <typename F>
double chunked_sum(int64_t n, F&& f) {
  constexpr int64_t kChunk = 8192;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(std::max<int64_t>(chunks, 1)), 0.0);
  auto run = [&](int64_t c) TG_ALWAYS_INLINE {
    const int64_t lo = c * kChunk, hi = std::min(n, (c + 1) * kChunk);
    part[static_cast<size_t>(c)] = detail::blocked_sum(hi - lo, [&](int64_t i) TG_ALWAYS_INLINE { return f(lo + i); });
  };
  if (n >= detail::kParallelGrain && chunks > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) run(c);
  } else {
    for (int64_t c = 0; c < chunks; ++c) run(c);
  }
  double total = 0;
  for (double p : part) total += p;
  return total;
}

// The total of a reduction: Sum keeps it, Mean divides by `count` (0 / 0 is NaN, like PyTorch).
double reduce_total(double total, double count, Reduction r) { return r == Reduction::Mean ? total / count : total; }

// ======================================================================================
// Rows of (N, C, S) tensors: the C class values of sample n at position s, row k = n * S + s.
// ======================================================================================
//
// With S = 1 a row is contiguous and kernels reduce along it (for_each_row). With S > 1 a row is
// strided by S, so kernels take tiles of up to kTile consecutive positions of one sample
// (for_each_tile): the loop over classes outside, a contiguous loop over the tile's positions
// inside, which vectorizes however few classes there are.

// fn(k) for every row k in [0, rows), split across threads when the work is large.
template <typename F>
void for_each_row(int64_t rows, int64_t C, F&& fn) {
  if (rows * C >= detail::kParallelGrain && rows > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < rows; ++k) fn(k);
  } else {
    for (int64_t k = 0; k < rows; ++k) fn(k);
  }
}

constexpr int64_t kTile = 64;

// fn(n, s0, w) for tiles of w <= kTile positions [s0, s0 + w) of every sample n.
template <typename F>
void for_each_tile(int64_t N, int64_t C, int64_t S, F&& fn) {
  const int64_t per_n = (S + kTile - 1) / kTile, tiles = N * per_n;
  auto tile = [&](int64_t i) {
    const int64_t n = i / per_n, s0 = (i % per_n) * kTile;
    fn(n, s0, std::min(kTile, S - s0));
  };
  if (N * C * S >= detail::kParallelGrain && tiles > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < tiles; ++i) tile(i);
  } else {
    for (int64_t i = 0; i < tiles; ++i) tile(i);
  }
}

// ======================================================================================
// Class-index targets: shape checks shared by cross_entropy and nll_loss
// ======================================================================================

struct ClassLayout {
  int64_t N = 1, C = 0, S = 1;  // input viewed as (N, C, S); rows k = n * S + s
  Shape out_shape;              // Reduction::None
};

// PyTorch's checks, in PyTorch's order (nll_loss_nd, then nll_loss / nll_loss2d, then the kernel's
// dtype checks).
ClassLayout check_class_target(const Tensor& input, const Tensor& target, const Tensor& weight, std::string_view op) {
  const int64_t nd = input.dim();
  TG_CHECK(nd >= 1, "{}: Expected 1 or more dimensions (got {})", op, nd);
  if (nd != 1) {
    const int64_t tb = target.dim() > 0 ? target.size(0) : 0;
    TG_CHECK(input.size(0) == tb, "{}: Expected input batch_size ({}) to match target batch_size ({}).", op,
             input.size(0), tb);
  }
  ClassLayout L;
  L.C = input.size(nd == 1 ? 0 : 1);
  auto check_weight = [&] {
    TG_CHECK(!weight.defined() || (weight.dim() == 1 && weight.numel() == L.C),
             "{}: weight tensor should be defined either for all {} classes or no classes but got weight tensor of "
             "shape: {}",
             op, L.C, shape_list(weight.shape()));
  };
  if (nd <= 2) {
    TG_CHECK(target.dim() <= 1, "{}: 0D or 1D target tensor expected, multi-target not supported", op);
    const bool no_batch_dim = nd == 1 && target.dim() == 0;
    TG_CHECK(no_batch_dim || (nd == 2 && input.size(0) == target.size(0)),
             "{}: size mismatch (got input: {}, target: {})", op, shape_list(input.shape()),
             shape_list(target.shape()));
    check_weight();
  } else if (nd == 4) {
    TG_CHECK(target.dim() == 3,
             "{}: only batches of spatial targets supported (3D tensors) but got targets of dimension: {}", op,
             target.dim());
    check_weight();
    TG_CHECK(target.size(1) == input.size(2) && target.size(2) == input.size(3),
             "{}: size mismatch (got input: {} , target: {}", op, shape_list(input.shape()),
             shape_list(target.shape()));
  } else {
    Shape want = {input.size(0)};
    want.insert(want.end(), input.shape().begin() + 2, input.shape().end());
    TG_CHECK(target.shape() == want, "{}: Expected target size {}, got {}", op, shape_list(want),
             shape_list(target.shape()));
    check_weight();
  }
  TG_CHECK(target.dtype() == DType::Int64, "{}: expected scalar type Long but found {}", op,
           torch_type_name(target.dtype()));
  TG_CHECK(!weight.defined() || weight.dtype() == input.dtype(), "{}: expected scalar type {} but found {}", op,
           torch_type_name(input.dtype()), torch_type_name(weight.dtype()));
  if (nd >= 2) L.N = input.size(0);
  for (int64_t d = 2; d < nd; ++d) L.S *= input.size(d);
  L.out_shape = target.shape();
  return L;
}

// Checks every target against [0, C) (ignored ones excepted) and returns the Mean denominator: the
// sum of the weights of the non-ignored targets (their count without weights).
template <typename T>
double check_targets(const int64_t* t, int64_t rows, const T* w, int64_t C, int64_t ignore_index, std::string_view op) {
  std::atomic<bool> bad{false};
  const double den = chunked_sum(rows, [&](int64_t k) -> double {
    const int64_t tk = t[k];
    if (tk == ignore_index) return 0.0;
    if (tk < 0 || tk >= C) {
      bad.store(true, std::memory_order_relaxed);
      return 0.0;
    }
    return w ? static_cast<double>(w[tk]) : 1.0;
  });
  if (bad.load()) {
    for (int64_t k = 0; k < rows; ++k)  // the first offender, as PyTorch's serial loop reports it
      TG_CHECK(t[k] == ignore_index || (t[k] >= 0 && t[k] < C), "{}: Target {} is out of bounds.", op, t[k]);
  }
  return den;
}

// The class weights as a C-vector (ones when absent), and their sum.
template <typename T>
std::vector<T> class_weights(const Tensor& w, int64_t C) {
  if (!w.defined()) return std::vector<T>(static_cast<size_t>(C), T(1));
  const T* p = w.data_ptr<T>();
  return std::vector<T>(p, p + C);
}

// Per-row upstream factor of a classification loss: g[k] for None, g for Sum, g / den for Mean.
struct RowFactor {
  const double* per_row = nullptr;
  double scalar = 0;
  double operator()(int64_t k) const { return per_row ? per_row[k] : scalar; }
};

// The upstream gradient of a classification loss in a form that broadcasts against (N, C, S): the
// per-row values for None, the scalar otherwise (composed: differentiable in g). The Mean
// denominator is folded into the constants instead, so that ignored rows stay exactly 0 when it is 0.
Tensor composed_factor(const Tensor& g, Reduction r, int64_t N, int64_t S) {
  return r == Reduction::None ? g.reshape({N, 1, S}) : g;
}

// ======================================================================================
// cross_entropy, class-index targets
// ======================================================================================
//
// Per row k the forward keeps two statistics, stats[k] = (m, log(sum_c exp(x[c] - m))) with m the
// row max, so that log_softmax[c] = (x[c] - m) - log_se is formed exactly as a log_softmax kernel
// would (the max subtraction first), also in float32 and for logits of any size.

// The (rows, 2) float64 statistics as a log-sum-exp column (N, 1, S) in dtype dt, for the composed
// backward.
Tensor lse_column(const Tensor& stats, int64_t N, int64_t S, DType dt) {
  return (stats.select(1, 0) + stats.select(1, 1)).reshape({N, 1, S}).to(dt);
}

// Constants of the class-index loss and gradient, with ls the label smoothing:
//   loss_k = (1 - ls) nll_k + ls / C * smooth_k,  nll_k = -w[t] lsm[t],  smooth_k = -sum_c w[c] lsm[c]
//   d loss_k / d x[k, c] = A_k softmax[k, c] - B[k, c],
//   A_k = (1 - ls) w[t] + ls / C * sum(w),  B[k, c] = (1 - ls) w[t] [c == t] + ls / C * w[c]
// (loss and gradient 0 for an ignored row).
struct ClassCoefs {
  double ls = 0, ls_c = 0;  // ls and ls / C
  double wsum = 0;
  // loss_k from x[t] - m, log_se and sum_c w[c] (x[c] - m)
  double loss(double wt, double xt_m, double log_se, double swx) const {
    const double nll = -wt * (xt_m - log_se);
    return ls == 0 ? nll : (1 - ls) * nll + ls_c * -(swx - wsum * log_se);
  }
  double a(double wt) const { return (1 - ls) * wt + ls_c * wsum; }
};

template <typename T>
Tensor ce_class_backward_fused(const Tensor& x, const Tensor& t, const Tensor& w, const Tensor& stats, const Tensor& g,
                               const ClassLayout& L, int64_t ignore_index, Reduction r, double den,
                               const ClassCoefs& k0) {
  Tensor gx = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  const std::vector<T> wv = class_weights<T>(w, L.C);
  const T* wp = wv.data();
  const int64_t* tp = t.data_ptr<int64_t>();
  const double* st = stats.data_ptr<double>();
  const T* xp = x.data_ptr<T>();
  T* op = gx.data_ptr<T>();
  std::vector<double> g_rows;
  RowFactor f;
  if (r == Reduction::None) {
    g_rows = g.contiguous().to_vector<double>();
    f.per_row = g_rows.data();
  } else {
    f.scalar = g.item() / (r == Reduction::Mean ? den : 1.0);
  }
  const int64_t C = L.C, S = L.S;
  // d x[c] = f (A softmax[c] - B[c]),  softmax[c] = exp((x[c] - m) - log_se)
  if (S == 1) {
    for_each_row(L.N, C, [&](int64_t k) {
      const T* xr = xp + k * C;
      T* o = op + k * C;
      const int64_t tk = tp[k];
      if (tk == ignore_index) {
        std::fill(o, o + C, T(0));
        return;
      }
      const double fk = f(k);
      const T a = static_cast<T>(fk * k0.a(static_cast<double>(wp[tk])));
      const T b = static_cast<T>(fk * k0.ls_c);
      const T m = static_cast<T>(st[2 * k]), log_se = static_cast<T>(st[2 * k + 1]);
      if (k0.ls_c == 0) {
        for (int64_t c = 0; c < C; ++c) o[c] = a * detail::vexp((xr[c] - m) - log_se);
      } else {
        for (int64_t c = 0; c < C; ++c) o[c] = a * detail::vexp((xr[c] - m) - log_se) - b * wp[c];
      }
      o[tk] = static_cast<T>(static_cast<double>(o[tk]) - fk * (1 - k0.ls) * static_cast<double>(wp[tk]));
    });
    return gx;
  }
  for_each_tile(L.N, C, S, [&](int64_t n, int64_t s0, int64_t w) {
    const T* xb = xp + n * C * S + s0;
    T* ob = op + n * C * S + s0;
    T a[kTile], b[kTile], m[kTile], log_se[kTile];
    for (int64_t j = 0; j < w; ++j) {
      const int64_t k = n * S + s0 + j, tk = tp[k];
      const double fk = tk == ignore_index ? 0.0 : f(k);  // an ignored row's gradient is 0
      a[j] = static_cast<T>(tk == ignore_index ? 0.0 : fk * k0.a(static_cast<double>(wp[tk])));
      b[j] = static_cast<T>(fk * k0.ls_c);
      m[j] = static_cast<T>(st[2 * k]);
      log_se[j] = static_cast<T>(st[2 * k + 1]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* xc = xb + c * S;
      T* oc = ob + c * S;
      const T wc = wp[c];
      for (int64_t j = 0; j < w; ++j) oc[j] = a[j] * detail::vexp((xc[j] - m[j]) - log_se[j]) - b[j] * wc;
    }
    for (int64_t j = 0; j < w; ++j) {
      const int64_t k = n * S + s0 + j, tk = tp[k];
      if (tk == ignore_index) continue;
      T& o = ob[tk * S + j];
      o = static_cast<T>(static_cast<double>(o) - f(k) * (1 - k0.ls) * static_cast<double>(wp[tk]));
    }
  });
  return gx;
}

// The same gradient from differentiable ops (create_graph). The saved log-sum-exp only shifts the
// exponent: the softmax is renormalised, so its derivative is exact.
Tensor ce_class_backward_composed(const Tensor& x, const Tensor& t, const Tensor& w, const Tensor& stats,
                                  const Tensor& g, const ClassLayout& L, int64_t ignore_index, Reduction r, double den,
                                  const ClassCoefs& k0) {
  const int64_t N = L.N, C = L.C, S = L.S;
  const DType dt = x.dtype();
  const double scale = r == Reduction::Mean ? 1.0 / den : 1.0;
  Tensor A = Tensor::zeros({N, 1, S}, {.dtype = kFloat64});
  Tensor B = Tensor::zeros({N, C, S}, {.dtype = kFloat64});
  {
    autograd::NoGradGuard ng;
    const int64_t* tp = t.data_ptr<int64_t>();
    const Tensor wd = w.defined() ? w.to(kFloat64) : Tensor::ones({C}, {.dtype = kFloat64});
    const double* wv = wd.data_ptr<double>();
    double* a = A.data_ptr<double>();
    double* b = B.data_ptr<double>();
    for (int64_t k = 0; k < N * S; ++k) {
      const int64_t tk = tp[k];
      if (tk == ignore_index) continue;
      const int64_t n = k / S, s = k % S;
      a[k] = scale * k0.a(wv[tk]);
      for (int64_t c = 0; c < C; ++c) b[(n * C + c) * S + s] = scale * k0.ls_c * wv[c];
      b[(n * C + tk) * S + s] += scale * (1 - k0.ls) * wv[tk];
    }
  }
  const Tensor xv = x.reshape({N, C, S});
  const Tensor e = exp(xv - lse_column(stats, N, S, dt));
  const Tensor sm = e / sum(e, {1}, true);
  const Tensor grad = composed_factor(g, r, N, S) * (A.to(dt) * sm - B.to(dt));
  return grad.reshape(x.shape());
}

Tensor ce_class(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index, Reduction r,
                double label_smoothing) {
  constexpr std::string_view op = "cross_entropy";
  if (label_smoothing > 0)
    TG_CHECK(label_smoothing <= 1.0, "{}: label_smoothing must be between 0.0 and 1.0. Got: {}", op, label_smoothing);
  const ClassLayout L = check_class_target(input, target, weight, op);
  const Tensor x = input.contiguous();  // recorded if it copies, so create_graph reaches the input
  Tensor t, w;
  {
    autograd::NoGradGuard ng;
    t = target.contiguous();
    w = weight.defined() ? weight.contiguous() : Tensor();
  }
  const int64_t rows = L.N * L.S, C = L.C, S = L.S;
  ClassCoefs k0;
  k0.ls = label_smoothing > 0 ? label_smoothing : 0.0;
  k0.ls_c = C > 0 ? k0.ls / static_cast<double>(C) : 0.0;
  Tensor stats = Tensor::empty({rows, 2}, {.dtype = kFloat64});
  Tensor out;
  double den = 0;
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    const std::vector<T> wv = class_weights<T>(w, C);
    const T* wp = wv.data();
    for (T v : wv) k0.wsum += static_cast<double>(v);
    const int64_t* tp = t.data_ptr<int64_t>();
    den = check_targets<T>(tp, rows, w.defined() ? wp : nullptr, C, ignore_index, op);
    std::vector<double> loss(static_cast<size_t>(rows));
    double* st = stats.data_ptr<double>();
    const T* xp = x.data_ptr<T>();
    // Every row gets its statistics (ignored ones too: the composed backward renormalises them).
    if (S == 1) {
      for_each_row(L.N, C, [&](int64_t k) {
        const T* xr = xp + k * C;
        const T m = detail::blocked_max(xr, C);
        const double log_se =
            std::log(detail::blocked_sum(C, [&](int64_t c) TG_ALWAYS_INLINE { return detail::vexp(xr[c] - m); }));
        st[2 * k] = static_cast<double>(m);
        st[2 * k + 1] = log_se;
        const int64_t tk = tp[k];
        if (tk == ignore_index) {
          loss[k] = 0;
          return;
        }
        const double swx = k0.ls == 0 ? 0.0 : detail::blocked_sum(C, [&](int64_t c) TG_ALWAYS_INLINE {
          return static_cast<double>(wp[c]) * static_cast<double>(xr[c] - m);
        });
        loss[k] = k0.loss(static_cast<double>(wp[tk]), static_cast<double>(xr[tk] - m), log_se, swx);
      });
    } else {
      for_each_tile(L.N, C, S, [&](int64_t n, int64_t s0, int64_t w) {
        const T* xb = xp + n * C * S + s0;
        T m[kTile];
        double se[kTile], swx[kTile];
        for (int64_t j = 0; j < w; ++j) {
          m[j] = -std::numeric_limits<T>::infinity();
          se[j] = swx[j] = 0;
        }
        for (int64_t c = 0; c < C; ++c) {
          const T* xc = xb + c * S;
          for (int64_t j = 0; j < w; ++j) m[j] = detail::select(xc[j] > m[j], xc[j], m[j]);
        }
        for (int64_t c = 0; c < C; ++c) {
          const T* xc = xb + c * S;
          for (int64_t j = 0; j < w; ++j) se[j] += static_cast<double>(detail::vexp(xc[j] - m[j]));
        }
        if (k0.ls != 0) {
          for (int64_t c = 0; c < C; ++c) {
            const T* xc = xb + c * S;
            const double wc = static_cast<double>(wp[c]);
            for (int64_t j = 0; j < w; ++j) swx[j] += wc * static_cast<double>(xc[j] - m[j]);
          }
        }
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = n * S + s0 + j, tk = tp[k];
          const double log_se = std::log(se[j]);
          st[2 * k] = static_cast<double>(m[j]);
          st[2 * k + 1] = log_se;
          loss[k] = tk == ignore_index ? 0.0
                                       : k0.loss(static_cast<double>(wp[tk]),
                                                 static_cast<double>(xb[tk * S + j] - m[j]), log_se, swx[j]);
        }
      });
    }
    if (r == Reduction::None) {
      out = Tensor::empty(L.out_shape, {.dtype = x.dtype()});
      T* o = out.data_ptr<T>();
      for (int64_t k = 0; k < rows; ++k) o[k] = static_cast<T>(loss[k]);
    } else {
      const double total = chunked_sum(rows, [&](int64_t k) TG_ALWAYS_INLINE { return loss[k]; });
      out = Tensor::scalar(reduce_total(total, den, r), x.dtype());
    }
  });
  // saved: input (contiguous), target, weight, per-row (max, log-sum-exp)
  autograd::record(
      "cross_entropy", {x, target}, {out}, {x, t, w, stats},
      [L, ignore_index, r, den, k0](Context& ctx) -> Grads {
        if (!ctx.needs_grad(0)) return {Tensor(), Tensor()};
        const Tensor xs = ctx.saved(0), ts = ctx.saved(1), ws = ctx.saved(2), st = ctx.saved(3);
        if (autograd::grad_enabled())
          return {ce_class_backward_composed(xs, ts, ws, st, ctx.grad(), L, ignore_index, r, den, k0), Tensor()};
        return {dispatch_floating(xs.dtype(), "cross_entropy",
                                  [&]<typename T>() {
                                    return ce_class_backward_fused<T>(xs, ts, ws, st, ctx.grad(), L, ignore_index, r,
                                                                      den, k0);
                                  }),
                Tensor()};
      },
      {"self", "target", "weight", "row_stats"});
  return out;
}

// ======================================================================================
// cross_entropy, probability targets
// ======================================================================================

// With q = p (1 - ls) + ls / C and A_k = sum_c w[c] q[k, c]:
//   loss_k = -sum_c w[c] q[k, c] lsm[k, c] = -(sum_c w[c] q[k, c] (x[k, c] - m) - A_k log_se)
//   d loss_k / d x[k, c] = A_k softmax[k, c] - w[c] q[k, c]
//   d loss_k / d p[k, c] = -(1 - ls) w[c] lsm[k, c]
template <typename T>
std::pair<Tensor, Tensor> ce_prob_backward_fused(const Tensor& x, const Tensor& p, const Tensor& w, const Tensor& stats,
                                                 const Tensor& wq, const Tensor& g, const ClassLayout& L, Reduction r,
                                                 double ls, bool need_x, bool need_p) {
  const int64_t C = L.C, S = L.S, rows = L.N * L.S;
  Tensor gx = need_x ? Tensor::empty(x.shape(), {.dtype = x.dtype()}) : Tensor();
  Tensor gp = need_p ? Tensor::empty(p.shape(), {.dtype = p.dtype()}) : Tensor();
  const std::vector<T> wv = class_weights<T>(w, C);
  const T* wp = wv.data();
  const double* st = stats.data_ptr<double>();
  const double* ap = wq.data_ptr<double>();
  const T *xp = x.data_ptr<T>(), *pp = p.data_ptr<T>();
  T* gxp = need_x ? gx.data_ptr<T>() : nullptr;
  T* gpp = need_p ? gp.data_ptr<T>() : nullptr;
  std::vector<double> g_rows;
  RowFactor f;
  if (r == Reduction::None) {
    g_rows = g.contiguous().to_vector<double>();
    f.per_row = g_rows.data();
  } else {
    f.scalar = g.item() / (r == Reduction::Mean ? static_cast<double>(rows) : 1.0);
  }
  const T keep = static_cast<T>(1 - ls), uniform = static_cast<T>(C > 0 ? ls / static_cast<double>(C) : 0.0);
  if (S == 1) {
    for_each_row(L.N, C, [&](int64_t k) {
      const T *xr = xp + k * C, *pr = pp + k * C;
      const T fk = static_cast<T>(f(k)), a = static_cast<T>(ap[k]);
      const T m = static_cast<T>(st[2 * k]), log_se = static_cast<T>(st[2 * k + 1]);
      if (gxp) {
        T* o = gxp + k * C;
        for (int64_t c = 0; c < C; ++c)
          o[c] = fk * (a * detail::vexp((xr[c] - m) - log_se) - wp[c] * (pr[c] * keep + uniform));
      }
      if (gpp) {
        T* o = gpp + k * C;
        const T scale = -fk * keep;
        for (int64_t c = 0; c < C; ++c) o[c] = scale * wp[c] * ((xr[c] - m) - log_se);
      }
    });
    return {gx, gp};
  }
  for_each_tile(L.N, C, S, [&](int64_t n, int64_t s0, int64_t w) {
    const int64_t off = n * C * S + s0;
    T fk[kTile], a[kTile], m[kTile], log_se[kTile];
    for (int64_t j = 0; j < w; ++j) {
      const int64_t k = n * S + s0 + j;
      fk[j] = static_cast<T>(f(k));
      a[j] = static_cast<T>(ap[k]);
      m[j] = static_cast<T>(st[2 * k]);
      log_se[j] = static_cast<T>(st[2 * k + 1]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const T *xc = xp + off + c * S, *pc = pp + off + c * S;
      const T wc = wp[c];
      if (gxp) {
        T* o = gxp + off + c * S;
        for (int64_t j = 0; j < w; ++j)
          o[j] = fk[j] * (a[j] * detail::vexp((xc[j] - m[j]) - log_se[j]) - wc * (pc[j] * keep + uniform));
      }
      if (gpp) {
        T* o = gpp + off + c * S;
        for (int64_t j = 0; j < w; ++j) o[j] = -fk[j] * keep * wc * ((xc[j] - m[j]) - log_se[j]);
      }
    }
  });
  return {gx, gp};
}

std::pair<Tensor, Tensor> ce_prob_backward_composed(const Tensor& x, const Tensor& p, const Tensor& w,
                                                    const Tensor& stats, const Tensor& g, const ClassLayout& L,
                                                    Reduction r, double ls) {
  const int64_t N = L.N, C = L.C, S = L.S;
  const DType dt = x.dtype();
  const Tensor xv = x.reshape({N, C, S}), pv = p.reshape({N, C, S});
  const Tensor shifted = xv - lse_column(stats, N, S, dt);
  const Tensor e = exp(shifted);
  const Tensor se = sum(e, {1}, true);
  const Tensor sm = e / se;
  const Tensor lsm = shifted - log(se);
  const Tensor wb = w.defined() ? w.reshape({1, C, 1}) : Tensor::ones({1, C, 1}, {.dtype = dt});
  const Tensor wq = (pv * (1 - ls) + ls / static_cast<double>(C)) * wb;
  Tensor f = composed_factor(g, r, N, S);
  if (r == Reduction::Mean) f = f / static_cast<double>(N * S);
  const Tensor gx = f * (sum(wq, {1}, true) * sm - wq);
  const Tensor gp = f * wb * lsm * -(1 - ls);
  return {gx.reshape(x.shape()), gp.reshape(p.shape())};
}

Tensor ce_prob(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index, Reduction r,
               double label_smoothing) {
  constexpr std::string_view op = "cross_entropy";
  TG_CHECK(is_floating(target.dtype()), "{}: Expected floating point type for target with class probabilities, got {}",
           op, torch_type_name(target.dtype()));
  TG_CHECK(ignore_index < 0, "{}: ignore_index is not supported for floating point target", op);
  TG_CHECK(input.dim() >= 1, "{}: Expected 1 or more dimensions (got {})", op, input.dim());
  ClassLayout L;
  const int64_t nd = input.dim();
  L.C = input.size(nd == 1 ? 0 : 1);
  TG_CHECK(!weight.defined() || (weight.dim() == 1 && weight.numel() == L.C),
           "{}: weight tensor should be defined either for all {} classes or no classes but got weight tensor of "
           "shape: {}",
           op, L.C, shape_list(weight.shape()));
  if (label_smoothing > 0)
    TG_CHECK(label_smoothing <= 1.0, "{}: label_smoothing must be between 0.0 and 1.0. Got: {}", op, label_smoothing);
  const double ls = label_smoothing > 0 ? label_smoothing : 0.0;
  if (nd >= 2) L.N = input.size(0);
  for (int64_t d = 2; d < nd; ++d) L.S *= input.size(d);
  L.out_shape = input.shape();
  L.out_shape.erase(L.out_shape.begin() + (nd == 1 ? 0 : 1));
  // Mixed float dtypes promote, as PyTorch's composed implementation does.
  DType dt = promote_types(input.dtype(), target.dtype());
  if (weight.defined()) dt = promote_types(dt, weight.dtype());
  const Tensor x = input.to(dt).contiguous(), p = target.to(dt).contiguous();
  Tensor w;
  {
    autograd::NoGradGuard ng;
    w = weight.defined() ? weight.to(dt).contiguous() : Tensor();
  }
  const int64_t rows = L.N * L.S, C = L.C, S = L.S;
  Tensor stats = Tensor::empty({rows, 2}, {.dtype = kFloat64});
  Tensor wq = Tensor::empty({rows}, {.dtype = kFloat64});
  Tensor out;
  dispatch_floating(dt, op, [&]<typename T>() {
    const std::vector<T> wv = class_weights<T>(w, C);
    const T* wp = wv.data();
    const double keep = 1 - ls, uniform = C > 0 ? ls / static_cast<double>(C) : 0.0;
    std::vector<double> loss(static_cast<size_t>(rows));
    double *st = stats.data_ptr<double>(), *ap = wq.data_ptr<double>();
    const T *xp = x.data_ptr<T>(), *pp = p.data_ptr<T>();
    if (S == 1) {
      for_each_row(L.N, C, [&](int64_t k) {
        const T *xr = xp + k * C, *pr = pp + k * C;
        const T m = detail::blocked_max(xr, C);
        const double log_se =
            std::log(detail::blocked_sum(C, [&](int64_t c) TG_ALWAYS_INLINE { return detail::vexp(xr[c] - m); }));
        const double a = detail::blocked_sum(C, [&](int64_t c) TG_ALWAYS_INLINE {
          return static_cast<double>(wp[c]) * (static_cast<double>(pr[c]) * keep + uniform);
        });
        const double swqx = detail::blocked_sum(C, [&](int64_t c) TG_ALWAYS_INLINE {
          return static_cast<double>(wp[c]) * (static_cast<double>(pr[c]) * keep + uniform) *
                 static_cast<double>(xr[c] - m);
        });
        st[2 * k] = static_cast<double>(m);
        st[2 * k + 1] = log_se;
        ap[k] = a;
        loss[k] = -(swqx - a * log_se);
      });
    } else {
      for_each_tile(L.N, C, S, [&](int64_t n, int64_t s0, int64_t w) {
        const int64_t off = n * C * S + s0;
        T m[kTile];
        double se[kTile], a[kTile], swqx[kTile];
        for (int64_t j = 0; j < w; ++j) {
          m[j] = -std::numeric_limits<T>::infinity();
          se[j] = a[j] = swqx[j] = 0;
        }
        for (int64_t c = 0; c < C; ++c) {
          const T* xc = xp + off + c * S;
          for (int64_t j = 0; j < w; ++j) m[j] = detail::select(xc[j] > m[j], xc[j], m[j]);
        }
        for (int64_t c = 0; c < C; ++c) {
          const T *xc = xp + off + c * S, *pc = pp + off + c * S;
          const double wc = static_cast<double>(wp[c]);
          for (int64_t j = 0; j < w; ++j) {
            const double wqc = wc * (static_cast<double>(pc[j]) * keep + uniform);
            se[j] += static_cast<double>(detail::vexp(xc[j] - m[j]));
            a[j] += wqc;
            swqx[j] += wqc * static_cast<double>(xc[j] - m[j]);
          }
        }
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = n * S + s0 + j;
          const double log_se = std::log(se[j]);
          st[2 * k] = static_cast<double>(m[j]);
          st[2 * k + 1] = log_se;
          ap[k] = a[j];
          loss[k] = -(swqx[j] - a[j] * log_se);
        }
      });
    }
    if (r == Reduction::None) {
      out = Tensor::empty(L.out_shape, {.dtype = dt});
      T* o = out.data_ptr<T>();
      for (int64_t k = 0; k < rows; ++k) o[k] = static_cast<T>(loss[k]);
    } else {
      const double total = chunked_sum(rows, [&](int64_t k) TG_ALWAYS_INLINE { return loss[k]; });
      out = Tensor::scalar(reduce_total(total, static_cast<double>(rows), r), dt);
    }
  });
  // saved: input, target (both contiguous, promoted), weight, per-row (max, log-sum-exp), per-row sum_c w q
  autograd::record("cross_entropy", {x, p}, {out}, {x, p, w, stats, wq},
                   [L, r, ls](Context& ctx) -> Grads {
                     const bool need_x = ctx.needs_grad(0), need_p = ctx.needs_grad(1);
                     const Tensor xs = ctx.saved(0), ps = ctx.saved(1), ws = ctx.saved(2), st = ctx.saved(3);
                     std::pair<Tensor, Tensor> gs;
                     if (autograd::grad_enabled()) {
                       gs = ce_prob_backward_composed(xs, ps, ws, st, ctx.grad(), L, r, ls);
                     } else {
                       const Tensor wq = ctx.saved(4);
                       gs = dispatch_floating(xs.dtype(), "cross_entropy", [&]<typename T>() {
                         return ce_prob_backward_fused<T>(xs, ps, ws, st, wq, ctx.grad(), L, r, ls, need_x, need_p);
                       });
                     }
                     return {need_x ? gs.first : Tensor(), need_p ? gs.second : Tensor()};
                   },
                   {"self", "target", "weight", "row_stats", "weighted_target_sum"});
  return out;
}

// ======================================================================================
// nll_loss
// ======================================================================================

// d loss / d x[n, t, s] = -w[t] f_k at the target entry of every non-ignored row, 0 elsewhere.
// With `per_row` null the factor is `scale` for every row.
template <typename T>
Tensor nll_grad(const Tensor& t, const Tensor& w, const ClassLayout& L, const Shape& shape, DType dt,
                int64_t ignore_index, const double* per_row, double scale) {
  Tensor gx = Tensor::zeros(shape, {.dtype = dt});
  T* o = gx.data_ptr<T>();
  const int64_t* tp = t.data_ptr<int64_t>();
  const std::vector<T> wv = class_weights<T>(w, L.C);
  const int64_t C = L.C, S = L.S;
  parallel_chunks(L.N * S, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      const int64_t tk = tp[k];
      if (tk == ignore_index) continue;
      const int64_t n = k / S, s = k % S;
      o[(n * C + tk) * S + s] = static_cast<T>(-static_cast<double>(wv[tk]) * (per_row ? per_row[k] : scale));
    }
  });
  return gx;
}

}  // namespace

Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                     Reduction reduction, double label_smoothing) {
  check_constant(weight, "cross_entropy", "weight");
  if (target.shape() == input.shape()) return ce_prob(input, target, weight, ignore_index, reduction, label_smoothing);
  return ce_class(input, target, weight, ignore_index, reduction, label_smoothing);
}

Tensor nll_loss(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index, Reduction r) {
  constexpr std::string_view op = "nll_loss";
  check_constant(weight, op, "weight");
  const ClassLayout L = check_class_target(input, target, weight, op);
  Tensor x, t, w;
  {
    autograd::NoGradGuard ng;
    x = input.contiguous();
    t = target.contiguous();
    w = weight.defined() ? weight.contiguous() : Tensor();
  }
  const int64_t rows = L.N * L.S, C = L.C, S = L.S;
  Tensor out;
  double den = 0;
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    const std::vector<T> wv = class_weights<T>(w, C);
    const int64_t* tp = t.data_ptr<int64_t>();
    const T* xp = x.data_ptr<T>();
    den = check_targets<T>(tp, rows, w.defined() ? wv.data() : nullptr, C, ignore_index, op);
    // loss_k = -w[t] x[n, t, s]
    auto loss = [&](int64_t k) -> double {
      const int64_t tk = tp[k];
      if (tk == ignore_index) return 0.0;
      return -static_cast<double>(wv[tk]) * static_cast<double>(xp[(k / S * C + tk) * S + k % S]);
    };
    if (r == Reduction::None) {
      out = Tensor::empty(L.out_shape, {.dtype = x.dtype()});
      T* o = out.data_ptr<T>();
      parallel_chunks(rows, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) o[k] = static_cast<T>(loss(k));
      });
    } else {
      out = Tensor::scalar(reduce_total(chunked_sum(rows, loss), den, r), x.dtype());
    }
  });
  // saved: target, weight
  const Shape in_shape = input.shape();
  autograd::record("nll_loss", {input, target}, {out}, {t, w},
                   [L, in_shape, ignore_index, r, den](Context& ctx) -> Grads {
                     const Tensor ts = ctx.saved(0), ws = ctx.saved(1);
                     const Tensor& g = ctx.grad();
                     const DType dt = g.dtype();
                     const double mean_scale = r == Reduction::Mean ? 1.0 / den : 1.0;
                     if (autograd::grad_enabled()) {
                       // Linear in g: a constant pattern times the (broadcast) upstream gradient.
                       const Tensor pattern = dispatch_floating(dt, "nll_loss", [&]<typename T>() {
                         return nll_grad<T>(ts, ws, L, {L.N, L.C, L.S}, dt, ignore_index, nullptr, mean_scale);
                       });
                       return {(composed_factor(g, r, L.N, L.S) * pattern).reshape(in_shape), Tensor()};
                     }
                     return {dispatch_floating(dt, "nll_loss",
                                               [&]<typename T>() {
                                                 if (r == Reduction::None) {
                                                   const std::vector<double> gr = g.contiguous().to_vector<double>();
                                                   return nll_grad<T>(ts, ws, L, in_shape, dt, ignore_index, gr.data(),
                                                                      0.0);
                                                 }
                                                 return nll_grad<T>(ts, ws, L, in_shape, dt, ignore_index, nullptr,
                                                                    g.item() * mean_scale);
                                               }),
                             Tensor()};
                   },
                   {"target", "weight"});
  return out;
}

// ======================================================================================
// Pointwise losses: mse, l1, smooth_l1, binary_cross_entropy(_with_logits)
// ======================================================================================

namespace {

// t expanded to `shape` and made contiguous: a copy only where it is broadcast or strided. Recorded
// (when t requires grad), so the saved operand still leads back to t for create_graph.
Tensor flat(const Tensor& t, const Shape& shape) {
  return t.shape() == shape ? t.contiguous() : t.expand(shape).contiguous();
}

// A constant operand (weight, pos_weight) that must broadcast to the loss's shape: PyTorch multiplies
// it in place into the loss, so it may not enlarge the shape.
Tensor flat_constant(const Tensor& t, const Shape& shape, DType dt, std::string_view op) {
  if (!t.defined()) return t;
  const Shape b = detail::broadcast_shapes(shape, t.shape(), op);
  TG_CHECK(b == shape, "{}: output with shape {} doesn't match the broadcast shape {}", op, shape_list(shape),
           shape_list(b));
  autograd::NoGradGuard ng;
  return flat(t.to(dt), shape);
}

// The elementwise sign (0 at 0), not recorded: its derivative is 0 wherever it exists.
Tensor sign_of(const Tensor& d) {
  return dispatch_floating(d.dtype(), "sign", [&]<typename T>() {
    return detail::map_unary<T, T>(d, d.dtype(), [](T v) { return static_cast<T>((v > T(0)) - (v < T(0))); });
  });
}

// Forward of a pointwise loss over flat operands: the elementwise values for None, else their
// reduced total. value(i) computes element i in T.
template <typename T, typename F>
Tensor pointwise_forward(const Shape& shape, DType dt, Reduction r, F&& value) {
  const int64_t n = numel_of(shape);
  if (r == Reduction::None) {
    Tensor out = Tensor::empty(shape, {.dtype = dt});
    T* o = out.data_ptr<T>();
    parallel_chunks(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = value(i);
    });
    return out;
  }
  const double total = chunked_sum(n, value);
  return Tensor::scalar(reduce_total(total, static_cast<double>(n), r), dt);
}

// Fused first-order gradient of a pointwise loss: out[i] = g_i * deriv(i), with g_i the upstream
// gradient (per element for None; the scalar, divided by n for Mean, otherwise).
template <typename T, typename F>
Tensor pointwise_grad(const Tensor& g, const Shape& shape, DType dt, Reduction r, F&& deriv) {
  const int64_t n = numel_of(shape);
  Tensor out = Tensor::empty(shape, {.dtype = dt});
  T* o = out.data_ptr<T>();
  if (r == Reduction::None) {
    const Tensor gc = g.to(dt).contiguous();
    const T* gp = gc.data_ptr<T>();
    parallel_chunks(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = gp[i] * deriv(i);
    });
  } else {
    const T scale = static_cast<T>(g.item() / (r == Reduction::Mean ? static_cast<double>(n) : 1.0));
    parallel_chunks(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = scale * deriv(i);
    });
  }
  return out;
}

// The upstream gradient of a pointwise loss in composed form (differentiable in g).
Tensor composed_scale(const Tensor& g, Reduction r, int64_t n) {
  return r == Reduction::Mean ? g / static_cast<double>(n) : g;
}

// input and target of a regression loss: broadcast shape, promoted floating dtype, flat operands.
struct Operands {
  Shape shape;
  DType dt;
  Tensor x, y;
};

Operands regression_operands(const Tensor& input, const Tensor& target, std::string_view op) {
  Operands o;
  o.shape = detail::broadcast_shapes(input.shape(), target.shape(), op);
  o.dt = promote_types(input.dtype(), target.dtype());
  TG_CHECK(is_floating(o.dt), "{}: expected a floating point tensor (float32 or float64), got {}", op,
           dtype_name(o.dt));
  o.x = flat(input.to(o.dt), o.shape);
  o.y = flat(target.to(o.dt), o.shape);
  return o;
}

// Records a regression loss whose input gradient is g * d(x, y) and whose target gradient is its
// negation. fused_deriv(x, y) -> T is the elementwise derivative; composed(g_scaled, x, y) builds it
// from ops.
template <typename FusedDeriv, typename Composed>
void record_regression(const char* name, const Operands& o, const Tensor& out, Reduction r, FusedDeriv fused_deriv,
                       Composed composed) {
  const Shape shape = o.shape;
  const DType dt = o.dt;
  autograd::record(name, {o.x, o.y}, {out}, {o.x, o.y},
                   [shape, dt, r, fused_deriv, composed, name](Context& ctx) -> Grads {
                     const Tensor x = ctx.saved(0), y = ctx.saved(1);
                     Tensor gx;
                     if (autograd::grad_enabled()) {
                       gx = composed(composed_scale(ctx.grad(), r, numel_of(shape)), x, y);
                     } else {
                       gx = dispatch_floating(dt, name, [&]<typename T>() {
                         const T *xp = x.data_ptr<T>(), *yp = y.data_ptr<T>();
                         return pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
                           return fused_deriv.template operator()<T>(xp[i], yp[i]);
                         });
                       });
                     }
                     return {ctx.needs_grad(0) ? gx : Tensor(), ctx.needs_grad(1) ? -gx : Tensor()};
                   },
                   {"self", "target"});
}

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  const Operands o = regression_operands(input, target, "mse_loss");
  // loss = (x - y)^2 ;  d/dx = 2 (x - y)
  Tensor out = dispatch_floating(o.dt, "mse_loss", [&]<typename T>() {
    const T *xp = o.x.data_ptr<T>(), *yp = o.y.data_ptr<T>();
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
      const T d = xp[i] - yp[i];
      return d * d;
    });
  });
  record_regression(
      "mse_loss", o, out, r, []<typename T>(T x, T y) TG_ALWAYS_INLINE { return T(2) * (x - y); },
      [](const Tensor& g, const Tensor& x, const Tensor& y) { return g * (x - y) * 2.0; });
  return out;
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  const Operands o = regression_operands(input, target, "l1_loss");
  // loss = |x - y| ;  d/dx = sign(x - y), 0 where equal
  Tensor out = dispatch_floating(o.dt, "l1_loss", [&]<typename T>() {
    const T *xp = o.x.data_ptr<T>(), *yp = o.y.data_ptr<T>();
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) TG_ALWAYS_INLINE { return std::abs(xp[i] - yp[i]); });
  });
  record_regression(
      "l1_loss", o, out, r, []<typename T>(T x, T y) TG_ALWAYS_INLINE { return static_cast<T>((x > y) - (x < y)); },
      [](const Tensor& g, const Tensor& x, const Tensor& y) { return g * sign_of((x - y).detach()); });
  return out;
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction r, double beta) {
  TG_CHECK(beta >= 0, "smooth_l1_loss: smooth_l1_loss does not support negative values for beta.");
  if (beta == 0) return l1_loss(input, target, r);
  const Operands o = regression_operands(input, target, "smooth_l1_loss");
  // d = x - y ;  loss = 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta
  // d/dx = d / beta where |d| < beta, else sign(d)
  Tensor out = dispatch_floating(o.dt, "smooth_l1_loss", [&]<typename T>() {
    const T *xp = o.x.data_ptr<T>(), *yp = o.y.data_ptr<T>();
    const T b = static_cast<T>(beta);
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
      const T d = std::abs(xp[i] - yp[i]);
      return detail::select(d < b, T(0.5) * d * d / b, d - T(0.5) * b);
    });
  });
  record_regression(
      "smooth_l1_loss", o, out, r,
      [beta]<typename T>(T x, T y) TG_ALWAYS_INLINE {
        const T d = x - y, b = static_cast<T>(beta);
        return detail::select(d < -b, T(-1), detail::select(d > b, T(1), d / b));
      },
      [beta](const Tensor& g, const Tensor& x, const Tensor& y) {
        const Tensor d = x - y;
        const Tensor inside = abs(d.detach()) < beta;
        return g * where(inside, d / beta, sign_of(d.detach()));
      });
  return out;
}

namespace {

// Calls f.template operator()<A, B>() with A = a, B = b as compile-time flags: kernels with optional
// operands test for them at compile time (a pointer test inside the loop stops vectorization).
template <typename F>
decltype(auto) with_flags(bool a, bool b, F&& f) {
  if (a) return b ? f.template operator()<true, true>() : f.template operator()<true, false>();
  return b ? f.template operator()<false, true>() : f.template operator()<false, false>();
}

}  // namespace

Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight, Reduction r) {
  constexpr std::string_view op = "binary_cross_entropy";
  check_constant(weight, op, "weight");
  TG_CHECK(target.shape() == input.shape(),
           "{}: Using a target size (torch.Size({})) that is different to the input size (torch.Size({})) is "
           "deprecated. Please ensure they have the same size.",
           op, shape_list(target.shape()), shape_list(input.shape()));
  TG_CHECK(target.dtype() == input.dtype(), "{}: Found dtype {} but expected {}", op, torch_type_name(target.dtype()),
           torch_type_name(input.dtype()));
  const Shape shape = input.shape();
  const DType dt = input.dtype();
  const int64_t n = numel_of(shape);
  const Tensor x = input.contiguous(), t = target.contiguous();
  const Tensor w = flat_constant(weight, shape, dt, op);
  Tensor out = dispatch_floating(dt, op, [&]<typename T>() {
    const T *xp = x.data_ptr<T>(), *tp = t.data_ptr<T>(), *wp = w.defined() ? w.data_ptr<T>() : nullptr;
    std::atomic<bool> bad{false};
    parallel_chunks(n, [&](int64_t lo, int64_t hi) {
      bool ok = true;
      for (int64_t i = lo; i < hi; ++i) ok &= xp[i] >= T(0) && xp[i] <= T(1);  // NaN fails too
      if (!ok) bad.store(true, std::memory_order_relaxed);
    });
    TG_CHECK(!bad.load(), "{}: all elements of input should be between 0 and 1", op);
    // loss = w ((t - 1) max(log(1 - x), -100) - t max(log(x), -100))
    return with_flags(wp != nullptr, false, [&]<bool W, bool>() {
      return pointwise_forward<T>(shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
        const T l1 = detail::vlog1p(-xp[i]), l0 = detail::vlog(xp[i]);
        const T v = (tp[i] - T(1)) * detail::select(l1 > T(-100), l1, T(-100)) -
                    tp[i] * detail::select(l0 > T(-100), l0, T(-100));
        if constexpr (W) return v * wp[i];
        return v;
      });
    });
  });
  // saved: input, target, weight (broadcast to the input's shape)
  autograd::record("binary_cross_entropy", {x, t}, {out}, {x, t, w},
                   [shape, dt, r](Context& ctx) -> Grads {
                     const Tensor xs = ctx.saved(0), ts = ctx.saved(1), ws = ctx.saved(2);
                     const bool need_x = ctx.needs_grad(0), need_t = ctx.needs_grad(1);
                     Tensor gx, gt;
                     if (autograd::grad_enabled()) {
                       // d/dx = w (x - t) / max(x (1 - x), 1e-12) ;  d/dt = w (log(1 - x) - log(x))
                       Tensor gs = composed_scale(ctx.grad(), r, numel_of(shape));
                       if (ws.defined()) gs = gs * ws;
                       if (need_x) gx = gs * (xs - ts) / clamp(xs * (1.0 - xs), 1e-12, std::nullopt);
                       if (need_t) gt = gs * (log(1.0 - xs) - log(xs));
                       return {gx, gt};
                     }
                     dispatch_floating(dt, "binary_cross_entropy", [&]<typename T>() {
                       const T *xp = xs.data_ptr<T>(), *tp = ts.data_ptr<T>(),
                               *wp = ws.defined() ? ws.data_ptr<T>() : nullptr;
                       const T eps = static_cast<T>(1e-12);
                       with_flags(wp != nullptr, false, [&]<bool W, bool>() {
                         if (need_x)
                           gx = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
                             const T d = (T(1) - xp[i]) * xp[i];
                             const T v = (xp[i] - tp[i]) / detail::select(d > eps, d, eps);
                             if constexpr (W) return v * wp[i];
                             return v;
                           });
                         if (need_t)
                           gt = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
                             const T v = detail::vlog1p(-xp[i]) - detail::vlog(xp[i]);
                             if constexpr (W) return v * wp[i];
                             return v;
                           });
                       });
                     });
                     return {gx, gt};
                   },
                   {"self", "target", "weight"});
  return out;
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const Tensor& weight, Reduction r,
                                        const Tensor& pos_weight) {
  constexpr std::string_view op = "binary_cross_entropy_with_logits";
  check_constant(weight, op, "weight");
  check_constant(pos_weight, op, "pos_weight");
  TG_CHECK(target.shape() == input.shape(),
           "{}: Target size (torch.Size({})) must be the same as input size (torch.Size({}))", op,
           shape_list(target.shape()), shape_list(input.shape()));
  const Shape shape = input.shape();
  const DType dt = promote_types(input.dtype(), target.dtype());
  TG_CHECK(is_floating(dt), "{}: expected a floating point tensor (float32 or float64), got {}", op, dtype_name(dt));
  const Tensor x = flat(input.to(dt), shape), t = flat(target.to(dt), shape);
  const Tensor w = flat_constant(weight, shape, dt, op);
  const Tensor pw = flat_constant(pos_weight, shape, dt, op);
  Tensor out = dispatch_floating(dt, op, [&]<typename T>() {
    const T *xp = x.data_ptr<T>(), *tp = t.data_ptr<T>();
    const T *wp = w.defined() ? w.data_ptr<T>() : nullptr, *pp = pw.defined() ? pw.data_ptr<T>() : nullptr;
    // m = max(-x, 0);  softplus(-x) = m + log(exp(-m) + exp(-x - m))
    // loss = w ((1 - t) x + (1 + (pw - 1) t) softplus(-x))
    return with_flags(wp != nullptr, pp != nullptr, [&]<bool W, bool P>() {
      return pointwise_forward<T>(shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
        const T xi = xp[i], ti = tp[i];
        const T m = detail::select(-xi > T(0), -xi, T(0));
        const T sp = m + detail::vlog(detail::vexp(-m) + detail::vexp(-xi - m));
        T v;
        if constexpr (P) {
          v = (T(1) - ti) * xi + ((pp[i] - T(1)) * ti + T(1)) * sp;
        } else {
          v = (T(1) - ti) * xi + sp;
        }
        if constexpr (W) return v * wp[i];
        return v;
      });
    });
  });
  // saved: input, target, weight, pos_weight (the last two broadcast to the input's shape)
  autograd::record("binary_cross_entropy_with_logits", {x, t}, {out}, {x, t, w, pw},
                   [shape, dt, r](Context& ctx) -> Grads {
                     const Tensor xs = ctx.saved(0), ts = ctx.saved(1), ws = ctx.saved(2), ps = ctx.saved(3);
                     const bool need_x = ctx.needs_grad(0), need_t = ctx.needs_grad(1);
                     Tensor gx, gt;
                     if (autograd::grad_enabled()) {
                       // d/dx = w ((pw t + 1 - t) sigmoid(x) - pw t) ;  d/dt = w (pw softplus(-x) - softplus(x))
                       Tensor gs = composed_scale(ctx.grad(), r, numel_of(shape));
                       if (ws.defined()) gs = gs * ws;
                       const Tensor pt = ps.defined() ? ps * ts : ts;
                       if (need_x) gx = gs * ((pt + 1.0 - ts) * sigmoid(xs) - pt);
                       if (need_t) gt = gs * ((ps.defined() ? ps * softplus(-xs) : softplus(-xs)) - softplus(xs));
                       return {gx, gt};
                     }
                     dispatch_floating(dt, "binary_cross_entropy_with_logits", [&]<typename T>() {
                       const T *xp = xs.data_ptr<T>(), *tp = ts.data_ptr<T>();
                       const T *wp = ws.defined() ? ws.data_ptr<T>() : nullptr,
                               *pp = ps.defined() ? ps.data_ptr<T>() : nullptr;
                       // log(1 + exp(v)), stably
                       auto softplus1 = [](T v) TG_ALWAYS_INLINE {
                         return detail::select(v > T(0), v, T(0)) + detail::vlog1p(detail::vexp(-std::abs(v)));
                       };
                       with_flags(wp != nullptr, pp != nullptr, [&]<bool W, bool P>() {
                         if (need_x)
                           gx = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
                             const T xi = xp[i], ti = tp[i];
                             T pt = ti;
                             if constexpr (P) pt = pp[i] * ti;
                             const T sig = T(1) / (T(1) + detail::vexp(-xi));  // exp overflow gives 0, as it should
                             const T v = (pt + T(1) - ti) * sig - pt;
                             if constexpr (W) return v * wp[i];
                             return v;
                           });
                         if (need_t)
                           gt = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) TG_ALWAYS_INLINE {
                             const T xi = xp[i];
                             T v = softplus1(-xi) - softplus1(xi);
                             if constexpr (P) v = pp[i] * softplus1(-xi) - softplus1(xi);
                             if constexpr (W) return v * wp[i];
                             return v;
                           });
                       });
                     });
                     return {gx, gt};
                   },
                   {"self", "target", "weight", "pos_weight"});
  return out;
}

}  // namespace tapegrad
