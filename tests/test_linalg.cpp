// matmul and linear (core/ops/linalg.h) against a naive GEMM, PyTorch fixtures and finite differences.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <functional>

using namespace tapegrad;
using testing::randn64;
using testing::require_close;

namespace {

Tensor randn(const Shape& s, DType dt, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, {.dtype = dt}, &g);
}

// PyTorch's matmul rules with plain loops in double: 1-D operands promoted, batch dims broadcast.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  Shape as = a.shape(), bs = b.shape();
  if (a.dim() == 1) as.insert(as.begin(), 1);
  if (b.dim() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  REQUIRE(bs[bs.size() - 2] == k);
  const size_t nb = std::max(as.size(), bs.size()) - 2;
  Shape ab(nb, 1), bb(nb, 1), batch(nb);
  std::copy(as.begin(), as.end() - 2, ab.end() - static_cast<int64_t>(as.size() - 2));
  std::copy(bs.begin(), bs.end() - 2, bb.end() - static_cast<int64_t>(bs.size() - 2));
  for (size_t i = 0; i < nb; ++i) batch[i] = std::max(ab[i], bb[i]);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  const int64_t nbatch = numel_of(batch);
  std::vector<double> out(static_cast<size_t>(nbatch * m * n), 0.0);
  for (int64_t t = 0; t < nbatch; ++t) {
    int64_t r = t, ao = 0, bo = 0, amul = 1, bmul = 1;
    for (int64_t d = static_cast<int64_t>(nb) - 1; d >= 0; --d) {
      const int64_t c = r % batch[d];
      r /= batch[d];
      ao += (ab[d] == 1 ? 0 : c) * amul;
      bo += (bb[d] == 1 ? 0 : c) * bmul;
      amul *= ab[d];
      bmul *= bb[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += av[(ao * m + i) * k + p] * bv[(bo * k + p) * n + j];
        out[(t * m + i) * n + j] = s;
      }
  }
  Shape os = batch;
  if (a.dim() >= 2) os.push_back(m);
  if (b.dim() >= 2) os.push_back(n);
  return Tensor::from_vector(out, os);
}

// x W^T + b in double loops over x's flattened leading dims.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / in;
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> y(static_cast<size_t>(rows * out_f));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out_f; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      y[r * out_f + o] = s;
    }
  Shape os(x.shape().begin(), x.shape().end() - 1);
  os.push_back(out_f);
  Tensor out = Tensor::from_vector(y, os);
  return bias.defined() ? out + bias.to(kFloat64) : out;
}

double tol(DType dt) { return dt == kFloat32 ? 1e-4 : 1e-11; }

// The same values with a different memory layout: a transposed copy seen through a transpose, or
// every other element of a larger tensor.
Tensor as_transposed(const Tensor& m) { return m.transpose(-1, -2).contiguous().transpose(-1, -2); }
Tensor as_strided_slice(const Tensor& m) {
  Shape big = m.shape();
  big.back() *= 2;
  Tensor t = Tensor::zeros(big, {.dtype = m.dtype()});
  Tensor s = t.slice(-1, 1, big.back(), 2);
  s.copy_(m);
  return s;
}

}  // namespace

TEST_CASE("matmul: 2-D against a naive GEMM on odd shapes and layouts") {
  const std::vector<std::function<Tensor(const Tensor&)>> layouts = {
      [](const Tensor& t) { return t; }, as_transposed, as_strided_slice,
      [](const Tensor& t) { return as_strided_slice(t.t().contiguous()).t(); }};
  uint64_t seed = 1;
  for (DType dt : {kFloat32, kFloat64})
    for (int64_t m : {1, 3, 7, 65})
      for (int64_t k : {1, 3, 7, 65})
        for (int64_t n : {1, 3, 65}) {
          const Tensor a = randn({m, k}, dt, seed++), b = randn({k, n}, dt, seed++);
          const Tensor ref = naive_matmul(a, b);
          for (size_t la = 0; la < layouts.size(); ++la)
            for (size_t lb = 0; lb < layouts.size(); ++lb) {
              INFO("m=" << m << " k=" << k << " n=" << n << " layouts " << la << "," << lb << " " << dtype_name(dt));
              const Tensor out = matmul(layouts[la](a), layouts[lb](b));
              REQUIRE(out.dtype() == dt);
              require_close(out, ref, tol(dt), tol(dt));
            }
        }
}

TEST_CASE("matmul: vectors, folding and batches against a naive GEMM") {
  struct Case {
    Shape a, b;
  };
  for (DType dt : {kFloat32, kFloat64}) {
    uint64_t seed = 100;
    for (const Case& c : {Case{{7}, {7}}, Case{{65}, {65}}, Case{{1}, {1}}, Case{{3, 7}, {7}}, Case{{7}, {7, 3}},
                          Case{{65}, {65, 1}}, Case{{2, 3, 7}, {7, 5}}, Case{{2, 3, 7}, {7}}, Case{{7}, {2, 7, 3}},
                          Case{{3, 7}, {4, 7, 5}}, Case{{4, 3, 7}, {4, 7, 5}}, Case{{2, 1, 3, 7}, {5, 7, 1}},
                          Case{{1, 3, 1, 7}, {2, 1, 7, 65}}, Case{{9, 2, 2}, {9, 2, 2}},
                          Case{{40, 3, 7}, {40, 7, 5}}}) {
      INFO(shape_str(c.a) << " @ " << shape_str(c.b) << " " << dtype_name(dt));
      const Tensor a = randn(c.a, dt, seed++), b = randn(c.b, dt, seed++);
      const Tensor ref = naive_matmul(a, b);
      require_close(matmul(a, b), ref, tol(dt), tol(dt));
      require_close(a.matmul(b), ref, tol(dt), tol(dt));
      if (a.dim() >= 2) require_close(matmul(as_transposed(a), b), ref, tol(dt), tol(dt));
      if (b.dim() >= 2) require_close(matmul(a, as_strided_slice(b)), ref, tol(dt), tol(dt));
    }
  }
  // A left operand whose batch dims do not fold into rows (batched path, b broadcast), expanded
  // batch dims (stride 0, no copy) and expanded matrix dims (copied).
  const Tensor a = randn({2, 7, 3}, kFloat64, 1).transpose(-1, -2);  // (2, 3, 7), rows not foldable
  const Tensor b = randn({7, 5}, kFloat64, 2);
  require_close(matmul(a, b), naive_matmul(a, b), 1e-12, 1e-12);
  require_close(matmul(a, b.select(1, 0)), naive_matmul(a, b.select(1, 0)), 1e-12, 1e-12);
  const Tensor e = randn({1, 3, 7}, kFloat64, 3).expand({4, 3, 7});
  const Tensor f = randn({4, 7, 2}, kFloat64, 4);
  require_close(matmul(e, f), naive_matmul(e, f), 1e-12, 1e-12);
  const Tensor g = randn({3, 1}, kFloat64, 5).expand({3, 7});
  require_close(matmul(g, b), naive_matmul(g, b), 1e-12, 1e-12);
  // Empty dims: an empty sum gives zeros.
  require_close(matmul(Tensor::ones({2, 0}), Tensor::ones({0, 3})), Tensor::zeros({2, 3}));
  REQUIRE(matmul(Tensor::ones({0, 4}), Tensor::ones({4, 3})).shape() == Shape{0, 3});
  REQUIRE(matmul(Tensor::ones({2, 0, 4}), Tensor::ones({4})).shape() == Shape{2, 0});
}

TEST_CASE("matmul: threaded sizes (one large GEMM, many small batched ones)") {
  const Tensor a = randn({130, 257}, kFloat32, 1), b = randn({257, 129}, kFloat32, 2);
  require_close(matmul(a, b), naive_matmul(a, b), 1e-4, 1e-4);
  require_close(matmul(b.t(), a.t()), naive_matmul(b.t(), a.t()), 1e-4, 1e-4);
  const Tensor x = randn({33, 5, 9}, kFloat64, 3), y = randn({1, 9, 4}, kFloat64, 4);
  require_close(matmul(x, y), naive_matmul(x, y), 1e-12, 1e-12);
}

TEST_CASE("matmul matches PyTorch") {
  testing::Fixture fx("linalg.safetensors");
  for (const char* name : {"dot", "mv", "vm", "mm", "fold_mm", "fold_mv", "vec_batched", "mat_batched", "batched_vec",
                           "bmm", "broadcast"}) {
    for (const char* tag : {"f32", "f64"}) {
      INFO(name << " " << tag);
      const std::string p = fmt::format("matmul.{}.{}.", name, tag);
      const Tensor out = matmul(fx[p + "a"], fx[p + "b"]);
      const double t = std::string(tag) == "f32" ? 1e-5 : 1e-12;
      require_close(out, fx[p + "out"], t, t);
    }
  }
  Tensor a = fx["matmul_grad.a"].clone().detach().requires_grad_();
  Tensor b = fx["matmul_grad.b"].clone().detach().requires_grad_();
  (matmul(a, b) * fx["matmul_grad.v"]).sum().backward();
  require_close(a.grad(), fx["matmul_grad.ga"], 1e-12, 1e-12);
  require_close(b.grad(), fx["matmul_grad.gb"], 1e-12, 1e-12);
}

TEST_CASE("matmul: gradcheck and gradgradcheck over every rank combination") {
  struct Case {
    Shape a, b;
  };
  uint64_t seed = 1;
  for (const Case& c : {Case{{4}, {4}}, Case{{3, 4}, {4}}, Case{{4}, {4, 2}}, Case{{3, 4}, {4, 2}},
                        Case{{2, 3, 4}, {4, 2}}, Case{{2, 3, 4}, {4}}, Case{{4}, {2, 4, 3}}, Case{{3, 4}, {2, 4, 2}},
                        Case{{2, 1, 3, 4}, {3, 4, 2}}}) {
    INFO(shape_str(c.a) << " @ " << shape_str(c.b));
    const Tensor a = randn64(c.a, seed++), b = randn64(c.b, seed++);
    auto f = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
    REQUIRE(gradcheck(f, {a, b}));
    REQUIRE(gradgradcheck(f, {a, b}));
  }
  // Transposed and non-foldable operands.
  const Tensor a = randn64({2, 4, 3}, 50), b = randn64({2, 4}, 51);
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0].transpose(-1, -2), x[1].t()); }, {a, b}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& x) { return matmul(x[0].transpose(-1, -2), x[1].t()); }, {a, b}));
}

TEST_CASE("matmul: errors") {
  REQUIRE_ERROR(matmul(Tensor::scalar(1), Tensor::ones({2, 3})),
                "matmul: both arguments to matmul need to be at least 1D, but they are 0D and 2D");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 4}), Tensor::ones({3, 5})),
                "matmul: mat1 and mat2 shapes cannot be multiplied (2x4 and 3x5)");
  REQUIRE_ERROR(matmul(Tensor::ones({4}), Tensor::ones({3, 5})),
                "matmul: mat1 and mat2 shapes cannot be multiplied (1x4 and 3x5)");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 2, 4}), Tensor::ones({3, 5})),
                "matmul: mat1 and mat2 shapes cannot be multiplied (4x4 and 3x5)");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 4, 2}).transpose(1, 2), Tensor::ones({3, 5})),
                "matmul: mat1 and mat2 shapes cannot be multiplied (4x4 and 3x5)");
  REQUIRE_ERROR(matmul(Tensor::ones({4}), Tensor::ones({3})),
                "matmul: inconsistent tensor size, expected tensor [4] and src [3] to have the same number of "
                "elements, but got 4 and 3 elements respectively");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 4}), Tensor::ones({3})),
                "matmul: size mismatch, got input (2), mat (2x4), vec (3)");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 2, 4}), Tensor::ones({3})),
                "matmul: size mismatch, got input (4), mat (4x4), vec (3)");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 2, 4}), Tensor::ones({2, 3, 5})),
                "matmul: Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 3].");
  REQUIRE_ERROR(matmul(Tensor::ones({4}), Tensor::ones({2, 3, 5})),
                "matmul: Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 3].");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 2, 4}), Tensor::ones({3, 4, 5})),
                "matmul: The size of tensor a (2) must match the size of tensor b (3) at non-singleton dimension 0");
  REQUIRE_ERROR(matmul(Tensor::ones({2, 4}), Tensor::ones({4, 5}, {.dtype = kFloat64})),
                "matmul: expected scalar type Float but found Double");
  REQUIRE_ERROR(matmul(Tensor::arange(4).view({2, 2}), Tensor::arange(4).view({2, 2})),
                "matmul: expected a floating point tensor (float32 or float64), got int64");
}

TEST_CASE("linear: against a naive reference on odd shapes, layouts and biases") {
  uint64_t seed = 1;
  for (DType dt : {kFloat32, kFloat64})
    for (const Shape& xs : {Shape{7}, Shape{1, 7}, Shape{3, 7}, Shape{65, 7}, Shape{2, 3, 7}, Shape{2, 1, 5, 7}})
      for (int64_t out_f : {1, 3, 65}) {
        INFO(shape_str(xs) << " out " << out_f << " " << dtype_name(dt));
        const Tensor x = randn(xs, dt, seed++), w = randn({out_f, 7}, dt, seed++), b = randn({out_f}, dt, seed++);
        const Tensor ref = naive_linear(x, w, b);
        require_close(linear(x, w, b), ref, tol(dt), tol(dt));
        require_close(linear(x, w), naive_linear(x, w, {}), tol(dt), tol(dt));
        require_close(linear(as_strided_slice(x), as_transposed(w), b), ref, tol(dt), tol(dt));
        if (x.dim() >= 2) require_close(linear(as_transposed(x), as_strided_slice(w), b), ref, tol(dt), tol(dt));
      }
  // Leading dims that do not fold into rows; biases that broadcast in other ways.
  const Tensor x = randn64({3, 2, 7}, 1, false).transpose(0, 1);  // (2, 3, 7)
  const Tensor w = randn64({5, 7}, 2, false);
  require_close(linear(x, w, Tensor::full({1}, 0.5, {.dtype = kFloat64})),
                naive_linear(x, w, Tensor::full({1}, 0.5, {.dtype = kFloat64})), 1e-12, 1e-12);
  const Tensor full_bias = randn64({3, 5}, 3, false);
  require_close(linear(x, w, full_bias), naive_linear(x, w, full_bias), 1e-12, 1e-12);
  require_close(linear(x, w, Tensor::scalar(2, kFloat64)), naive_linear(x, w, Tensor::scalar(2, kFloat64)), 1e-12,
                1e-12);
  // Empty batch and empty features.
  REQUIRE(linear(Tensor::ones({0, 7}), Tensor::ones({5, 7}), Tensor::ones({5})).shape() == Shape{0, 5});
  require_close(linear(Tensor::ones({2, 0}), Tensor::ones({3, 0}), Tensor::of({1.0, 2.0, 3.0})),
                Tensor::of({{1.0, 2.0, 3.0}, {1.0, 2.0, 3.0}}));
  // A 1-D weight is F.linear's x @ w.
  require_close(linear(randn64({2, 7}, 4, false), randn64({7}, 5, false)),
                naive_matmul(randn64({2, 7}, 4, false), randn64({7}, 5, false)), 1e-12, 1e-12);
}

TEST_CASE("linear matches PyTorch, forward and backward") {
  testing::Fixture fx("linalg.safetensors");
  for (const char* tag : {"f32", "f64"}) {
    INFO(tag);
    const std::string p = fmt::format("linear.{}.", tag);
    const double t = std::string(tag) == "f32" ? 1e-5 : 1e-12;
    Tensor x = fx[p + "x"].clone().detach().requires_grad_();
    Tensor w = fx[p + "w"].clone().detach().requires_grad_();
    Tensor b = fx[p + "b"].clone().detach().requires_grad_();
    Tensor y = linear(x, w, b);
    require_close(y, fx[p + "y"], t, t);
    (y * fx[p + "v"]).sum().backward();
    require_close(x.grad(), fx[p + "gx"], t, t);
    require_close(w.grad(), fx[p + "gw"], t, t);
    require_close(b.grad(), fx[p + "gb"], t, t);
    require_close(linear(fx[p + "x"], fx[p + "w"]), fx[p + "nobias"], t, t);
    require_close(linear(fx[p + "x1"], fx[p + "w"], fx[p + "b"]), fx[p + "y1"], t, t);
  }
}

TEST_CASE("linear: one node on the tape; gradcheck and gradgradcheck") {
  Tensor x = randn64({2, 3, 4}, 1), w = randn64({5, 4}, 2), b = randn64({5}, 3);
  Tensor y = linear(x, w, b);
  REQUIRE(autograd::tape({y}).size() == 1);
  REQUIRE(autograd::tape({y})[0]->name == "linear");

  auto f = [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); };
  auto f_nobias = [](const std::vector<Tensor>& t) { return linear(t[0], t[1]); };
  REQUIRE(gradcheck(f, {x, w, b}));
  REQUIRE(gradgradcheck(f, {x, w, b}));
  REQUIRE(gradcheck(f_nobias, {randn64({4}, 4), w}));
  REQUIRE(gradgradcheck(f_nobias, {randn64({4}, 5), w}));
  REQUIRE(gradcheck(f, {randn64({3, 2, 4}, 6), randn64({5, 4}, 7), randn64({2, 1}, 8)}));
  // Non-foldable input, transposed weight.
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return linear(t[0].transpose(0, 1), t[1].t(), t[2]); },
                    {randn64({3, 2, 4}, 9), randn64({4, 5}, 10), b}));
  // Only the weight requires grad (as for a frozen input).
  REQUIRE(gradcheck(f, {randn64({6, 4}, 11, false), randn64({5, 4}, 12), randn64({5}, 13, false)}));
}

TEST_CASE("linear: forward and gradients equal the composed matmul(x, W^T) + b") {
  for (const Shape& xs : {Shape{4}, Shape{6, 4}, Shape{2, 3, 4}}) {
    INFO(shape_str(xs));
    const Tensor x0 = randn64(xs, 1), w0 = randn64({5, 4}, 2), b0 = randn64({5}, 3);
    auto grads = [&](bool fused) {
      const Tensor x = x0.detach().requires_grad_(), w = w0.detach().requires_grad_(), b = b0.detach().requires_grad_();
      const Tensor y = fused ? linear(x, w, b) : matmul(x, w.t()) + b;
      const Tensor up = randn64(y.shape(), 5, false);
      auto g = autograd::grad({(y * up).sum()}, {x, w, b});
      g.insert(g.begin(), y.detach());
      return g;
    };
    const auto fused = grads(true), composed = grads(false);
    for (size_t i = 0; i < fused.size(); ++i) require_close(fused[i], composed[i], 1e-12, 1e-12);
  }
}

TEST_CASE("linear: errors") {
  REQUIRE_ERROR(linear(Tensor::ones({2, 4}), Tensor::ones({5, 3})),
                "linear: mat1 and mat2 shapes cannot be multiplied (2x4 and 3x5)");
  REQUIRE_ERROR(linear(Tensor::ones({4}), Tensor::ones({5, 3})),
                "linear: mat1 and mat2 shapes cannot be multiplied (1x4 and 3x5)");
  REQUIRE_ERROR(linear(Tensor::ones({2, 2, 4}), Tensor::ones({5, 3})),
                "linear: mat1 and mat2 shapes cannot be multiplied (4x4 and 3x5)");
  REQUIRE_ERROR(linear(Tensor::scalar(1), Tensor::ones({5, 4})),
                "linear: both arguments to matmul need to be at least 1D, but they are 0D and 2D");
  REQUIRE_ERROR(linear(Tensor::ones({2, 4}), Tensor::ones({5, 4}, {.dtype = kFloat64})),
                "linear: expected scalar type Float but found Double");
  REQUIRE_ERROR(linear(Tensor::ones({2, 4}), Tensor::ones({5, 4}), Tensor::ones({5}, {.dtype = kFloat64})),
                "linear: expected scalar type Float but found Double");
  REQUIRE_ERROR(linear(Tensor::ones({2, 4}), Tensor::ones({5, 4}), Tensor::ones({4})),
                "linear: The expanded size of the tensor (5) must match the existing size (4) at non-singleton "
                "dimension 1.  Target sizes: [2, 5].  Tensor sizes: [4]");
  REQUIRE_ERROR(linear(Tensor::ones({4}), Tensor::ones({5, 4}), Tensor::ones({2, 5})),
                "linear: the number of sizes provided (1) must be greater or equal to the number of dimensions in the "
                "tensor (2)");
  REQUIRE_ERROR(linear(Tensor::ones({2, 4}), Tensor::ones({2, 5, 4})),
                "linear: t() expects a tensor with <= 2 dimensions, but self is 3D");
  REQUIRE_ERROR(linear(Tensor::arange(4).view({1, 4}), Tensor::arange(8).view({2, 4})),
                "linear: expected a floating point tensor (float32 or float64), got int64");
}
