// Higher-order gradients: backward with create_graph records the backward's own tape, so gradients of
// gradients are checked against finite differences (gradgradcheck) for every op family whose backward
// is built from differentiable ops; fused kernels without such a backward say so, naming the op.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/ops/rnn.h>

#include <vector>

using namespace tapegrad;

namespace {
using Inputs = std::vector<Tensor>;

// A float64 tensor away from 0, for log, sqrt and division.
Tensor positive64(const Shape& shape, uint64_t seed) {
  return (testing::randn64(shape, seed, false).abs() + 0.5).detach().requires_grad_();
}
}  // namespace

TEST_CASE("second-order gradcheck: elementwise ops") {
  Tensor a = testing::randn64({3, 4}, 1), b = testing::randn64({4}, 2), p = positive64({3, 4}, 3);
  REQUIRE(gradgradcheck([](const Inputs& x) { return x[0] * x[1] + x[0] / (x[1] * x[1] + 1.0) - x[1]; }, {a, b}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return x[0].exp() + x[0].tanh() * x[0].sigmoid(); }, {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return x[0].log() + x[0].sqrt() + x[0].rsqrt() + pow(x[0], 2.5); }, {p}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return pow(x[0], x[1]); }, {p, b}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return silu(x[0]) + softplus(x[0]) + gelu(x[0]); }, {a}));
}

TEST_CASE("second-order gradcheck: matmul and linear") {
  Tensor a = testing::randn64({3, 4}, 11), b = testing::randn64({4, 5}, 12), v = testing::randn64({4}, 13);
  REQUIRE(gradgradcheck([](const Inputs& x) { return matmul(x[0], x[1]).tanh(); }, {a, b}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return matmul(x[0], x[1]) * matmul(x[0], x[1]); }, {a, v}));
  Tensor w = testing::randn64({5, 4}, 14), bias = testing::randn64({5}, 15);
  REQUIRE(gradgradcheck([](const Inputs& x) { return linear(x[0], x[1], x[2]).sigmoid(); }, {a, w, bias}));
}

TEST_CASE("second-order gradcheck: reductions") {
  Tensor a = testing::randn64({3, 4}, 21);
  REQUIRE(gradgradcheck([](const Inputs& x) { return sum(x[0] * x[0], {1}) * mean(x[0].exp(), {0}).sum(); }, {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return var(x[0], {1}) + tapegrad::std(x[0], {0}).sum(); }, {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return logsumexp(x[0], {1}) * amax(x[0] * x[0], {1}); }, {a}));
}

TEST_CASE("second-order gradcheck: softmax, log_softmax and cross_entropy") {
  Tensor a = testing::randn64({3, 5}, 31);
  REQUIRE(gradgradcheck([](const Inputs& x) { return softmax(x[0], 1); }, {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return log_softmax(x[0], 0); }, {a}));
  const Tensor target = Tensor::of({1, 0, 4}, {.dtype = kInt64});
  REQUIRE(gradgradcheck([&](const Inputs& x) { return cross_entropy(x[0], target); }, {a}));
  const Tensor y = testing::randn64({3, 5}, 32, false);
  REQUIRE(gradgradcheck([&](const Inputs& x) { return mse_loss(x[0].tanh(), y); }, {a}));
  REQUIRE(gradgradcheck([&](const Inputs& x) { return binary_cross_entropy_with_logits(x[0], y.sigmoid()); }, {a}));
}

TEST_CASE("second-order gradcheck: conv2d, pooling and the normalizations") {
  Tensor x = testing::randn64({2, 4, 5, 5}, 41), w = testing::randn64({3, 4, 3, 3}, 42), b = testing::randn64({3}, 43);
  REQUIRE(gradgradcheck([](const Inputs& v) { return conv2d(v[0], v[1], v[2], {1, 1}, {1, 1}); }, {x, w, b}));
  REQUIRE(gradgradcheck([](const Inputs& v) { return max_pool2d(v[0] * v[0], {2, 2}); }, {x}));
  REQUIRE(gradgradcheck([](const Inputs& v) { return avg_pool2d(v[0] * v[0], {2, 2}); }, {x}));
  Tensor g = testing::randn64({4}, 44), beta = testing::randn64({4}, 45);
  REQUIRE(gradgradcheck([](const Inputs& v) { return batch_norm(v[0], {}, {}, v[1], v[2], /*training=*/true); },
                        {x, g, beta}));
  REQUIRE(gradgradcheck([](const Inputs& v) { return layer_norm(v[0], {5, 5}, {}, {}); }, {x}));
  REQUIRE(gradgradcheck([](const Inputs& v) { return group_norm(v[0], 2, v[1], v[2]); }, {x, g, beta}));
}

TEST_CASE("second-order gradcheck: views, shape ops, indexing and embedding") {
  // Each op's output is squared so that the second derivative is not identically zero.
  Tensor a = testing::randn64({3, 4}, 81), b = testing::randn64({3, 4}, 82);
  REQUIRE(gradgradcheck([](const Inputs& x) { return x[0].t().reshape({2, 6}).slice(1, 1, 5).pow(2.0); }, {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return x[0].unsqueeze(0).expand({2, 3, 4}).permute({2, 0, 1}).pow(2.0); },
                        {a}));
  REQUIRE(gradgradcheck([](const Inputs& x) { return cat({x[0], x[1]}, 1).pow(2.0) + stack({x[0], x[1]}).sum(); },
                        {a, b}));
  const Tensor rows = Tensor::of({2, 0, 2}, {.dtype = kInt64});
  const Tensor idx = Tensor::of({{0, 2, 1, 0}, {2, 2, 0, 1}}, {.dtype = kInt64});
  REQUIRE(gradgradcheck([&](const Inputs& x) { return index_select(x[0], 0, rows).pow(2.0); }, {a}));
  REQUIRE(gradgradcheck([&](const Inputs& x) { return gather(x[0], 0, idx).pow(2.0); }, {a}));
  REQUIRE(gradgradcheck([&](const Inputs& x) { return scatter_add(x[0], 0, idx, x[1]).pow(2.0); }, {a, b}));
  REQUIRE(gradgradcheck([&](const Inputs& x) { return embedding(x[0], rows).pow(2.0); }, {a}));
  const Tensor target = Tensor::of({1, 0, 3}, {.dtype = kInt64});
  REQUIRE(gradgradcheck([&](const Inputs& x) { return nll_loss(log_softmax(x[0], 1), target); }, {a}));
}

TEST_CASE("a gradient penalty on an MLP: second-order gradcheck and a training step") {
  // f(x; W1, b1, W2, b2) = W2 tanh(W1 x + b1) + b2; penalty = sum((d f.sum() / d x)^2).
  Tensor x = testing::randn64({4, 3}, 51), w1 = testing::randn64({6, 3}, 52), b1 = testing::randn64({6}, 53);
  Tensor w2 = testing::randn64({2, 6}, 54), b2 = testing::randn64({2}, 55);
  auto mlp = [](const Inputs& v) { return linear(linear(v[0], v[1], v[2]).tanh(), v[3], v[4]); };
  REQUIRE(gradgradcheck(mlp, {x, w1, b1, w2, b2}));

  // The penalty's gradient with respect to W1 by autograd, against central differences.
  auto penalty = [&](const Tensor& W1) {
    Tensor xi = x.detach().requires_grad_();
    Tensor out = mlp({xi, W1, b1, w2, b2}).sum();
    Tensor gx = autograd::grad({out}, {xi}, {}, true, /*create_graph=*/true)[0];
    return (gx * gx).sum();
  };
  Tensor p = penalty(w1);
  p.backward();
  REQUIRE(w1.grad().defined());
  const auto analytic = w1.grad().to_vector<double>();
  auto base = w1.detach().to_vector<double>();
  for (size_t i = 0; i < base.size(); i += 5) {
    // penalty() differentiates in x, so it runs with grad mode on even for these probes.
    auto eval = [&](double d) {
      auto v = base;
      v[i] += d;
      return penalty(Tensor::from_vector(v, w1.shape()).requires_grad_()).item();
    };
    const double numeric = (eval(1e-6) - eval(-1e-6)) / 2e-6;
    REQUIRE(analytic[i] == Approx(numeric).epsilon(1e-5).margin(1e-8));
  }
}

TEST_CASE("ops without a differentiable backward refuse create_graph, naming the op") {
  SECTION("lstm") {
    Tensor x = testing::randn64({3, 2, 4}, 61), h0 = testing::randn64({2, 5}, 62), c0 = testing::randn64({2, 5}, 63);
    Tensor wih = testing::randn64({20, 4}, 64), whh = testing::randn64({20, 5}, 65);
    RnnLayerResult r = lstm_layer(x, h0, c0, wih, whh, {}, {}, {}, false);
    Tensor loss = r.output.sum();
    REQUIRE_ERROR_CONTAINS(autograd::grad({loss}, {x}, {}, false, /*create_graph=*/true),
                           "lstm_layer: double backward (create_graph) is not supported by the fused kernel");
    // First-order backward still works.
    Tensor r2 = lstm_layer(x, h0, c0, wih, whh, {}, {}, {}, false).output.sum();
    REQUIRE(autograd::grad({r2}, {x})[0].shape() == x.shape());
  }
  SECTION("sync_batch_norm") {
    // One process: the collectives are identities.
    BatchNormSyncHooks hooks{[](const Tensor& t) { return t.unsqueeze(0); }, [](const Tensor& t) { return t; }};
    Tensor x = testing::randn64({4, 3, 2}, 71);
    Tensor y = sync_batch_norm(x, {}, {}, {}, {}, 0.1, 1e-5, hooks);
    Tensor loss = (y * y * testing::randn64({4, 3, 2}, 72, false)).sum();
    REQUIRE_ERROR(autograd::grad({loss}, {x}, {}, false, /*create_graph=*/true),
                  "sync_batch_norm: double backward is not supported");
  }
}
