// The elementwise family: values against PyTorch fixtures (tests/fixtures/gen_elementwise.py),
// broadcasting, dtype promotion, non-contiguous inputs, gradients, the in-place ops and their autograd
// rules, and the strided loops against plain loops.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <omp.h>

#include <cmath>
#include <functional>

using namespace tapegrad;
using testing::require_close;

namespace {

// Kernels are checked serially and split across 2 and 3 threads, whatever the machine has.
const int kThreadCounts[] = {1, 2, 3};

const testing::Fixture& fx() {
  static const testing::Fixture f("elementwise.safetensors");
  return f;
}

const Tensor& F(const std::string& name) { return fx()[name]; }

// Same dtype, shape and values (NaN equal to NaN).
void require_same(const Tensor& actual, const Tensor& expected, double rtol = 1e-6, double atol = 1e-7) {
  INFO("dtype " << dtype_name(actual.dtype()) << ", expected " << dtype_name(expected.dtype()));
  REQUIRE(actual.dtype() == expected.dtype());
  require_close(actual, expected, rtol, atol);
}

Tensor randn32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, {}, &g);
}

// out[i] = f(a[ia], b[ib]) over the broadcast shape, by index arithmetic on row-major copies.
Tensor naive_binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  const size_t n = std::max(a.dim(), b.dim());
  Shape sa(n, 1), sb(n, 1), so(n);
  for (size_t i = 0; i < static_cast<size_t>(a.dim()); ++i) sa[n - a.dim() + i] = a.shape()[i];
  for (size_t i = 0; i < static_cast<size_t>(b.dim()); ++i) sb[n - b.dim() + i] = b.shape()[i];
  for (size_t i = 0; i < n; ++i) so[i] = std::max(sa[i], sb[i]);
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  std::vector<double> out(static_cast<size_t>(numel_of(so)));
  std::vector<int64_t> idx(n, 0);
  for (size_t e = 0; e < out.size(); ++e) {
    int64_t ia = 0, ib = 0;
    for (size_t d = 0; d < n; ++d) {
      ia = ia * sa[d] + (sa[d] == 1 ? 0 : idx[d]);
      ib = ib * sb[d] + (sb[d] == 1 ? 0 : idx[d]);
    }
    out[e] = f(va[ia], vb[ib]);
    for (int64_t d = static_cast<int64_t>(n) - 1; d >= 0; --d) {
      if (++idx[d] < so[d]) break;
      idx[d] = 0;
    }
  }
  return Tensor::from_vector(out, so);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Values against PyTorch

TEST_CASE("arithmetic matches PyTorch") {
  const Tensor a = F("a"), b = F("b"), c = F("c"), pos = F("pos");
  require_same(add(a, b), F("add"));
  require_same(a + b, F("add"));
  require_same(add(a, c, 2.5), F("add.alpha"));
  require_same(a - c, F("sub"));
  require_same(sub(a, b, 0.5), F("sub.alpha"));
  require_same(a * c, F("mul"));
  require_same(a / pos, F("div"));
  require_same(neg(a), F("neg"));
  require_same(-a, F("neg"));

  const Tensor ia = F("ia"), ib = F("ib");
  require_same(ia / ib, F("div.int"));  // integer true division gives float32
  require_same(ia + ib, F("add.int"));
  require_same(ia * ib, F("mul.int"));
  require_same(sub(ia, ib, 2), F("sub.int.alpha"));
}

TEST_CASE("pow in both forms matches PyTorch") {
  const Tensor a = F("a"), b = F("b"), pos = F("pos");
  require_same(pow(a, 2), F("pow2"));
  require_same(pow(a, 3), F("pow3"));
  require_same(pow(a, 0), F("pow0"));
  require_same(a.pow(0.5), F("pow.neg.half"));  // nan for negative bases
  require_same(pow(pos, 0.5), F("pow.half"));
  require_same(pow(pos, -1.5), F("pow.m1.5"));
  require_same(pow(pos, b), F("pow.t"));
  require_same(pow(a, Tensor::of({2.0, 3.0, 0.0, -1.0})), F("pow.t.int_exp"));
  require_same(pow(F("pow.zero"), Tensor::of({0.0, 2.0, 0.0, 2.0})), F("pow.zero.t"));
}

TEST_CASE("maximum and minimum: ties split the gradient, NaN propagates and sends it to both") {
  const Tensor up = F("mup");
  for (const std::string name : {"maximum", "minimum"}) {
    INFO(name);
    Tensor x = F("ma").clone().requires_grad_(), y = F("mb").clone().requires_grad_();
    Tensor out = name == "maximum" ? maximum(x, y) : minimum(x, y);
    require_same(out, F(name));
    out.backward(up);
    require_same(x.grad(), F(name + ".ga"));
    require_same(y.grad(), F(name + ".gb"));
  }
  require_same(maximum(F("a"), F("b")), F("maximum.bcast"));
  require_same(minimum(F("a"), F("c")), F("minimum.bcast"));
}

TEST_CASE("where selects with broadcasting") {
  const Tensor a = F("a"), c = F("c");
  require_same(where(a > 0.0, a, c), F("where"));
  REQUIRE_ERROR(where(a, a, c), "where: expected condition to be a boolean tensor, but got a tensor with dtype float32");
}

TEST_CASE("unary math matches PyTorch, including large arguments") {
  const Tensor a = F("a"), pos = F("pos"), big = F("big");
  require_same(exp(a), F("exp"));
  require_same(a.exp(), F("exp"));
  require_same(log(pos), F("log"));
  require_same(sqrt(pos), F("sqrt"));
  require_same(rsqrt(pos), F("rsqrt"));
  require_same(abs(a), F("abs"));
  require_same(tanh(a * 3.0), F("tanh"));
  require_same(relu(a), F("relu"));
  require_same(sigmoid(a), F("sigmoid"));
  // PyTorch's float32 sigmoid(-100) underflows to 0 where ours keeps the denormal 3.7e-44; both are
  // within atol.
  require_same(sigmoid(big), F("sigmoid.big"), 1e-6, 1e-30);
  require_same(sigmoid(big.to(kFloat64)), F("sigmoid.big64"), 1e-12, 1e-300);
  require_same(tanh(big), F("tanh.big"));
  require_same(exp(big), F("exp.big"));
  REQUIRE_ERROR(exp(F("ia")), "exp: expected a floating point tensor (float32 or float64), got int64");
}

TEST_CASE("clamp: both bounds, one bound, crossed bounds, NaN") {
  const Tensor a = F("a"), cn = F("cn");
  require_same(clamp(a, -0.5, 0.5), F("clamp"));
  require_same(a.clamp(0.2, std::nullopt), F("clamp.min"));
  require_same(clamp(a, std::nullopt, -0.1), F("clamp.max"));
  require_same(clamp(a, 0.5, -0.5), F("clamp.crossed"));
  require_same(clamp(cn, -1.0, 1.0), F("clamp.nan"));
  require_same(clamp(cn, 0.0, std::nullopt), F("clamp.min.nan"));
  REQUIRE_ERROR(clamp(a, std::nullopt, std::nullopt), "clamp: At least one of 'min' or 'max' must not be None");
}

TEST_CASE("gradients at the kinks match PyTorch (clamp bounds, relu and abs at 0, pow at 0)") {
  const Tensor edge = F("edge"), up = F("eup");
  const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> cases = {
      {"clamp", [](const Tensor& t) { return clamp(t, -0.5, 0.5); }},
      {"relu", [](const Tensor& t) { return relu(t); }},
      {"abs", [](const Tensor& t) { return abs(t); }},
      {"pow2", [](const Tensor& t) { return pow(t, 2); }},
      {"pow.half", [](const Tensor& t) { return pow(abs(t), 0.5); }},
  };
  for (const auto& [name, f] : cases) {
    INFO(name);
    Tensor x = edge.clone().requires_grad_();
    f(x).backward(up);
    require_same(x.grad(), F("edge.grad." + name));
  }
}

TEST_CASE("comparisons and logical ops, with ties, broadcasting and NaN") {
  const Tensor q1 = F("q1"), q2 = F("q2");
  require_same(eq(q1, q2), F("cmp.eq"));
  require_same(ne(q1, q2), F("cmp.ne"));
  require_same(lt(q1, q2), F("cmp.lt"));
  require_same(le(q1, q2), F("cmp.le"));
  require_same(gt(q1, q2), F("cmp.gt"));
  require_same(ge(q1, q2), F("cmp.ge"));
  require_same(q1 == q2, F("cmp.eq"));
  require_same(q1 != q2, F("cmp.ne"));
  require_same(q1 < q2, F("cmp.lt"));
  require_same(q1 <= q2, F("cmp.le"));
  require_same(q1 > q2, F("cmp.gt"));
  require_same(q1 >= q2, F("cmp.ge"));
  require_same(q1 == 1.0, F("cmp.eq.scalar"));
  require_same(q1 != 1.0, F("cmp.ne.scalar"));
  require_same(q1 < 1.0, F("cmp.lt.scalar"));
  require_same(q1 <= 1.0, F("cmp.le.scalar"));
  require_same(q1 > 1.0, F("cmp.gt.scalar"));
  require_same(q1 >= 1.0, F("cmp.ge.scalar"));

  const Tensor m1 = q1 > 0.0, m2 = q2 > 1.0;
  require_same(logical_and(m1, m2), F("logical_and"));
  require_same(logical_or(m1, m2), F("logical_or"));
  require_same(logical_not(m1), F("logical_not"));
  require_same(logical_and(q1, q2), F("logical_and.float"));  // nonzero is true

  const Tensor n1 = Tensor::of({NAN, 1.0, NAN}), n2 = Tensor::of({NAN, 1.0, 2.0});
  require_same(n1 == n2, F("cmp.nan"));
  require_same(n1 != n2, F("cmp.nan.ne"));
  REQUIRE_FALSE((q1 > q2).requires_grad());
}

TEST_CASE("operators with a number on either side") {
  const Tensor a = F("a"), pos = F("pos"), ia = F("ia"), ib = F("ib");
  require_same(2.0 - a, F("s.rsub"));
  require_same(2.0 / pos, F("s.rdiv"));
  require_same(a - 2.0, F("s.sub"));
  require_same(a / 2.0, F("s.div"));
  require_same(3.0 * a, F("s.rmul"));
  require_same(a * 3.0, F("s.mul"));
  require_same(a + 1.5, F("s.add"));
  require_same(1.5 + a, F("s.radd"));
  // Integer tensors: a fractional number gives float32, an integral one keeps int64.
  require_same(ia * 2.5, F("s.int.mulf"));
  require_same(ia + 1.0, F("s.int.add"));
  require_same(ia < 0.5, F("s.int.lt"));
  require_same(ia / 2.0, F("s.int.div"));
  require_same(2.5 / ib, F("s.int.rdiv"));
  require_same((ia > 0.0) + 1.0, F("s.bool.add"));
  require_same((ia > 0.0) * 2.5, F("s.bool.mulf"));
}

TEST_CASE("dtype promotion follows PyTorch, 0-dim tensors included") {
  const Tensor a = F("a"), a64 = F("a64"), ia = F("ia");
  require_same(a + a64, F("promo.f32_f64"), 1e-12, 1e-12);
  require_same(a * Tensor::scalar(2.5, kFloat64), F("promo.f32_0dim64"));
  require_same(ia + a, F("promo.int_f32"));
  require_same(a64 * Tensor::scalar(2.0, kFloat32), F("promo.f64_0dim32"), 1e-12, 1e-12);
  require_same(ia * Tensor::scalar(0.5, kFloat64), F("promo.int_0dimf64"));
  require_same((a > 0.0) + ia, F("promo.bool_int"));
  REQUIRE((a + a64).dtype() == kFloat64);
  REQUIRE((a * Tensor::scalar(2.5, kFloat64)).dtype() == kFloat32);
  REQUIRE((ia + a).dtype() == kFloat32);
  REQUIRE(maximum(ia, a).dtype() == kFloat32);
  REQUIRE(where(a > 0.0, ia, a64).dtype() == kFloat64);
}

TEST_CASE("non-contiguous inputs: transposed, sliced with a step, expanded") {
  const Tensor w = F("w"), a = F("a"), b = F("b");
  REQUIRE_FALSE(w.t().is_contiguous());
  require_same(w.t() + Tensor::arange(4).to(kFloat32), F("nc.t_add"));
  require_same(exp(w.t()), F("nc.t_exp"));
  require_same(w.slice(1, 0, 6, 2) * w.slice(1, 1, 6, 2), F("nc.step_mul"));
  require_same(b.expand({3, 4}) * a, F("nc.expand"));
  require_same(b.unsqueeze(1).expand({4, 3}) - a.t(), F("nc.expand_t"));
  require_same(where(w.t() > 0.0, w.t(), Tensor::zeros({1})), F("nc.where"));
}

TEST_CASE("broadcasting: shapes combine like NumPy, mismatches say where") {
  const Tensor x = Tensor::ones({2, 1, 3}), y = Tensor::ones({4, 1});
  REQUIRE((x + y).shape() == Shape{2, 4, 3});
  REQUIRE((Tensor::scalar(2) * y).shape() == Shape{4, 1});
  REQUIRE((Tensor::ones({0, 3}) + Tensor::ones({3})).shape() == Shape{0, 3});
  REQUIRE_ERROR(add(Tensor::ones({3, 4}), Tensor::ones({3})),
                "add: The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1 "
                "(shapes (3, 4) and (3,))");
  REQUIRE_ERROR(Tensor::ones({2, 3}) * Tensor::ones({3, 2}),
                "mul: The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0 "
                "(shapes (2, 3) and (3, 2))");
  REQUIRE_ERROR(maximum(Tensor::ones({5}), Tensor::ones({2, 4})),
                "maximum: The size of tensor a (5) must match the size of tensor b (4) at non-singleton dimension 1 "
                "(shapes (5,) and (2, 4))");
  REQUIRE_ERROR(Tensor::ones({2}) < Tensor::ones({3}),
                "lt: The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0 "
                "(shapes (2,) and (3,))");
}

// ---------------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("gradcheck: every differentiable elementwise op, with broadcasting") {
  const Tensor a = testing::randn64({3, 4}, 1), b = testing::randn64({4}, 2), c = testing::randn64({3, 1}, 3);
  const Tensor pos = (testing::randn64({3, 4}, 4, false).abs() + 0.5).requires_grad_();
  const Tensor posb = (testing::randn64({4}, 5, false).abs() + 0.5).requires_grad_();
  using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
  const std::vector<std::pair<std::string, std::pair<Fn, std::vector<Tensor>>>> cases = {
      {"add", {[](const auto& x) { return add(x[0], x[1], 2.5); }, {a, b}}},
      {"sub", {[](const auto& x) { return sub(x[0], x[1], 0.5); }, {a, c}}},
      {"mul", {[](const auto& x) { return x[0] * x[1]; }, {a, c}}},
      {"div", {[](const auto& x) { return x[0] / x[1]; }, {a, posb}}},
      {"neg", {[](const auto& x) { return -x[0]; }, {a}}},
      {"pow scalar", {[](const auto& x) { return pow(x[0], 3) + pow(x[0], 2) + pow(x[1], -1.5); }, {a, pos}}},
      {"pow tensor", {[](const auto& x) { return pow(x[0], x[1]); }, {pos, b}}},
      {"maximum", {[](const auto& x) { return maximum(x[0], x[1]); }, {a, b}}},
      {"minimum", {[](const auto& x) { return minimum(x[0], x[1]); }, {a, c}}},
      {"where", {[](const auto& x) { return where(x[0] > 0.0, x[0], x[1]); }, {a, c}}},
      {"exp", {[](const auto& x) { return exp(x[0]); }, {a}}},
      {"log", {[](const auto& x) { return log(x[0]); }, {pos}}},
      {"sqrt", {[](const auto& x) { return sqrt(x[0]); }, {pos}}},
      {"rsqrt", {[](const auto& x) { return rsqrt(x[0]); }, {pos}}},
      {"abs", {[](const auto& x) { return abs(x[0]); }, {a}}},
      {"tanh", {[](const auto& x) { return tanh(x[0]); }, {a}}},
      {"sigmoid", {[](const auto& x) { return sigmoid(x[0] * 3.0); }, {a}}},
      {"relu", {[](const auto& x) { return relu(x[0]); }, {a}}},
      {"clamp", {[](const auto& x) { return clamp(x[0], -0.5, 0.7); }, {a}}},
      {"clamp min", {[](const auto& x) { return clamp(x[0], 0.1, std::nullopt); }, {a}}},
      {"clamp max", {[](const auto& x) { return clamp(x[0], std::nullopt, 0.1); }, {a}}},
      {"scalars", {[](const auto& x) { return (2.0 - x[0]) * 3.0 / (x[1] + 1.0) - 1.5 / x[1]; }, {a, pos}}},
  };
  for (const auto& [name, c2] : cases) {
    INFO(name);
    REQUIRE(gradcheck(c2.first, c2.second));
  }
  // A float32 detour: the engine casts the gradient back to the float64 input.
  Tensor w = Tensor::of({1.0, 2.0}, {.dtype = kFloat64, .requires_grad = true});
  (w.to(kFloat32) * Tensor::of({3.0, 4.0})).sum().backward();
  REQUIRE(w.grad().dtype() == kFloat64);
  require_close(w.grad(), Tensor::of({3.0, 4.0}, {.dtype = kFloat64}), 0, 0);
  // Second order through the composed backwards.
  REQUIRE(gradgradcheck([](const auto& x) { return x[0] * x[1] / (x[1] * x[1] + 1.0); }, {a, b}));
  REQUIRE(gradgradcheck([](const auto& x) { return exp(x[0]).tanh() + sigmoid(x[0]) * sqrt(x[1]); }, {a, pos}));
  REQUIRE(gradgradcheck([](const auto& x) { return pow(x[1], x[0]) + log(x[1]) * rsqrt(x[1]); }, {b, posb}));
  REQUIRE(gradgradcheck([](const auto& x) { return maximum(x[0], x[1]) * minimum(x[0], x[1]); }, {a, b}));
}

// ---------------------------------------------------------------------------------------------------
// In-place ops

TEST_CASE("in-place ops: values, broadcasting and dtype conversion") {
  Tensor x = Tensor::of({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
  const Tensor r = Tensor::of({10.0, 20.0, 30.0});
  x.add_(r);
  require_close(x, Tensor::of({{11.0, 22.0, 33.0}, {14.0, 25.0, 36.0}}));
  x.add_(r, -0.5);
  require_close(x, Tensor::of({{6.0, 12.0, 18.0}, {9.0, 15.0, 21.0}}));
  x.sub_(r, 0.1);
  require_close(x, Tensor::of({{5.0, 10.0, 15.0}, {8.0, 13.0, 18.0}}));
  x.mul_(Tensor::of({{2.0}, {0.5}}));
  require_close(x, Tensor::of({{10.0, 20.0, 30.0}, {4.0, 6.5, 9.0}}));
  x.div_(Tensor::of({10.0, 10.0, 3.0}));
  require_close(x, Tensor::of({{1.0, 2.0, 10.0}, {0.4, 0.65, 3.0}}));
  x.add_(1.0).mul_(2.0).div_(4.0);
  require_close(x, Tensor::of({{1.0, 1.5, 5.5}, {0.7, 0.825, 2.0}}));
  x.clamp_(0.8, 2.0);
  require_close(x, Tensor::of({{1.0, 1.5, 2.0}, {0.8, 0.825, 2.0}}));
  x.fill_(7.0);
  require_close(x, Tensor::full({2, 3}, 7.0));
  x.zero_();
  require_close(x, Tensor::zeros({2, 3}));
  x.copy_(Tensor::of({1.5, -2.5, 3.0}));  // broadcast
  require_close(x, Tensor::of({{1.5, -2.5, 3.0}, {1.5, -2.5, 3.0}}));

  // copy_ converts: float into int64 truncates like PyTorch; int into float is exact.
  Tensor i = Tensor::zeros({3}, {.dtype = kInt64});
  i.copy_(Tensor::of({1.7, -2.7, 3.0}));
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});
  Tensor f = Tensor::zeros({3}, {.dtype = kFloat64});
  f.copy_(i);
  require_close(f, Tensor::of({1.0, -2.0, 3.0}, {.dtype = kFloat64}));
  // Integer in-place arithmetic that stays integer.
  i.mul_(3.0).add_(1.0);
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{4, -5, 10});

  // Through a non-contiguous view: writes land in the base.
  Tensor base = Tensor::zeros({3, 4});
  base.t().slice(0, 1, 4, 2).fill_(1.0);  // columns 1 and 3
  require_close(base, Tensor::of({{0.0, 1.0, 0.0, 1.0}, {0.0, 1.0, 0.0, 1.0}, {0.0, 1.0, 0.0, 1.0}}));
  base.select(0, 2).add_(Tensor::of({5.0, 5.0, 5.0, 5.0}));
  require_close(base.select(0, 2), Tensor::of({5.0, 6.0, 5.0, 6.0}));
  // Overlapping copy within one storage.
  Tensor v = Tensor::of({1.0, 2.0, 3.0, 4.0});
  v.slice(0, 1, 4).copy_(v.slice(0, 0, 3));
  require_close(v, Tensor::of({1.0, 1.0, 2.0, 3.0}));
}

TEST_CASE("in-place ops bump the version counter once, seen through every view") {
  Tensor x = Tensor::zeros({2, 3});
  const Tensor view = x.select(0, 1);
  const Tensor other = Tensor::ones({3});
  const std::vector<std::pair<std::string, std::function<void()>>> ops = {
      {"add_", [&] { x.add_(other); }},       {"add_ scalar", [&] { x.add_(1.0); }},
      {"sub_", [&] { x.sub_(other, 2.0); }},  {"mul_", [&] { x.mul_(other); }},
      {"mul_ scalar", [&] { x.mul_(2.0); }},  {"div_", [&] { x.div_(other); }},
      {"div_ scalar", [&] { x.div_(2.0); }},  {"zero_", [&] { x.zero_(); }},
      {"fill_", [&] { x.fill_(3.0); }},       {"copy_", [&] { x.copy_(other); }},
      {"clamp_", [&] { x.clamp_(0.0, 1.0); }}, {"uniform_", [&] { x.uniform_(0, 1); }},
      {"normal_", [&] { x.normal_(0, 1); }},  {"through a view", [&] { Tensor(view).fill_(1.0); }},
  };
  for (const auto& [name, op] : ops) {
    INFO(name);
    const uint64_t before = x.version();
    op();
    REQUIRE(x.version() == before + 1);
    REQUIRE(view.version() == x.version());
  }
  // Out-of-place ops leave it alone.
  const uint64_t v0 = x.version();
  (void)(x + 1.0);
  (void)exp(x);
  REQUIRE(x.version() == v0);
}

TEST_CASE("in-place ops refuse leaves that require grad (unless grad mode is off)") {
  Tensor w = Tensor::ones({3}, {.requires_grad = true});
  const Tensor o = Tensor::ones({3});
  const std::string msg = ": a leaf Variable that requires grad is being used in an in-place operation.";
  REQUIRE_ERROR(w.add_(o), "add_" + msg);
  REQUIRE_ERROR(w.add_(1.0), "add_" + msg);
  REQUIRE_ERROR(w.sub_(o), "sub_" + msg);
  REQUIRE_ERROR(w.mul_(o), "mul_" + msg);
  REQUIRE_ERROR(w.mul_(2.0), "mul_" + msg);
  REQUIRE_ERROR(w.div_(o), "div_" + msg);
  REQUIRE_ERROR(w.div_(2.0), "div_" + msg);
  REQUIRE_ERROR(w.zero_(), "zero_" + msg);
  REQUIRE_ERROR(w.fill_(1.0), "fill_" + msg);
  REQUIRE_ERROR(w.copy_(o), "copy_" + msg);
  REQUIRE_ERROR(w.clamp_(0.0, 1.0), "clamp_" + msg);
  REQUIRE(w.version() == 0);
  {
    autograd::NoGradGuard ng;  // how optimizers update parameters
    w.sub_(o, 0.5).mul_(4.0).clamp_(std::nullopt, 1.5);
  }
  require_close(w, Tensor::full({3}, 1.5));
  REQUIRE(w.version() == 3);
  REQUIRE(w.is_leaf());
  REQUIRE(w.requires_grad());
}

TEST_CASE("in-place errors: broadcasting into a smaller tensor, results the dtype cannot hold") {
  Tensor x = Tensor::zeros({3});
  REQUIRE_ERROR(x.add_(Tensor::ones({2, 3})), "add_: output with shape [3] doesn't match the broadcast shape [2, 3]");
  REQUIRE_ERROR(x.sub_(Tensor::ones({2, 3})), "sub_: output with shape [3] doesn't match the broadcast shape [2, 3]");
  REQUIRE_ERROR(x.mul_(Tensor::ones({4, 1})), "mul_: output with shape [3] doesn't match the broadcast shape [4, 3]");
  // The same with autograd recording.
  Tensor w = Tensor::ones({2, 3}, {.requires_grad = true});
  REQUIRE_ERROR(x.add_(w), "add_: output with shape [3] doesn't match the broadcast shape [2, 3]");
  Tensor h = Tensor::ones({3}, {.requires_grad = true}) * 2.0;
  REQUIRE_ERROR(h.div_(Tensor::ones({2, 3})), "div_: output with shape [3] doesn't match the broadcast shape [2, 3]");
  REQUIRE_ERROR(x.copy_(Tensor::ones({2, 3})), "copy_: expected a source that broadcasts to (3,), got (2, 3)");

  Tensor i = Tensor::zeros({3}, {.dtype = kInt64});
  REQUIRE_ERROR(i.add_(0.5), "add_: result type float32 can't be cast to the desired output type int64");
  REQUIRE_ERROR(i.add_(Tensor::ones({3})), "add_: result type float32 can't be cast to the desired output type int64");
  REQUIRE_ERROR(i.div_(2.0), "div_: result type float32 can't be cast to the desired output type int64");
  REQUIRE_ERROR(i.mul_(1.5), "mul_: result type float32 can't be cast to the desired output type int64");
  REQUIRE(i.version() == 0);
}

TEST_CASE("in-place ops on non-leaves record correct gradients") {
  const Tensor a = testing::randn64({3, 4}, 31), b = testing::randn64({4}, 32);
  const Tensor pos = (testing::randn64({3, 4}, 33, false).abs() + 0.5).requires_grad_();
  // A chain of in-place updates on an intermediate result, every input involved.
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& x) {
        Tensor y = x[0] * 1.5;
        y.add_(x[1]);
        y.sub_(x[0], 0.5);
        y.mul_(x[2]);
        y.div_(x[2] + 1.0);
        y.add_(0.25).mul_(2.0);
        y.clamp_(-1.0, 1.0);
        return y * x[0];
      },
      {a, b, pos}));
  // A leaf that does not require grad becomes a non-leaf when an input that does flows in.
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& x) {
        Tensor acc = Tensor::zeros({3, 4}, {.dtype = kFloat64});
        acc.add_(x[0]);
        acc.mul_(x[1]);
        return acc;
      },
      {a, b}));
  // Overwriting cuts the gradient to the old values: fill_, zero_, copy_ as PyTorch.
  for (int which = 0; which < 3; ++which) {
    INFO("overwrite " << which);
    REQUIRE(gradcheck(
        [which](const std::vector<Tensor>& x) {
          Tensor y = x[0] * 2.0;
          if (which == 0) y.fill_(1.0);
          if (which == 1) y.zero_();
          if (which == 2) y.copy_(Tensor::ones({4}, {.dtype = kFloat64}));
          return y * x[1] + x[0] * x[0];
        },
        {a, b}));
  }
  Tensor w = Tensor::ones({4}, {.requires_grad = true});
  Tensor h = w * 2.0;
  h.fill_(3.0);
  REQUIRE(h.requires_grad());
  REQUIRE(h.grad_fn()->name == "fill_");
  h.sum().backward();
  require_close(w.grad(), Tensor::zeros({4}));
  // On a view of a tensor with history this is not supported (it would need PyTorch's CopySlices).
  Tensor k = w * 2.0;
  REQUIRE_ERROR(k.select(0, 1).fill_(0.0),
                "fill_: in-place operation on a view of a tensor that requires grad is not supported; use the "
                "out-of-place op");
}

TEST_CASE("a saved tensor modified in place makes backward fail, naming the op that saved it") {
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.dtype = kFloat64, .requires_grad = true});
  {
    Tensor y = x.exp();  // exp saves its result
    y.add_(1.0);
    REQUIRE_ERROR(y.sum().backward(),
                  "exp: one of the variables needed for gradient computation has been modified by an inplace "
                  "operation: [float64 [3]], which is output 0 of exp, is at version 1; expected version 0 instead.");
  }
  {
    Tensor y = x * 2.0;
    Tensor z = y * y;  // mul saves both inputs
    y.mul_(3.0);
    REQUIRE_ERROR(z.sum().backward(),
                  "mul: one of the variables needed for gradient computation has been modified by an inplace "
                  "operation: [float64 [3]] is at version 1; expected version 0 instead.");
  }
  {
    Tensor y = x * 2.0;
    Tensor z = y.sigmoid();  // saves its result
    z.clamp_(0.0, 0.9);
    z.zero_();
    REQUIRE_ERROR(z.sum().backward(),
                  "sigmoid: one of the variables needed for gradient computation has been modified by an inplace "
                  "operation: [float64 [3]], which is output 0 of sigmoid, is at version 2; expected version 0 "
                  "instead.");
  }
  {
    // A modification through a view is caught too: views share the version counter.
    Tensor y = x * 1.0;
    Tensor z = log(y);
    autograd::NoGradGuard ng;
    y.select(0, 0).fill_(5.0);
    autograd::EnableGradGuard eg;
    REQUIRE_ERROR(z.sum().backward(),
                  "log: one of the variables needed for gradient computation has been modified by an inplace "
                  "operation: [float64 [3]] is at version 1; expected version 0 instead.");
  }
  {
    // add saves nothing, so modifying its input afterwards is fine.
    Tensor y = x * 1.0;
    Tensor z = y + 1.0;
    y.mul_(2.0);
    z.sum().backward();
    require_close(x.grad(), Tensor::ones({3}, {.dtype = kFloat64}));
  }
}

// ---------------------------------------------------------------------------------------------------
// The strided loops against plain loops: odd shapes, every broadcast pattern, parallel sizes

TEST_CASE("binary kernels match plain loops on odd shapes and strides") {
  struct Case {
    std::string name;
    Tensor a, b;
  };
  const Tensor big = randn32({257, 259}, 1);
  const std::vector<Case> cases = {
      {"contiguous", randn32({257, 259}, 2), randn32({257, 259}, 3)},
      {"row broadcast", randn32({257, 259}, 4), randn32({259}, 5)},
      {"column broadcast", randn32({257, 1}, 6), randn32({1, 259}, 7)},
      {"scalar", randn32({257, 259}, 8), Tensor::scalar(1.25)},
      {"scalar first", Tensor::scalar(-0.75), randn32({257, 259}, 9)},
      {"transposed", big.t(), randn32({259, 257}, 10)},
      {"both transposed", big.t(), randn32({257, 259}, 11).t()},
      {"step slices", big.slice(0, 0, 256, 2), big.slice(0, 1, 257, 2)},
      {"step slices, columns", big.slice(1, 0, 258, 3), big.slice(1, 2, 259, 3)},
      {"expanded", randn32({259, 1}, 12).expand({259, 257}), big.t()},
      {"one long row", randn32({1, 100003}, 13), randn32({1}, 14)},
      {"few long rows", randn32({3, 40001}, 15), randn32({3, 1}, 16)},
      {"3-d mixed", randn32({7, 1, 4099}, 17), randn32({5, 1}, 18)},
      {"odd small", randn32({3, 5, 7}, 19), randn32({5, 1}, 20).t().t()},
  };
  const int all_threads = omp_get_max_threads();
  for (int threads : kThreadCounts) {
    omp_set_num_threads(threads);
    for (const auto& c : cases) {
      INFO(c.name << " threads " << threads);
      require_close(c.a + c.b, naive_binary(c.a, c.b, [](double x, double y) { return x + y; }), 1e-6, 1e-6);
      require_close(c.a * c.b, naive_binary(c.a, c.b, [](double x, double y) { return x * y; }), 1e-6, 1e-6);
      require_close(sub(c.a, c.b, 0.5), naive_binary(c.a, c.b, [](double x, double y) { return x - 0.5 * y; }), 1e-6,
                    1e-6);
      require_close(maximum(c.a, c.b), naive_binary(c.a, c.b, [](double x, double y) { return std::max(x, y); }), 0, 0);
      REQUIRE((c.a < c.b).to_vector<bool>() ==
              naive_binary(c.a, c.b, [](double x, double y) { return x < y ? 1.0 : 0.0; }).to(kBool).to_vector<bool>());
      const Tensor u = exp(c.a);
      const auto va = c.a.to_vector<double>();
      const auto vu = u.to_vector<double>();
      for (size_t i = 0; i < va.size(); ++i)
        if (std::abs(vu[i] - std::exp(static_cast<float>(va[i]))) > 1e-6 * std::abs(vu[i])) FAIL("exp at " << i);
    }
    // In-place into a strided destination.
    Tensor dst = Tensor::zeros({259, 257});
    Tensor dt = dst.t();
    const Tensor src = randn32({257}, 21).unsqueeze(1);
    dt.add_(src);
    require_close(dst, src.t().expand({259, 257}), 0, 0);
  }
  omp_set_num_threads(all_threads);
}
