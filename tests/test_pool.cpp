// Pooling: the kernels against plain loops, PyTorch fixtures, gradcheck, and PyTorch's error messages.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

using namespace tapegrad;
using testing::require_close;

namespace {

// ---- references: one output at a time, straight from the definitions ----

struct PoolCfg {
  Int2 k, s, p{0, 0}, d{1, 1};
  bool ceil = false;
};

// PyTorch's output size, written out independently of the library.
int64_t out_size(int64_t len, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil) {
  const double span = static_cast<double>(len + 2 * p - d * (k - 1) - 1) / static_cast<double>(s);
  int64_t o = static_cast<int64_t>(ceil ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil && (o - 1) * s >= len + p) --o;
  return o;
}

struct Planes {
  int64_t planes, h, w;
};
Planes planes_of(const Shape& s) {
  const size_t n = s.size();
  return {n == 4 ? s[0] * s[1] : s[0], s[n - 2], s[n - 1]};
}
Shape with_hw(Shape s, int64_t h, int64_t w) {
  s[s.size() - 2] = h;
  s[s.size() - 1] = w;
  return s;
}

struct MaxRef {
  Tensor y, idx, gx;
};

// Max over the window's taps in row-major order: the first maximum wins, a NaN replaces anything.
MaxRef max_reference(const Tensor& x_t, const Tensor& gy_t, const PoolCfg& c) {
  const Planes P = planes_of(x_t.shape());
  const int64_t ho = out_size(P.h, c.k[0], c.s[0], c.p[0], c.d[0], c.ceil);
  const int64_t wo = out_size(P.w, c.k[1], c.s[1], c.p[1], c.d[1], c.ceil);
  const auto x = x_t.to_vector<double>();
  const std::vector<double> gy = gy_t.defined() ? gy_t.to_vector<double>() : std::vector<double>();
  std::vector<double> y(static_cast<size_t>(P.planes * ho * wo)), gx(x.size(), 0.0);
  std::vector<int64_t> idx(y.size());
  for (int64_t pl = 0; pl < P.planes; ++pl)
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t arg = -1;
        for (int64_t a = 0; a < c.k[0]; ++a)
          for (int64_t b = 0; b < c.k[1]; ++b) {
            const int64_t ih = i * c.s[0] - c.p[0] + a * c.d[0], iw = j * c.s[1] - c.p[1] + b * c.d[1];
            if (ih < 0 || ih >= P.h || iw < 0 || iw >= P.w) continue;
            const double v = x[static_cast<size_t>((pl * P.h + ih) * P.w + iw)];
            if (arg < 0 || v > best || std::isnan(v)) {
              best = v;
              arg = ih * P.w + iw;
            }
          }
        const size_t o = static_cast<size_t>((pl * ho + i) * wo + j);
        y[o] = best;
        idx[o] = arg;
        if (!gy.empty()) gx[static_cast<size_t>(pl * P.h * P.w + arg)] += gy[o];
      }
  const Shape ys = with_hw(x_t.shape(), ho, wo);
  return {Tensor::from_vector(y, ys), Tensor::from_vector(idx, ys), Tensor::from_vector(gx, x_t.shape())};
}

struct AvgRef {
  Tensor y, gx;
};

// Windows along one dim for avg pooling: [start, end) clipped, and the length counting the padding.
struct Win {
  int64_t lo, hi, padded;
};
std::vector<Win> avg_windows(int64_t len, int64_t k, int64_t s, int64_t p, bool ceil) {
  std::vector<Win> v;
  for (int64_t o = 0; o < out_size(len, k, s, p, 1, ceil); ++o) {
    const int64_t start = o * s - p, end = std::min(start + k, len + p);
    v.push_back({std::max<int64_t>(start, 0), std::min(end, len), end - start});
  }
  return v;
}
// Adaptive cells: [floor(o L / n), ceil((o + 1) L / n)).
std::vector<Win> adaptive_windows(int64_t len, int64_t n) {
  std::vector<Win> v;
  for (int64_t o = 0; o < n; ++o) {
    const auto lo = static_cast<int64_t>(std::floor(static_cast<double>(o * len) / static_cast<double>(n)));
    const auto hi = static_cast<int64_t>(std::ceil(static_cast<double>((o + 1) * len) / static_cast<double>(n)));
    v.push_back({lo, hi, hi - lo});
  }
  return v;
}

// Mean over windows rows x cols, divisor as avg_pool2d's (count_include_pad counts `padded`).
AvgRef avg_reference(const Tensor& x_t, const Tensor& gy_t, const std::vector<Win>& rows, const std::vector<Win>& cols,
                     bool count_include_pad, int64_t divisor_override) {
  const Planes P = planes_of(x_t.shape());
  const int64_t ho = static_cast<int64_t>(rows.size()), wo = static_cast<int64_t>(cols.size());
  const auto x = x_t.to_vector<double>();
  const std::vector<double> gy = gy_t.defined() ? gy_t.to_vector<double>() : std::vector<double>();
  std::vector<double> y(static_cast<size_t>(P.planes * ho * wo)), gx(x.size(), 0.0);
  for (int64_t pl = 0; pl < P.planes; ++pl)
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j) {
        const Win& r = rows[i];
        const Win& c = cols[j];
        const size_t o = static_cast<size_t>((pl * ho + i) * wo + j);
        if (r.lo >= r.hi || c.lo >= c.hi) {
          y[o] = 0;
          continue;
        }
        const double div = divisor_override ? static_cast<double>(divisor_override)
                           : count_include_pad ? static_cast<double>(r.padded * c.padded)
                                               : static_cast<double>((r.hi - r.lo) * (c.hi - c.lo));
        double s = 0;
        for (int64_t ih = r.lo; ih < r.hi; ++ih)
          for (int64_t iw = c.lo; iw < c.hi; ++iw) {
            const size_t at = static_cast<size_t>((pl * P.h + ih) * P.w + iw);
            s += x[at];
            if (!gy.empty()) gx[at] += gy[o] / div;
          }
        y[o] = s / div;
      }
  return {Tensor::from_vector(y, with_hw(x_t.shape(), ho, wo)), Tensor::from_vector(gx, x_t.shape())};
}

// An input of `shape` stored channels-last (a non-contiguous view), or plain.
Tensor make_input(const Shape& shape, DType dt, bool strided, Generator& gen) {
  if (!strided) return Tensor::randn(shape, {.dtype = dt}, &gen);
  Shape s = shape;
  std::rotate(s.end() - 3, s.end() - 2, s.end());
  Tensor x = Tensor::randn(s, {.dtype = dt}, &gen).permute(shape.size() == 4 ? Shape{0, 3, 1, 2} : Shape{2, 0, 1});
  REQUIRE((shape[shape.size() - 3] == 1 || !x.is_contiguous()));  // one channel: the view is contiguous
  return x;
}

struct MaxCase {
  const char* name;
  Shape x;
  PoolCfg c;
};

std::vector<MaxCase> max_cases() {
  return {
      {"k2", {2, 3, 6, 8}, {{2, 2}, {2, 2}}},
      {"k2 odd input", {3, 2, 7, 5}, {{2, 2}, {2, 2}}},
      {"k3 s2 p1", {2, 3, 9, 8}, {{3, 3}, {2, 2}, {1, 1}}},
      {"k3 s1 p1", {1, 2, 5, 6}, {{3, 3}, {1, 1}, {1, 1}}},
      {"rect", {3, 2, 7, 11}, {{2, 4}, {1, 3}, {1, 2}}},
      {"dilated", {2, 2, 10, 9}, {{3, 2}, {2, 1}, {1, 1}, {2, 3}}},
      {"ceil", {1, 3, 8, 9}, {{3, 3}, {2, 2}, {0, 0}, {1, 1}, true}},
      {"ceil pad", {2, 1, 6, 6}, {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true}},
      {"ceil dilated", {2, 2, 9, 10}, {{2, 3}, {3, 2}, {1, 1}, {2, 2}, true}},
      {"k1", {2, 2, 3, 4}, {{1, 1}, {1, 1}}},
      {"whole plane", {2, 3, 4, 5}, {{4, 5}, {4, 5}}},
      {"unbatched", {3, 7, 6}, {{2, 2}, {2, 1}}},
      {"big", {5, 7, 33, 31}, {{3, 3}, {2, 2}, {1, 1}}},
  };
}

struct AvgCase {
  const char* name;
  Shape x;
  PoolCfg c;
  bool count_include_pad = true;
  int64_t divisor = 0;
};

std::vector<AvgCase> avg_cases() {
  return {
      {"k2", {2, 3, 6, 8}, {{2, 2}, {2, 2}}},
      {"k3 s2 p1", {2, 3, 9, 8}, {{3, 3}, {2, 2}, {1, 1}}},
      {"k3 s2 p1 no pad count", {2, 3, 9, 8}, {{3, 3}, {2, 2}, {1, 1}}, false},
      {"ceil", {2, 2, 8, 7}, {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true}},
      {"ceil no pad count", {2, 2, 8, 7}, {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true}, false},
      {"ceil unpadded", {1, 2, 7, 7}, {{2, 2}, {2, 2}, {0, 0}, {1, 1}, true}},
      {"divisor", {2, 2, 7, 9}, {{2, 3}, {1, 2}, {1, 1}}, true, 5},
      {"negative divisor", {1, 2, 5, 5}, {{2, 2}, {1, 1}}, true, -3},
      {"rect", {3, 2, 7, 11}, {{2, 4}, {1, 3}, {1, 2}}},
      {"unbatched", {3, 5, 7}, {{3, 2}, {1, 1}, {1, 0}}},
      {"big", {5, 7, 33, 31}, {{3, 3}, {2, 2}, {1, 1}}},
  };
}

}  // namespace

// ---- max_pool2d ----

TEST_CASE("max_pool2d matches direct loops: values, indices and gradient") {
  for (const MaxCase& mc : max_cases())
    for (DType dt : {kFloat32, kFloat64})
      for (bool strided : {false, true}) {
        INFO(mc.name << " " << dtype_name(dt) << (strided ? " strided" : ""));
        Generator gen(7);
        Tensor x = make_input(mc.x, dt, strided, gen).requires_grad_();
        auto [y, idx] = max_pool2d_with_indices(x, mc.c.k, mc.c.s, mc.c.p, mc.c.d, mc.c.ceil);
        Tensor gy = Tensor::randn(y.shape(), {.dtype = dt}, &gen);
        y.backward(gy);
        const MaxRef r = max_reference(x, gy, mc.c);
        REQUIRE(idx.dtype() == kInt64);
        require_close(y, r.y, 0, 0);
        REQUIRE(idx.to_vector<int64_t>() == r.idx.to_vector<int64_t>());
        require_close(x.grad(), r.gx, 1e-6, 1e-6);
        // The values-only path (no indices kept) gives the same values.
        autograd::NoGradGuard ng;
        require_close(max_pool2d(x, mc.c.k, mc.c.s, mc.c.p, mc.c.d, mc.c.ceil), r.y, 0, 0);
      }
}

TEST_CASE("max_pool2d ties go to the first maximum, NaN propagates, -inf windows keep the first tap") {
  // Integer-valued input: many ties in every 3x3 window.
  Generator gen(1);
  Tensor x = Tensor::randint(-2, 3, {2, 2, 7, 7}, &gen).to(kFloat32).requires_grad_();
  auto [y, idx] = max_pool2d_with_indices(x, {3, 3}, Int2{1, 1}, {1, 1});
  const MaxRef r = max_reference(x, Tensor::ones(y.shape()), {{3, 3}, {1, 1}, {1, 1}});
  REQUIRE(idx.to_vector<int64_t>() == r.idx.to_vector<int64_t>());

  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor p = Tensor::from_vector(std::vector<float>{1, nan, 5, 2, nan, 0, -inf, -inf, -inf}, {1, 3, 3});
  auto [v, i] = max_pool2d_with_indices(p, {1, 3});
  const auto vv = v.to_vector<float>();
  REQUIRE(std::isnan(vv[0]));
  REQUIRE(std::isnan(vv[1]));
  REQUIRE(vv[2] == -inf);
  REQUIRE(i.to_vector<int64_t>() == std::vector<int64_t>{1, 4, 6});  // the last NaN; the first -inf
  autograd::NoGradGuard ng;
  REQUIRE(std::isnan(max_pool2d(p, {1, 3}).to_vector<float>()[1]));
}

TEST_CASE("max_pool2d matches PyTorch fixtures") {
  testing::Fixture fx("pool.safetensors");
  struct C {
    const char* name;
    PoolCfg c;
  };
  const std::vector<C> cases = {
      {"max_k3s2p1", {{3, 3}, {2, 2}, {1, 1}}},
      {"max_k2", {{2, 2}, {2, 2}}},
      {"max_ties", {{3, 3}, {1, 1}, {1, 1}}},
      {"max_ceil", {{3, 3}, {2, 2}, {0, 0}, {1, 1}, true}},
      {"max_ceil_pad", {{3, 3}, {2, 2}, {1, 1}, {1, 1}, true}},
      {"max_dil", {{3, 2}, {2, 1}, {1, 1}, {2, 3}}},
      {"max_rect", {{2, 4}, {1, 3}, {1, 2}}},
      {"max_nan", {{3, 3}, {2, 2}, {1, 1}}},
      {"max_unbatched", {{2, 2}, {2, 1}}},
      {"max_f64", {{3, 3}, {2, 2}, {1, 1}, {2, 2}}},
  };
  for (const C& c : cases) {
    INFO(c.name);
    const std::string k = c.name;
    Tensor x = fx[k + ".x"].detach().requires_grad_();
    auto [y, idx] = max_pool2d_with_indices(x, c.c.k, c.c.s, c.c.p, c.c.d, c.c.ceil);
    require_close(y, fx[k + ".y"], 0, 0);
    REQUIRE(idx.to_vector<int64_t>() == fx[k + ".idx"].to_vector<int64_t>());
    y.backward(fx[k + ".gy"]);
    require_close(x.grad(), fx[k + ".gx"], 1e-6, 1e-6);
  }
  // stride defaults to the kernel size
  Tensor y = max_pool2d(fx["max_k2.x"], {2, 2});
  require_close(y, fx["max_k2.y"], 0, 0);
}

TEST_CASE("max_pool2d gradcheck and gradgradcheck in float64") {
  Tensor x = testing::randn64({2, 3, 7, 6}, 1);
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return max_pool2d(t[0], {3, 2}, Int2{2, 1}, {1, 1}, {1, 2}); },
                    {x}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return max_pool2d(t[0], {3, 3}, Int2{2, 2}, {1, 1}, {1, 1}, true); },
                    {testing::randn64({3, 6, 6}, 2)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return max_pool2d(t[0] * t[0], {2, 2}); }, {x}));
  const auto nodes = autograd::tape({max_pool2d(x, {2, 2})});
  REQUIRE(nodes.size() == 1);
  REQUIRE(nodes[0]->name == "max_pool2d");
}

TEST_CASE("max_pool2d errors carry PyTorch's messages") {
  Tensor x = Tensor::randn({2, 3, 5, 5});
  REQUIRE_ERROR(max_pool2d(Tensor::randn({5, 5}), {2, 2}),
                "max_pool2d: non-empty 3D or 4D (batch mode) tensor expected for input");
  REQUIRE_ERROR(max_pool2d(Tensor::randn({1, 2, 3, 5, 5}), {2, 2}),
                "max_pool2d: non-empty 3D or 4D (batch mode) tensor expected for input");
  REQUIRE_ERROR(max_pool2d(Tensor::randn({2, 0, 5, 5}), {2, 2}),
                "max_pool2d: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                "got:[2, 0, 5, 5]");
  REQUIRE_ERROR(max_pool2d(Tensor::randn({2, 3, 0, 5}), {2, 2}),
                "max_pool2d: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                "got:[2, 3, 0, 5]");
  REQUIRE_ERROR(max_pool2d(x, {3, 3}, std::nullopt, {2, 2}),
                "max_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=3");
  REQUIRE_ERROR(max_pool2d(x, {3, 3}, std::nullopt, {2, 2}, {2, 2}),
                "max_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=3");
  REQUIRE_ERROR(max_pool2d(x, {3, 3}, std::nullopt, {-1, -1}), "max_pool2d: pad must be non-negative, but got pad: -1");
  REQUIRE_ERROR(max_pool2d(x, {3, 3}, Int2{0, 0}), "max_pool2d: stride should not be zero");
  REQUIRE_ERROR(max_pool2d(x, {0, 0}), "max_pool2d: stride should not be zero");
  REQUIRE_ERROR(max_pool2d(x, {0, 0}, Int2{1, 1}), "max_pool2d: kernel size should be greater than zero, but got kH: 0 kW: 0");
  REQUIRE_ERROR(max_pool2d(x, {-1, -1}), "max_pool2d: kernel size should be greater than zero, but got kH: -1 kW: -1");
  REQUIRE_ERROR(max_pool2d(x, {3, 3}, Int2{-1, -1}),
                "max_pool2d: stride should be greater than zero, but got dH: -1 dW: -1");
  REQUIRE_ERROR(max_pool2d(x, {2, 2}, std::nullopt, {0, 0}, {0, 0}),
                "max_pool2d: dilation should be greater than zero, but got dilationH: 0 dilationW: 0");
  REQUIRE_ERROR(max_pool2d(Tensor::randn({1, 2, 2}), {3, 3}),
                "max_pool2d: Given input size: (1x2x2). Calculated output size: (1x0x0). Output size is too small");
  REQUIRE_ERROR(max_pool2d(Tensor::randn({1, 1, 2, 2}), {3, 3}),
                "max_pool2d: Given input size: (1x2x2). Calculated output size: (1x0x0). Output size is too small");
  REQUIRE_ERROR(max_pool2d(x.to(kInt64), {2, 2}),
                "max_pool2d: expected a floating point tensor (float32 or float64), got int64");
  // An empty batch is fine.
  REQUIRE(max_pool2d(Tensor::randn({0, 3, 5, 5}), {2, 2}).shape() == Shape{0, 3, 2, 2});
}

// ---- relu_max_pool2d (fused) ----

namespace {

// The unfused composition's value and input gradient.
struct Composed {
  Tensor y, gx;
};
Composed relu_then_pool(const Tensor& x0, const Tensor& gy, Int2 k, std::optional<Int2> s = std::nullopt) {
  Tensor x = x0.detach().requires_grad_();
  Tensor y = max_pool2d(relu(x), k, s);
  y.backward(gy);
  return {y.detach(), x.grad()};
}

}  // namespace

TEST_CASE("relu_max_pool2d matches relu then max_pool2d: values and gradient") {
  // Odd sizes leave a last row / column outside every window; integer inputs make ties and zero
  // windows (all entries <= 0) common; NaN goes through relu as 0.
  // Widths of 16 output columns and more take the vector kernel, with a scalar tail for the rest.
  const std::vector<Shape> shapes = {{2, 3, 8, 8}, {1, 2, 7, 5},  {3, 3, 4},
                                     {2, 1, 2, 2}, {2, 2, 5, 37}, {1, 64, 32, 32}};
  for (const Shape& shape : shapes)
    for (DType dt : {kFloat32, kFloat64})
      for (bool ints : {false, true}) {
        INFO(shape_list(shape) << " " << dtype_name(dt) << (ints ? " integers" : ""));
        Generator gen(3);
        Tensor x = ints ? Tensor::randint(-2, 3, shape, &gen).to(dt) : Tensor::randn(shape, {.dtype = dt}, &gen);
        Tensor xg = x.detach().requires_grad_();
        Tensor y = relu_max_pool2d(xg, {2, 2});
        Tensor gy = Tensor::randn(y.shape(), {.dtype = dt}, &gen);
        y.backward(gy);
        const Composed r = relu_then_pool(x, gy, {2, 2});
        require_close(y, r.y, 0, 0);
        require_close(xg.grad(), r.gx, 0, 0);
        autograd::NoGradGuard ng;
        require_close(relu_max_pool2d(x, {2, 2}), r.y, 0, 0);
      }
  // A window of NaNs and negatives gives 0 and no gradient; a tie goes to the first maximum.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor p = Tensor::from_vector(std::vector<float>{nan, -1, -2, 3, -4, nan, 3, 1}, {1, 2, 4}).requires_grad_();
  Tensor y = relu_max_pool2d(p, {2, 2});
  REQUIRE(y.to_vector<float>() == std::vector<float>{0, 3});
  y.backward(Tensor::from_vector(std::vector<float>{1, 2}, {1, 1, 2}));
  REQUIRE(p.grad().to_vector<float>() == std::vector<float>{0, 0, 0, 2, 0, 0, 0, 0});
}

TEST_CASE("relu_max_pool2d other windows run the composition") {
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 7, 7}, {}, &gen);
  Tensor gy = Tensor::randn({2, 3, 3, 3}, {}, &gen);
  Tensor xg = x.detach().requires_grad_();
  Tensor y = relu_max_pool2d(xg, {3, 3}, Int2{2, 2});
  y.backward(gy);
  const Composed r = relu_then_pool(x, gy, {3, 3}, Int2{2, 2});
  require_close(y, r.y, 0, 0);
  require_close(xg.grad(), r.gx, 0, 0);
  REQUIRE_ERROR(relu_max_pool2d(Tensor::zeros({1, 1, 1, 1}), {2, 2}),
                "max_pool2d: Given input size: (1x1x1). Calculated output size: (1x0x0). Output size is too small");
  REQUIRE_ERROR(relu_max_pool2d(Tensor::zeros({1, 1, 4, 4}, {.dtype = kInt64}), {2, 2}),
                "max_pool2d: expected a floating point tensor (float32 or float64), got int64");
  REQUIRE(relu_max_pool2d(Tensor::randn({0, 3, 5, 5}), {2, 2}).shape() == Shape{0, 3, 2, 2});
}

TEST_CASE("relu_max_pool2d gradcheck and gradgradcheck in float64") {
  Tensor x = testing::randn64({2, 3, 7, 6}, 4);
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return relu_max_pool2d(t[0], {2, 2}); }, {x}));
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& t) {
        return relu_max_pool2d(t[0], {2, 2});
      },
      {testing::randn64({3, 5, 4}, 5)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return relu_max_pool2d(t[0] * t[0] - 0.5, {2, 2}); }, {x}));
  const auto nodes = autograd::tape({relu_max_pool2d(x, {2, 2})});
  REQUIRE(nodes.size() == 1);
  REQUIRE(nodes[0]->name == "relu_max_pool2d");
}

// ---- avg_pool2d ----

TEST_CASE("avg_pool2d matches direct loops: values and gradient") {
  for (const AvgCase& ac : avg_cases())
    for (DType dt : {kFloat32, kFloat64})
      for (bool strided : {false, true}) {
        INFO(ac.name << " " << dtype_name(dt) << (strided ? " strided" : ""));
        Generator gen(8);
        Tensor x = make_input(ac.x, dt, strided, gen).requires_grad_();
        Tensor y = avg_pool2d(x, ac.c.k, ac.c.s, ac.c.p, ac.c.ceil, ac.count_include_pad,
                              ac.divisor ? std::optional<int64_t>(ac.divisor) : std::nullopt);
        Tensor gy = Tensor::randn(y.shape(), {.dtype = dt}, &gen);
        y.backward(gy);
        const Planes P = planes_of(ac.x);
        const AvgRef r = avg_reference(x, gy, avg_windows(P.h, ac.c.k[0], ac.c.s[0], ac.c.p[0], ac.c.ceil),
                                       avg_windows(P.w, ac.c.k[1], ac.c.s[1], ac.c.p[1], ac.c.ceil),
                                       ac.count_include_pad, ac.divisor);
        const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
        require_close(y, r.y, tol, tol);
        require_close(x.grad(), r.gx, tol, tol);
      }
}

TEST_CASE("avg_pool2d matches PyTorch fixtures") {
  testing::Fixture fx("pool.safetensors");
  auto check = [&](const std::string& k, auto&& fn) {
    INFO(k);
    Tensor x = fx[k + ".x"].detach().requires_grad_();
    Tensor y = fn(x);
    const double tol = x.dtype() == kFloat64 ? 1e-12 : 1e-6;
    require_close(y, fx[k + ".y"], tol, tol);
    y.backward(fx[k + ".gy"]);
    require_close(x.grad(), fx[k + ".gx"], tol, tol);
  };
  check("avg_k3s2p1", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, Int2{2, 2}, {1, 1}); });
  check("avg_nopad_count", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, Int2{2, 2}, {1, 1}, false, false); });
  check("avg_ceil", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, Int2{2, 2}, {1, 1}, true); });
  check("avg_ceil_nocount", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, Int2{2, 2}, {1, 1}, true, false); });
  check("avg_divisor", [](const Tensor& x) { return avg_pool2d(x, {2, 3}, Int2{1, 2}, {1, 1}, false, true, 5); });
  check("avg_k2", [](const Tensor& x) { return avg_pool2d(x, {2, 2}); });
  check("avg_unbatched", [](const Tensor& x) { return avg_pool2d(x, {3, 2}, Int2{1, 1}, {1, 0}); });
  check("avg_f64", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, Int2{2, 2}, {1, 1}, true); });
}

TEST_CASE("avg_pool2d gradcheck and gradgradcheck in float64") {
  Tensor x = testing::randn64({2, 3, 7, 6}, 3);
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& t) { return avg_pool2d(t[0], {3, 2}, Int2{2, 1}, {1, 1}, true, false); }, {x}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return avg_pool2d(t[0], {2, 3}, Int2{1, 2}, {1, 1}, false, true, 4); },
                    {testing::randn64({3, 5, 6}, 4)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return avg_pool2d(t[0] * t[0], {3, 3}, Int2{2, 2}, {1, 1}); },
                        {x}));
}

TEST_CASE("avg_pool2d errors carry PyTorch's messages") {
  Tensor x = Tensor::randn({2, 3, 5, 5});
  REQUIRE_ERROR(avg_pool2d(x, {2, 2}, std::nullopt, {0, 0}, false, true, 0), "avg_pool2d: divisor must be not zero");
  REQUIRE_ERROR(avg_pool2d(Tensor::randn({5, 5}), {2, 2}),
                "avg_pool2d: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                "got:[5, 5]");
  REQUIRE_ERROR(avg_pool2d(Tensor::randn({2, 0, 5, 5}), {2, 2}),
                "avg_pool2d: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but "
                "got:[2, 0, 5, 5]");
  REQUIRE_ERROR(avg_pool2d(x, {3, 3}, std::nullopt, {2, 2}),
                "avg_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=3");
  REQUIRE_ERROR(avg_pool2d(x, {3, 3}, std::nullopt, {-1, 0}), "avg_pool2d: pad must be non-negative, but got pad: -1");
  REQUIRE_ERROR(avg_pool2d(x, {3, 3}, Int2{0, 0}), "avg_pool2d: stride should not be zero");
  REQUIRE_ERROR(avg_pool2d(x, {0, 0}), "avg_pool2d: stride should not be zero");
  REQUIRE_ERROR(avg_pool2d(x, {3, 3}, Int2{-1, -1}),
                "avg_pool2d: stride should be greater than zero, but got dH: -1 dW: -1");
  REQUIRE_ERROR(avg_pool2d(Tensor::randn({1, 2, 2}), {3, 3}),
                "avg_pool2d: Given input size: (1x2x2). Calculated output size: (1x0x0). Output size is too small");
  REQUIRE_ERROR(avg_pool2d(x.to(kInt64), {2, 2}),
                "avg_pool2d: expected a floating point tensor (float32 or float64), got int64");
  REQUIRE(avg_pool2d(Tensor::randn({0, 3, 5, 5}), {2, 2}).shape() == Shape{0, 3, 2, 2});
}

// ---- adaptive_avg_pool2d ----

TEST_CASE("adaptive_avg_pool2d matches direct loops: values and gradient") {
  struct C {
    Shape x;
    Int2 out;
  };
  const std::vector<C> cases = {{{2, 3, 7, 9}, {3, 4}}, {{2, 2, 5, 5}, {7, 3}}, {{3, 4, 6, 5}, {1, 1}},
                                {{3, 10, 7}, {4, 5}},   {{1, 1, 8, 8}, {8, 8}}, {{5, 6, 13, 11}, {5, 3}}};
  for (const C& c : cases)
    for (DType dt : {kFloat32, kFloat64})
      for (bool strided : {false, true}) {
        INFO(shape_str(c.x) << " -> " << c.out[0] << "x" << c.out[1] << " " << dtype_name(dt));
        Generator gen(9);
        Tensor x = make_input(c.x, dt, strided, gen).requires_grad_();
        Tensor y = adaptive_avg_pool2d(x, c.out);
        Tensor gy = Tensor::randn(y.shape(), {.dtype = dt}, &gen);
        y.backward(gy);
        const Planes P = planes_of(c.x);
        const AvgRef r =
            avg_reference(x, gy, adaptive_windows(P.h, c.out[0]), adaptive_windows(P.w, c.out[1]), true, 0);
        const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
        require_close(y, r.y, tol, tol);
        require_close(x.grad(), r.gx, tol, tol);
      }
}

TEST_CASE("adaptive_avg_pool2d matches PyTorch fixtures") {
  testing::Fixture fx("pool.safetensors");
  const std::vector<std::pair<std::string, Int2>> cases = {
      {"adapt_3x4", {3, 4}}, {"adapt_up", {7, 3}}, {"adapt_global", {1, 1}}, {"adapt_unbatched", {4, 5}},
      {"adapt_f64", {4, 4}}};
  for (const auto& [k, size] : cases) {
    INFO(k);
    Tensor x = fx[k + ".x"].detach().requires_grad_();
    Tensor y = adaptive_avg_pool2d(x, size);
    const double tol = x.dtype() == kFloat64 ? 1e-12 : 1e-6;
    require_close(y, fx[k + ".y"], tol, tol);
    y.backward(fx[k + ".gy"]);
    require_close(x.grad(), fx[k + ".gx"], tol, tol);
  }
}

TEST_CASE("adaptive_avg_pool2d gradcheck, gradgradcheck and empty outputs") {
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], {3, 4}); },
                    {testing::randn64({2, 3, 7, 9}, 5)}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], {6, 2}); },
                    {testing::randn64({3, 4, 5}, 6)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0] * t[0], {2, 3}); },
                        {testing::randn64({2, 2, 5, 7}, 7)}));
  REQUIRE(adaptive_avg_pool2d(Tensor::randn({2, 3, 5, 5}), {0, 0}).shape() == Shape{2, 3, 0, 0});
  REQUIRE(adaptive_avg_pool2d(Tensor::randn({0, 3, 5, 5}), {2, 2}).shape() == Shape{0, 3, 2, 2});
  REQUIRE(adaptive_avg_pool2d(Tensor::randn({2, 0, 5, 5}), {2, 2}).shape() == Shape{2, 0, 2, 2});
}

TEST_CASE("adaptive_avg_pool2d errors carry PyTorch's messages") {
  REQUIRE_ERROR(adaptive_avg_pool2d(Tensor::randn({2, 3, 5, 5}), {-1, -1}),
                "adaptive_avg_pool2d: elements of output_size must be greater than or equal to 0 but received {-1, -1}");
  REQUIRE_ERROR(adaptive_avg_pool2d(Tensor::randn({5, 5}), {2, 2}),
                "adaptive_avg_pool2d: Expected 3D or 4D tensor, but got [5, 5]");
  REQUIRE_ERROR(adaptive_avg_pool2d(Tensor::randn({2, 3, 0, 5}), {2, 2}),
                "adaptive_avg_pool2d: Expected input to have non-zero size for non-batch dimensions, but input has "
                "sizes [2, 3, 0, 5] with dimension 2 being empty");
  REQUIRE_ERROR(adaptive_avg_pool2d(Tensor::randn({3, 4, 0}), {2, 2}),
                "adaptive_avg_pool2d: Expected input to have non-zero size for non-batch dimensions, but input has "
                "sizes [3, 4, 0] with dimension 2 being empty");
  REQUIRE_ERROR(adaptive_avg_pool2d(Tensor::randn({2, 3, 5, 5}).to(kInt64), {2, 2}),
                "adaptive_avg_pool2d: expected a floating point tensor (float32 or float64), got int64");
}
