// Tensor creation, metadata, conversions and the random factories.
#include "support/fixtures.h"

#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <cmath>
#include <cstring>
#include <set>

using namespace tapegrad;

namespace {

// Bitwise equality of values (NaN equals NaN), same shape and dtype; a failure shows the first difference.
void require_identical(const Tensor& actual, const Tensor& expected) {
  INFO("actual shape " << shape_str(actual.shape()) << ", expected " << shape_str(expected.shape()));
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(actual.dtype() == expected.dtype());
  const Tensor a = actual.contiguous(), b = expected.contiguous();
  const size_t esize = element_size(a.dtype());
  const auto* pa = static_cast<const char*>(a.data());
  const auto* pb = static_cast<const char*>(b.data());
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    if (std::memcmp(pa + i * esize, pb + i * esize, esize) == 0) continue;
    FAIL(fmt::format("element {} differs: actual {:.17g}, expected {:.17g}", i, va[i], vb[i]));
  }
}

DType parse_dtype(const std::string& s) {
  if (s == "float32") return kFloat32;
  if (s == "float64") return kFloat64;
  if (s == "int64") return kInt64;
  FAIL("unknown dtype " << s);
  return kBool;
}

// Values within a few units in the last place of the range's magnitude: PyTorch computes ranges in a
// vectorized loop whose rounding depends on the SIMD width (and linspace in the output dtype), so its
// last bit is not reproducible; tapegrad computes each element in double and rounds once. int64 is exact.
void require_range_close(const Tensor& actual, const Tensor& expected, double magnitude) {
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(actual.dtype() == expected.dtype());
  const double eps = actual.dtype() == kFloat32 ? 0x1p-23 : actual.dtype() == kFloat64 ? 0x1p-52 : 0.0;
  const auto a = actual.to_vector<double>(), b = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - b[i]) <= 4 * eps * magnitude) continue;
    FAIL(fmt::format("element {} differs: actual {:.17g}, expected {:.17g}", i, a[i], b[i]));
  }
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

}  // namespace

// ---- shapes ----

TEST_CASE("shape_str and shape_list format like Python tuples and lists") {
  REQUIRE(shape_str({2, 3}) == "(2, 3)");
  REQUIRE(shape_str({5}) == "(5,)");
  REQUIRE(shape_str({}) == "()");
  REQUIRE(shape_str({0, 1, 7}) == "(0, 1, 7)");
  REQUIRE(shape_list({2, 3}) == "[2, 3]");
  REQUIRE(shape_list({5}) == "[5]");
  REQUIRE(shape_list({}) == "[]");
}

TEST_CASE("contiguous_strides and numel") {
  REQUIRE(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
  REQUIRE(contiguous_strides({7}) == Shape{1});
  REQUIRE(contiguous_strides({}).empty());
  // A zero-size dim counts as 1 for the strides of the dims before it, like PyTorch.
  REQUIRE(contiguous_strides({2, 0, 3}) == Shape{3, 3, 1});
  REQUIRE(contiguous_strides({1, 1}) == Shape{1, 1});
  REQUIRE(numel_of({2, 3, 4}) == 24);
  REQUIRE(numel_of({}) == 1);
  REQUIRE(numel_of({2, 0, 3}) == 0);
  Tensor t = Tensor::zeros({2, 3, 4});
  REQUIRE(t.numel() == 24);
  REQUIRE(t.dim() == 3);
  REQUIRE(t.strides() == Shape{12, 4, 1});
  REQUIRE(t.size(-1) == 4);
  REQUIRE(t.stride(0) == 12);
  REQUIRE(t.is_contiguous());
  REQUIRE_FALSE(t.transpose(0, 2).is_contiguous());
  // Empty tensors are contiguous whatever their strides, like PyTorch.
  REQUIRE(Tensor::zeros({2, 0}).is_contiguous());
  REQUIRE(Tensor::zeros({3, 0, 2}).transpose(0, 2).is_contiguous());
  REQUIRE_ERROR(t.size(3), "size: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(t.stride(-4), "stride: Dimension out of range (expected to be in range of [-3, 2], but got -4)");
}

TEST_CASE("wrap_dim accepts negative dims and 0-dim tensors accept 0 and -1") {
  REQUIRE(wrap_dim(-1, 3, "op") == 2);
  REQUIRE(wrap_dim(0, 0, "op") == 0);
  REQUIRE(wrap_dim(-1, 0, "op") == 0);
  REQUIRE_ERROR(wrap_dim(1, 0, "op"), "op: Dimension out of range (expected to be in range of [-1, 0], but got 1)");
}

// ---- factories ----

TEST_CASE("empty, zeros, ones and full give the requested shape, dtype and value") {
  Tensor e = Tensor::empty({2, 3}, {.dtype = kFloat64});
  REQUIRE(e.shape() == Shape{2, 3});
  REQUIRE(e.dtype() == kFloat64);
  REQUIRE(e.offset() == 0);
  REQUIRE_FALSE(e.requires_grad());
  REQUIRE(e.storage()->nbytes() == 48);
  REQUIRE(reinterpret_cast<uintptr_t>(e.data()) % 64 == 0);

  for (DType dt : {kFloat32, kFloat64, kInt64, kBool}) {
    INFO(dtype_name(dt));
    Tensor z = Tensor::zeros({3, 2}, {.dtype = dt});
    REQUIRE(z.dtype() == dt);
    for (double v : z.to_vector<double>()) REQUIRE(v == 0);
    Tensor o = Tensor::ones({4}, {.dtype = dt});
    for (double v : o.to_vector<double>()) REQUIRE(v == 1);
  }
  REQUIRE(Tensor::full({2, 2}, -2.5).to_vector<float>() == std::vector<float>(4, -2.5f));
  REQUIRE(Tensor::full({3}, 7, {.dtype = kInt64}).to_vector<int64_t>() == std::vector<int64_t>{7, 7, 7});
  REQUIRE(Tensor::full({2}, 0.25, {.dtype = kFloat64}).to_vector<double>() == std::vector<double>{0.25, 0.25});
  REQUIRE(Tensor::full({2}, 3, {.dtype = kBool}).to_vector<bool>() == std::vector<bool>{true, true});
  Tensor nan = Tensor::full({2}, NAN);
  REQUIRE(std::isnan(nan.to_vector<float>()[1]));

  Tensor g = Tensor::ones({2}, {.requires_grad = true});
  REQUIRE(g.requires_grad());
  REQUIRE(g.is_leaf());
  REQUIRE(Tensor::zeros({2}, {.dtype = kFloat64, .requires_grad = true}).requires_grad());
  REQUIRE(Tensor::full({2}, 1, {.requires_grad = true}).requires_grad());
  REQUIRE_ERROR(Tensor::ones({2}, {.dtype = kInt64, .requires_grad = true}),
                "requires_grad_: Only Tensors of floating point dtype can require gradients, got int64");
}

TEST_CASE("zero-size and 0-dim tensors") {
  Tensor z = Tensor::zeros({0, 3});
  REQUIRE(z.numel() == 0);
  REQUIRE(z.to_vector<float>().empty());
  REQUIRE(Tensor::ones({2, 0}).shape() == Shape{2, 0});
  Tensor s = Tensor::scalar(3.5);
  REQUIRE(s.dim() == 0);
  REQUIRE(s.numel() == 1);
  REQUIRE(s.dtype() == kFloat32);
  REQUIRE(s.item() == 3.5);
  REQUIRE(Tensor::scalar(2.75, kFloat64).item<double>() == 2.75);
  REQUIRE(Tensor::scalar(-2.7, kInt64).item<int64_t>() == -2);  // truncates toward zero, like PyTorch
  REQUIRE(Tensor::scalar(1, kBool).item<bool>());
}

TEST_CASE("the _like factories keep shape and dtype but not requires_grad") {
  Tensor x = Tensor::full({2, 3}, 5, {.dtype = kFloat64, .requires_grad = true});
  for (const Tensor& t : {Tensor::empty_like(x), Tensor::zeros_like(x), Tensor::ones_like(x)}) {
    REQUIRE(t.shape() == x.shape());
    REQUIRE(t.dtype() == kFloat64);
    REQUIRE_FALSE(t.requires_grad());
    REQUIRE_FALSE(t.storage() == x.storage());
  }
  REQUIRE(Tensor::zeros_like(x).to_vector<double>() == std::vector<double>(6, 0.0));
  REQUIRE(Tensor::ones_like(x).to_vector<double>() == std::vector<double>(6, 1.0));
  // Non-contiguous input: the result is contiguous of the same shape.
  Tensor t = Tensor::zeros_like(Tensor::zeros({3, 4}).t());
  REQUIRE(t.shape() == Shape{4, 3});
  REQUIRE(t.is_contiguous());
}

TEST_CASE("a negative dimension is an error in every factory") {
  REQUIRE_ERROR(Tensor::empty({2, -1}), "empty: Trying to create tensor with negative dimension -1: [2, -1]");
  REQUIRE_ERROR_CONTAINS(Tensor::zeros({-3}), "Trying to create tensor with negative dimension -3: [-3]");
  REQUIRE_ERROR_CONTAINS(Tensor::ones({1, -2}), "Trying to create tensor with negative dimension -2: [1, -2]");
  REQUIRE_ERROR_CONTAINS(Tensor::full({-1}, 2.0), "Trying to create tensor with negative dimension -1: [-1]");
  REQUIRE_ERROR_CONTAINS(Tensor::rand({-1, 2}), "Trying to create tensor with negative dimension -1: [-1, 2]");
  REQUIRE_ERROR_CONTAINS(Tensor::randn({-1}), "Trying to create tensor with negative dimension -1: [-1]");
  REQUIRE_ERROR_CONTAINS(Tensor::randint(0, 3, {-1}), "Trying to create tensor with negative dimension -1: [-1]");
  REQUIRE_ERROR(Tensor::from_vector(std::vector<float>{}, {0, -1}),
                "from_vector: Trying to create tensor with negative dimension -1: [0, -1]");
}

TEST_CASE("arange matches torch.arange, float steps included") {
  const auto file = load_safetensors(std::string(TAPEGRAD_FIXTURES_DIR) + "/tensor.safetensors");
  int checked = 0;
  for (const auto& [name, expected] : file.tensors) {
    if (name.rfind("arange.", 0) != 0) continue;
    INFO(name);
    const size_t last = name.rfind('.');
    const DType dt = parse_dtype(name.substr(last + 1));
    const std::string args = name.substr(7, last - 7);
    const size_t u1 = args.find('_'), u2 = args.find('_', u1 + 1);
    const double start = std::stod(args.substr(0, u1)), end = std::stod(args.substr(u1 + 1, u2 - u1 - 1)),
                 step = std::stod(args.substr(u2 + 1));
    require_range_close(Tensor::arange(start, end, step, {.dtype = dt}), expected, std::max(std::abs(start), std::abs(end)));
    ++checked;
  }
  REQUIRE(checked >= 20);
}

TEST_CASE("arange defaults, errors and empty ranges") {
  Tensor a = Tensor::arange(5);
  REQUIRE(a.dtype() == kInt64);
  REQUIRE(a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  REQUIRE(Tensor::arange(4, {.dtype = kFloat32}).to_vector<float>() == std::vector<float>{0, 1, 2, 3});
  REQUIRE(Tensor::arange(2, 8, 2).to_vector<int64_t>() == std::vector<int64_t>{2, 4, 6});
  REQUIRE(Tensor::arange(0).shape() == Shape{0});
  REQUIRE(Tensor::arange(3, 3, 1).shape() == Shape{0});
  REQUIRE(Tensor::arange(0, 3, 1, {.dtype = kFloat32, .requires_grad = true}).requires_grad());
  REQUIRE_ERROR(Tensor::arange(0, 3, 0), "arange: step must be nonzero");
  REQUIRE_ERROR(Tensor::arange(0, 3, -1), "arange: upper bound and larger bound inconsistent with step sign");
  REQUIRE_ERROR(Tensor::arange(3, 0, 1), "arange: upper bound and larger bound inconsistent with step sign");
  REQUIRE_ERROR(Tensor::arange(0, 3, 1, {.dtype = kBool}),
                "arange: expected a numeric tensor (float32, float64 or int64), got bool");
}

TEST_CASE("linspace matches torch.linspace") {
  const auto file = load_safetensors(std::string(TAPEGRAD_FIXTURES_DIR) + "/tensor.safetensors");
  int checked = 0;
  for (const auto& [name, expected] : file.tensors) {
    if (name.rfind("linspace.", 0) != 0) continue;
    INFO(name);
    const size_t last = name.rfind('.');
    const DType dt = parse_dtype(name.substr(last + 1));
    const std::string args = name.substr(9, last - 9);
    const size_t u1 = args.find('_'), u2 = args.find('_', u1 + 1);
    const double start = std::stod(args.substr(0, u1)), end = std::stod(args.substr(u1 + 1, u2 - u1 - 1));
    const int64_t steps = std::stoll(args.substr(u2 + 1));
    require_range_close(Tensor::linspace(start, end, steps, {.dtype = dt}), expected,
                        std::max(std::abs(start), std::abs(end)));
    ++checked;
  }
  REQUIRE(checked >= 18);
  REQUIRE_ERROR(Tensor::linspace(0, 1, -1), "linspace: number of steps must be non-negative");
  REQUIRE_ERROR(Tensor::linspace(0, 1, 3, {.dtype = kInt64}),
                "linspace: expected a floating point tensor (float32 or float64), got int64");
}

TEST_CASE("from_vector copies values and checks the element count") {
  Tensor f = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  REQUIRE(f.dtype() == kFloat32);
  REQUIRE(f.shape() == Shape{2, 3});
  REQUIRE(f.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  REQUIRE(Tensor::from_vector(std::vector<double>{0.1, 0.2}, {2}).dtype() == kFloat64);
  REQUIRE(Tensor::from_vector(std::vector<double>{0.1, 0.2}, {2}).to_vector<double>() == std::vector<double>{0.1, 0.2});
  REQUIRE(Tensor::from_vector(std::vector<int64_t>{-5}, {}).item<int64_t>() == -5);
  REQUIRE(Tensor::from_vector(std::vector<float>{}, {0, 4}).shape() == Shape{0, 4});
  REQUIRE_ERROR(Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5}, {2, 3}),
                "from_vector: shape (2, 3) needs 6 values, got 5");
  REQUIRE_ERROR(Tensor::from_vector(std::vector<int64_t>{1, 2}, {}), "from_vector: shape () needs 1 values, got 2");
  // The vector is copied, not aliased.
  std::vector<float> v{1, 2};
  Tensor t = Tensor::from_vector(v, {2});
  v[0] = 9;
  REQUIRE(t.to_vector<float>()[0] == 1);
}

TEST_CASE("Tensor::of builds tensors from nested lists") {
  Tensor m = Tensor::of({{1, 2, 3}, {4, 5, 6}});
  REQUIRE(m.shape() == Shape{2, 3});
  REQUIRE(m.dtype() == kFloat32);
  REQUIRE(m.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor s = Tensor::of(2.5);
  REQUIRE(s.dim() == 0);
  REQUIRE(s.item() == 2.5);
  Tensor c = Tensor::of({{{1}, {2}}, {{3}, {4}}}, {.dtype = kInt64});
  REQUIRE(c.shape() == Shape{2, 2, 1});
  REQUIRE(c.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4});
  REQUIRE(Tensor::of({1.5, -2.7}, {.dtype = kInt64}).to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  REQUIRE(Tensor::of({0, 1, 2}, {.dtype = kBool}).to_vector<bool>() == std::vector<bool>{false, true, true});
  REQUIRE(Tensor::of({0.1, 0.2}, {.dtype = kFloat64}).to_vector<double>() == std::vector<double>{0.1, 0.2});
  REQUIRE(Tensor::of({1.0}, {.requires_grad = true}).requires_grad());
  Tensor e = Tensor::of({});
  REQUIRE(e.shape() == Shape{0});
  REQUIRE(Tensor::of({{}, {}}).shape() == Shape{2, 0});
}

TEST_CASE("Tensor::of rejects ragged lists") {
  REQUIRE_ERROR(Tensor::of({{1, 2}, {3}}), "Tensor::of: expected sequence of length 2 at dim 1 (got 1)");
  REQUIRE_ERROR(Tensor::of({{1, 2}, {3, 4, 5}}), "Tensor::of: expected sequence of length 2 at dim 1 (got 3)");
  REQUIRE_ERROR(Tensor::of({{{1, 2}}, {{3, 4}, {5, 6}}}), "Tensor::of: expected sequence of length 1 at dim 1 (got 2)");
  REQUIRE_ERROR(Tensor::of({1, {2}}), "Tensor::of: expected a number at depth 1, got a sequence");
  REQUIRE_ERROR(Tensor::of({{1}, 2}), "Tensor::of: expected a sequence of length 1 at depth 1, got a number");
  REQUIRE_ERROR(Tensor::of({{}, {1}}), "Tensor::of: expected sequence of length 0 at dim 1 (got 1)");
}

// ---- element access ----

TEST_CASE("item() needs exactly one element") {
  REQUIRE(Tensor::of({{4.0}}).item() == 4.0);
  REQUIRE(Tensor::of({7}, {.dtype = kInt64}).item<int64_t>() == 7);
  REQUIRE_ERROR(Tensor::zeros({2}).item(), "item: a Tensor with 2 elements cannot be converted to Scalar");
  REQUIRE_ERROR(Tensor::zeros({0}).item(), "item: a Tensor with 0 elements cannot be converted to Scalar");
  REQUIRE_ERROR(Tensor::zeros({2, 3}).item<float>(), "item: a Tensor with 6 elements cannot be converted to Scalar");
  // A one-element view reads the viewed element.
  REQUIRE(Tensor::of({1.0, 2.0, 3.0}).select(0, 2).item() == 3.0);
}

TEST_CASE("to_vector walks row-major order of any layout and converts") {
  Tensor m = Tensor::of({{1, 2, 3}, {4, 5, 6}});
  REQUIRE(m.t().to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});
  REQUIRE(m.slice(1, 0, 3, 2).to_vector<double>() == std::vector<double>{1, 3, 4, 6});
  REQUIRE(m.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  REQUIRE(Tensor::of({0.0, -0.5, 2.0}).to_vector<bool>() == std::vector<bool>{false, true, true});
  REQUIRE(Tensor::scalar(2).expand({2, 2}).to_vector<float>() == std::vector<float>(4, 2));
}

TEST_CASE("data_ptr checks the dtype") {
  Tensor f = Tensor::zeros({2});
  REQUIRE(f.data_ptr<float>() == f.data());
  REQUIRE_ERROR(f.data_ptr<double>(), "data_ptr: expected a float64 tensor, got float32");
  REQUIRE_ERROR(f.data_ptr<int64_t>(), "data_ptr: expected a int64 tensor, got float32");
  REQUIRE_ERROR(Tensor::zeros({1}, {.dtype = kBool}).data_ptr<float>(), "data_ptr: expected a float32 tensor, got bool");
  // The pointer of a view includes its offset.
  Tensor v = Tensor::arange(6, {.dtype = kFloat32}).slice(0, 2, 6);
  REQUIRE(*v.data_ptr<float>() == 2.0f);
}

TEST_CASE("to(dtype) converts like PyTorch and returns itself for the same dtype") {
  Tensor f = Tensor::of({-2.7, -0.5, 0.0, 0.5, 1.9, 3.0});
  REQUIRE(f.to(kFloat32).same(f));
  REQUIRE(f.to(kInt64).to_vector<int64_t>() == std::vector<int64_t>{-2, 0, 0, 0, 1, 3});  // toward zero
  REQUIRE(f.to(kBool).to_vector<bool>() == std::vector<bool>{true, true, false, true, true, true});
  Tensor d = f.to(kFloat64);
  REQUIRE(d.dtype() == kFloat64);
  REQUIRE(d.to_vector<double>()[0] == static_cast<double>(-2.7f));  // widening is exact
  REQUIRE(Tensor::of({0.1}, {.dtype = kFloat64}).to(kFloat32).item<float>() == 0.1f);  // rounds to nearest
  REQUIRE(Tensor::of({1, 0, 1}, {.dtype = kBool}).to(kFloat32).to_vector<float>() == std::vector<float>{1, 0, 1});
  REQUIRE(Tensor::from_vector(std::vector<int64_t>{(int64_t{1} << 53) + 1}, {1}).to(kFloat64).item() ==
          9007199254740992.0);
  REQUIRE(Tensor::full({2}, NAN).to(kBool).to_vector<bool>() == std::vector<bool>{true, true});
  // A non-contiguous source converts element by element in logical order.
  Tensor m = Tensor::of({{1, 2}, {3, 4}}, {.dtype = kInt64});
  REQUIRE(m.t().to(kFloat64).to_vector<double>() == std::vector<double>{1, 3, 2, 4});
  // Float-to-float conversion is differentiable; the gradient comes back in the input's dtype.
  Tensor x = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  Tensor y = x.to(kFloat64);
  REQUIRE(y.grad_fn());
  (y * y).sum().backward();
  REQUIRE(x.grad().dtype() == kFloat32);
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{2, 4});
  REQUIRE_FALSE(x.to(kInt64).requires_grad());
}

// ---- random ----

TEST_CASE("rand, randn and randint are deterministic per seed") {
  for (auto make : {+[](Generator* g) { return Tensor::rand({50}, {}, g); },
                    +[](Generator* g) { return Tensor::randn({51}, {.dtype = kFloat64}, g); },
                    +[](Generator* g) { return Tensor::randint(-5, 100, {7, 7}, g); }}) {
    Generator g1(42), g2(42), g3(43);
    const Tensor a = make(&g1), b = make(&g2), c = make(&g3);
    require_identical(a, b);
    REQUIRE(a.to_vector<double>() != c.to_vector<double>());
    // The stream goes on: a second draw differs from the first.
    REQUIRE(make(&g1).to_vector<double>() != a.to_vector<double>());
    // Re-seeding restarts the stream, a cached second normal included.
    g1.manual_seed(42);
    require_identical(make(&g1), a);
  }
}

TEST_CASE("the default generator is seeded by manual_seed") {
  manual_seed(7);
  const Tensor a = Tensor::randn({5});
  const Tensor a2 = Tensor::rand({3});
  manual_seed(7);
  require_identical(Tensor::randn({5}), a);
  require_identical(Tensor::rand({3}), a2);
  manual_seed(8);
  REQUIRE(Tensor::randn({5}).to_vector<float>() != a.to_vector<float>());
  REQUIRE(default_generator().initial_seed() == 8);
  // An explicit generator does not consume the default stream.
  manual_seed(7);
  Generator other(1);
  (void)Tensor::randn({4}, {}, &other);
  require_identical(Tensor::randn({5}), a);
}

TEST_CASE("rand is uniform between 0 and 1 with the right moments") {
  Generator g(3);
  for (DType dt : {kFloat32, kFloat64}) {
    const auto v = Tensor::rand({200000}, {.dtype = dt}, &g).to_vector<double>();
    double lo = 1, hi = 0;
    for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    REQUIRE(lo >= 0);
    REQUIRE(hi < 1);
    REQUIRE(lo < 1e-3);
    REQUIRE(hi > 1 - 1e-3);
    REQUIRE(std::abs(mean_of(v) - 0.5) < 0.005);                 // standard error 0.0006
    REQUIRE(std::abs(std_of(v) - 1 / std::sqrt(12.0)) < 0.005);  // 0.2887
  }
  REQUIRE(Tensor::rand({2, 3}).shape() == Shape{2, 3});
  REQUIRE(Tensor::rand({2}, {.requires_grad = true}).requires_grad());
  REQUIRE_ERROR(Tensor::rand({2}, {.dtype = kInt64}), "rand: expected a floating point tensor (float32 or float64), got int64");
}

TEST_CASE("randn is standard normal") {
  Generator g(5);
  const auto v = Tensor::randn({200000}, {.dtype = kFloat64}, &g).to_vector<double>();
  REQUIRE(std::abs(mean_of(v)) < 0.01);  // standard error 0.0022
  REQUIRE(std::abs(std_of(v) - 1) < 0.01);
  size_t within1 = 0, beyond3 = 0;
  for (double x : v) {
    within1 += std::abs(x) < 1;
    beyond3 += std::abs(x) > 3;
  }
  REQUIRE(std::abs(static_cast<double>(within1) / v.size() - 0.6827) < 0.005);
  REQUIRE(std::abs(static_cast<double>(beyond3) / v.size() - 0.0027) < 0.001);
  // Odd sizes use the first value of the last pair.
  REQUIRE(Tensor::randn({3}, {}, &g).numel() == 3);
  REQUIRE_ERROR(Tensor::randn({2}, {.dtype = kBool}), "randn: expected a floating point tensor (float32 or float64), got bool");
}

TEST_CASE("randint draws every integer from low to high - 1 evenly") {
  Generator g(11);
  Tensor r = Tensor::randint(-3, 4, {70000}, &g);
  REQUIRE(r.dtype() == kInt64);
  std::vector<int> counts(7, 0);
  int outside = 0;
  for (int64_t x : r.to_vector<int64_t>()) {
    if (x < -3 || x >= 4) ++outside;
    else ++counts[static_cast<size_t>(x + 3)];
  }
  REQUIRE(outside == 0);
  for (int c : counts) REQUIRE(std::abs(c - 10000) < 500);  // standard deviation 93
  REQUIRE(Tensor::randint(5, 6, {10}, &g).to_vector<int64_t>() == std::vector<int64_t>(10, 5));
  // A range wider than 32 bits.
  const auto big = Tensor::randint(0, int64_t{1} << 40, {1000}, &g).to_vector<int64_t>();
  REQUIRE(*std::max_element(big.begin(), big.end()) > (int64_t{1} << 39));
  REQUIRE(std::set<int64_t>(big.begin(), big.end()).size() > 990);
  REQUIRE_ERROR(Tensor::randint(5, 5, {2}), "randint: expected low < high, got low=5 and high=5");
  REQUIRE_ERROR(Tensor::randint(5, 1, {2}), "randint: expected low < high, got low=5 and high=1");
}
