// Activations, dropout and embedding: values and gradients against PyTorch
// (tests/fixtures/gen_activation.py), fused backward kernels against the composed ones, gradchecks,
// and PyTorch's error messages.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/core/vec_math.h>

#include <bit>
#include <cmath>
#include <limits>
#include <map>

using namespace tapegrad;

namespace {

const testing::Fixture& fx() {
  static const testing::Fixture f("activation.safetensors");
  return f;
}

using Unary = std::function<Tensor(const Tensor&)>;

const std::map<std::string, Unary>& activations() {
  static const std::map<std::string, Unary> m = {
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }},
      {"leaky_relu_02", [](const Tensor& x) { return leaky_relu(x, 0.2); }},
      {"leaky_relu_neg", [](const Tensor& x) { return leaky_relu(x, -0.5); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, "tanh"); }},
      {"silu", [](const Tensor& x) { return silu(x); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }},
      {"softplus_b2_t5", [](const Tensor& x) { return softplus(x, 2.0, 5.0); }},
      {"softplus_bneg", [](const Tensor& x) { return softplus(x, -1.0); }},
      {"elu", [](const Tensor& x) { return elu(x); }},
      {"elu_05", [](const Tensor& x) { return elu(x, 0.5); }},
  };
  return m;
}

}  // namespace

// ======================================================================================
// pointwise activations
// ======================================================================================

TEST_CASE("activations match PyTorch in float32 and float64, through both backward forms") {
  for (const auto& [name, fn] : activations()) {
    for (const char* tag : {"f32", "f64"}) {
      const std::string key = std::string(tag) + "." + name;
      const bool f32 = std::string(tag) == "f32";
      const double rtol = f32 ? 1e-5 : 1e-12, atol = f32 ? 1e-6 : 1e-14;
      for (bool create_graph : {false, true}) {
        INFO(key << " create_graph " << create_graph);
        Tensor x = fx()[std::string(tag) + ".x"].clone().requires_grad_();
        const Tensor out = fn(x);
        testing::require_close(out, fx()[key + ".out"], rtol, atol);
        const Tensor g = autograd::grad({out}, {x}, {fx()[key + ".v"]}, false, create_graph)[0];
        testing::require_close(g, fx()[key + ".g"], rtol, atol);
      }
    }
  }
}

TEST_CASE("activations: fused backward equals the composed one on large, strided inputs") {
  Generator gen(3);
  // (300, 257) transposed: non-contiguous, and large enough for the parallel loops.
  const Tensor base = Tensor::randn({300, 257}, {.dtype = kFloat64}, &gen) * 4.0;
  for (const auto& [name, fn] : activations()) {
    INFO(name);
    Tensor x = base.t().detach().requires_grad_();
    REQUIRE_FALSE(x.is_contiguous());
    const Tensor v = Tensor::randn({257, 300}, {.dtype = kFloat64}, &gen);
    const Tensor y = fn(x);
    const Tensor fused = autograd::grad({y}, {x}, {v}, /*retain_graph=*/true)[0];
    const Tensor composed = autograd::grad({y}, {x}, {v}, false, /*create_graph=*/true)[0];
    testing::require_close(fused, composed, 1e-12, 1e-13);
    // The forward on the strided view equals the forward on a contiguous copy.
    testing::require_close(y, fn(x.contiguous()), 0, 0);
  }
}

TEST_CASE("activations pass gradcheck and gradgradcheck") {
  Tensor x = testing::randn64({4, 5}, 1);
  for (const auto& [name, fn] : activations()) {
    INFO(name);
    const Unary f = fn;
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0] * 2.0); }, {x}));
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return f(in[0] * 2.0); }, {x}));
  }
}

TEST_CASE("softplus returns x above the threshold and stays finite for large inputs") {
  const Tensor x = Tensor::of({100.0, -100.0, 1e4, -1e4});
  const Tensor y = softplus(x);
  testing::require_close(y, Tensor::of({100.0, 3.720076e-44, 1e4, 0.0}), 1e-5, 1e-45);
  testing::require_close(silu(x), Tensor::of({100.0, -0.0, 1e4, -0.0}), 1e-6, 1e-30);
  testing::require_close(gelu(x), Tensor::of({100.0, 0.0, 1e4, 0.0}));
  testing::require_close(elu(x), Tensor::of({100.0, -1.0, 1e4, -1.0}));
}

TEST_CASE("activations report bad arguments") {
  REQUIRE_ERROR(gelu(Tensor::zeros({3}), "foo"), "gelu: approximate argument must be either none or tanh.");
  REQUIRE_ERROR(leaky_relu(Tensor::zeros({3}, {.dtype = kInt64})),
                "leaky_relu: expected a floating point tensor (float32 or float64), got int64");
}

// ======================================================================================
// dropout
// ======================================================================================

TEST_CASE("dropout: p = 0 or eval returns the input itself, p = 1 gives zeros with a zero gradient") {
  Tensor x = Tensor::rand({3, 4}).requires_grad_();
  REQUIRE(dropout(x, 0.0).same(x));
  REQUIRE(dropout(x, 0.5, /*training=*/false).same(x));
  const Tensor z = dropout(x, 1.0);
  testing::require_close(z, Tensor::zeros({3, 4}), 0, 0);
  REQUIRE(z.requires_grad());
  z.sum().backward();
  testing::require_close(x.grad(), Tensor::zeros({3, 4}), 0, 0);
}

TEST_CASE("dropout keeps 1 - p of the elements, scaled by 1 / (1 - p), and its gradient is the mask") {
  for (DType dt : {kFloat32, kFloat64}) {
    Generator gen(42);
    Tensor x = Tensor::ones({200, 500}, {.dtype = dt, .requires_grad = true});
    const Tensor y = dropout(x, 0.3, true, &gen);
    const auto v = y.to_vector<double>();
    const double scale = dt == kFloat32 ? static_cast<double>(static_cast<float>(1 / 0.7)) : 1 / 0.7;
    int64_t kept = 0, other = 0;
    for (double e : v) {
      kept += e == scale;
      other += e != scale && e != 0.0;
    }
    REQUIRE(other == 0);
    const double frac = static_cast<double>(kept) / static_cast<double>(v.size());
    REQUIRE(std::abs(frac - 0.7) < 0.005);  // 100000 draws: the standard deviation is 0.0014
    y.sum().backward();
    testing::require_close(x.grad(), y, 0, 0);  // d/dx = mask
    // The same seed draws the same mask; the default generator follows manual_seed.
    Generator again(42);
    testing::require_close(dropout(x.detach(), 0.3, true, &again), y.detach(), 0, 0);
    manual_seed(7);
    const Tensor a = dropout(x.detach(), 0.3);
    manual_seed(7);
    testing::require_close(dropout(x.detach(), 0.3), a, 0, 0);
  }
  // A strided input gets the mask in row-major order of its logical layout.
  Generator g1(5), g2(5);
  const Tensor base = Tensor::rand({6, 7});
  testing::require_close(dropout(base.t(), 0.4, true, &g1), dropout(base.t().contiguous(), 0.4, true, &g2), 0, 0);
}

TEST_CASE("dropout passes gradcheck and gradgradcheck with a fixed mask, and checks p") {
  Tensor x = testing::randn64({5, 6}, 1);
  auto f = [](const std::vector<Tensor>& in) {
    Generator gen(11);
    return dropout(in[0] * in[0], 0.4, true, &gen);
  };
  REQUIRE(gradcheck(f, {x}));
  REQUIRE(gradgradcheck(f, {x}));
  REQUIRE_ERROR(dropout(x, 1.5), "dropout: dropout probability has to be between 0 and 1, but got 1.5");
  REQUIRE_ERROR(dropout(x, -0.5), "dropout: dropout probability has to be between 0 and 1, but got -0.5");
  REQUIRE_ERROR(dropout(x, 2.0), "dropout: dropout probability has to be between 0 and 1, but got 2.0");
}

// ======================================================================================
// embedding
// ======================================================================================

TEST_CASE("embedding matches PyTorch, with repeated indices and padding_idx") {
  const Tensor idx = fx()["emb.idx"];
  const std::map<std::string, std::optional<int64_t>> pads = {{"none", std::nullopt}, {"pad2", 2}, {"padneg", -1}};
  for (const auto& [name, pad] : pads) {
    for (bool create_graph : {false, true}) {
      INFO(name << " create_graph " << create_graph);
      Tensor w = fx()["emb.weight"].clone().requires_grad_();
      const Tensor out = embedding(w, idx, pad);
      REQUIRE(out.shape() == Shape{3, 5, 4});
      testing::require_close(out, fx()["emb." + name + ".out"], 0, 0);
      const Tensor g = autograd::grad({out}, {w}, {fx()["emb." + name + ".v"]}, false, create_graph)[0];
      testing::require_close(g, fx()["emb." + name + ".g"], 1e-6, 1e-6);
    }
  }
}

TEST_CASE("embedding's parallel gather and scatter match a naive loop") {
  Generator gen(9);
  const int64_t V = 997, D = 33;
  const Tensor w0 = Tensor::randn({V, D}, {.dtype = kFloat64}, &gen);
  Tensor idx = Tensor::randint(0, 50, {40, 77}, &gen);  // few distinct rows: many collisions
  idx.data_ptr<int64_t>()[5] = V - 1;
  const Tensor v = Tensor::randn({40, 77, D}, {.dtype = kFloat64}, &gen);
  Tensor w = w0.clone().requires_grad_();
  const Tensor out = embedding(w, idx, 3);
  out.backward(v);
  const auto iv = idx.to_vector<int64_t>();
  const auto wv = w0.to_vector<double>(), vv = v.to_vector<double>(), ov = out.to_vector<double>();
  std::vector<double> gref(static_cast<size_t>(V * D), 0.0);
  int64_t wrong_rows = 0;
  for (size_t i = 0; i < iv.size(); ++i) {
    for (int64_t d = 0; d < D; ++d) {
      wrong_rows += ov[i * D + d] != wv[iv[i] * D + d];
      if (iv[i] != 3) gref[iv[i] * D + d] += vv[i * D + d];
    }
  }
  REQUIRE(wrong_rows == 0);
  testing::require_close(w.grad(), Tensor::from_vector(gref, {V, D}), 1e-12, 1e-12);
}

TEST_CASE("embedding takes any index shape, strided operands, and passes gradcheck") {
  const Tensor w = testing::randn64({6, 3}, 1);
  REQUIRE(embedding(w, Tensor::scalar(4, kInt64)).shape() == Shape{3});
  testing::require_close(embedding(w, Tensor::scalar(4, kInt64)), w.select(0, 4));
  // Transposed weight and indices.
  const Tensor wt = testing::randn64({3, 6}, 2, false).t();
  const Tensor it = Tensor::of({{0, 5}, {1, 4}, {2, 3}}, {.dtype = kInt64}).t();
  testing::require_close(embedding(wt, it), embedding(wt.contiguous(), it.contiguous()), 0, 0);
  const Tensor idx = Tensor::of({{0, 2, 2}, {5, 1, 2}}, {.dtype = kInt64});
  REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {w}));
  // With padding_idx the padding row gets no gradient by definition (finite differences see one),
  // so only the second order is checked there: it differentiates the first-order gradient.
  for (std::optional<int64_t> pad : {std::optional<int64_t>(), std::optional<int64_t>(2)})
    REQUIRE(gradgradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0] * in[0], idx, pad); }, {w}));
}

TEST_CASE("embedding reports PyTorch's errors") {
  const Tensor w = Tensor::rand({3, 4});
  REQUIRE_ERROR(embedding(w, Tensor::of({5}, {.dtype = kInt64})), "embedding: index out of range in self");
  REQUIRE_ERROR(embedding(w, Tensor::of({-1}, {.dtype = kInt64})), "embedding: index out of range in self");
  REQUIRE_ERROR(embedding(w, Tensor::of({1.0})),
                "embedding: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, "
                "Int; but got torch.FloatTensor instead (while checking arguments for embedding)");
  REQUIRE_ERROR(embedding(Tensor::rand({3}), Tensor::of({1}, {.dtype = kInt64})), "embedding: 'weight' must be 2-D");
  REQUIRE_ERROR(embedding(w, Tensor::of({1}, {.dtype = kInt64}), 3),
                "embedding: Padding_idx must be within num_embeddings");
  REQUIRE_ERROR(embedding(w, Tensor::of({1}, {.dtype = kInt64}), -4),
                "embedding: Padding_idx must be within num_embeddings");
}

// ======================================================================================
// the vectorizable exp / log behind the kernels, against the C library
// ======================================================================================

namespace {

// |a - ref| in units of the last place of ref (0 when both are the same NaN/inf/value).
template <typename T>
double ulps(T a, T ref) {
  if (std::isnan(ref)) return std::isnan(a) ? 0 : 1e30;
  if (std::isinf(ref) || ref == 0) return a == ref ? 0 : 1e30;
  const T next = std::nextafter(std::abs(ref), std::numeric_limits<T>::infinity());
  return std::abs(static_cast<double>(a) - static_cast<double>(ref)) / static_cast<double>(next - std::abs(ref));
}

template <typename T, typename F, typename G>
double worst_ulps(const std::vector<T>& xs, F fast, G ref, T* where) {
  double worst = 0;
  for (T x : xs) {
    const double e = ulps(fast(x), ref(x));
    if (e > worst) {
      worst = e;
      *where = x;
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("vexp, vlog, vlog1p and verf agree with the C library to within 2 ulp, edge cases included") {
  // float: a regular sample of all bit patterns (every sign, exponent and many mantissas)
  std::vector<float> fs;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 4099) fs.push_back(std::bit_cast<float>(static_cast<uint32_t>(b)));
  for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 88.72283935546875f, 88.7228470f, -103.972084f, -104.0f, -87.3f, 1e-45f,
                  1.17549435e-38f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()})
    fs.push_back(v);
  // double: random bit patterns and random values in exp's range
  std::vector<double> ds;
  Generator gen(1);
  for (int i = 0; i < 400000; ++i) {
    ds.push_back(std::bit_cast<double>(gen.next_u64()));
    ds.push_back(gen.uniform() * 1500 - 750);
  }
  for (double v : {0.0, -0.0, 1.0, -1.0, 709.78, 709.79, -745.13, -745.14, 5e-324, 2.2250738585072014e-308,
                   std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN()})
    ds.push_back(v);
  auto check = [](const char* name, const auto& xs, auto fast, auto ref) {
    typename std::decay_t<decltype(xs)>::value_type at = 0;
    const double worst = worst_ulps(xs, fast, ref, &at);
    INFO(name << ": " << worst << " ulp at " << at);
    CHECK(worst <= 2);
  };
  // clang-format off
  check("vexp float", fs, [](float v) { return detail::vexp(v); }, [](float v) { return std::exp(v); });
  check("vlog float", fs, [](float v) { return detail::vlog(v); }, [](float v) { return std::log(v); });
  check("vlog1p float", fs, [](float v) { return detail::vlog1p(v); }, [](float v) { return std::log1p(v); });
  check("vexp double", ds, [](double v) { return detail::vexp(v); }, [](double v) { return std::exp(v); });
  check("vlog double", ds, [](double v) { return detail::vlog(v); }, [](double v) { return std::log(v); });
  check("vlog1p double", ds, [](double v) { return detail::vlog1p(v); }, [](double v) { return std::log1p(v); });
  // erf against the double-precision erf rounded to float
  check("verf float", fs, [](float v) { return detail::verf(v); },
        [](float v) { return static_cast<float>(std::erf(static_cast<double>(v))); });
  // clang-format on
}

TEST_CASE("vsigmoid and vtanh (float) agree with the double-precision functions to within 3 ulp") {
  std::vector<float> fs;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 4099) fs.push_back(std::bit_cast<float>(static_cast<uint32_t>(b)));
  for (float v : {0.0f, -0.0f, 0.4f, -0.4f, 0.39999998f, 9.0f, -9.0f, 88.8f, -88.8f, -103.9f, 1e-45f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()})
    fs.push_back(v);
  float at = 0;
  const double sig = worst_ulps(
      fs, [](float v) { return detail::vsigmoid(v); },
      [](float v) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(v)))); }, &at);
  INFO("vsigmoid: " << sig << " ulp at " << at);
  CHECK(sig <= 3);
  const double th = worst_ulps(
      fs, [](float v) { return detail::vtanh(v); }, [](float v) { return static_cast<float>(std::tanh(static_cast<double>(v))); },
      &at);
  INFO("vtanh: " << th << " ulp at " << at);
  CHECK(th <= 3);
}

TEST_CASE("blocked_sum and blocked_max match plain loops on every short length") {
  Generator gen(2);
  std::vector<double> v(300);
  for (double& e : v) e = gen.normal();
  for (int64_t n = 0; n <= 300; ++n) {
    double ref = 0, mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      ref += v[i];
      mx = std::max(mx, v[i]);
    }
    REQUIRE(std::abs(detail::blocked_sum(n, [&](int64_t i) { return v[i]; }) - ref) <= 1e-12);
    REQUIRE(detail::blocked_max(v.data(), n) == mx);
  }
}
