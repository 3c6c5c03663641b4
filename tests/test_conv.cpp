// conv2d: the im2col + GEMM path against plain loops over the definition, PyTorch fixtures, gradcheck,
// and PyTorch's error messages.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <algorithm>
#include <vector>

using namespace tapegrad;
using testing::require_close;

namespace {

// ---- the reference: direct convolution, plain nested loops in double ----

struct RefConv {
  Int2 stride{1, 1};
  Conv2dPadding padding;
  Int2 dilation{1, 1};
  int64_t groups = 1;
};

// Sizes of a batched problem; an unbatched input is treated as N = 1.
struct Dims {
  int64_t n, cin, h, w, cout, cin_g, kh, kw, ho, wo;
};

Dims dims_of(const Shape& xs, const Shape& ws, const RefConv& p) {
  const bool batched = xs.size() == 4;
  Dims d{};
  d.n = batched ? xs[0] : 1;
  d.cin = xs[batched ? 1 : 0];
  d.h = xs[batched ? 2 : 1];
  d.w = xs[batched ? 3 : 2];
  d.cout = ws[0];
  d.cin_g = ws[1];
  d.kh = ws[2];
  d.kw = ws[3];
  d.ho = (d.h + p.padding.before[0] + p.padding.after[0] - p.dilation[0] * (d.kh - 1) - 1) / p.stride[0] + 1;
  d.wo = (d.w + p.padding.before[1] + p.padding.after[1] - p.dilation[1] * (d.kw - 1) - 1) / p.stride[1] + 1;
  return d;
}

// Calls f(n, co, i, j, ci, p, q, input channel, ih, iw) for every term of the sum that lands inside the input.
template <typename F>
void for_each_term(const Dims& d, const RefConv& p, F&& f) {
  const int64_t cout_g = d.cout / p.groups;
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t co = 0; co < d.cout; ++co)
      for (int64_t i = 0; i < d.ho; ++i)
        for (int64_t j = 0; j < d.wo; ++j)
          for (int64_t ci = 0; ci < d.cin_g; ++ci)
            for (int64_t a = 0; a < d.kh; ++a)
              for (int64_t b = 0; b < d.kw; ++b) {
                const int64_t c = (co / cout_g) * d.cin_g + ci;
                const int64_t ih = i * p.stride[0] + a * p.dilation[0] - p.padding.before[0];
                const int64_t iw = j * p.stride[1] + b * p.dilation[1] - p.padding.before[1];
                if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
                f(n, co, i, j, ci, a, b, c, ih, iw);
              }
}

struct RefResult {
  Tensor y, gx, gw, gb;  // float64
};

RefResult reference(const Tensor& x_t, const Tensor& w_t, const Tensor& b_t, const Tensor& gy_t, const RefConv& p) {
  const Dims d = dims_of(x_t.shape(), w_t.shape(), p);
  const auto x = x_t.to_vector<double>(), w = w_t.to_vector<double>(), gy = gy_t.to_vector<double>();
  std::vector<double> y(static_cast<size_t>(d.n * d.cout * d.ho * d.wo), 0.0), gx(x.size(), 0.0), gw(w.size(), 0.0),
      gb(static_cast<size_t>(d.cout), 0.0);
  auto X = [&](int64_t n, int64_t c, int64_t ih, int64_t iw) { return ((n * d.cin + c) * d.h + ih) * d.w + iw; };
  auto W = [&](int64_t co, int64_t ci, int64_t a, int64_t b) { return ((co * d.cin_g + ci) * d.kh + a) * d.kw + b; };
  auto Y = [&](int64_t n, int64_t co, int64_t i, int64_t j) { return ((n * d.cout + co) * d.ho + i) * d.wo + j; };
  for_each_term(d, p, [&](int64_t n, int64_t co, int64_t i, int64_t j, int64_t ci, int64_t a, int64_t b, int64_t c,
                          int64_t ih, int64_t iw) {
    y[Y(n, co, i, j)] += w[W(co, ci, a, b)] * x[X(n, c, ih, iw)];
    gx[X(n, c, ih, iw)] += w[W(co, ci, a, b)] * gy[Y(n, co, i, j)];
    gw[W(co, ci, a, b)] += gy[Y(n, co, i, j)] * x[X(n, c, ih, iw)];
  });
  if (b_t.defined()) {
    const auto bias = b_t.to_vector<double>();
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t co = 0; co < d.cout; ++co)
        for (int64_t k = 0; k < d.ho * d.wo; ++k) y[static_cast<size_t>(Y(n, co, 0, 0) + k)] += bias[co];
  }
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t co = 0; co < d.cout; ++co)
      for (int64_t k = 0; k < d.ho * d.wo; ++k) gb[co] += gy[static_cast<size_t>(Y(n, co, 0, 0) + k)];
  const Shape yshape = x_t.dim() == 4 ? Shape{d.n, d.cout, d.ho, d.wo} : Shape{d.cout, d.ho, d.wo};
  return {Tensor::from_vector(y, yshape), Tensor::from_vector(gx, x_t.shape()), Tensor::from_vector(gw, w_t.shape()),
          Tensor::from_vector(gb, {d.cout})};
}

struct Case {
  const char* name;
  Shape x, w;
  RefConv p;
  bool bias = true;
};

// Odd shapes for every branch of the fast path: padding, strides, dilation, groups, 1x1, 5x5, asymmetric
// padding, batch 1 / odd / larger than the thread count, unbatched.
std::vector<Case> odd_cases() {
  return {
      {"3x3 pad 1", {3, 3, 7, 5}, {4, 3, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {"stride 2", {2, 2, 9, 8}, {3, 2, 3, 3}, {{2, 2}, Conv2dPadding::symmetric({1, 0}), {1, 1}, 1}},
      {"stride (3, 2) pad 3", {1, 3, 10, 11}, {2, 3, 4, 3}, {{3, 2}, Conv2dPadding::symmetric({3, 2}), {1, 1}, 1}},
      {"dilation 2", {5, 2, 9, 10}, {3, 2, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({2, 1}), {2, 2}, 1}},
      {"dilation (1, 3) stride 2", {3, 3, 11, 12}, {2, 3, 2, 3}, {{2, 2}, Conv2dPadding::symmetric({1, 2}), {1, 3}, 1}},
      {"groups 2", {3, 4, 7, 6}, {6, 2, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 2}},
      {"groups 3 stride 2", {2, 6, 8, 9}, {3, 2, 3, 2}, {{2, 1}, Conv2dPadding::symmetric({0, 1}), {1, 1}, 3}},
      {"depthwise", {3, 5, 7, 8}, {5, 1, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 5}},
      {"depthwise x2 stride 2", {2, 3, 9, 9}, {6, 1, 5, 5}, {{2, 2}, Conv2dPadding::symmetric({2, 2}), {1, 1}, 3}},
      {"1x1", {3, 5, 4, 7}, {6, 5, 1, 1}, {}, false},
      {"1x1 groups", {1, 6, 3, 5}, {4, 3, 1, 1}, {{1, 1}, {}, {1, 1}, 2}},
      {"1x1 stride 2", {2, 3, 7, 6}, {4, 3, 1, 1}, {{2, 2}, {}, {1, 1}, 1}},
      {"1x1 padded", {2, 3, 4, 5}, {2, 3, 1, 1}, {{1, 1}, Conv2dPadding::symmetric({1, 2}), {1, 1}, 1}},
      {"5x5", {2, 3, 11, 9}, {4, 3, 5, 5}, {{1, 1}, Conv2dPadding::symmetric({2, 2}), {1, 1}, 1}},
      {"5x5 valid", {1, 2, 6, 5}, {3, 2, 5, 5}, {}},
      {"non-square kernel", {3, 2, 8, 10}, {3, 2, 2, 5}, {{1, 2}, Conv2dPadding::symmetric({1, 2}), {1, 1}, 1}},
      {"asymmetric padding", {2, 3, 7, 8}, {4, 3, 2, 4}, {{1, 1}, Conv2dPadding({0, 1}, {1, 2}), {1, 1}, 1}},
      {"asymmetric padding dilated", {3, 2, 6, 7}, {2, 2, 3, 2}, {{1, 1}, Conv2dPadding({2, 1}, {2, 0}), {2, 3}, 1}},
      {"padding larger than kernel", {2, 2, 4, 5}, {3, 2, 3, 3}, {{2, 1}, Conv2dPadding::symmetric({4, 3}), {1, 1}, 1}},
      {"batch 7", {7, 3, 5, 6}, {4, 3, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {"unbatched", {3, 7, 6}, {4, 3, 3, 2}, {{2, 1}, Conv2dPadding::symmetric({1, 1}), {1, 2}, 1}},
      {"unbatched 1x1", {4, 5, 6}, {3, 4, 1, 1}, {}},
  };
}

// Runs the fast path forward and backward (upstream gy) and compares all four results with the loops.
void check_against_reference(const Case& c, DType dt, bool non_contiguous) {
  INFO(c.name << " in " << dtype_name(dt) << (non_contiguous ? ", non-contiguous" : ""));
  Generator gen(42);
  Tensor x, w;
  if (non_contiguous) {
    // NHWC storage viewed as NCHW; the weight as every other element of a wider tensor.
    Shape xs = c.x;
    std::rotate(xs.end() - 3, xs.end() - 2, xs.end());  // (.., H, W, C)
    const Shape perm = c.x.size() == 4 ? Shape{0, 3, 1, 2} : Shape{2, 0, 1};
    x = Tensor::randn(xs, {.dtype = dt}, &gen).permute(perm);
    w = Tensor::randn({c.w[0], c.w[1], c.w[2], 2 * c.w[3]}, {.dtype = dt}, &gen).slice(3, 0, 2 * c.w[3], 2);
    REQUIRE_FALSE(x.is_contiguous());
  } else {
    x = Tensor::randn(c.x, {.dtype = dt}, &gen);
    w = Tensor::randn(c.w, {.dtype = dt}, &gen);
  }
  x.requires_grad_();
  w.requires_grad_();
  Tensor b = c.bias ? Tensor::randn({c.w[0]}, {.dtype = dt, .requires_grad = true}, &gen) : Tensor();
  Tensor y = conv2d(x, w, b, c.p.stride, c.p.padding, c.p.dilation, c.p.groups);
  Tensor gy = Tensor::randn(y.shape(), {.dtype = dt}, &gen);
  y.backward(gy);
  const RefResult r = reference(x, w, b, gy, c.p);
  const double rtol = dt == kFloat32 ? 1e-4 : 1e-10, atol = dt == kFloat32 ? 1e-4 : 1e-10;
  REQUIRE(y.dtype() == dt);
  require_close(y, r.y, rtol, atol);
  require_close(x.grad(), r.gx, rtol, atol);
  require_close(w.grad(), r.gw, rtol, atol);
  if (c.bias) require_close(b.grad(), r.gb, rtol, atol);
}

Tensor f(const testing::Fixture& fx, const std::string& key) { return fx[key]; }

// Selects a kernel for the scope of a test, then goes back to Auto.
struct AlgorithmScope {
  explicit AlgorithmScope(Conv2dAlgorithm a) { set_conv2d_algorithm(a); }
  ~AlgorithmScope() { set_conv2d_algorithm(Conv2dAlgorithm::Auto); }
  AlgorithmScope(const AlgorithmScope&) = delete;
  AlgorithmScope& operator=(const AlgorithmScope&) = delete;
};

const char* algorithm_name(Conv2dAlgorithm a) {
  return a == Conv2dAlgorithm::Gemm ? "gemm" : a == Conv2dAlgorithm::Direct ? "direct" : "auto";
}

constexpr Conv2dAlgorithm kAlgorithms[] = {Conv2dAlgorithm::Auto, Conv2dAlgorithm::Gemm, Conv2dAlgorithm::Direct};

}  // namespace

TEST_CASE("conv2d matches direct loops on odd shapes (float32 and float64, every kernel)") {
  for (Conv2dAlgorithm a : kAlgorithms) {
    INFO("algorithm " << algorithm_name(a));
    AlgorithmScope scope(a);
    for (const Case& c : odd_cases()) {
      check_against_reference(c, kFloat32, false);
      check_against_reference(c, kFloat64, false);
    }
  }
}

TEST_CASE("conv2d reads non-contiguous inputs and weights") {
  for (Conv2dAlgorithm a : kAlgorithms) {
    INFO("algorithm " << algorithm_name(a));
    AlgorithmScope scope(a);
    for (const Case& c : odd_cases()) check_against_reference(c, kFloat32, true);
  }
}

TEST_CASE("conv2d direct kernels: row tails, channel and tap remainders, wide rows, one image") {
  // Output widths around the vector length, channel counts around the register tiles, tap counts
  // around the weight tile, rows longer than one tile, and N = 1 (work split inside the image).
  const std::vector<Case> cases = {
      {"wo 1", {2, 3, 5, 3}, {7, 3, 3, 3}, {{1, 1}, {}, {1, 1}, 1}},
      {"wo 7", {3, 2, 4, 9}, {5, 2, 3, 3}, {{1, 1}, {}, {1, 1}, 1}},
      {"wo 8", {2, 3, 6, 8}, {13, 3, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {"wo 9", {2, 1, 5, 11}, {6, 1, 3, 3}, {{2, 1}, {}, {1, 1}, 1}},
      {"wo 17", {3, 4, 6, 17}, {12, 4, 2, 1}, {{1, 1}, Conv2dPadding::symmetric({0, 0}), {1, 1}, 1}},
      {"wo 33", {2, 2, 5, 31}, {11, 2, 3, 3}, {{1, 1}, Conv2dPadding({1, 2}, {0, 2}), {1, 1}, 1}},
      {"wide 70", {1, 3, 4, 70}, {9, 3, 2, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 2}, 1}},
      {"cout 1", {3, 5, 6, 7}, {1, 5, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {"k 1 tap", {2, 1, 6, 9}, {5, 1, 1, 1}, {{1, 1}, Conv2dPadding::symmetric({1, 0}), {1, 1}, 1}},
      {"k 2 taps", {2, 1, 6, 9}, {5, 1, 1, 2}, {{1, 1}, {}, {1, 3}, 1}},
      {"groups 4 x 5", {3, 8, 7, 10}, {20, 2, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 4}},
      {"N 1 big", {1, 3, 12, 20}, {64, 3, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {"N 1 depthwise", {1, 16, 9, 12}, {16, 1, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 16}},
      {"stride h 3", {2, 3, 13, 10}, {7, 3, 3, 3}, {{3, 1}, Conv2dPadding::symmetric({1, 1}), {2, 1}, 1}},
      {"pad beyond kernel", {2, 2, 3, 4}, {7, 2, 2, 2}, {{1, 1}, Conv2dPadding({3, 4}, {2, 5}), {1, 1}, 1}},
  };
  for (Conv2dAlgorithm a : {Conv2dAlgorithm::Gemm, Conv2dAlgorithm::Direct}) {
    INFO("algorithm " << algorithm_name(a));
    AlgorithmScope scope(a);
    for (const Case& c : cases) {
      check_against_reference(c, kFloat32, false);
      check_against_reference(c, kFloat64, false);
    }
  }
}

TEST_CASE("conv2d takes a strided upstream gradient") {
  Generator gen(3);
  Tensor x = Tensor::randn({3, 2, 6, 5}, {.requires_grad = true}, &gen);
  Tensor w = Tensor::randn({4, 2, 3, 3}, {.requires_grad = true}, &gen);
  Tensor y = conv2d(x, w, {}, {1, 1}, {1, 1});
  // (N, Cout, H, W) gradient stored as (W, H, Cout, N)
  Tensor gy = Tensor::randn({5, 6, 4, 3}, {}, &gen).permute({3, 2, 1, 0});
  REQUIRE_FALSE(gy.is_contiguous());
  y.backward(gy);
  const RefResult r = reference(x, w, {}, gy, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1});
  require_close(x.grad(), r.gx, 1e-4, 1e-4);
  require_close(w.grad(), r.gw, 1e-4, 1e-4);
}

TEST_CASE("conv2d matches PyTorch fixtures: forward and all gradients") {
  testing::Fixture fx("conv.safetensors");
  struct FixtureCase {
    const char* name;
    Int2 stride;
    Conv2dPadding padding;
    Int2 dilation;
    int64_t groups;
  };
  const std::vector<FixtureCase> cases = {
      {"basic", {1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1},
      {"strided", {2, 2}, Conv2dPadding::symmetric({2, 1}), {2, 2}, 2},
      {"depthwise", {1, 2}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 4},
      {"pointwise", {1, 1}, {}, {1, 1}, 1},
      {"k5", {1, 1}, Conv2dPadding::symmetric({2, 2}), {1, 1}, 1},
      {"same_even", {1, 1}, conv2d_padding("same", {2, 4}, {2, 1}), {2, 1}, 1},
      {"same_odd", {1, 1}, conv2d_padding("same", {3, 3}, {2, 2}), {2, 2}, 1},
      {"valid", {1, 1}, conv2d_padding("valid", {3, 2}), {1, 1}, 1},
      {"unbatched", {2, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1},
      {"f64", {2, 1}, Conv2dPadding::symmetric({1, 2}), {1, 2}, 2},
  };
  for (const FixtureCase& c : cases) {
    INFO(c.name);
    const std::string k = c.name;
    Tensor x = f(fx, k + ".x").detach().requires_grad_();
    Tensor w = f(fx, k + ".w").detach().requires_grad_();
    Tensor b = fx.has(k + ".b") ? f(fx, k + ".b").detach().requires_grad_() : Tensor();
    Tensor y = conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
    const double tol = x.dtype() == kFloat64 ? 1e-12 : 1e-5;
    require_close(y, f(fx, k + ".y"), tol, tol);
    y.backward(f(fx, k + ".gy"));
    require_close(x.grad(), f(fx, k + ".gx"), tol, tol);
    require_close(w.grad(), f(fx, k + ".gw"), tol, tol);
    if (b.defined()) require_close(b.grad(), f(fx, k + ".gb"), tol, tol);
  }
}

TEST_CASE("conv2d with padding strings: 'same' with an even kernel pads the bottom/right") {
  testing::Fixture fx("conv.safetensors");
  const Conv2dPadding same = conv2d_padding("same", {2, 4}, {2, 1});
  REQUIRE(same.before == Int2{1, 1});
  REQUIRE(same.after == Int2{1, 2});
  REQUIRE(conv2d_padding("same", {5, 3}) == Conv2dPadding({2, 1}, {2, 1}));
  REQUIRE(conv2d_padding("valid", {5, 3}) == Conv2dPadding());
  Tensor y = conv2d(f(fx, "same_even.x"), f(fx, "same_even.w"), f(fx, "same_even.b"), {1, 1}, "same", {2, 1});
  require_close(y, f(fx, "same_even.y"), 1e-5, 1e-5);
  REQUIRE(y.shape() == Shape{2, 4, 7, 8});
  Tensor v = conv2d(f(fx, "valid.x"), f(fx, "valid.w"), f(fx, "valid.b"), {1, 1}, "valid");
  require_close(v, f(fx, "valid.y"), 1e-5, 1e-5);
  REQUIRE(conv2d_output_size(7, 2, 1, 1, 1, 2) == 7);
  REQUIRE(conv2d_output_size(8, 3, 1, 1, 2, 1) == 4);
}

TEST_CASE("conv2d records one node and computes only the gradients that are needed") {
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 5, 5}, {}, &gen);
  Tensor w = Tensor::randn({4, 3, 3, 3}, {.requires_grad = true}, &gen);
  Tensor b = Tensor::randn({4}, {}, &gen);
  Tensor y = conv2d(x, w, b, {1, 1}, {1, 1});
  const auto nodes = autograd::tape({y});
  REQUIRE(nodes.size() == 1);
  REQUIRE(nodes[0]->name == "conv2d");
  REQUIRE(nodes[0]->saved.size() == 2);
  Tensor gy = Tensor::randn(y.shape(), {}, &gen);
  y.backward(gy);
  REQUIRE_FALSE(x.grad().defined());
  REQUIRE_FALSE(b.grad().defined());
  require_close(w.grad(), reference(x, w, b, gy, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}).gw, 1e-4, 1e-4);

  // No input needs a gradient: nothing is recorded.
  Tensor z = conv2d(x, w.detach(), b, {1, 1}, {1, 1});
  REQUIRE_FALSE(z.requires_grad());
  {
    autograd::NoGradGuard ng;
    REQUIRE_FALSE(conv2d(x, w, b).requires_grad());
  }
}

TEST_CASE("conv2d's fused backward equals the differentiable (create_graph) one") {
  for (const Case& c : odd_cases()) {
    INFO(c.name);
    AlgorithmScope scope(Conv2dAlgorithm::Auto);
    Generator gen(9);
    Tensor x = Tensor::randn(c.x, {.dtype = kFloat64, .requires_grad = true}, &gen);
    Tensor w = Tensor::randn(c.w, {.dtype = kFloat64, .requires_grad = true}, &gen);
    Tensor b = c.bias ? Tensor::randn({c.w[0]}, {.dtype = kFloat64, .requires_grad = true}, &gen) : Tensor();
    std::vector<Tensor> inputs = {x, w};
    if (c.bias) inputs.push_back(b);
    Tensor y = conv2d(x, w, b, c.p.stride, c.p.padding, c.p.dilation, c.p.groups);
    Tensor gy = Tensor::randn(y.shape(), {.dtype = kFloat64}, &gen);
    const auto fused = autograd::grad({y}, inputs, {gy}, /*retain_graph=*/true);
    const auto composed = autograd::grad({y}, inputs, {gy}, /*retain_graph=*/true, /*create_graph=*/true);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (i < 2) REQUIRE(composed[i].requires_grad());  // the bias gradient, sum(gy), is a constant
      require_close(fused[i], composed[i].detach(), 1e-12, 1e-12);
    }
  }
}

TEST_CASE("conv2d gradcheck in float64 for input, weight and bias") {
  struct G {
    Shape x, w;
    RefConv p;
  };
  const std::vector<G> cases = {
      {{2, 3, 5, 4}, {2, 3, 3, 3}, {{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1}},
      {{3, 4, 7, 6}, {4, 2, 3, 2}, {{2, 1}, Conv2dPadding::symmetric({1, 2}), {2, 1}, 2}},
      {{2, 3, 5, 6}, {3, 1, 3, 3}, {{1, 2}, Conv2dPadding({0, 1}, {2, 1}), {1, 1}, 3}},
      {{3, 4, 4}, {2, 3, 1, 1}, {}},
      {{1, 2, 4, 5}, {3, 2, 1, 1}, {{1, 1}, {}, {1, 1}, 1}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const G& c = cases[i];
    INFO("case " << i);
    Tensor x = testing::randn64(c.x, 100 + i), w = testing::randn64(c.w, 200 + i), b = testing::randn64({c.w[0]}, 300 + i);
    const RefConv p = c.p;
    REQUIRE(gradcheck(
        [p](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t[2], p.stride, p.padding, p.dilation, p.groups); },
        {x, w, b}));
  }
}

TEST_CASE("conv2d second-order gradients (gradgradcheck)") {
  Tensor x = testing::randn64({2, 4, 5, 4}, 1), w = testing::randn64({4, 2, 3, 2}, 2), b = testing::randn64({4}, 3);
  REQUIRE(gradgradcheck(
      [](const std::vector<Tensor>& t) {
        return conv2d(t[0], t[1], t[2], {2, 1}, Conv2dPadding({1, 0}, {1, 1}), {1, 2}, 2);
      },
      {x, w, b}));
  // A conv of a conv: the weight gradient depends on the input through both layers.
  Tensor w2 = testing::randn64({3, 4, 1, 1}, 4);
  REQUIRE(gradgradcheck(
      [](const std::vector<Tensor>& t) { return conv2d(conv2d(t[0], t[1], {}, {1, 1}, {1, 1}).tanh(), t[2]); },
      {x.detach().narrow(1, 0, 2).contiguous().requires_grad_(), testing::randn64({4, 2, 3, 3}, 5), w2}));
}

TEST_CASE("conv2d_input_grad and conv2d_weight_grad match the autograd gradients") {
  Generator gen(11);
  Tensor x = Tensor::randn({3, 4, 6, 7}, {.dtype = kFloat64, .requires_grad = true}, &gen);
  Tensor w = Tensor::randn({6, 2, 3, 3}, {.dtype = kFloat64, .requires_grad = true}, &gen);
  const Conv2dPadding pad({1, 0}, {1, 2});
  Tensor y = conv2d(x, w, {}, {2, 1}, pad, {1, 2}, 2);
  Tensor gy = Tensor::randn(y.shape(), {.dtype = kFloat64}, &gen);
  y.backward(gy);
  require_close(conv2d_input_grad(x.shape(), w.detach(), gy, {2, 1}, pad, {1, 2}, 2), x.grad(), 1e-12, 1e-12);
  require_close(conv2d_weight_grad(x.detach(), w.shape(), gy, {2, 1}, pad, {1, 2}, 2), w.grad(), 1e-12, 1e-12);
  REQUIRE_ERROR(conv2d_input_grad({3, 4, 6, 7}, w.detach(), gy.narrow(3, 0, 2), {2, 1}, pad, {1, 2}, 2),
                "conv2d_input_grad: expected grad_output of size [3, 6, 3, 5], but got [3, 6, 3, 2]");
  REQUIRE(gradcheck(
      [pad](const std::vector<Tensor>& t) { return conv2d_input_grad({2, 4, 6, 7}, t[0], t[1], {2, 1}, pad, {1, 2}, 2); },
      {testing::randn64({6, 2, 3, 3}, 1), testing::randn64({2, 6, 3, 5}, 2)}));
  REQUIRE(gradcheck(
      [pad](const std::vector<Tensor>& t) { return conv2d_weight_grad(t[0], {6, 2, 3, 3}, t[1], {2, 1}, pad, {1, 2}, 2); },
      {testing::randn64({2, 4, 6, 7}, 3), testing::randn64({2, 6, 3, 5}, 4)}));
}

TEST_CASE("conv2d called from inside a parallel region runs on the calling thread") {
  // Each thread convolves its own input; the per-thread scratch must not be shared.
  const RefConv p{{1, 1}, Conv2dPadding::symmetric({1, 1}), {1, 1}, 1};
  constexpr int kJobs = 4;
  std::vector<Tensor> xs, ys(kJobs), gws(kJobs);
  Generator gen(21);
  Tensor w = Tensor::randn({5, 3, 3, 3}, {}, &gen);
  for (int i = 0; i < kJobs; ++i) xs.push_back(Tensor::randn({3, 3, 6 + i, 7}, {}, &gen));
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < kJobs; ++i) {
    Tensor wi = w.detach().requires_grad_();
    Tensor y = conv2d(xs[i], wi, {}, p.stride, p.padding);
    y.sum().backward();
    ys[i] = y.detach();
    gws[i] = wi.grad();
  }
  for (int i = 0; i < kJobs; ++i) {
    const RefResult r = reference(xs[i], w, {}, Tensor::ones(ys[i].shape()), p);
    require_close(ys[i], r.y, 1e-4, 1e-4);
    require_close(gws[i], r.gw, 1e-4, 1e-4);
  }
}

TEST_CASE("conv2d edge sizes: empty batch, kernel as large as the padded input") {
  Tensor w = Tensor::ones({2, 3, 3, 3});
  Tensor y = conv2d(Tensor::zeros({0, 3, 5, 5}), w, Tensor::ones({2}));
  REQUIRE(y.shape() == Shape{0, 2, 3, 3});
  Tensor z = conv2d(Tensor::ones({1, 3, 1, 1}), w, {}, {1, 1}, {1, 1});  // one output pixel
  REQUIRE(z.shape() == Shape{1, 2, 1, 1});
  REQUIRE(z.to_vector<float>() == std::vector<float>{3, 3});
  Tensor x = Tensor::zeros({0, 3, 5, 5}, {.requires_grad = true});
  Tensor wg = Tensor::ones({2, 3, 3, 3}, {.requires_grad = true});
  conv2d(x, wg, {}).sum().backward();
  REQUIRE(x.grad().shape() == Shape{0, 3, 5, 5});
  REQUIRE(wg.grad().to_vector<float>() == std::vector<float>(54, 0.0f));
}

TEST_CASE("conv2d errors carry PyTorch's messages") {
  Tensor x = Tensor::randn({2, 3, 5, 5}), w = Tensor::randn({8, 3, 3, 3});
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 3}), w),
                "conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [2, 3]");
  REQUIRE_ERROR(conv2d(Tensor::randn({1, 2, 3, 5, 5}), w),
                "conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [1, 2, 3, 5, 5]");
  REQUIRE_ERROR(conv2d(x, Tensor::randn({8, 3, 3})),
                "conv2d: Expected 4D weight (out_channels, in_channels/groups, kH, kW), but got weight of size [8, 3, 3]");
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 4, 5, 5}), w),
                "conv2d: Given groups=1, weight of size [8, 3, 3, 3], expected input[2, 4, 5, 5] to have 3 channels, "
                "but got 4 channels instead");
  REQUIRE_ERROR(conv2d(Tensor::randn({4, 5, 5}), w),
                "conv2d: Given groups=1, weight of size [8, 3, 3, 3], expected input[1, 4, 5, 5] to have 3 channels, "
                "but got 4 channels instead");
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 4, 5, 5}), w, {}, {1, 1}, {0, 0}, {1, 1}, 2),
                "conv2d: Given groups=2, weight of size [8, 3, 3, 3], expected input[2, 4, 5, 5] to have 6 channels, "
                "but got 4 channels instead");
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 6, 5, 5}), Tensor::randn({7, 3, 3, 3}), {}, {1, 1}, {0, 0}, {1, 1}, 2),
                "conv2d: Given groups=2, expected weight to be divisible by 2 at dimension 0, but got weight of size "
                "[[7, 3, 3, 3]] instead");
  REQUIRE_ERROR(conv2d(x, Tensor::randn({0, 3, 3, 3})),
                "conv2d: Given groups=1, expected weight to be at least 1 at dimension 0, but got weight of size "
                "[0, 3, 3, 3] instead");
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 3, 2, 2}), w),
                "conv2d: Calculated padded input size per channel: (2 x 2). Kernel size: (3 x 3). Kernel size can't be "
                "greater than actual input size");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, {0, 0}, {3, 3}),
                "conv2d: Calculated padded input size per channel: (5 x 5). Kernel size: (7 x 7). Kernel size can't be "
                "greater than actual input size");
  REQUIRE_ERROR(conv2d(Tensor::randn({2, 3, 0, 5}), w),
                "conv2d: Calculated padded input size per channel: (0 x 5). Kernel size: (3 x 3). Kernel size can't be "
                "greater than actual input size");
  REQUIRE_ERROR(conv2d(x, w, Tensor::randn({7})),
                "conv2d: Given weight of size [8, 3, 3, 3], expected bias to be 1-dimensional with 8 elements, but got "
                "bias of size [7] instead");
  REQUIRE_ERROR(conv2d(x, w, Tensor::randn({8, 1})),
                "conv2d: Given weight of size [8, 3, 3, 3], expected bias to be 1-dimensional with 8 elements, but got "
                "bias of size [8, 1] instead");
  REQUIRE_ERROR(conv2d(x.to(kFloat64), w), "conv2d: Input type (double) and weight type (float) should be the same");
  REQUIRE_ERROR(conv2d(x.to(kFloat64), w.to(kFloat64), Tensor::randn({8})),
                "conv2d: Input type (double) and bias type (float) should be the same");
  REQUIRE_ERROR(conv2d(x, w, Tensor::randn({8}).to(kFloat64)),
                "conv2d: Input type (float) and bias type (double) should be the same");
  REQUIRE_ERROR(conv2d(x.to(kInt64), w.to(kInt64)),
                "conv2d: expected a floating point tensor (float32 or float64), got int64");
  REQUIRE_ERROR(conv2d(x, w, {}, {0, 1}), "conv2d: non-positive stride is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, -1}), "conv2d: non-positive stride is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, {-1, 0}), "conv2d: negative padding is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, Conv2dPadding({0, 0}, {0, -1})), "conv2d: negative padding is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, {0, 0}, {0, 1}), "conv2d: non-positive dilation is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, {0, 0}, {1, 1}, 0), "conv2d: non-positive groups is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, {0, 0}, {1, 1}, -1), "conv2d: non-positive groups is not supported");
  REQUIRE_ERROR(conv2d(x, w, {}, {2, 2}, "same"), "conv2d: padding='same' is not supported for strided convolutions");
  REQUIRE_ERROR(conv2d(x, w, {}, {1, 1}, "foo"), "conv2d: Invalid padding string: 'foo'");
  REQUIRE_ERROR(conv2d(x, Tensor::randn({8, 3, 0, 3})),
                "conv2d: Expected weight with a non-empty kernel, but got weight of size [8, 3, 0, 3]");
}
