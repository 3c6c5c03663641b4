// The tape: recording, replay, accumulation, version checks, printing.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>

#include <cmath>
#include <thread>

using namespace tapegrad;

TEST_CASE("backward of a small expression accumulates into leaves") {
  Tensor a = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  Tensor b = Tensor::of({4.0, 5.0, 6.0}, {.requires_grad = true});
  Tensor y = (a * b + a).sum();
  y.backward();
  testing::require_close(a.grad(), Tensor::of({5.0, 6.0, 7.0}));
  testing::require_close(b.grad(), Tensor::of({1.0, 2.0, 3.0}));
}

TEST_CASE("gradcheck passes for a correct backward and reports a wrong one") {
  Tensor a = testing::randn64({3, 4}, 1), b = testing::randn64({4}, 2);
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return exp(x[0]) * x[1] / (x[1] * x[1] + 1.0); }, {a, b}));
  // sub's backward claimed to be +g for the second input would be caught:
  auto wrong = [](const std::vector<Tensor>& x) {
    Tensor out = x[0].detach() - x[1].detach();
    autograd::record("wrong_sub", {x[0], x[1]}, {out}, {}, [](autograd::Context& c) -> autograd::Grads {
      return {c.grad(), c.grad()};
    });
    return out;
  };
  REQUIRE_ERROR_CONTAINS(gradcheck(wrong, {a, testing::randn64({3, 4}, 3)}), "gradcheck: Jacobian mismatch for input 1");
}

TEST_CASE("smoke: elementwise backward formulas pass gradcheck") {
  Tensor a = testing::randn64({3, 4}, 11), b = testing::randn64({4}, 12);
  Tensor pos = (testing::randn64({3, 4}, 13, false).abs() + 0.5).detach().requires_grad_();
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return pow(x[0], x[1]); }, {pos, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return clamp(x[0], -0.5, 0.7) * x[1].sigmoid(); }, {a, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return maximum(x[0], x[1]) + minimum(x[0], x[1]).tanh(); }, {a, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return where(x[0] > 0.0, x[0].relu(), x[1]) + x[0].abs(); }, {a, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return x[0].sqrt() + x[0].rsqrt() + x[0].log() + pow(x[0], 2.5); }, {pos}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return x[0].permute({1, 0}).slice(0, 1, 4, 2).select(1, 2) * x[1].narrow(0, 0, 2); }, {a, b}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return x[0].t().reshape({2, 6}).unsqueeze(0).expand({3, 2, 6}).mean(); }, {a}));
}

TEST_CASE("smoke: second-order gradients through composed backward") {
  Tensor a = testing::randn64({5}, 21);
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& x) { return (x[0] * x[0] * x[0]).tanh() * x[0].exp(); }, {a}));
}

TEST_CASE("a non-scalar root needs an explicit gradient") {
  Tensor a = testing::randn64({2, 3}, 31);
  Tensor y = a * 2.0;
  REQUIRE_ERROR(y.backward(), "backward: grad can be implicitly created only for scalar outputs (got shape (2, 3))");
  Tensor g = testing::randn64({2, 3}, 32, false);
  y.backward(g);
  testing::require_close(a.grad(), g * 2.0);
  REQUIRE_ERROR(y.backward(Tensor::ones({3})), "backward: expected a gradient of shape (2, 3) for element 0, got (3,)");
}

TEST_CASE("backward from a tensor that needs no grad is an error") {
  Tensor a = Tensor::ones({2});
  REQUIRE_ERROR(a.sum().backward(),
                "backward: element 0 of tensors does not require grad and does not have a grad_fn");
}

TEST_CASE("gradients accumulate across backward calls; a released tape refuses a second backward") {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor y = (a * a).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  testing::require_close(a.grad(), Tensor::of({4.0, 8.0}));
  // The root is the first node replayed, so it is the one that reports the freed tape.
  REQUIRE_ERROR_CONTAINS(y.backward(), "sum: Trying to backward through the graph a second time");
  Tensor before = a.grad();
  (a * 3.0).sum().backward();
  REQUIRE(a.grad().same(before));  // accumulated in place into the same tensor
  testing::require_close(a.grad(), Tensor::of({7.0, 11.0}));
}

TEST_CASE("a saved tensor modified in place makes backward name the op") {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  Tensor y = x * x;  // mul saves both operands
  x.detach().add_(1.0);  // detach() shares the version counter: caught
  REQUIRE_ERROR(y.sum().backward(),
                "mul: one of the variables needed for gradient computation has been modified by an inplace "
                "operation: [float32 [3]] is at version 1; expected version 0 instead.");
  Tensor x2 = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor r = x2.exp();
  r.add_(1.0);  // recorded in place on a non-leaf; exp saved its result
  REQUIRE_ERROR(r.sum().backward(),
                "exp: one of the variables needed for gradient computation has been modified by an inplace "
                "operation: [float32 [2]], which is output 0 of exp, is at version 1; expected version 0 instead.");
}

TEST_CASE("in-place ops on leaves that require grad are refused while recording") {
  Tensor w = Tensor::ones({2}, {.requires_grad = true});
  REQUIRE_ERROR(w.add_(1.0), "add_: a leaf Variable that requires grad is being used in an in-place operation.");
  autograd::NoGradGuard ng;
  w.add_(1.0);  // what optimizers do
  REQUIRE(w.to_vector<float>() == std::vector<float>{2, 2});
  REQUIRE(w.version() == 1);
}

TEST_CASE("an in-place op on a non-leaf is recorded and differentiated") {
  Tensor a = testing::randn64({4}, 41);
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& x) {
        Tensor t = x[0] * 1.0;
        t.mul_(x[0]);
        t.add_(x[0], 2.0);
        return t;
      },
      {a}));
}

TEST_CASE("no-grad scopes record nothing and are per thread") {
  Tensor a = Tensor::ones({2}, {.requires_grad = true});
  {
    autograd::NoGradGuard ng;
    REQUIRE_FALSE((a * 2.0).requires_grad());
    {
      autograd::EnableGradGuard eg;
      REQUIRE((a * 2.0).requires_grad());
    }
    bool other_thread = false;
    std::thread([&] { other_thread = autograd::grad_enabled(); }).join();
    REQUIRE(other_thread);
  }
  REQUIRE((a * 2.0).requires_grad());
  REQUIRE_FALSE((a * 2.0).detach().requires_grad());
}

TEST_CASE("requires_grad can only be set on floating leaves") {
  Tensor a = Tensor::ones({2}, {.requires_grad = true});
  Tensor b = a * 2.0;
  REQUIRE_ERROR_CONTAINS(b.requires_grad_(false), "requires_grad_: you can only change requires_grad flags of leaf variables.");
  Tensor i = Tensor::zeros({2}, {.dtype = kInt64});
  REQUIRE_ERROR(i.requires_grad_(), "requires_grad_: Only Tensors of floating point dtype can require gradients, got int64");
}

TEST_CASE("broadcast gradients are reduced to each input's shape and dtype") {
  Tensor a = Tensor::ones({3, 1}, {.requires_grad = true});
  Tensor b = Tensor::ones({4}, {.dtype = kFloat64, .requires_grad = true});
  Tensor y = a * b;  // (3, 4) float64
  REQUIRE(y.dtype() == kFloat64);
  y.sum().backward();
  REQUIRE(a.grad().shape() == Shape{3, 1});
  REQUIRE(a.grad().dtype() == kFloat32);
  REQUIRE(a.grad().to_vector<float>() == std::vector<float>{4, 4, 4});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{3, 3, 3, 3});
}

TEST_CASE("retain_grad and hooks") {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor h = a * 3.0;
  h.retain_grad();
  h.register_hook([](const Tensor& g) { return g * 10.0; });  // replaces the gradient flowing on
  a.register_hook([](const Tensor& g) { return g + 1.0; });
  (h * h).sum().backward();
  testing::require_close(h.grad(), Tensor::of({60.0, 120.0}));  // hooks run before retain
  testing::require_close(a.grad(), Tensor::of({181.0, 361.0}));  // 3 * hooked grad, then + 1
}

TEST_CASE("autograd::grad returns gradients without touching .grad") {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor b = Tensor::of({3.0}, {.requires_grad = true});
  Tensor y = (a * a).sum();
  auto g = autograd::grad({y}, {a}, {}, true);
  testing::require_close(g[0], Tensor::of({2.0, 4.0}));
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE_ERROR_CONTAINS(autograd::grad({y}, {a, b}, {}, true),
                         "One of the differentiated Tensors appears to not have been used in the graph");
  auto g2 = autograd::grad({y}, {a, b}, {}, false, false, /*allow_unused=*/true);
  REQUIRE_FALSE(g2[1].defined());
}

TEST_CASE("create_graph gives a differentiable gradient (a gradient penalty)") {
  Tensor x = Tensor::of({0.5, -1.0, 2.0}, {.dtype = kFloat64, .requires_grad = true});
  Tensor w = Tensor::of({1.5, 0.5, -0.25}, {.dtype = kFloat64, .requires_grad = true});
  Tensor y = (x * w).tanh().sum();
  Tensor gx = autograd::grad({y}, {x}, {}, true, /*create_graph=*/true)[0];
  REQUIRE(gx.requires_grad());
  Tensor penalty = (gx * gx).sum();
  penalty.backward();
  // d/dw of sum_i (w_i (1 - tanh^2(x_i w_i)))^2, by finite differences.
  auto f = [&](double dw, int i) {
    auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
    wv[i] += dw;
    double s = 0;
    for (int k = 0; k < 3; ++k) {
      const double t = std::tanh(xv[k] * wv[k]);
      const double gk = wv[k] * (1 - t * t);
      s += gk * gk;
    }
    return s;
  };
  auto gw = w.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) REQUIRE(gw[i] == Approx((f(1e-6, i) - f(-1e-6, i)) / 2e-6).epsilon(1e-6));
}

TEST_CASE("the tape prints one line per node and exports to DOT") {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}).set_name("x");
  Tensor w = Tensor::of({0.5, 0.5, 0.5}, {.requires_grad = true}).set_name("w");
  Tensor y = (x * w).exp().sum();
  REQUIRE(autograd::format_tape({y}) ==
          "tape: 3 nodes\n"
          "#0   mul            const (3,), 'w' (3,) -> (3,)  saved: self (3,), other (3,)\n"
          "#1   exp            #0 (3,) -> (3,)  saved: result (3,)\n"
          "#2   sum            #1 (3,) -> ()\n");
  const std::string dot = autograd::to_dot({y});
  REQUIRE_THAT(dot, Catch::Matchers::StartsWith("digraph tape {"));
  REQUIRE_THAT(dot, Catch::Matchers::Contains("n0 [shape=ellipse, label=\"#0 mul\\n(3,)\"];"));
  REQUIRE_THAT(dot, Catch::Matchers::Contains("l0 -> n0;"));
  REQUIRE_THAT(dot, Catch::Matchers::Contains("n0 -> n1;"));
  REQUIRE_THAT(dot, Catch::Matchers::Contains("n1 -> n2;"));
  y.backward();
  REQUIRE_THAT(autograd::format_tape({y}), Catch::Matchers::Contains("saved: (freed)"));
}

TEST_CASE("anomaly mode names the op whose backward produced a NaN") {
  autograd::set_anomaly_enabled(true);
  Tensor x = Tensor::of({0.0, 1.0}, {.requires_grad = true});
  Tensor y = x.sqrt().sum();  // d sqrt / dx at 0 is inf
  REQUIRE_ERROR(y.backward(),
                "autograd anomaly: the backward of 'sqrt' (node 0 of 2, recorded outside any module) produced inf in "
                "the gradient of its input 0 (shape (2,), 1 of 2 values not finite, the first at flat index 0)");
  autograd::set_anomaly_enabled(false);
}

TEST_CASE("an undefined saved tensor unpacks as undefined") {
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor out = a.detach() * 2.0;
  autograd::record("scale_opt", {a}, {out}, {Tensor(), a}, [](autograd::Context& ctx) -> autograd::Grads {
    REQUIRE_FALSE(ctx.saved(0).defined());
    return {ctx.grad() * 2.0};
  });
  out.sum().backward();
  testing::require_close(a.grad(), Tensor::of({2.0, 2.0}));
}

TEST_CASE("a gradient only the engine holds becomes the leaf's .grad without a copy") {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  void* produced = nullptr;
  Tensor y = x.detach().clone();
  autograd::record("fresh_grad", {x}, {y}, {}, [&produced](autograd::Context& c) -> autograd::Grads {
    Tensor g = c.grad().clone();  // a new buffer nobody else sees
    produced = g.data();
    return {g};
  });
  y.backward(Tensor::of({1.0, 1.0, 1.0}));
  REQUIRE(x.grad().data() == produced);
  // A gradient the backward hands to two inputs is still copied for each.
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true}), b = Tensor::of({3.0, 4.0}, {.requires_grad = true});
  (a + b).sum().backward();
  REQUIRE(a.grad().data() != b.grad().data());
  testing::require_close(a.grad(), Tensor::of({1.0, 1.0}));
}

TEST_CASE("a 0-dim tensor views and reshapes to any shape of ones, and back") {
  Tensor a = Tensor::scalar(3.0, kFloat64).requires_grad_();
  Tensor v = a.view({1, 1, 1});
  REQUIRE(v.shape() == Shape{1, 1, 1});
  REQUIRE(a.reshape({1}).shape() == Shape{1});
  REQUIRE(a.flatten().shape() == Shape{1});
  (v.reshape({}) * 2.0).backward();
  REQUIRE(a.grad().item() == 2.0);
}

TEST_CASE("profiling times every node's forward and backward, and nothing when off") {
  Tensor x = Tensor::randn({256, 256}).requires_grad_();
  {
    Tensor y = (x * x).sum();
    y.backward();
    for (const auto& n : autograd::tape({y})) {
      REQUIRE(n->forward_ms == 0);
      REQUIRE(n->backward_ms == 0);
      REQUIRE(n->backward_calls == 0);
    }
  }
  autograd::set_profiling_enabled(true);
  autograd::profile_mark();
  Tensor y = (x * x).sum();
  y.backward();
  autograd::set_profiling_enabled(false);
  const auto nodes = autograd::tape({y});
  REQUIRE(nodes.size() == 2);
  double fwd = 0;
  for (const auto& n : nodes) {
    INFO(n->name);
    REQUIRE(n->forward_ms >= 0);
    REQUIRE(n->backward_ms >= 0);
    REQUIRE(n->backward_calls == 1);
    fwd += n->forward_ms;
  }
  REQUIRE(fwd > 0);  // a 256x256 product and sum take measurable time
}
