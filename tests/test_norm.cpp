// Normalization: batch, instance, layer and group norm, the batch-norm primitives and sync_batch_norm.
//
// Each op is checked four ways: against PyTorch fixtures (forward, running stats over several steps,
// gradients with a random upstream gradient), against the same computation composed from basic
// differentiable ops, against a naive float64 loop on odd shapes that reach every kernel path, and by
// gradcheck / gradgradcheck in float64. Error messages are PyTorch's.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <barrier>
#include <cmath>
#include <functional>
#include <optional>
#include <thread>

using namespace tapegrad;
using testing::Fixture;
using testing::require_close;

namespace {

struct Tol {
  double rtol, atol;
};
// float32: one rounding per element differs from PyTorch's order of operations; gradients are sums
// over whole channels, hence the looser relative bound. float64: agreement to rounding.
Tol fwd_tol(DType dt) { return dt == kFloat32 ? Tol{1e-5, 1e-5} : Tol{1e-10, 1e-12}; }
Tol bwd_tol(DType dt) { return dt == kFloat32 ? Tol{1e-4, 1e-5} : Tol{1e-10, 1e-12}; }

void close(const Tensor& a, const Tensor& b, Tol t) { require_close(a, b, t.rtol, t.atol); }

Tensor param(const Fixture& fx, const std::string& key) {
  if (!fx.has(key)) return {};
  Tensor p = fx[key].clone();
  p.requires_grad_();
  return p;
}

void reset_grads(const std::vector<Tensor>& ts) {
  for (Tensor t : ts)
    if (t.defined()) t.set_grad({});
}

// ---- replaying the fixture cases ----

enum class Kind { Batch, Instance };

struct Stateful {
  std::string name;
  Kind kind;
  int steps = 3;
  bool track = true;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative average, factor 1/k
};

// What the modules will do: train for `steps` (the last with gradients), then eval.
void replay_stateful(const std::string& file, const Stateful& c) {
  const Fixture fx(file);
  const std::string& n = c.name;
  Tensor w = param(fx, n + ".w"), b = param(fx, n + ".b");
  const int64_t C = fx[n + ".x0"].size(1);
  const DType dt = fx[n + ".x0"].dtype();
  Tensor rm, rv;
  if (c.track) {
    rm = Tensor::zeros({C}, {.dtype = dt});
    rv = Tensor::ones({C}, {.dtype = dt});
  }
  auto run = [&](const Tensor& x, bool training, double factor) {
    if (c.kind == Kind::Batch) {
      // BatchNorm: batch statistics when training or when no running stats are tracked.
      return batch_norm(x, rm, rv, w, b, training || !c.track, factor, 1e-5);
    }
    return instance_norm(x, rm, rv, w, b, training || !c.track, factor, 1e-5);
  };
  for (int k = 0; k < c.steps; ++k) {
    INFO(n << " step " << k);
    const bool last = k == c.steps - 1;
    Tensor x = fx[n + ".x" + std::to_string(k)].clone();
    if (last) x.requires_grad_();
    const double factor = c.momentum ? *c.momentum : 1.0 / (k + 1);
    Tensor y = run(x, true, factor);
    close(y, fx[n + ".y" + std::to_string(k)], fwd_tol(dt));
    if (c.track) {
      close(rm, fx[n + ".rm" + std::to_string(k)], fwd_tol(dt));
      close(rv, fx[n + ".rv" + std::to_string(k)], fwd_tol(dt));
    }
    if (last) {
      y.backward(fx[n + ".g"]);
      close(x.grad(), fx[n + ".dx"], bwd_tol(dt));
      if (w.defined()) {
        close(w.grad(), fx[n + ".dw"], bwd_tol(dt));
        close(b.grad(), fx[n + ".db"], bwd_tol(dt));
      }
    }
  }
  INFO(n << " eval");
  reset_grads({w, b});
  Tensor xe = fx[n + ".xe"].clone().requires_grad_();
  const Tensor rm_before = rm.defined() ? rm.clone() : Tensor();
  Tensor ye = run(xe, false, 0.1);
  close(ye, fx[n + ".ye"], fwd_tol(dt));
  if (c.track) REQUIRE(allclose(rm, rm_before, 0, 0));  // eval never updates
  ye.backward(fx[n + ".ge"]);
  close(xe.grad(), fx[n + ".dxe"], bwd_tol(dt));
  if (w.defined()) {
    close(w.grad(), fx[n + ".dwe"], bwd_tol(dt));
    close(b.grad(), fx[n + ".dbe"], bwd_tol(dt));
  }
}

using NormFn = std::function<Tensor(const Tensor& x, const Tensor& w, const Tensor& b)>;

void replay_stateless(const std::string& file, const std::string& n, const NormFn& f) {
  INFO(n);
  const Fixture fx(file);
  Tensor w = param(fx, n + ".w"), b = param(fx, n + ".b");
  Tensor x = fx[n + ".x0"].clone().requires_grad_();
  const DType dt = x.dtype();
  Tensor y = f(x, w, b);
  close(y, fx[n + ".y0"], fwd_tol(dt));
  y.backward(fx[n + ".g"]);
  close(x.grad(), fx[n + ".dx"], bwd_tol(dt));
  if (w.defined()) {
    close(w.grad(), fx[n + ".dw"], bwd_tol(dt));
    close(b.grad(), fx[n + ".db"], bwd_tol(dt));
  }
}

void replay_all(const std::string& file) {
  replay_stateful(file, {"bn1d_nc", Kind::Batch});
  replay_stateful(file, {"bn1d_ncl", Kind::Batch});
  replay_stateful(file, {"bn2d", Kind::Batch});
  replay_stateful(file, {"bn2d_cma", Kind::Batch, 3, true, std::nullopt});
  replay_stateful(file, {"bn2d_noaffine", Kind::Batch, 3, true, 0.3});
  replay_stateful(file, {"bn3d", Kind::Batch});
  replay_stateful(file, {"bn2d_notrack", Kind::Batch, 1, false});
  replay_stateful(file, {"in1d", Kind::Instance});
  replay_stateful(file, {"in2d", Kind::Instance, 1, false});
  replay_stateful(file, {"in3d", Kind::Instance, 3, true, 0.5});
  // InstanceNorm1d on an unbatched (C, L) input: unsqueeze, normalize, squeeze.
  replay_stateless(file, "in1d_unbatched", [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return instance_norm(x.unsqueeze(0), {}, {}, w, b, true, 0.1, 1e-5).squeeze(0);
  });
  replay_stateless(file, "ln",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {8}, w, b); });
  replay_stateless(file, "ln2", [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return layer_norm(x, {4, 5}, w, b);
  });
  replay_stateless(file, "ln_noaffine",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {6}, w, b); });
  replay_stateless(file, "ln_size1",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {1}, w, b); });
  replay_stateless(file, "gn",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 3, w, b); });
  replay_stateless(file, "gn_noaffine",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 2, w, b); });
  replay_stateless(file, "gn_nospatial",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 3, w, b); });
  replay_stateless(file, "gn_g1",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 1, w, b); });
  replay_stateless(file, "gn_gc",
                   [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 4, w, b); });
}

// ---- a naive float64 reference: plain loops over x viewed as (N, G, K, S) ----

struct Ref {
  std::vector<double> y, dx, dw, db, mean, var;
};

// Statistics per g over (N, K, S) when across (batch norm), else per (n, g) over (K, S); affine per
// channel c = g·K + k (empty w / b: none). When `given_mean` is set the statistics are constants.
Ref naive_norm(const std::vector<double>& x, const std::vector<double>& gy, int64_t N, int64_t G, int64_t K, int64_t S,
               bool across, const std::vector<double>& w, const std::vector<double>& b, double eps,
               const std::vector<double>* given_mean = nullptr, const std::vector<double>* given_var = nullptr) {
  const int64_t Q = across ? G : N * G;
  Ref r;
  r.y.assign(x.size(), 0);
  r.dx.assign(x.size(), 0);
  r.dw.assign(static_cast<size_t>(G * K), 0);
  r.db.assign(static_cast<size_t>(G * K), 0);
  r.mean.assign(static_cast<size_t>(Q), 0);
  r.var.assign(static_cast<size_t>(Q), 0);
  for (int64_t q = 0; q < Q; ++q) {
    const int64_t g = across ? q : q % G;
    std::vector<int64_t> idx;
    for (int64_t n = across ? 0 : q / G; n < (across ? N : q / G + 1); ++n)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t s = 0; s < S; ++s) idx.push_back(((n * G + g) * K + k) * S + s);
    const double cnt = static_cast<double>(idx.size());
    double mean = 0, var = 0;
    for (int64_t i : idx) mean += x[i];
    mean /= cnt;
    for (int64_t i : idx) var += (x[i] - mean) * (x[i] - mean);
    var /= cnt;
    if (given_mean) {
      mean = (*given_mean)[g];
      var = (*given_var)[g];
    }
    r.mean[q] = mean;
    r.var[q] = var;
    const double rs = 1 / std::sqrt(var + eps);
    auto chan = [&](int64_t i) { return g * K + (i / S) % K; };
    auto wc = [&](int64_t i) { return w.empty() ? 1.0 : w[chan(i)]; };
    double sum_gw = 0, sum_gwx = 0;
    for (int64_t i : idx) {
      const double xhat = (x[i] - mean) * rs;
      r.y[i] = xhat * wc(i) + (b.empty() ? 0.0 : b[chan(i)]);
      sum_gw += gy[i] * wc(i);
      sum_gwx += gy[i] * wc(i) * xhat;
      r.dw[chan(i)] += gy[i] * xhat;
      r.db[chan(i)] += gy[i];
    }
    for (int64_t i : idx) {
      const double xhat = (x[i] - mean) * rs, gw = gy[i] * wc(i);
      r.dx[i] = given_mean ? rs * gw : rs * (gw - sum_gw / cnt - xhat * sum_gwx / cnt);
    }
  }
  return r;
}

Tensor tensor_of(const std::vector<double>& v, const Shape& s, DType dt) { return Tensor::from_vector(v, s).to(dt); }

Tensor random(const Shape& s, uint64_t seed, DType dt, double scale = 1, double shift = 0) {
  Generator gen(seed);
  return (Tensor::randn(s, {.dtype = kFloat64}, &gen) * scale + shift).to(dt);
}

// Runs f on x (and optional per-channel w, b), backward with a random upstream gradient, and compares
// forward and all gradients with the naive reference.
void check_against_naive(const NormFn& f, const Shape& shape, int64_t N, int64_t G, int64_t K, int64_t S, bool across,
                         bool affine, DType dt, const Shape& wshape, uint64_t seed, double scale = 1,
                         double shift = 0) {
  INFO("shape " << shape_str(shape) << " " << dtype_name(dt) << (affine ? " affine" : ""));
  Tensor x = random(shape, seed, dt, scale, shift).requires_grad_();
  Tensor gy = random(shape, seed + 1, dt);
  Tensor w, b;
  if (affine) {
    w = random(wshape, seed + 2, dt, 0.5, 1).requires_grad_();
    b = random(wshape, seed + 3, dt, 0.5).requires_grad_();
  }
  Tensor y = f(x, w, b);
  y.backward(gy);
  const Ref r = naive_norm(x.to_vector<double>(), gy.to_vector<double>(), N, G, K, S, across,
                           affine ? w.to_vector<double>() : std::vector<double>{},
                           affine ? b.to_vector<double>() : std::vector<double>{}, 1e-5);
  const Tol t = dt == kFloat32 ? Tol{1e-4, 2e-5} : Tol{1e-9, 1e-11};
  close(y, tensor_of(r.y, shape, kFloat64), t);
  close(x.grad(), tensor_of(r.dx, shape, kFloat64), t);
  if (affine) {
    close(w.grad(), tensor_of(r.dw, wshape, kFloat64), t);
    close(b.grad(), tensor_of(r.db, wshape, kFloat64), t);
  }
}

// ---- the same ops composed from basic differentiable ops ----

// x viewed as (N, G, K, S): statistics over `red`, affine per (g, k).
Tensor composed_norm(const Tensor& x, const Shape& shape4, bool across, const Tensor& w, const Tensor& b, double eps) {
  const Tensor x4 = x.reshape(shape4);
  const Shape red = across ? Shape{0, 2, 3} : Shape{2, 3};
  const Tensor mu = x4.mean(red, true);
  const Tensor xc = x4 - mu;
  const Tensor var = (xc * xc).mean(red, true);
  Tensor y = xc * rsqrt(var + eps);
  const Shape pshape{1, shape4[1], shape4[2], 1};
  if (w.defined()) y = y * w.reshape(pshape);
  if (b.defined()) y = y + b.reshape(pshape);
  return y.reshape(x.shape());
}

// Forward and gradients (x, w, b) of f and g agree with a random upstream gradient.
void check_same_grads(const NormFn& f, const NormFn& g, const Tensor& x0, const Tensor& w0, const Tensor& b0,
                      uint64_t seed, Tol t = {1e-10, 1e-12}) {
  auto run = [&](const NormFn& fn) {
    Tensor x = x0.detach().clone().requires_grad_();
    Tensor w = w0.defined() ? w0.detach().clone().requires_grad_() : Tensor();
    Tensor b = b0.defined() ? b0.detach().clone().requires_grad_() : Tensor();
    Tensor y = fn(x, w, b);
    std::vector<Tensor> ins{x};
    if (w.defined()) ins.push_back(w);
    if (b.defined()) ins.push_back(b);
    Generator gen(seed);
    const Tensor gy = Tensor::randn(y.shape(), {.dtype = y.dtype()}, &gen);
    auto grads = autograd::grad({y}, ins, {gy});
    grads.insert(grads.begin(), y.detach());
    return grads;
  };
  const auto a = run(f), c = run(g);
  REQUIRE(a.size() == c.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("output " << i << " (0: y, then the gradients of x, w, b)");
    close(a[i], c[i], t);
  }
}

}  // namespace

// ======================================================================================================
// PyTorch fixtures
// ======================================================================================================

TEST_CASE("norm ops match PyTorch in float32: train steps, running stats, eval, gradients") {
  replay_all("norm.safetensors");
}

TEST_CASE("norm ops match PyTorch in float64") { replay_all("norm64.safetensors"); }

TEST_CASE("fixture provenance is recorded") {
  const Fixture fx("norm.safetensors");
  REQUIRE(fx.metadata().count("torch") == 1);
  REQUIRE(fx.metadata().at("generator") == "norm.safetensors");
}

// ======================================================================================================
// fused backward against the composed computation
// ======================================================================================================

TEST_CASE("batch_norm's fused backward equals the composed computation's, train and eval") {
  const Tensor x = testing::randn64({4, 3, 5, 2}, 1, false), w = testing::randn64({3}, 2, false),
               b = testing::randn64({3}, 3, false);
  NormFn fused = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return batch_norm(x, {}, {}, w, b, true, 0.1, 1e-5);
  };
  NormFn composed = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return composed_norm(x, {4, 3, 1, 10}, true, w, b, 1e-5);
  };
  check_same_grads(fused, composed, x, w, b, 11);
  check_same_grads(fused, composed, x, {}, {}, 12);
  // (N, C): the column kernels.
  const Tensor x2 = testing::randn64({9, 5}, 4, false), w2 = testing::randn64({5}, 5, false);
  check_same_grads(
      fused,
      [](const Tensor& x, const Tensor& w, const Tensor& b) {
        return composed_norm(x, {9, 5, 1, 1}, true, w, b, 1e-5);
      },
      x2, w2, w2 * 0.5, 13);
  // Eval: running statistics are constants.
  const Tensor rm = testing::randn64({3}, 6, false), rv = testing::randn64({3}, 7, false).abs() + 0.5;
  check_same_grads(
      [&](const Tensor& x, const Tensor& w, const Tensor& b) { return batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5); },
      [&](const Tensor& x, const Tensor& w, const Tensor& b) {
        const Shape p{1, 3, 1, 1};
        return (x - rm.reshape(p)) * rsqrt(rv.reshape(p) + 1e-5) * w.reshape(p) + b.reshape(p);
      },
      x, w, b, 14);
}

TEST_CASE("instance_norm, layer_norm and group_norm fused backward equal the composed computation's") {
  const Tensor x = testing::randn64({3, 4, 5, 3}, 21, false), w4 = testing::randn64({4}, 22, false),
               b4 = testing::randn64({4}, 23, false);
  check_same_grads([](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, {}, {}, w, b); },
                   [](const Tensor& x, const Tensor& w, const Tensor& b) {
                     return composed_norm(x, {3, 4, 1, 15}, false, w, b, 1e-5);
                   },
                   x, w4, b4, 24);
  check_same_grads([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 2, w, b); },
                   [](const Tensor& x, const Tensor& w, const Tensor& b) {
                     return composed_norm(x, {3, 2, 2, 15}, false, w, b, 1e-5);
                   },
                   x, w4, b4, 25);
  check_same_grads([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 2, w, b); },
                   [](const Tensor& x, const Tensor& w, const Tensor& b) {
                     return composed_norm(x, {3, 2, 2, 15}, false, w, b, 1e-5);
                   },
                   x, {}, {}, 26);
  const Tensor wl = testing::randn64({5, 3}, 27, false), bl = testing::randn64({5, 3}, 28, false);
  check_same_grads(
      [](const Tensor& x, const Tensor& w, const Tensor& b) {
        return layer_norm(x, {5, 3}, w, b);
      },
      [](const Tensor& x, const Tensor& w, const Tensor& b) {
        return composed_norm(x, {12, 1, 15, 1}, false, w, b, 1e-5);
      },
      x, wl, bl, 29);
  // Instance norm in eval with running stats: constants.
  const Tensor rm = testing::randn64({4}, 30, false), rv = testing::randn64({4}, 31, false).abs() + 0.5;
  check_same_grads(
      [&](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, rm, rv, w, b, false); },
      [&](const Tensor& x, const Tensor& w, const Tensor& b) {
        const Shape p{1, 4, 1, 1};
        return (x - rm.reshape(p)) * rsqrt(rv.reshape(p) + 1e-5) * w.reshape(p) + b.reshape(p);
      },
      x, w4, b4, 32);
}

// ======================================================================================================
// gradcheck (random upstream gradient) and double backward
// ======================================================================================================

TEST_CASE("gradcheck: every norm op in float64, train and eval") {
  Tensor x = testing::randn64({3, 2, 4}, 41), w = testing::randn64({2}, 42), b = testing::randn64({2}, 43);
  const Tensor rm = testing::randn64({2}, 44, false), rv = testing::randn64({2}, 45, false).abs() + 0.5;
  REQUIRE(
      gradcheck([](const std::vector<Tensor>& t) { return batch_norm(t[0], {}, {}, t[1], t[2], true); }, {x, w, b}));
  REQUIRE(
      gradcheck([&](const std::vector<Tensor>& t) { return batch_norm(t[0], rm, rv, t[1], t[2], false); }, {x, w, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return batch_norm(t[0], {}, {}, {}, {}, true); }, {x}));
  Tensor x2 = testing::randn64({5, 3}, 46), w3 = testing::randn64({3}, 47), b3 = testing::randn64({3}, 48);
  REQUIRE(
      gradcheck([](const std::vector<Tensor>& t) { return batch_norm(t[0], {}, {}, t[1], t[2], true); }, {x2, w3, b3}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return instance_norm(t[0], {}, {}, t[1], t[2]); }, {x, w, b}));
  REQUIRE(gradcheck([&](const std::vector<Tensor>& t) { return instance_norm(t[0], rm, rv, t[1], t[2], false); },
                    {x, w, b}));
  Tensor wl = testing::randn64({2, 4}, 49), bl = testing::randn64({2, 4}, 50);
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return layer_norm(t[0], {2, 4}, t[1], t[2]); }, {x, wl, bl}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return layer_norm(t[0], {4}); }, {x}));
  Tensor xg = testing::randn64({2, 4, 3}, 51), wg = testing::randn64({4}, 52), bg = testing::randn64({4}, 53);
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return group_norm(t[0], 2, t[1], t[2]); }, {xg, wg, bg}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return group_norm(t[0], 4, t[1], t[2]); }, {xg, wg, bg}));
}

TEST_CASE("gradgradcheck: double backward through the composed backward") {
  Tensor x = testing::randn64({3, 2, 3}, 61), w = testing::randn64({2}, 62), b = testing::randn64({2}, 63);
  const Tensor rm = testing::randn64({2}, 64, false), rv = testing::randn64({2}, 65, false).abs() + 0.5;
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return batch_norm(t[0], {}, {}, t[1], t[2], true); },
                        {x, w, b}));
  REQUIRE(gradgradcheck([&](const std::vector<Tensor>& t) { return batch_norm(t[0], rm, rv, t[1], t[2], false); },
                        {x, w, b}));
  REQUIRE(
      gradgradcheck([](const std::vector<Tensor>& t) { return instance_norm(t[0], {}, {}, t[1], t[2]); }, {x, w, b}));
  Tensor wl = testing::randn64({3}, 66), bl = testing::randn64({3}, 67);
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return layer_norm(t[0], {3}, t[1], t[2]); }, {x, wl, bl}));
  Tensor xg = testing::randn64({2, 4, 2}, 68), wg = testing::randn64({4}, 69), bg = testing::randn64({4}, 70);
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return group_norm(t[0], 2, t[1], t[2]); }, {xg, wg, bg}));
}

// ======================================================================================================
// every kernel path against a naive loop, on odd shapes
// ======================================================================================================

TEST_CASE("batch_norm kernels match a naive loop on odd shapes (grouped, per-channel and column paths)") {
  auto bn = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return batch_norm(x, {}, {}, w, b, true, 0.1, 1e-5);
  };
  for (DType dt : {kFloat32, kFloat64}) {
    check_against_naive(bn, {1, 3, 7}, 1, 3, 1, 7, true, true, dt, {3}, 100);
    check_against_naive(bn, {5, 4, 3, 3}, 5, 4, 1, 9, true, false, dt, {4}, 101);
    // Large enough to run in parallel: 3 channels on 2 threads take the per-channel primitives,
    // 4 channels the grouped kernel; 1 channel of 70000 splits rows into pieces.
    check_against_naive(bn, {16, 3, 33, 31}, 16, 3, 1, 33 * 31, true, true, dt, {3}, 102, 2.0, 5.0);
    check_against_naive(bn, {16, 4, 31, 33}, 16, 4, 1, 31 * 33, true, true, dt, {4}, 103);
    check_against_naive(bn, {1, 1, 70001}, 1, 1, 1, 70001, true, true, dt, {1}, 104, 0.1, 100.0);
    // (N, C): column statistics, single thread and parallel, C not a multiple of the vector width.
    check_against_naive(bn, {7, 3}, 7, 1 * 3, 1, 1, true, true, dt, {3}, 105);
    check_against_naive(bn, {5003, 13}, 5003, 13, 1, 1, true, true, dt, {13}, 106, 3.0, -7.0);
    check_against_naive(bn, {41, 3000}, 41, 3000, 1, 1, true, false, dt, {3000}, 107);
  }
  // Columns whose mean dwarfs their spread: the float32 column sums of the backward center each value
  // on the float64 mean (as hi + lo); centering on the mean rounded to float32 would be off by ~0.6%.
  check_against_naive(bn, {20011, 19}, 20011, 19, 1, 1, true, true, kFloat32, {19}, 108, 0.01, 1e3);
}

TEST_CASE("instance_norm, group_norm and layer_norm kernels match a naive loop on odd shapes") {
  for (DType dt : {kFloat32, kFloat64}) {
    check_against_naive(
        [](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, {}, {}, w, b); }, {3, 5, 7}, 3,
        5, 1, 7, false, true, dt, {5}, 200);
    check_against_naive(
        [](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, {}, {}, w, b); },
        {5, 7, 37, 29}, 5, 7, 1, 37 * 29, false, true, dt, {7}, 201);
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 3, w, b); },
                        {2, 9, 5}, 2, 3, 3, 5, false, true, dt, {9}, 202);
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 4, w, b); },
                        {3, 12}, 3, 4, 3, 1, false, true, dt, {12}, 203);  // no spatial dims: runs of K
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 5, w, b); },
                        {6, 15, 23, 19}, 6, 5, 3, 23 * 19, false, true, dt, {15}, 204);
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 2, w, b); },
                        {4, 6, 9}, 4, 2, 3, 9, false, false, dt, {6}, 205);
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {7}, w, b); },
                        {3, 7}, 3, 1, 7, 1, false, true, dt, {7}, 206);
    // Rows longer than one statistics chunk, with a tail that is not a multiple of the lanes.
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {5003}, w, b); },
                        {9, 5003}, 9, 1, 5003, 1, false, true, dt, {5003}, 207, 0.5, 30.0);
    check_against_naive(
        [](const Tensor& x, const Tensor& w, const Tensor& b) {
          return layer_norm(x, {3, 11}, w, b);
        },
        {2, 501, 3, 11}, 1002, 1, 33, 1, false, true, dt, {3, 11}, 208);
    check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {9}, w, b); },
                        {4, 9}, 4, 1, 9, 1, false, false, dt, {9}, 209);
  }
}

TEST_CASE("large float32 outputs (streamed past the caches) match a naive loop, misaligned runs included") {
  // Above 8 MB the kernels write with non-temporal stores; odd row lengths put most runs off the
  // 32-byte boundary, so the scalar head, the streamed body and the tail all run.
  check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {1023}, w, b); },
                      {2051, 1023}, 2051, 1, 1023, 1, false, true, kFloat32, {1023}, 800);
  check_against_naive(
      [](const Tensor& x, const Tensor& w, const Tensor& b) { return batch_norm(x, {}, {}, w, b, true); },
      {64, 3, 101, 111}, 64, 3, 1, 101 * 111, true, true, kFloat32, {3}, 801);
  check_against_naive(
      [](const Tensor& x, const Tensor& w, const Tensor& b) { return batch_norm(x, {}, {}, w, b, true); },
      {2, 4, 513, 521}, 2, 4, 1, 513 * 521, true, true, kFloat32, {4}, 802);  // grouped path
  check_against_naive(
      [](const Tensor& x, const Tensor& w, const Tensor& b) { return batch_norm(x, {}, {}, w, b, true); }, {70001, 31},
      70001, 31, 1, 1, true, true, kFloat32, {31}, 803);  // (N, C) columns
  check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 3, w, b); },
                      {8, 6, 211, 211}, 8, 3, 2, 211 * 211, false, true, kFloat32, {6}, 804);
  check_against_naive([](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, {}, {}, w, b); },
                      {5, 7, 245, 247}, 5, 7, 1, 245 * 247, false, true, kFloat32, {7}, 805);
}

TEST_CASE("statistics keep float32 precision when the mean dwarfs the spread") {
  // x = 1e4 + 0.01·z in float32: a one-pass float sum of squares would lose the variance entirely.
  Tensor x = random({4, 3000}, 300, kFloat32, 0.01, 1e4);
  const Tensor y = layer_norm(x, {3000});
  const Ref r =
      naive_norm(x.to_vector<double>(), std::vector<double>(x.numel(), 0.0), 4, 1, 3000, 1, false, {}, {}, 1e-5);
  require_close(y, tensor_of(r.y, {4, 3000}, kFloat64), 1e-4, 1e-3);
  Tensor xb = random({64, 2, 1000}, 301, kFloat32, 0.01, -1e4);
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  batch_norm(xb, rm, rv, {}, {}, true, 1.0, 1e-5);
  const Ref rb =
      naive_norm(xb.to_vector<double>(), std::vector<double>(xb.numel(), 0.0), 64, 2, 1, 1000, true, {}, {}, 1e-5);
  const double n = 64000;
  require_close(rm, Tensor::from_vector(rb.mean, {2}).to(kFloat32), 1e-7, 0);
  require_close(rv, Tensor::from_vector(std::vector<double>{rb.var[0] * n / (n - 1), rb.var[1] * n / (n - 1)}, {2}),
                1e-5, 0);
}

TEST_CASE("non-contiguous inputs give the same result as contiguous ones") {
  Tensor base = testing::randn64({3, 5, 4, 2}, 310, false);
  const Tensor x = base.permute({0, 3, 2, 1});  // (3, 2, 4, 5), strided
  const Tensor xc = x.contiguous();
  Tensor w = testing::randn64({2}, 311, false), b = testing::randn64({2}, 312, false);
  REQUIRE(allclose(batch_norm(x, {}, {}, w, b, true), batch_norm(xc, {}, {}, w, b, true), 0, 0));
  REQUIRE(allclose(group_norm(x, 2, w, b), group_norm(xc, 2, w, b), 0, 0));
  REQUIRE(allclose(layer_norm(x, {4, 5}), layer_norm(xc, {4, 5}), 0, 0));
  REQUIRE(allclose(instance_norm(x), instance_norm(xc), 0, 0));
}

// ======================================================================================================
// running statistics
// ======================================================================================================

TEST_CASE("batch_norm running stats: unbiased variance, momentum factor, cumulative average") {
  const Tensor x0 = testing::randn64({6, 2, 3}, 400, false), x1 = testing::randn64({6, 2, 3}, 401, false) * 2.0 + 1.0;
  auto stats = [](const Tensor& x) {
    return std::pair{x.mean({0, 2}), ((x - x.mean({0, 2}, true)).pow(2.0)).sum({0, 2}) / 17.0};  // n - 1 = 17
  };
  Tensor rm = Tensor::zeros({2}, {.dtype = kFloat64}), rv = Tensor::ones({2}, {.dtype = kFloat64});
  // Cumulative average (momentum None): factor 1/k.
  batch_norm(x0, rm, rv, {}, {}, true, 1.0 / 1, 1e-5);
  auto [m0, v0] = stats(x0);
  require_close(rm, m0, 1e-12, 1e-14);
  require_close(rv, v0, 1e-12, 1e-14);
  batch_norm(x1, rm, rv, {}, {}, true, 1.0 / 2, 1e-5);
  auto [m1, v1] = stats(x1);
  require_close(rm, (m0 + m1) / 2.0, 1e-12, 1e-14);
  require_close(rv, (v0 + v1) / 2.0, 1e-12, 1e-14);
  // A plain momentum.
  const Tensor rm_before = rm.clone(), rv_before = rv.clone();
  batch_norm(x0, rm, rv, {}, {}, true, 0.25, 1e-5);
  require_close(rm, rm_before * 0.75 + m0 * 0.25, 1e-12, 1e-14);
  require_close(rv, rv_before * 0.75 + v0 * 0.25, 1e-12, 1e-14);
  // The in-place update is a write: the version counter moves.
  const uint64_t v = rm.version();
  batch_norm(x0, rm, rv, {}, {}, true, 0.1, 1e-5);
  REQUIRE(rm.version() > v);
}

TEST_CASE("instance_norm running stats average the per-instance unbiased variances") {
  const Tensor x = testing::randn64({3, 2, 5}, 410, false) * 1.5;
  Tensor rm = Tensor::zeros({2}, {.dtype = kFloat64}), rv = Tensor::ones({2}, {.dtype = kFloat64});
  instance_norm(x, rm, rv, {}, {}, true, 0.4, 1e-5);
  const Tensor mu = x.mean({2});                                         // (3, 2)
  const Tensor var_u = (x - x.mean({2}, true)).pow(2.0).sum({2}) / 4.0;  // s - 1 = 4
  require_close(rm, mu.mean({0}) * 0.4, 1e-12, 1e-14);
  require_close(rv, var_u.mean({0}) * 0.4 + 0.6, 1e-12, 1e-14);
}

// ======================================================================================================
// degenerate cases
// ======================================================================================================

TEST_CASE("empty batch: empty output, running stats untouched, zero parameter gradients") {
  Tensor x = Tensor::zeros({0, 3, 4}).requires_grad_();
  Tensor w = Tensor::ones({3}).requires_grad_(), b = Tensor::zeros({3}).requires_grad_();
  Tensor rm = Tensor::full({3}, 0.5), rv = Tensor::full({3}, 2.0);
  Tensor y = batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
  REQUIRE(y.shape() == Shape{0, 3, 4});
  REQUIRE(allclose(rm, Tensor::full({3}, 0.5), 0, 0));
  REQUIRE(allclose(rv, Tensor::full({3}, 2.0), 0, 0));
  y.sum().backward();
  REQUIRE(x.grad().shape() == Shape{0, 3, 4});
  REQUIRE(allclose(w.grad(), Tensor::zeros({3}), 0, 0));
  REQUIRE(allclose(b.grad(), Tensor::zeros({3}), 0, 0));
  // The other ops too.
  REQUIRE(instance_norm(Tensor::zeros({0, 3, 4}), rm, rv).shape() == Shape{0, 3, 4});
  REQUIRE(allclose(rm, Tensor::full({3}, 0.5), 0, 0));
  REQUIRE(layer_norm(Tensor::zeros({0, 5}), {5}).shape() == Shape{0, 5});
  REQUIRE(group_norm(Tensor::zeros({0, 4, 2}), 2).shape() == Shape{0, 4, 2});
}

TEST_CASE("eps = 0 with a constant channel: batch and instance norm give b, layer and group norm NaN (as PyTorch)") {
  // Channel 0 constant, channel 1 not.
  Tensor x = Tensor::of({{1.0, 0.0}, {1.0, 1.0}, {1.0, 2.0}, {1.0, 3.0}}).requires_grad_();
  Tensor w = Tensor::of({2.0, 3.0}).requires_grad_(), b = Tensor::of({0.5, -0.5}).requires_grad_();
  Tensor y = batch_norm(x, {}, {}, w, b, true, 0.1, 0.0);
  // PyTorch: [0, -1.3416407], [0, -0.4472135], ... with affine: channel 0 is b = 0.5.
  require_close(y.select(1, 0), Tensor::full({4}, 0.5), 0, 0);
  require_close(y.select(1, 1), Tensor::of({-1.3416407, -0.4472135, 0.4472136, 1.3416407}) * 3.0 - 0.5, 1e-6, 1e-6);
  y.backward(Tensor::of({{1.0, 2.0}, {-1.0, 0.5}, {3.0, 1.0}, {0.25, -2.0}}));
  require_close(x.grad().select(1, 0), Tensor::zeros({4}), 0, 0);
  REQUIRE(std::isfinite(w.grad().sum().item()));
  // Eval with running_var = 0, eps = 0: NaN, as PyTorch.
  const Tensor ye = batch_norm(x.detach(), Tensor::ones({2}), Tensor::zeros({2}), {}, {}, false, 0.1, 0.0);
  REQUIRE(std::isnan(ye.select(1, 0).sum().item()));
  // Instance norm goes through the same rule; layer and group norm do not.
  REQUIRE(
      allclose(instance_norm(Tensor::ones({2, 4, 3}), {}, {}, {}, {}, true, 0.1, 0.0), Tensor::zeros({2, 4, 3}), 0, 0));
  REQUIRE(std::isnan(layer_norm(Tensor::ones({2, 3}), {3}, {}, {}, 0.0).sum().item()));
  REQUIRE(std::isnan(group_norm(Tensor::ones({2, 4, 3}), 2, {}, {}, 0.0).sum().item()));
}

TEST_CASE("layer_norm over a normalized size of 1 gives the bias; group norm with one value per group too") {
  Tensor x = Tensor::of({{3.0}, {-2.0}, {7.0}}).requires_grad_();
  Tensor w = Tensor::of({2.0}).requires_grad_(), b = Tensor::of({0.75}).requires_grad_();
  Tensor y = layer_norm(x, {1}, w, b);
  require_close(y, Tensor::full({3, 1}, 0.75), 0, 0);
  y.backward(Tensor::of({{1.0}, {2.0}, {3.0}}));
  require_close(x.grad(), Tensor::zeros({3, 1}), 0, 0);
  require_close(b.grad(), Tensor::of({6.0}), 0, 0);
  // N = 2, C = G = 2, no spatial dims passes F.group_norm's check; the output is the bias.
  require_close(group_norm(Tensor::of({{1.0, 2.0}, {3.0, 4.0}}), 2, Tensor::ones({2}), Tensor::of({5.0, 6.0})),
                Tensor::of({{5.0, 6.0}, {5.0, 6.0}}), 0, 0);
}

// ======================================================================================================
// errors (PyTorch's messages)
// ======================================================================================================

TEST_CASE("batch_norm errors") {
  const Tensor x = Tensor::zeros({4, 5});
  REQUIRE_ERROR(batch_norm(Tensor::zeros({1, 3}), {}, {}, {}, {}, true),
                "batch_norm: Expected more than 1 value per channel when training, got input size torch.Size([1, 3])");
  REQUIRE_ERROR(batch_norm(Tensor::zeros({1, 3, 1, 1}), Tensor::zeros({5}), Tensor::ones({5}), {}, {}, true),
                "batch_norm: Expected more than 1 value per channel when training, got input size torch.Size([1, 3, 1, "
                "1])");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({3}), Tensor::ones({3}), {}, {}, true),
                "batch_norm: running_mean should contain 5 elements not 3");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({5}), Tensor::ones({3}), {}, {}, true),
                "batch_norm: running_var should contain 5 elements not 3");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({5}), Tensor::ones({5}), Tensor::ones({3}), {}, true),
                "batch_norm: weight should contain 5 elements not 3");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({5}), Tensor::ones({5}), Tensor::ones({5}), Tensor::ones({2}), true),
                "batch_norm: bias should contain 5 elements not 2");
  REQUIRE_ERROR(batch_norm(x, {}, Tensor::ones({5}), {}, {}, false),
                "batch_norm: running_mean must be defined in evaluation mode");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({5}), {}, {}, {}, false),
                "batch_norm: running_var must be defined in evaluation mode");
  REQUIRE_ERROR(batch_norm(x, Tensor::zeros({3}), {}, {}, {}, false),
                "batch_norm: running_mean should contain 5 elements not 3");
  REQUIRE_ERROR(batch_norm(Tensor::zeros({5}), {}, {}, {}, {}, true),
                "batch_norm: Dimension out of range (expected to be in range of [-1, 0], but got 1)");
  REQUIRE_ERROR(batch_norm(Tensor::zeros({4, 5}, {.dtype = kInt64}), {}, {}, {}, {}, true),
                "batch_norm: expected a floating point tensor (float32 or float64), got int64");
  // With neither affine parameters nor running stats there is nothing to check C against.
  REQUIRE(batch_norm(Tensor::zeros({4, 7}), {}, {}, {}, {}, true).shape() == Shape{4, 7});
}

TEST_CASE("instance_norm errors") {
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 1})),
                "instance_norm: Expected more than 1 spatial element when training, got input size torch.Size([2, 3, "
                "1])");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3})),
                "instance_norm: Expected more than 1 spatial element when training, got input size torch.Size([2, 3])");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 4}), {}, {}, {}, {}, false),
                "instance_norm: Expected running_mean and running_var to be defined when use_input_stats is false");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 4}), {}, Tensor::ones({3}), {}, {}, false),
                "instance_norm: Expected running_mean and running_var to be defined when use_input_stats is false");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 4}), {}, {}, Tensor::ones({5})),
                "instance_norm: weight should contain 6 elements not 10");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 4}), Tensor::zeros({5}), Tensor::ones({5})),
                "instance_norm: running_mean should contain 6 elements not 10");
  REQUIRE_ERROR(instance_norm(Tensor::zeros({2, 3, 4}), {}, {}, Tensor::ones({3}), Tensor::ones({5})),
                "instance_norm: bias should contain 6 elements not 10");
  // Eval with running stats needs no spatial extent.
  REQUIRE(instance_norm(Tensor::zeros({2, 3, 1}), Tensor::zeros({3}), Tensor::ones({3}), {}, {}, false).shape() ==
          Shape{2, 3, 1});
}

TEST_CASE("layer_norm errors") {
  REQUIRE_ERROR(layer_norm(Tensor::zeros({2, 4, 3}), {3, 4}),
                "layer_norm: Given normalized_shape=[3, 4], expected input with shape [*, 3, 4], but got input of "
                "size[2, 4, 3]");
  REQUIRE_ERROR(layer_norm(Tensor::zeros({3}), {2, 3}),
                "layer_norm: Given normalized_shape=[2, 3], expected input with shape [*, 2, 3], but got input of "
                "size[3]");
  REQUIRE_ERROR(layer_norm(Tensor::zeros({2, 4, 3}), {}),
                "layer_norm: Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one "
                "element, but got normalized_shape = []");
  REQUIRE_ERROR(layer_norm(Tensor::zeros({2, 3}), {3}, Tensor::ones({4})),
                "layer_norm: Expected weight to be of same shape as normalized_shape, but got weight of shape [4] and "
                "normalized_shape = [3]");
  REQUIRE_ERROR(layer_norm(Tensor::zeros({2, 3}), {3}, Tensor::ones({3}), Tensor::ones({4})),
                "layer_norm: Expected bias to be of same shape as normalized_shape, but got bias of shape [4] and "
                "normalized_shape = [3]");
}

TEST_CASE("group_norm errors, including the bias message that prints the weight's shape") {
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 5, 3}), 2),
                "group_norm: Expected number of channels in input to be divisible by num_groups, but got input of "
                "shape [2, 5, 3] and num_groups=2");
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 6, 3}), 2, Tensor::ones({4})),
                "group_norm: Expected weight to be a vector of size equal to the number of channels in input, but got "
                "weight of shape [4] and input of shape [2, 6, 3]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 4, 3}), 2, Tensor::ones({2, 2})),
                "group_norm: Expected weight to be a vector of size equal to the number of channels in input, but got "
                "weight of shape [2, 2] and input of shape [2, 4, 3]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 4, 3}), 2, Tensor::ones({4}), Tensor::ones({3})),
                "group_norm: Expected bias to be a vector of size equal to the number of channels in input, but got "
                "bias of shape [4] and input of shape [2, 4, 3]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 4, 3}), 2, {}, Tensor::ones({3})),
                "group_norm: Expected bias to be a vector of size equal to the number of channels in input, but got "
                "bias of shape [0] and input of shape [2, 4, 3]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({1, 2, 1}), 2),
                "group_norm: Expected more than 1 value per channel when training, got input size [1, 2, 1]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({1, 4}), 4),
                "group_norm: Expected more than 1 value per channel when training, got input size [1, 4]");
  REQUIRE_ERROR(group_norm(Tensor::zeros({2, 4, 3}), -2),
                "group_norm: Expected num groups to be greater than 0, got -2");
  REQUIRE_ERROR(group_norm(Tensor::zeros({4}), 2),
                "group_norm: Expected at least 2 dimensions for input tensor but received 1");
}

// ======================================================================================================
// the tape
// ======================================================================================================

TEST_CASE("each op records one node under its own name, saving input, mean, rstd and weight") {
  Tensor x = testing::randn64({2, 4, 3}, 500), w = testing::randn64({4}, 501), b = testing::randn64({4}, 502);
  REQUIRE(batch_norm(x, {}, {}, w, b, true).grad_fn()->name == "batch_norm");
  REQUIRE(instance_norm(x, {}, {}, w, b).grad_fn()->name == "instance_norm");
  REQUIRE(group_norm(x, 2, w, b).grad_fn()->name == "group_norm");
  Tensor y = layer_norm(x, {3});
  REQUIRE(y.grad_fn()->name == "layer_norm");
  REQUIRE(autograd::tape({y}).size() == 1);
  const std::string t = autograd::format_tape({batch_norm(x, {}, {}, w, b, true)});
  REQUIRE_THAT(t, Catch::Matchers::Contains("saved: input (2, 4, 3), mean (4,), rstd (4,), weight (4,)"));
  // Nothing is recorded when nothing requires grad.
  REQUIRE(!layer_norm(x.detach(), {3}).requires_grad());
}

TEST_CASE("modifying the input in place before backward is caught") {
  Tensor a = testing::randn64({3, 4}, 510);
  Tensor x = a * 1.0;
  Tensor y = layer_norm(x, {4});
  {
    autograd::NoGradGuard ng;
    x.add_(1.0);
  }
  REQUIRE_ERROR_CONTAINS(y.backward(Tensor::ones_like(y)), "layer_norm: one of the variables needed for gradient");
}

// ======================================================================================================
// primitives and sync_batch_norm
// ======================================================================================================

TEST_CASE("batch-norm primitives compose to batch_norm") {
  const Tensor x = testing::randn64({5, 3, 4}, 600, false), dy = testing::randn64({5, 3, 4}, 601, false);
  const Tensor w = testing::randn64({3}, 602, false), b = testing::randn64({3}, 603, false);
  const BatchNormStats s = batch_norm_stats(x, 1e-5);
  REQUIRE(s.count == 20);
  const Ref r = naive_norm(x.to_vector<double>(), dy.to_vector<double>(), 5, 3, 1, 4, true, w.to_vector<double>(),
                           b.to_vector<double>(), 1e-5);
  require_close(s.mean, Tensor::from_vector(r.mean, {3}), 1e-12, 1e-14);
  std::vector<double> inv(3);
  for (int c = 0; c < 3; ++c) inv[c] = 1 / std::sqrt(r.var[c] + 1e-5);
  require_close(s.invstd, Tensor::from_vector(inv, {3}), 1e-12, 1e-14);
  require_close(batch_norm_elemt(x, w, b, s.mean, s.invstd), Tensor::from_vector(r.y, {5, 3, 4}), 1e-12, 1e-12);
  const BatchNormBackwardReduce red = batch_norm_backward_reduce(dy, x, s.mean, s.invstd, w, true, true);
  require_close(red.grad_weight, Tensor::from_vector(r.dw, {3}), 1e-12, 1e-12);
  require_close(red.grad_bias, Tensor::from_vector(r.db, {3}), 1e-12, 1e-12);
  const Tensor dx = batch_norm_backward_elemt(dy, x, s.mean, s.invstd, w, red.sum_dy, red.sum_dy_xmu, 20);
  require_close(dx, Tensor::from_vector(r.dx, {5, 3, 4}), 1e-12, 1e-12);
}

TEST_CASE("gather_stats_with_counts merges ranks exactly as the union (Chan), skipping empty ranks") {
  const Tensor x = testing::randn64({7, 2, 3}, 610, false) * 3.0 + 1.0;
  const Tensor a = x.narrow(0, 0, 2), b = x.narrow(0, 2, 5);
  const BatchNormStats sa = batch_norm_stats(a, 1e-5), sb = batch_norm_stats(b, 1e-5), sx = batch_norm_stats(x, 1e-5);
  const Tensor mean_all = Tensor::zeros({3, 2}, {.dtype = kFloat64}),
               invstd_all = Tensor::zeros({3, 2}, {.dtype = kFloat64});
  {
    autograd::NoGradGuard ng;
    mean_all.select(0, 0).copy_(sa.mean);
    mean_all.select(0, 2).copy_(sb.mean);
    invstd_all.select(0, 0).copy_(sa.invstd);
    invstd_all.select(0, 2).copy_(sb.invstd);
  }
  const Tensor counts = Tensor::of({6.0, 0.0, 15.0}, {.dtype = kFloat64});  // rank 1 is empty
  Tensor rm = Tensor::zeros({2}, {.dtype = kFloat64}), rv = Tensor::ones({2}, {.dtype = kFloat64});
  auto [mean, invstd] = batch_norm_gather_stats_with_counts(mean_all, invstd_all, counts, rm, rv, 1.0, 1e-5);
  require_close(mean, sx.mean, 1e-12, 1e-14);
  require_close(invstd, sx.invstd, 1e-10, 1e-14);
  Tensor rm2 = Tensor::zeros({2}, {.dtype = kFloat64}), rv2 = Tensor::ones({2}, {.dtype = kFloat64});
  batch_norm(x, rm2, rv2, {}, {}, true, 1.0, 1e-5);
  require_close(rm, rm2, 1e-12, 1e-14);
  require_close(rv, rv2, 1e-9, 1e-14);
}

namespace {

// Ranks simulated by threads sharing memory: all_gather stacks every rank's stats, all_reduce sums.
struct FakeGroup {
  explicit FakeGroup(int world) : world(world), sync(world), slots(world) {}
  int world;
  std::barrier<> sync;
  std::vector<Tensor> slots;
  int reductions = 0;

  BatchNormSyncHooks hooks(int rank) {
    BatchNormSyncHooks h;
    h.all_gather = [this, rank](const Tensor& t) {
      slots[rank] = t.clone();
      sync.arrive_and_wait();
      Tensor out = Tensor::empty({world, t.numel()}, {.dtype = kFloat64});
      for (int r = 0; r < world; ++r) {
        autograd::NoGradGuard ng;
        out.select(0, r).copy_(slots[r]);
      }
      sync.arrive_and_wait();
      return out;
    };
    h.all_reduce_sum = [this, rank](const Tensor& t) {
      slots[rank] = t.clone();
      sync.arrive_and_wait();
      Tensor out = Tensor::zeros({t.numel()}, {.dtype = kFloat64});
      {
        autograd::NoGradGuard ng;
        for (int r = 0; r < world; ++r) out.add_(slots[r]);
      }
      if (rank == 0) ++reductions;
      sync.arrive_and_wait();
      return out;
    };
    return h;
  }
};

}  // namespace

TEST_CASE("sync_batch_norm over simulated ranks equals batch_norm over the whole batch") {
  for (DType dt : {kFloat64, kFloat32}) {
    INFO(dtype_name(dt));
    // Ranks hold 3, 1 and 0 samples (a single sample and an empty rank are allowed).
    const Tensor x = random({4, 3, 5}, 700, dt, 2.0, 1.0), gy = random({4, 3, 5}, 701, dt);
    const Tensor w0 = random({3}, 702, dt), b0 = random({3}, 703, dt);
    const std::vector<std::pair<int64_t, int64_t>> parts{{0, 3}, {3, 1}, {4, 0}};
    const Tol t = dt == kFloat32 ? Tol{1e-5, 1e-5} : Tol{1e-10, 1e-12};

    // Reference: one process, the whole batch.
    Tensor xr = x.clone().requires_grad_(), wr = w0.clone().requires_grad_(), br = b0.clone().requires_grad_();
    Tensor rm_ref = Tensor::zeros({3}, {.dtype = dt}), rv_ref = Tensor::ones({3}, {.dtype = dt});
    Tensor yr = batch_norm(xr, rm_ref, rv_ref, wr, br, true, 0.1, 1e-5);
    yr.backward(gy);

    FakeGroup group(3);
    std::vector<Tensor> ys(3), dxs(3), dws(3), dbs(3), rms(3), rvs(3);
    std::vector<std::thread> ranks;
    for (int r = 0; r < 3; ++r) {
      ranks.emplace_back([&, r] {
        Tensor xl = x.narrow(0, parts[r].first, parts[r].second).contiguous().requires_grad_();
        Tensor wl = w0.clone().requires_grad_(), bl = b0.clone().requires_grad_();
        rms[r] = Tensor::zeros({3}, {.dtype = dt});
        rvs[r] = Tensor::ones({3}, {.dtype = dt});
        Tensor y = sync_batch_norm(xl, rms[r], rvs[r], wl, bl, 0.1, 1e-5, group.hooks(r));
        y.backward(gy.narrow(0, parts[r].first, parts[r].second).contiguous());
        ys[r] = y.detach();
        dxs[r] = xl.grad();
        dws[r] = wl.grad();
        dbs[r] = bl.grad();
      });
    }
    for (auto& th : ranks) th.join();
    REQUIRE(group.reductions == 1);
    Tensor dw_sum = Tensor::zeros({3}, {.dtype = dt}), db_sum = Tensor::zeros({3}, {.dtype = dt});
    for (int r = 0; r < 3; ++r) {
      const auto [start, len] = parts[r];
      close(rms[r], rm_ref, t);  // every rank's running stats use the global statistics
      close(rvs[r], rv_ref, t);
      if (len == 0) {
        REQUIRE(ys[r].shape() == Shape{0, 3, 5});
        REQUIRE(!dws[r].defined());
        continue;
      }
      close(ys[r], yr.detach().narrow(0, start, len), t);
      close(dxs[r], xr.grad().narrow(0, start, len), t);
      dw_sum = dw_sum + dws[r];  // parameter gradients stay local; their sum is the whole batch's
      db_sum = db_sum + dbs[r];
    }
    close(dw_sum, wr.grad(), t);
    close(db_sum, br.grad(), t);
  }
}
