// Losses: forward kernels and backward formulas side by side.
//
// Each backward has two forms: a fused kernel for the usual first-order pass, and the same formula
// composed from differentiable ops, used when the backward is itself recorded (create_graph, i.e.
// grad mode is on inside the backward), so that higher-order gradients are exact.
#include "loss.h"

#include "../autograd.h"
#include "../iter.h"
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
    case Reduction::None: return "none";
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
  }
  return "?";
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// PyTorch's scalar type names, as its messages print them.
std::string_view torch_type_name(DType t) {
  switch (t) {
    case DType::Float32: return "Float";
    case DType::Float64: return "Double";
    case DType::Int64: return "Long";
    case DType::Bool: return "Bool";
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
  auto run = [&](int64_t c) {
    double s = 0;
    for (int64_t i = c * kChunk, hi = std::min(n, (c + 1) * kChunk); i < hi; ++i) s += static_cast<double>(f(i));
    part[static_cast<size_t>(c)] = s;
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
// Rows of (N, C, S) tensors: the C class values of sample n at position s.
// ======================================================================================

// Calls fn(k, in_rows, out_rows) for each row k = n * S + s, where in_rows[i] / out_rows[i] point at
// the row's C contiguous values (nullptr where the operand is absent). With S = 1 the rows are used
// in place; otherwise blocks of rows are gathered into contiguous scratch first and the written
// rows scattered back, so the row kernels only ever see contiguous rows. Rows are split across
// threads when the work is large.
template <typename T, size_t NI, size_t NO, typename F>
void for_each_row(int64_t N, int64_t C, int64_t S, const std::array<const T*, NI>& in, const std::array<T*, NO>& out,
                  F&& fn) {
  const int64_t rows = N * S;
  const bool parallel = rows * C >= detail::kParallelGrain && rows > 1 && !omp_in_parallel();
  if (S == 1) {
    auto row = [&](int64_t k) {
      std::array<const T*, NI> ir;
      std::array<T*, NO> orow;
      for (size_t i = 0; i < NI; ++i) ir[i] = in[i] ? in[i] + k * C : nullptr;
      for (size_t o = 0; o < NO; ++o) orow[o] = out[o] ? out[o] + k * C : nullptr;
      fn(k, ir, orow);
    };
    if (parallel) {
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < rows; ++k) row(k);
    } else {
      for (int64_t k = 0; k < rows; ++k) row(k);
    }
    return;
  }
  // Blocks of W consecutive positions s of one sample; a block of one operand is W * C values.
  const int64_t W = std::clamp<int64_t>(16384 / std::max<int64_t>(C, 1), 1, 64);
  const int64_t blocks_per_n = (S + W - 1) / W;
  const int64_t blocks = N * blocks_per_n;
  auto run = [&](int64_t b_lo, int64_t b_hi) {
    std::vector<T> scratch(static_cast<size_t>((NI + NO) * W * C));
    for (int64_t b = b_lo; b < b_hi; ++b) {
      const int64_t n = b / blocks_per_n, s0 = (b % blocks_per_n) * W, w = std::min(W, S - s0);
      std::array<const T*, NI> ir;
      std::array<T*, NO> orow;
      for (size_t i = 0; i < NI; ++i) {
        if (!in[i]) continue;
        const T* src = in[i] + n * C * S + s0;
        T* buf = scratch.data() + i * W * C;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t j = 0; j < w; ++j) buf[j * C + c] = src[c * S + j];
      }
      for (int64_t j = 0; j < w; ++j) {
        for (size_t i = 0; i < NI; ++i) ir[i] = in[i] ? scratch.data() + i * W * C + j * C : nullptr;
        for (size_t o = 0; o < NO; ++o) orow[o] = out[o] ? scratch.data() + (NI + o) * W * C + j * C : nullptr;
        fn(n * S + s0 + j, ir, orow);
      }
      for (size_t o = 0; o < NO; ++o) {
        if (!out[o]) continue;
        T* dst = out[o] + n * C * S + s0;
        const T* buf = scratch.data() + (NI + o) * W * C;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t j = 0; j < w; ++j) dst[c * S + j] = buf[j * C + c];
      }
    }
  };
  if (parallel) {
    const int threads = omp_get_max_threads();
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; ++t) run(blocks * t / threads, blocks * (t + 1) / threads);
  } else {
    run(0, blocks);
  }
}

// Max of a contiguous row and log(sum(exp(x - max))). NaN anywhere makes the sum NaN.
template <typename T>
inline T row_max(const T* x, int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
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
    TG_CHECK(no_batch_dim || (nd == 2 && input.size(0) == target.size(0)), "{}: size mismatch (got input: {}, target: {})",
             op, shape_list(input.shape()), shape_list(target.shape()));
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

// Constants of the class-index gradient  d loss_k / d x[k, c] = A_k softmax[k, c] - B[k, c]:
//   A_k = (1 - ls) w[t] + ls / C * sum(w),  B[k, c] = (1 - ls) w[t] [c == t] + ls / C * w[c]
// (both 0 for an ignored row).
struct ClassCoefs {
  double ls = 0, ls_c = 0;  // ls and ls / C
  double wsum = 0;
};

template <typename T>
Tensor ce_class_backward_fused(const Tensor& x, const Tensor& t, const Tensor& w, const Tensor& lse, const Tensor& g,
                               const ClassLayout& L, int64_t ignore_index, Reduction r, double den,
                               const ClassCoefs& k0) {
  Tensor gx = Tensor::empty(x.shape(), {.dtype = x.dtype()});
  const std::vector<T> wv = class_weights<T>(w, L.C);
  const int64_t* tp = t.data_ptr<int64_t>();
  const double* lp = lse.data_ptr<double>();
  std::vector<double> g_rows;
  RowFactor f;
  if (r == Reduction::None) {
    g_rows = g.contiguous().to_vector<double>();
    f.per_row = g_rows.data();
  } else {
    f.scalar = g.item() / (r == Reduction::Mean ? den : 1.0);
  }
  const int64_t C = L.C;
  for_each_row<T, 1, 1>(L.N, C, L.S, {x.data_ptr<T>()}, {gx.data_ptr<T>()}, [&](int64_t k, auto in, auto out) {
    const T* xr = in[0];
    T* o = out[0];
    const int64_t tk = tp[k];
    if (tk == ignore_index) {
      for (int64_t c = 0; c < C; ++c) o[c] = T(0);
      return;
    }
    const double fk = f(k), wt = static_cast<double>(wv[tk]);
    const double a = fk * ((1 - k0.ls) * wt + k0.ls_c * k0.wsum);
    const double lse_k = lp[k];
    // d x[c] = f (A softmax[c] - B[c])
    if (k0.ls_c == 0) {
      for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(a * std::exp(static_cast<double>(xr[c]) - lse_k));
    } else {
      const double b = fk * k0.ls_c;
      for (int64_t c = 0; c < C; ++c)
        o[c] = static_cast<T>(a * std::exp(static_cast<double>(xr[c]) - lse_k) - b * static_cast<double>(wv[c]));
    }
    o[tk] = static_cast<T>(static_cast<double>(o[tk]) - fk * (1 - k0.ls) * wt);
  });
  return gx;
}

// The same gradient from differentiable ops (create_graph). lse only shifts the exponent: the
// softmax is renormalised, so its derivative is exact.
Tensor ce_class_backward_composed(const Tensor& x, const Tensor& t, const Tensor& w, const Tensor& lse,
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
      a[k] = scale * ((1 - k0.ls) * wv[tk] + k0.ls_c * k0.wsum);
      for (int64_t c = 0; c < C; ++c) b[(n * C + c) * S + s] = scale * k0.ls_c * wv[c];
      b[(n * C + tk) * S + s] += scale * (1 - k0.ls) * wv[tk];
    }
  }
  const Tensor xv = x.reshape({N, C, S});
  const Tensor e = exp(xv - lse.reshape({N, 1, S}).to(dt));
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
  const int64_t rows = L.N * L.S, C = L.C;
  ClassCoefs k0;
  k0.ls = label_smoothing > 0 ? label_smoothing : 0.0;
  k0.ls_c = C > 0 ? k0.ls / static_cast<double>(C) : 0.0;
  Tensor lse = Tensor::empty({rows}, {.dtype = kFloat64});
  Tensor out;
  double den = 0;
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    const std::vector<T> wv = class_weights<T>(w, C);
    for (T v : wv) k0.wsum += static_cast<double>(v);
    const int64_t* tp = t.data_ptr<int64_t>();
    den = check_targets<T>(tp, rows, w.defined() ? wv.data() : nullptr, C, ignore_index, op);
    std::vector<double> loss(static_cast<size_t>(rows));
    double* lp = lse.data_ptr<double>();
    for_each_row<T, 1, 0>(L.N, C, L.S, {x.data_ptr<T>()}, {}, [&](int64_t k, auto in, auto) {
      const int64_t tk = tp[k];
      if (tk == ignore_index) {
        lp[k] = 0;
        loss[k] = 0;
        return;
      }
      const T* xr = in[0];
      // lse = m + log(sum exp(x - m));  nll = -w[t] (x[t] - lse);  smooth = -sum_c w[c] (x[c] - lse)
      const T m = row_max(xr, C);
      double se = 0, swx = 0;
      if (k0.ls == 0) {
        for (int64_t c = 0; c < C; ++c) se += static_cast<double>(std::exp(xr[c] - m));
      } else {
        for (int64_t c = 0; c < C; ++c) {
          se += static_cast<double>(std::exp(xr[c] - m));
          swx += static_cast<double>(wv[c]) * (static_cast<double>(xr[c]) - static_cast<double>(m));
        }
      }
      const double log_se = std::log(se);
      lp[k] = static_cast<double>(m) + log_se;
      const double nll = -static_cast<double>(wv[tk]) * (static_cast<double>(xr[tk]) - static_cast<double>(m) - log_se);
      const double smooth = -(swx - k0.wsum * log_se);
      loss[k] = k0.ls == 0 ? nll : (1 - k0.ls) * nll + k0.ls_c * smooth;
    });
    if (r == Reduction::None) {
      out = Tensor::empty(L.out_shape, {.dtype = x.dtype()});
      T* o = out.data_ptr<T>();
      for (int64_t k = 0; k < rows; ++k) o[k] = static_cast<T>(loss[k]);
    } else {
      const double total = chunked_sum(rows, [&](int64_t k) { return loss[k]; });
      out = Tensor::scalar(reduce_total(total, den, r), x.dtype());
    }
  });
  // saved: input (contiguous), target, weight, per-row logsumexp
  autograd::record(
      "cross_entropy", {x, target}, {out}, {x, t, w, lse},
      [L, ignore_index, r, den, k0](Context& ctx) -> Grads {
        if (!ctx.needs_grad(0)) return {Tensor(), Tensor()};
        const Tensor xs = ctx.saved(0), ts = ctx.saved(1), ws = ctx.saved(2), lse = ctx.saved(3);
        if (autograd::grad_enabled())
          return {ce_class_backward_composed(xs, ts, ws, lse, ctx.grad(), L, ignore_index, r, den, k0), Tensor()};
        return {dispatch_floating(xs.dtype(), "cross_entropy",
                                  [&]<typename T>() {
                                    return ce_class_backward_fused<T>(xs, ts, ws, lse, ctx.grad(), L, ignore_index, r,
                                                                      den, k0);
                                  }),
                Tensor()};
      },
      {"self", "target", "weight", "logsumexp"});
  return out;
}

// ======================================================================================
// cross_entropy, probability targets
// ======================================================================================

// With q = p (1 - ls) + ls / C and A_k = sum_c w[c] q[k, c]:
//   d loss_k / d x[k, c] = A_k softmax[k, c] - w[c] q[k, c]
//   d loss_k / d p[k, c] = -(1 - ls) w[c] log_softmax[k, c]
template <typename T>
std::pair<Tensor, Tensor> ce_prob_backward_fused(const Tensor& x, const Tensor& p, const Tensor& w, const Tensor& lse,
                                                 const Tensor& wq, const Tensor& g, const ClassLayout& L, Reduction r,
                                                 double ls, bool need_x, bool need_p) {
  const int64_t C = L.C, rows = L.N * L.S;
  Tensor gx = need_x ? Tensor::empty(x.shape(), {.dtype = x.dtype()}) : Tensor();
  Tensor gp = need_p ? Tensor::empty(p.shape(), {.dtype = p.dtype()}) : Tensor();
  const std::vector<T> wv = class_weights<T>(w, C);
  const double* lp = lse.data_ptr<double>();
  const double* ap = wq.data_ptr<double>();
  std::vector<double> g_rows;
  RowFactor f;
  if (r == Reduction::None) {
    g_rows = g.contiguous().to_vector<double>();
    f.per_row = g_rows.data();
  } else {
    f.scalar = g.item() / (r == Reduction::Mean ? static_cast<double>(rows) : 1.0);
  }
  const double keep = 1 - ls, uniform = C > 0 ? ls / static_cast<double>(C) : 0.0;
  for_each_row<T, 2, 2>(L.N, C, L.S, {x.data_ptr<T>(), p.data_ptr<T>()},
                        {need_x ? gx.data_ptr<T>() : nullptr, need_p ? gp.data_ptr<T>() : nullptr},
                        [&](int64_t k, auto in, auto out) {
                          const T *xr = in[0], *pr = in[1];
                          const double fk = f(k), lse_k = lp[k], a = ap[k];
                          for (int64_t c = 0; c < C; ++c) {
                            const double lsm = static_cast<double>(xr[c]) - lse_k;
                            const double wc = static_cast<double>(wv[c]);
                            if (out[0]) {
                              const double q = static_cast<double>(pr[c]) * keep + uniform;
                              out[0][c] = static_cast<T>(fk * (a * std::exp(lsm) - wc * q));
                            }
                            if (out[1]) out[1][c] = static_cast<T>(-fk * keep * wc * lsm);
                          }
                        });
  return {gx, gp};
}

std::pair<Tensor, Tensor> ce_prob_backward_composed(const Tensor& x, const Tensor& p, const Tensor& w,
                                                    const Tensor& lse, const Tensor& g, const ClassLayout& L,
                                                    Reduction r, double ls) {
  const int64_t N = L.N, C = L.C, S = L.S;
  const DType dt = x.dtype();
  const Tensor xv = x.reshape({N, C, S}), pv = p.reshape({N, C, S});
  const Tensor shifted = xv - lse.reshape({N, 1, S}).to(dt);
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
  TG_CHECK(is_floating(target.dtype()),
           "{}: Expected floating point type for target with class probabilities, got {}", op,
           torch_type_name(target.dtype()));
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
  const int64_t rows = L.N * L.S, C = L.C;
  Tensor lse = Tensor::empty({rows}, {.dtype = kFloat64});
  Tensor wq = Tensor::empty({rows}, {.dtype = kFloat64});
  Tensor out;
  dispatch_floating(dt, op, [&]<typename T>() {
    const std::vector<T> wv = class_weights<T>(w, C);
    const double keep = 1 - ls, uniform = C > 0 ? ls / static_cast<double>(C) : 0.0;
    std::vector<double> loss(static_cast<size_t>(rows));
    double *lp = lse.data_ptr<double>(), *ap = wq.data_ptr<double>();
    for_each_row<T, 2, 0>(L.N, C, L.S, {x.data_ptr<T>(), p.data_ptr<T>()}, {}, [&](int64_t k, auto in, auto) {
      const T *xr = in[0], *pr = in[1];
      // loss = -sum_c w q (x - lse) = -(sum_c w q (x - m) - A log(sum exp(x - m))),  A = sum_c w q
      const T m = row_max(xr, C);
      double se = 0, swqx = 0, a = 0;
      for (int64_t c = 0; c < C; ++c) {
        se += static_cast<double>(std::exp(xr[c] - m));
        const double wq_c = static_cast<double>(wv[c]) * (static_cast<double>(pr[c]) * keep + uniform);
        swqx += wq_c * (static_cast<double>(xr[c]) - static_cast<double>(m));
        a += wq_c;
      }
      const double log_se = std::log(se);
      lp[k] = static_cast<double>(m) + log_se;
      ap[k] = a;
      loss[k] = -(swqx - a * log_se);
    });
    if (r == Reduction::None) {
      out = Tensor::empty(L.out_shape, {.dtype = dt});
      T* o = out.data_ptr<T>();
      for (int64_t k = 0; k < rows; ++k) o[k] = static_cast<T>(loss[k]);
    } else {
      const double total = chunked_sum(rows, [&](int64_t k) { return loss[k]; });
      out = Tensor::scalar(reduce_total(total, static_cast<double>(rows), r), dt);
    }
  });
  // saved: input, target (both contiguous, promoted), weight, per-row logsumexp, per-row sum_c w q
  autograd::record(
      "cross_entropy", {x, p}, {out}, {x, p, w, lse, wq},
      [L, r, ls](Context& ctx) -> Grads {
        const bool need_x = ctx.needs_grad(0), need_p = ctx.needs_grad(1);
        const Tensor xs = ctx.saved(0), ps = ctx.saved(1), ws = ctx.saved(2), lse = ctx.saved(3);
        std::pair<Tensor, Tensor> gs;
        if (autograd::grad_enabled()) {
          gs = ce_prob_backward_composed(xs, ps, ws, lse, ctx.grad(), L, r, ls);
        } else {
          const Tensor wq = ctx.saved(4);
          gs = dispatch_floating(xs.dtype(), "cross_entropy", [&]<typename T>() {
            return ce_prob_backward_fused<T>(xs, ps, ws, lse, wq, ctx.grad(), L, r, ls, need_x, need_p);
          });
        }
        return {need_x ? gs.first : Tensor(), need_p ? gs.second : Tensor()};
      },
      {"self", "target", "weight", "logsumexp", "weighted_target_sum"});
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

Tensor nll_loss(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                Reduction r) {
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
  autograd::record(
      "nll_loss", {input, target}, {out}, {t, w},
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
                                      return nll_grad<T>(ts, ws, L, in_shape, dt, ignore_index, gr.data(), 0.0);
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
  autograd::record(
      name, {o.x, o.y}, {out}, {o.x, o.y},
      [shape, dt, r, fused_deriv, composed, name](Context& ctx) -> Grads {
        const Tensor x = ctx.saved(0), y = ctx.saved(1);
        Tensor gx;
        if (autograd::grad_enabled()) {
          gx = composed(composed_scale(ctx.grad(), r, numel_of(shape)), x, y);
        } else {
          gx = dispatch_floating(dt, name, [&]<typename T>() {
            const T *xp = x.data_ptr<T>(), *yp = y.data_ptr<T>();
            return pointwise_grad<T>(ctx.grad(), shape, dt, r,
                                     [&](int64_t i) { return fused_deriv.template operator()<T>(xp[i], yp[i]); });
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
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) {
      const T d = xp[i] - yp[i];
      return d * d;
    });
  });
  record_regression(
      "mse_loss", o, out, r, []<typename T>(T x, T y) { return T(2) * (x - y); },
      [](const Tensor& g, const Tensor& x, const Tensor& y) { return g * (x - y) * 2.0; });
  return out;
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  const Operands o = regression_operands(input, target, "l1_loss");
  // loss = |x - y| ;  d/dx = sign(x - y), 0 where equal
  Tensor out = dispatch_floating(o.dt, "l1_loss", [&]<typename T>() {
    const T *xp = o.x.data_ptr<T>(), *yp = o.y.data_ptr<T>();
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) { return std::abs(xp[i] - yp[i]); });
  });
  record_regression(
      "l1_loss", o, out, r, []<typename T>(T x, T y) { return static_cast<T>((x > y) - (x < y)); },
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
    return pointwise_forward<T>(o.shape, o.dt, r, [&](int64_t i) {
      const T d = std::abs(xp[i] - yp[i]);
      return d < b ? T(0.5) * d * d / b : d - T(0.5) * b;
    });
  });
  record_regression(
      "smooth_l1_loss", o, out, r,
      [beta]<typename T>(T x, T y) {
        const T d = x - y, b = static_cast<T>(beta);
        return d < -b ? T(-1) : d > b ? T(1) : d / b;
      },
      [beta](const Tensor& g, const Tensor& x, const Tensor& y) {
        const Tensor d = x - y;
        const Tensor inside = abs(d.detach()) < beta;
        return g * where(inside, d / beta, sign_of(d.detach()));
      });
  return out;
}

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
    return pointwise_forward<T>(shape, dt, r, [&](int64_t i) {
      const T v = (tp[i] - T(1)) * std::max(static_cast<T>(std::log1p(-xp[i])), T(-100)) -
                  tp[i] * std::max(static_cast<T>(std::log(xp[i])), T(-100));
      return wp ? v * wp[i] : v;
    });
  });
  // saved: input, target, weight (broadcast to the input's shape)
  autograd::record(
      "binary_cross_entropy", {x, t}, {out}, {x, t, w},
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
        } else {
          dispatch_floating(dt, "binary_cross_entropy", [&]<typename T>() {
            const T *xp = xs.data_ptr<T>(), *tp = ts.data_ptr<T>(), *wp = ws.defined() ? ws.data_ptr<T>() : nullptr;
            const T eps = static_cast<T>(1e-12);
            if (need_x)
              gx = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) {
                const T v = (xp[i] - tp[i]) / std::max((T(1) - xp[i]) * xp[i], eps);
                return wp ? v * wp[i] : v;
              });
            if (need_t)
              gt = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) {
                const T v = static_cast<T>(std::log1p(-xp[i]) - std::log(xp[i]));
                return wp ? v * wp[i] : v;
              });
          });
        }
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
    return pointwise_forward<T>(shape, dt, r, [&](int64_t i) {
      const T xi = xp[i], ti = tp[i];
      const T m = std::max(-xi, T(0));
      const T sp = m + std::log(std::exp(-m) + std::exp(-xi - m));
      const T lw = pp ? (pp[i] - T(1)) * ti + T(1) : T(1);
      const T v = (T(1) - ti) * xi + lw * sp;
      return wp ? v * wp[i] : v;
    });
  });
  // saved: input, target, weight, pos_weight (the last two broadcast to the input's shape)
  autograd::record(
      "binary_cross_entropy_with_logits", {x, t}, {out}, {x, t, w, pw},
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
        } else {
          dispatch_floating(dt, "binary_cross_entropy_with_logits", [&]<typename T>() {
            const T *xp = xs.data_ptr<T>(), *tp = ts.data_ptr<T>();
            const T *wp = ws.defined() ? ws.data_ptr<T>() : nullptr, *pp = ps.defined() ? ps.data_ptr<T>() : nullptr;
            // log(1 + exp(v)), stably
            auto softplus1 = [](T v) { return std::max(v, T(0)) + static_cast<T>(std::log1p(std::exp(-std::abs(v)))); };
            if (need_x)
              gx = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) {
                const T xi = xp[i], pt = pp ? pp[i] * tp[i] : tp[i];
                const T sig = xi >= T(0) ? T(1) / (T(1) + std::exp(-xi)) : std::exp(xi) / (T(1) + std::exp(xi));
                const T v = (pt + T(1) - tp[i]) * sig - pt;
                return wp ? v * wp[i] : v;
              });
            if (need_t)
              gt = pointwise_grad<T>(ctx.grad(), shape, dt, r, [&](int64_t i) {
                const T xi = xp[i];
                const T v = (pp ? pp[i] : T(1)) * softplus1(-xi) - softplus1(xi);
                return wp ? v * wp[i] : v;
              });
          });
        }
        return {gx, gt};
      },
      {"self", "target", "weight", "pos_weight"});
  return out;
}

}  // namespace tapegrad
