// Losses: values and gradients against PyTorch (tests/fixtures/gen_loss.py), the fused backward
// kernels against composed references, gradchecks, and PyTorch's error messages.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <cmath>
#include <limits>

using namespace tapegrad;

namespace {

const testing::Fixture& fx() {
  static const testing::Fixture f("loss.safetensors");
  return f;
}

constexpr Reduction kReductions[] = {Reduction::None, Reduction::Mean, Reduction::Sum};

// loss(x, t, w, pos_weight, reduction)
using LossFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Reduction)>;

// Forward and gradients of <v, loss> against the fixture, for every reduction, through the fused
// first-order backward and through the composed (create_graph) one.
void check_fixture(const std::string& name, const LossFn& fn, bool target_grad, double rtol = 1e-5,
                   double atol = 1e-6) {
  const auto& f = fx();
  for (Reduction r : kReductions) {
    const std::string rn(reduction_name(r));
    INFO(name << ", reduction " << rn);
    for (bool create_graph : {false, true}) {
      INFO("create_graph " << create_graph);
      Tensor x = f[name + ".x"].clone().requires_grad_();
      Tensor t = f[name + ".t"].clone();
      if (target_grad) t.requires_grad_();
      const Tensor w = f.has(name + ".w") ? f[name + ".w"] : Tensor();
      const Tensor pw = f.has(name + ".pw") ? f[name + ".pw"] : Tensor();
      const Tensor out = fn(x, t, w, pw, r);
      testing::require_close(out, f[name + "." + rn + ".out"], rtol, atol);
      std::vector<Tensor> wrt = {x};
      if (target_grad) wrt.push_back(t);
      const auto gs = autograd::grad({out}, wrt, {f[name + "." + rn + ".v"]}, false, create_graph);
      testing::require_close(gs[0], f[name + "." + rn + ".gx"], rtol, atol);
      if (target_grad) testing::require_close(gs[1], f[name + "." + rn + ".gt"], rtol, atol);
    }
  }
}

LossFn ce_fn(int64_t ignore_index = -100, double ls = 0) {
  return [=](const Tensor& x, const Tensor& t, const Tensor& w, const Tensor&, Reduction r) {
    return cross_entropy(x, t, w, ignore_index, r, ls);
  };
}

LossFn nll_fn(int64_t ignore_index = -100) {
  return [=](const Tensor& x, const Tensor& t, const Tensor& w, const Tensor&, Reduction r) {
    return nll_loss(x, t, w, ignore_index, r);
  };
}

// ---- a composed reference for cross_entropy (exp/log/sum and constant masks) ----

// x viewed as (N, C, S) and the class dim of the original.
struct Rows {
  int64_t N, C, S;
};
Rows rows_of(const Tensor& x) {
  const int64_t nd = x.dim();
  Rows r{nd == 1 ? 1 : x.size(0), x.size(nd == 1 ? 0 : 1), 1};
  for (int64_t d = 2; d < nd; ++d) r.S *= x.size(d);
  return r;
}

// Row maxima of x (N, C, S) as a constant (N, 1, S) tensor, by a plain loop.
Tensor row_max_const(const Tensor& x, const Rows& R) {
  const auto v = x.to_vector<double>();
  std::vector<double> m(static_cast<size_t>(R.N * R.S), -std::numeric_limits<double>::infinity());
  for (int64_t n = 0; n < R.N; ++n)
    for (int64_t c = 0; c < R.C; ++c)
      for (int64_t s = 0; s < R.S; ++s) m[n * R.S + s] = std::max(m[n * R.S + s], v[(n * R.C + c) * R.S + s]);
  return Tensor::from_vector(m, {R.N, 1, R.S}).to(x.dtype());
}

// log_softmax over the class dim, composed: (x - m) - log(sum(exp(x - m))).
Tensor log_softmax_ref(const Tensor& x, const Rows& R) {
  const Tensor xv = x.reshape({R.N, R.C, R.S});
  const Tensor z = xv - row_max_const(xv.detach(), R);
  return z - log(sum(exp(z), {1}, true));
}

Tensor ce_class_ref(const Tensor& x, const Tensor& t, const Tensor& w, int64_t ignore, Reduction r, double ls) {
  const Rows R = rows_of(x);
  const Tensor lsm = log_softmax_ref(x, R);
  const auto tv = t.to_vector<int64_t>();
  const std::vector<double> wv = w.defined() ? w.to_vector<double>() : std::vector<double>(R.C, 1.0);
  // pick[n, c, s] = w[t] at the target class; valid[n, 0, s] = 1 unless ignored
  std::vector<double> pick(static_cast<size_t>(R.N * R.C * R.S), 0.0), valid(static_cast<size_t>(R.N * R.S), 0.0);
  double den = 0;
  for (int64_t k = 0; k < R.N * R.S; ++k) {
    if (tv[k] == ignore) continue;
    pick[(k / R.S * R.C + tv[k]) * R.S + k % R.S] = wv[tv[k]];
    valid[k] = 1;
    den += wv[tv[k]];
  }
  const DType dt = x.dtype();
  const Tensor nll = -sum(lsm * Tensor::from_vector(pick, {R.N, R.C, R.S}).to(dt), {1});
  const Tensor wb = Tensor::from_vector(wv, {1, R.C, 1}).to(dt);
  const Tensor smooth = -sum(lsm * wb, {1}) * Tensor::from_vector(valid, {R.N, R.S}).to(dt);
  Tensor loss = nll * (1 - ls) + smooth * (ls / R.C);
  if (r == Reduction::None) return loss.reshape(t.shape());
  if (r == Reduction::Sum) return sum(loss);
  return sum(loss) / den;
}

Tensor ce_prob_ref(const Tensor& x, const Tensor& p, const Tensor& w, Reduction r, double ls) {
  const Rows R = rows_of(x);
  const Tensor lsm = log_softmax_ref(x, R);
  const Tensor wb = w.defined() ? w.reshape({1, R.C, 1}) : Tensor::ones({1, R.C, 1}, {.dtype = x.dtype()});
  const Tensor q = p.reshape({R.N, R.C, R.S}) * (1 - ls) + ls / R.C;
  const Tensor loss = -sum(lsm * q * wb, {1});
  Shape out_shape = x.shape();
  out_shape.erase(out_shape.begin() + (x.dim() == 1 ? 0 : 1));
  if (r == Reduction::None) return loss.reshape(out_shape);
  if (r == Reduction::Sum) return sum(loss);
  return sum(loss) / static_cast<double>(R.N * R.S);
}

Tensor random_targets(const Shape& shape, int64_t C, uint64_t seed, int64_t ignore, double ignore_frac) {
  Generator gen(seed);
  Tensor t = Tensor::randint(0, C, shape, &gen);
  int64_t* p = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (gen.uniform() < ignore_frac) p[i] = ignore;
  return t;
}

}  // namespace

// ======================================================================================
// reductions
// ======================================================================================

TEST_CASE("parse_reduction accepts PyTorch's names and rejects others with its message") {
  REQUIRE(parse_reduction("none", "cross_entropy") == Reduction::None);
  REQUIRE(parse_reduction("mean", "cross_entropy") == Reduction::Mean);
  REQUIRE(parse_reduction("elementwise_mean", "cross_entropy") == Reduction::Mean);
  REQUIRE(parse_reduction("sum", "cross_entropy") == Reduction::Sum);
  REQUIRE_ERROR(parse_reduction("avg", "cross_entropy"), "cross_entropy: avg is not a valid value for reduction");
  REQUIRE(reduction_name(Reduction::Mean) == "mean");
}

// ======================================================================================
// cross_entropy against PyTorch
// ======================================================================================

TEST_CASE("cross_entropy with class indices matches PyTorch") {
  check_fixture("ce_basic", ce_fn(), false);
  check_fixture("ce_weight", ce_fn(), false);
  check_fixture("ce_1d", ce_fn(), false);
  check_fixture("ce_f64", ce_fn(-100, 0.05), false, 1e-10, 1e-12);
}

TEST_CASE("cross_entropy ignore_index matches PyTorch, all ignored gives NaN for mean") {
  check_fixture("ce_ignore", ce_fn(), false);
  check_fixture("ce_ignore2", ce_fn(2), false);
  check_fixture("ce_all_ignored", ce_fn(), false);
  check_fixture("ce_all_ignored_ls", ce_fn(-100, 0.2), false);
  const Tensor x = fx()["ce_basic.x"];
  const Tensor t = Tensor::full({6}, -100, {.dtype = kInt64});
  REQUIRE(std::isnan(cross_entropy(x, t).item()));
  REQUIRE(cross_entropy(x, t, {}, -100, Reduction::Sum).item() == 0.0);
  REQUIRE(std::isnan(cross_entropy(Tensor::zeros({0, 4}), Tensor::zeros({0}, {.dtype = kInt64})).item()));
}

TEST_CASE("cross_entropy label smoothing matches PyTorch, with and without weights") {
  check_fixture("ce_ls", ce_fn(-100, 0.2), false);
  check_fixture("ce_ls_w", ce_fn(-100, 0.3), false);
  check_fixture("ce_ls_full", ce_fn(-100, 1.0), false);
  check_fixture("ce_1d_ls_w", ce_fn(-100, 0.1), false);
  // A negative label_smoothing is no smoothing, as in PyTorch.
  const Tensor x = fx()["ce_basic.x"], t = fx()["ce_basic.t"];
  REQUIRE(cross_entropy(x, t, {}, -100, Reduction::Mean, -0.5).item() == cross_entropy(x, t).item());
}

TEST_CASE("cross_entropy with K-dim targets (N, C, d1) and (N, C, d1, d2) matches PyTorch") {
  check_fixture("ce_3d", ce_fn(), false);
  check_fixture("ce_4d", ce_fn(1), false);
  check_fixture("ce_4d_ls", ce_fn(-100, 0.15), false);
  check_fixture("ce_4d_ls_w", ce_fn(1, 0.25), false);
}

TEST_CASE("cross_entropy with probability targets matches PyTorch, target gradients included") {
  check_fixture("ce_prob", ce_fn(), true);
  check_fixture("ce_prob_w", ce_fn(), true);
  check_fixture("ce_prob_ls", ce_fn(-100, 0.2), true);
  check_fixture("ce_prob_ls_w", ce_fn(-100, 0.4), true);
  check_fixture("ce_prob_4d", ce_fn(-100, 0.1), true);
  check_fixture("ce_prob_1d", ce_fn(), true);
  REQUIRE(std::isnan(cross_entropy(Tensor::zeros({0, 4}), Tensor::zeros({0, 4})).item()));
}

TEST_CASE("cross_entropy with logits of 1e4 stays finite and matches PyTorch") {
  check_fixture("ce_extreme", ce_fn(-100, 0.1), false, 1e-5, 1e-3);
  check_fixture("ce_prob_extreme", ce_fn(), true, 1e-5, 1e-3);
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor x = (fx()["ce_extreme.x"].to(dt) * 10.0).detach().requires_grad_();
    const Tensor loss = cross_entropy(x, fx()["ce_extreme.t"], {}, -100, Reduction::Mean, 0.1);
    loss.backward();
    REQUIRE(std::isfinite(loss.item()));
    for (double g : x.grad().to_vector<double>()) REQUIRE(std::isfinite(g));
  }
}

TEST_CASE("cross_entropy accepts non-contiguous inputs") {
  const Tensor x = fx()["ce_4d.x"];  // (3, 5, 4, 6)
  const Tensor t = fx()["ce_4d.t"];
  // The same values through a permuted layout.
  const Tensor xp = x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  REQUIRE_FALSE(xp.is_contiguous());
  testing::require_close(cross_entropy(xp, t, fx()["ce_4d.w"], 1, Reduction::None), fx()["ce_4d.none.out"]);
  const Tensor tp = t.permute({0, 2, 1}).contiguous().permute({0, 2, 1});
  testing::require_close(cross_entropy(xp, tp, fx()["ce_4d.w"], 1, Reduction::Sum), fx()["ce_4d.sum.out"]);
}

// ======================================================================================
// The fused kernels against the composed reference, on odd shapes
// ======================================================================================

TEST_CASE("cross_entropy's fused forward and backward match a composed reference on odd shapes") {
  const std::vector<Shape> shapes = {{1, 1},          {3, 7},    {5},           {2, 5, 1, 3}, {2, 3, 70},
                                     {1, 2, 3, 2, 2}, {64, 600}, {3, 20000, 2}, {9, 4, 129}};
  uint64_t seed = 100;
  for (const Shape& shape : shapes) {
    for (DType dt : {kFloat64, kFloat32}) {
      for (double ls : {0.0, 0.3}) {
        for (bool weighted : {false, true}) {
          for (Reduction r : kReductions) {
            ++seed;
            INFO("shape " << shape_str(shape) << " " << dtype_name(dt) << " ls " << ls << " weighted " << weighted
                          << " " << reduction_name(r));
            Generator gen(seed);
            const Rows R = rows_of(Tensor::empty(shape));
            const Tensor x0 = (Tensor::randn(shape, {.dtype = kFloat64}, &gen) * 3.0).to(dt);
            Shape tshape = shape;
            tshape.erase(tshape.begin() + (shape.size() == 1 ? 0 : 1));
            const Tensor t = random_targets(tshape, R.C, seed, -100, 0.2);
            const Tensor w = weighted ? (Tensor::rand({R.C}, {.dtype = dt}, &gen) + 0.1) : Tensor();
            const double tol = dt == kFloat64 ? 1e-12 : 2e-5;

            Tensor x = x0.clone().requires_grad_(), xr = x0.clone().requires_grad_();
            const Tensor out = cross_entropy(x, t, w, -100, r, ls);
            const Tensor ref = ce_class_ref(xr, t, w, -100, r, ls);
            testing::require_close(out, ref, tol, tol);
            const Tensor v = Tensor::randn(out.shape(), {.dtype = dt}, &gen);
            const Tensor g = autograd::grad({out}, {x}, {v})[0];
            if (r == Reduction::Mean && std::isnan(ref.item())) {
              // Every target ignored: PyTorch's gradient is 0 (the reference's 0 * inf is NaN).
              testing::require_close(g, Tensor::zeros_like(g));
              continue;
            }
            const Tensor gr = autograd::grad({ref}, {xr}, {v})[0];
            testing::require_close(g, gr, tol, tol);
            if (shape.size() == 2 && shape[1] == 20000) continue;  // the composed backward is slow there
            // The composed backward used under create_graph agrees too.
            Tensor x2 = x0.clone().requires_grad_();
            const Tensor g2 = autograd::grad({cross_entropy(x2, t, w, -100, r, ls)}, {x2}, {v}, false, true)[0];
            testing::require_close(g2, gr, tol, tol);
          }
        }
      }
    }
  }
}

TEST_CASE("cross_entropy with probability targets: fused kernels match a composed reference") {
  const std::vector<Shape> shapes = {{1, 1}, {3, 7}, {6}, {2, 5, 1, 3}, {2, 3, 70}, {64, 600}, {2, 17000, 2}};
  uint64_t seed = 500;
  for (const Shape& shape : shapes) {
    for (DType dt : {kFloat64, kFloat32}) {
      for (double ls : {0.0, 0.25}) {
        for (Reduction r : kReductions) {
          ++seed;
          INFO("shape " << shape_str(shape) << " " << dtype_name(dt) << " ls " << ls << " " << reduction_name(r));
          Generator gen(seed);
          const Rows R = rows_of(Tensor::empty(shape));
          const Tensor x0 = (Tensor::randn(shape, {.dtype = kFloat64}, &gen) * 2.0).to(dt);
          const Tensor p0 = Tensor::rand(shape, {.dtype = dt}, &gen);
          const Tensor w = Tensor::rand({R.C}, {.dtype = dt}, &gen) + 0.2;
          const double tol = dt == kFloat64 ? 1e-12 : 2e-5;
          Tensor x = x0.clone().requires_grad_(), p = p0.clone().requires_grad_();
          Tensor xr = x0.clone().requires_grad_(), pr = p0.clone().requires_grad_();
          const Tensor out = cross_entropy(x, p, w, -100, r, ls);
          const Tensor ref = ce_prob_ref(xr, pr, w, r, ls);
          testing::require_close(out, ref, tol, tol);
          const Tensor v = Tensor::randn(out.shape(), {.dtype = dt}, &gen);
          const auto g = autograd::grad({out}, {x, p}, {v});
          const auto gr = autograd::grad({ref}, {xr, pr}, {v});
          testing::require_close(g[0], gr[0], tol, tol);
          testing::require_close(g[1], gr[1], tol, tol);
        }
      }
    }
  }
}

// ======================================================================================
// gradcheck (float64, random upstream)
// ======================================================================================

TEST_CASE("cross_entropy passes gradcheck and gradgradcheck") {
  const Tensor t2 = Tensor::of({2, -100, 0, 4, 1}, {.dtype = kInt64});
  const Tensor t4 = random_targets({2, 3, 2}, 4, 7, 1, 0.0);
  const Tensor w5 = testing::randn64({5}, 3, false).abs() + 0.1;
  const Tensor w4 = testing::randn64({4}, 4, false).abs() + 0.1;
  for (Reduction r : kReductions) {
    INFO(reduction_name(r));
    for (double ls : {0.0, 0.2}) {
      INFO("ls " << ls);
      Tensor x = testing::randn64({5, 5}, 1);
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t2, w5, -100, r, ls); }, {x}));
      REQUIRE(
          gradgradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t2, {}, -100, r, ls); }, {x}));
      Tensor x4 = testing::randn64({2, 4, 3, 2}, 2);
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t4, w4, 1, r, ls); }, {x4}));
      REQUIRE(
          gradgradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t4, w4, 1, r, ls); }, {x4}));
      // probability targets: both arguments
      Tensor xp = testing::randn64({3, 4, 2}, 5), p = testing::randn64({3, 4, 2}, 6);
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], w4, -100, r, ls); },
                        {xp, p}));
      REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], {}, -100, r, ls); },
                            {xp, p}));
    }
  }
}

// ======================================================================================
// nll_loss
// ======================================================================================

TEST_CASE("nll_loss matches PyTorch") {
  check_fixture("nll_basic", nll_fn(), false);
  check_fixture("nll_weight_ignore", nll_fn(), false);
  check_fixture("nll_all_ignored", nll_fn(), false);
  check_fixture("nll_4d", nll_fn(1), false);
  check_fixture("nll_3d", nll_fn(), false);
}

TEST_CASE("nll_loss passes gradcheck and gradgradcheck") {
  const Tensor t = Tensor::of({2, -100, 0, 3}, {.dtype = kInt64});
  const Tensor w = testing::randn64({4}, 9, false).abs();
  const Tensor t3 = random_targets({2, 5}, 4, 3, 2, 0.0);
  for (Reduction r : kReductions) {
    INFO(reduction_name(r));
    Tensor x = testing::randn64({4, 4}, 1), x3 = testing::randn64({2, 4, 5}, 2);
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t, w, -100, r); }, {x}));
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t3, w, 2, r); }, {x3}));
    // Second order goes through the upstream gradient (the loss is linear in its input).
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return nll_loss(in[0] * in[0], t3, w, 2, r); }, {x3}));
  }
}

// ======================================================================================
// classification errors: PyTorch's messages
// ======================================================================================

TEST_CASE("cross_entropy reports PyTorch's errors") {
  const Tensor x = Tensor::zeros({5, 4});
  auto longs = [](std::initializer_list<NestedList> v) { return Tensor::of(NestedList(v), {.dtype = kInt64}); };
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2})),
                "cross_entropy: Expected input batch_size (5) to match target batch_size (3).");
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2, 4, 0})), "cross_entropy: Target 4 is out of bounds.");
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2, -3, 7})), "cross_entropy: Target -3 is out of bounds.");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({4}), Tensor::scalar(5, kInt64)),
                "cross_entropy: Target 5 is out of bounds.");
  REQUIRE_ERROR(cross_entropy(x, Tensor::of({0, 1, 2, 3, 0})),
                "cross_entropy: expected scalar type Long but found Float");
  REQUIRE_ERROR(cross_entropy(x, Tensor::zeros({5, 4}, {.dtype = kInt64})),
                "cross_entropy: Expected floating point type for target with class probabilities, got Long");
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2, 3, 0}), {}, -100, Reduction::Mean, 1.5),
                "cross_entropy: label_smoothing must be between 0.0 and 1.0. Got: 1.5");
  REQUIRE_ERROR(cross_entropy(x, Tensor::rand({5, 4}), {}, -100, Reduction::Mean, 1.5),
                "cross_entropy: label_smoothing must be between 0.0 and 1.0. Got: 1.5");
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2, 3, 0}), Tensor::ones({3})),
                "cross_entropy: weight tensor should be defined either for all 4 classes or no classes but got weight "
                "tensor of shape: [3]");
  REQUIRE_ERROR(cross_entropy(x, Tensor::rand({5, 4}), Tensor::ones({2, 2})),
                "cross_entropy: weight tensor should be defined either for all 4 classes or no classes but got weight "
                "tensor of shape: [2, 2]");
  REQUIRE_ERROR(cross_entropy(x, Tensor::rand({5, 4}), {}, 1),
                "cross_entropy: ignore_index is not supported for floating point target");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({2, 3, 7}), Tensor::zeros({2, 6}, {.dtype = kInt64})),
                "cross_entropy: Expected target size [2, 7], got [2, 6]");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({2, 3, 7}), Tensor::zeros({2, 7, 1}, {.dtype = kInt64})),
                "cross_entropy: Expected target size [2, 7], got [2, 7, 1]");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({2, 3, 4, 5}), Tensor::zeros({2, 4, 4}, {.dtype = kInt64})),
                "cross_entropy: size mismatch (got input: [2, 3, 4, 5] , target: [2, 4, 4]");
  REQUIRE_ERROR(
      cross_entropy(Tensor::zeros({2, 3, 4, 5}), Tensor::zeros({2, 20}, {.dtype = kInt64})),
      "cross_entropy: only batches of spatial targets supported (3D tensors) but got targets of dimension: 2");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({2, 3, 2, 2, 2}), Tensor::zeros({2, 2, 2, 3}, {.dtype = kInt64})),
                "cross_entropy: Expected target size [2, 2, 2, 2], got [2, 2, 2, 3]");
  REQUIRE_ERROR(cross_entropy(Tensor::zeros({4}), longs({2})),
                "cross_entropy: size mismatch (got input: [4], target: [1])");
  REQUIRE_ERROR(cross_entropy(x, Tensor::zeros({5, 2}, {.dtype = kInt64})),
                "cross_entropy: 0D or 1D target tensor expected, multi-target not supported");
  REQUIRE_ERROR(cross_entropy(x.to(kFloat64), longs({0, 1, 2, 3, 0}), Tensor::ones({4})),
                "cross_entropy: expected scalar type Double but found Float");
  Tensor w = Tensor::ones({4}, {.requires_grad = true});
  REQUIRE_ERROR(cross_entropy(x, longs({0, 1, 2, 3, 0}), w),
                "cross_entropy: The function 'cross_entropy' is not differentiable with respect to argument 'weight'. "
                "This input cannot have requires_grad True.");
  {
    autograd::NoGradGuard ng;  // without recording a weight that requires grad is just a tensor
    REQUIRE(std::isfinite(cross_entropy(x, longs({0, 1, 2, 3, 0}), w).item()));
  }
  REQUIRE_ERROR(nll_loss(Tensor::scalar(1.0), Tensor::scalar(0, kInt64)),
                "nll_loss: Expected 1 or more dimensions (got 0)");
  REQUIRE_ERROR(nll_loss(x, longs({0, 1, 2})),
                "nll_loss: Expected input batch_size (5) to match target batch_size (3).");
  REQUIRE_ERROR(nll_loss(x, Tensor::zeros({5})), "nll_loss: expected scalar type Long but found Float");
}

// ======================================================================================
// regression losses
// ======================================================================================

namespace {
LossFn regression(Tensor (*f)(const Tensor&, const Tensor&, Reduction)) {
  return [f](const Tensor& x, const Tensor& t, const Tensor&, const Tensor&, Reduction r) { return f(x, t, r); };
}
LossFn smooth_l1(double beta) {
  return [beta](const Tensor& x, const Tensor& t, const Tensor&, const Tensor&, Reduction r) {
    return smooth_l1_loss(x, t, r, beta);
  };
}
}  // namespace

TEST_CASE("mse_loss, l1_loss and smooth_l1_loss match PyTorch, broadcast targets included") {
  check_fixture("mse", regression(mse_loss), true);
  check_fixture("l1", regression(l1_loss), true);
  check_fixture("smooth_l1", smooth_l1(1.0), true);
  check_fixture("smooth_l1_b05", smooth_l1(0.5), true);
  check_fixture("smooth_l1_b0", smooth_l1(0.0), true);
  check_fixture("mse_bcast", regression(mse_loss), true);
  check_fixture("l1_bcast", regression(l1_loss), true);
  check_fixture("smooth_l1_bcast", smooth_l1(1.0), true);
}

TEST_CASE("l1_loss's gradient is 0 where input equals target") {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  l1_loss(x, Tensor::of({1.0, 1.0, 4.0}), Reduction::Sum).backward();
  testing::require_close(x.grad(), Tensor::of({0.0, 1.0, -1.0}));
}

TEST_CASE("regression losses pass gradcheck and gradgradcheck") {
  for (Reduction r : kReductions) {
    INFO(reduction_name(r));
    Tensor x = testing::randn64({3, 4}, 1), y = testing::randn64({4}, 2);
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], r); }, {x, y}));
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], r); }, {x, y}));
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return l1_loss(in[0], in[1], r); }, {x, y}));
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return l1_loss(in[0] * in[0], in[1], r); }, {x, y}));
    for (double beta : {1.0, 0.3}) {
      REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return smooth_l1_loss(in[0], in[1], r, beta); }, {x, y}));
      REQUIRE(
          gradgradcheck([&](const std::vector<Tensor>& in) { return smooth_l1_loss(in[0], in[1], r, beta); }, {x, y}));
    }
  }
}

TEST_CASE("regression losses: mean of nothing is NaN, shapes must broadcast, beta must be >= 0") {
  REQUIRE(std::isnan(mse_loss(Tensor::zeros({0}), Tensor::zeros({0})).item()));
  REQUIRE(std::isnan(l1_loss(Tensor::zeros({0}), Tensor::zeros({0})).item()));
  REQUIRE(mse_loss(Tensor::zeros({0}), Tensor::zeros({0}), Reduction::Sum).item() == 0.0);
  // A larger target broadcasts the input (PyTorch warns, then does the same).
  Tensor x = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  const Tensor out = mse_loss(x, Tensor::zeros({3, 2}), Reduction::None);
  REQUIRE(out.shape() == Shape{3, 2});
  out.sum().backward();
  testing::require_close(x.grad(), Tensor::of({6.0, 12.0}));
  // An integer target is promoted.
  testing::require_close(mse_loss(Tensor::of({1.5}), Tensor::of({1}, {.dtype = kInt64})), Tensor::scalar(0.25));
  REQUIRE_ERROR(mse_loss(Tensor::zeros({3, 4}), Tensor::zeros({3})),
                "mse_loss: The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1 "
                "(shapes (3, 4) and (3,))");
  REQUIRE_ERROR(smooth_l1_loss(Tensor::zeros({3}), Tensor::zeros({3}), Reduction::Mean, -1.0),
                "smooth_l1_loss: smooth_l1_loss does not support negative values for beta.");
}

// ======================================================================================
// binary cross-entropy
// ======================================================================================

namespace {
LossFn bce_fn() {
  return [](const Tensor& x, const Tensor& t, const Tensor& w, const Tensor&, Reduction r) {
    return binary_cross_entropy(x, t, w, r);
  };
}
LossFn bcel_fn() {
  return [](const Tensor& x, const Tensor& t, const Tensor& w, const Tensor& pw, Reduction r) {
    return binary_cross_entropy_with_logits(x, t, w, r, pw);
  };
}
}  // namespace

TEST_CASE("binary_cross_entropy matches PyTorch, including the clamped logs at 0 and 1") {
  check_fixture("bce", bce_fn(), true);
  check_fixture("bce_w", bce_fn(), true);
  check_fixture("bce_edge", bce_fn(), true);
}

TEST_CASE("binary_cross_entropy_with_logits matches PyTorch, with weight and pos_weight and extreme logits") {
  check_fixture("bcel", bcel_fn(), true);
  check_fixture("bcel_w", bcel_fn(), true);
  check_fixture("bcel_pw", bcel_fn(), true);
  check_fixture("bcel_w_pw", bcel_fn(), true);
  check_fixture("bcel_extreme", bcel_fn(), true);
}

TEST_CASE("binary cross-entropy losses pass gradcheck and gradgradcheck") {
  const Tensor w = testing::randn64({4}, 7, false).abs();
  const Tensor pw = testing::randn64({4}, 8, false).abs() + 0.5;
  for (Reduction r : kReductions) {
    INFO(reduction_name(r));
    Tensor p = (testing::randn64({3, 4}, 1, false).sigmoid() * 0.9 + 0.05).detach().requires_grad_();
    Tensor t = testing::randn64({3, 4}, 2, false).sigmoid().detach().requires_grad_();
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return binary_cross_entropy(in[0], in[1], w, r); }, {p, t}));
    REQUIRE(
        gradgradcheck([&](const std::vector<Tensor>& in) { return binary_cross_entropy(in[0], in[1], w, r); }, {p, t}));
    Tensor z = testing::randn64({3, 4}, 3);
    REQUIRE(gradcheck(
        [&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], w, r, pw); },
        {z, t}));
    REQUIRE(gradgradcheck(
        [&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], w, r, pw); },
        {z, t}));
  }
}

TEST_CASE("binary cross-entropy losses report PyTorch's errors") {
  REQUIRE_ERROR(binary_cross_entropy(Tensor::of({0.5, 1.5}), Tensor::of({0.0, 1.0})),
                "binary_cross_entropy: all elements of input should be between 0 and 1");
  REQUIRE_ERROR(binary_cross_entropy(Tensor::of({0.5, std::nan("")}), Tensor::of({0.0, 1.0})),
                "binary_cross_entropy: all elements of input should be between 0 and 1");
  REQUIRE_ERROR(binary_cross_entropy(Tensor::rand({3, 4}), Tensor::rand({4})),
                "binary_cross_entropy: Using a target size (torch.Size([4])) that is different to the input size "
                "(torch.Size([3, 4])) is deprecated. Please ensure they have the same size.");
  REQUIRE_ERROR(binary_cross_entropy(Tensor::of({0.5}), Tensor::of({1.0}, {.dtype = kFloat64})),
                "binary_cross_entropy: Found dtype Double but expected Float");
  REQUIRE_ERROR(binary_cross_entropy(Tensor::rand({3, 4}), Tensor::rand({3, 4}), Tensor::rand({3})),
                "binary_cross_entropy: The size of tensor a (4) must match the size of tensor b (3) at non-singleton "
                "dimension 1 (shapes (3, 4) and (3,))");
  REQUIRE_ERROR(binary_cross_entropy_with_logits(Tensor::rand({3, 4}), Tensor::rand({4})),
                "binary_cross_entropy_with_logits: Target size (torch.Size([4])) must be the same as input size "
                "(torch.Size([3, 4]))");
  REQUIRE_ERROR(
      binary_cross_entropy_with_logits(Tensor::rand({3, 4}), Tensor::rand({3, 4}), {}, Reduction::Mean,
                                       Tensor::rand({2, 3, 4})),
      "binary_cross_entropy_with_logits: output with shape [3, 4] doesn't match the broadcast shape [2, 3, 4]");
  Tensor pw = Tensor::ones({4}, {.requires_grad = true});
  REQUIRE_ERROR(binary_cross_entropy_with_logits(Tensor::rand({3, 4}), Tensor::rand({3, 4}), {}, Reduction::Mean, pw),
                "binary_cross_entropy_with_logits: The function 'binary_cross_entropy_with_logits' is not "
                "differentiable with respect to argument 'pos_weight'. This input cannot have requires_grad True.");
}
