// The tape: recording, replay, accumulation, version checks, printing.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>

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

TEST_CASE("a 0-dim tensor views and reshapes to any shape of ones, and back") {
  Tensor a = Tensor::scalar(3.0, kFloat64).requires_grad_();
  Tensor v = a.view({1, 1, 1});
  REQUIRE(v.shape() == Shape{1, 1, 1});
  REQUIRE(a.reshape({1}).shape() == Shape{1});
  REQUIRE(a.flatten().shape() == Shape{1});
  (v.reshape({}) * 2.0).backward();
  REQUIRE(a.grad().item() == 2.0);
}
