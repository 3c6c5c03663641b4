// View ops (Tensor members) and joining, splitting and indexing (core/ops/shape.h).
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

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// 0, 1, 2, ... in float64 with the given shape.
Tensor iota(const Shape& s) {
  return Tensor::arange(0, static_cast<double>(numel_of(s)), 1, {.dtype = kFloat64}).view(s);
}

Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// `make(base)` is a view: same storage, same version counter, and a write through base shows in it.
void require_view_of(const Tensor& base, const std::function<Tensor(const Tensor&)>& make) {
  Tensor v = make(base);
  const Tensor before = v.clone();
  REQUIRE(v.storage() == base.storage());
  REQUIRE(v.impl().is_view);
  const uint64_t version = v.version();
  Tensor b = base;
  b.add_(1.0);
  REQUIRE(v.version() == version + 1);
  require_close(v, before + 1.0);
}

// gradcheck and gradgradcheck of f at one random float64 input of shape s.
void require_grads(const Shape& s, const Fn& f, uint64_t seed = 1) {
  REQUIRE(gradcheck(f, {randn64(s, seed)}));
  REQUIRE(gradgradcheck([&f](const std::vector<Tensor>& x) { return f(x) * f(x); }, {randn64(s, seed + 1)}));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// View ops
// ---------------------------------------------------------------------------------------------------

TEST_CASE("view: shapes, -1, sharing, gradients and errors") {
  const Tensor x = iota({3, 4});
  const Tensor v = x.view({2, -1});
  REQUIRE(v.shape() == Shape{2, 6});
  REQUIRE(v.strides() == Shape{6, 1});
  require_close(v, Tensor::of({{0.0, 1, 2, 3, 4, 5}, {6.0, 7, 8, 9, 10, 11}}, {.dtype = kFloat64}));
  REQUIRE(x.view({-1}).shape() == Shape{12});
  REQUIRE(x.view({1, 3, 1, 4}).shape() == Shape{1, 3, 1, 4});
  REQUIRE(Tensor::scalar(2).view({1, 1}).shape() == Shape{1, 1});  // a 0-dim tensor views as any size-1 shape
  REQUIRE(Tensor::scalar(2).view({1, 1}).view({}).item() == 2.0);
  require_grads({}, [](const std::vector<Tensor>& t) { return t[0].view({1, -1}); });
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.view({4, 3}); });
  // A view of a non-contiguous tensor whose dims still merge.
  const Tensor s = iota({4, 6}).slice(1, 0, 4);  // (4, 4) with row stride 6
  REQUIRE(s.view({4, 2, 2}).strides() == Shape{6, 2, 1});
  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].view({2, -1, 2}); });

  REQUIRE_ERROR(x.t().view({12}),
                "view: view size is not compatible with input tensor's size and stride (at least one dimension spans "
                "across two contiguous subspaces). Use .reshape(...) instead.");
  REQUIRE_ERROR(x.view({5, -1}), "view: shape '[5, -1]' is invalid for input of size 12");
  REQUIRE_ERROR(x.view({-1, -1}), "view: only one dimension can be inferred");
  REQUIRE_ERROR(x.view({5, 2}), "view: shape '[5, 2]' is invalid for input of size 12");
}

TEST_CASE("reshape: a view when strides allow, else a copy") {
  const Tensor x = iota({3, 4});
  const Tensor v = x.reshape({2, 6});
  REQUIRE(v.storage() == x.storage());
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.reshape({6, 2}); });

  const Tensor c = x.t().reshape({2, 6});  // (4, 3) transposed: not viewable
  REQUIRE(c.storage() != x.storage());
  REQUIRE(c.is_contiguous());
  require_close(c, Tensor::of({{0.0, 4, 8, 1, 5, 9}, {2.0, 6, 10, 3, 7, 11}}, {.dtype = kFloat64}));
  // An expanded tensor reshaped to more dims stays a view (stride 0 survives).
  const Tensor e = iota({3}).expand({2, 3});
  REQUIRE(e.reshape({2, 3, 1}).storage() == e.storage());
  REQUIRE(e.reshape({6}).storage() != e.storage());
  require_close(e.reshape({6}), Tensor::of({0.0, 1, 2, 0, 1, 2}, {.dtype = kFloat64}));

  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].t().reshape({6, 2}); });
  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].reshape({-1}); });
  REQUIRE_ERROR(x.reshape({7, -1}), "reshape: shape '[7, -1]' is invalid for input of size 12");
}

TEST_CASE("permute, transpose and t") {
  const Tensor x = iota({2, 3, 4});
  const Tensor p = x.permute({2, 0, 1});
  REQUIRE(p.shape() == Shape{4, 2, 3});
  REQUIRE(p.strides() == Shape{1, 12, 4});
  require_close(p.contiguous().select(0, 1), Tensor::of({{1.0, 5, 9}, {13.0, 17, 21}}, {.dtype = kFloat64}));
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.permute({1, 2, 0}); });
  REQUIRE(x.permute({-1, 0, 1}).shape() == Shape{4, 2, 3});

  const Tensor tr = x.transpose(0, -1);
  REQUIRE(tr.shape() == Shape{4, 3, 2});
  REQUIRE(tr.strides() == Shape{1, 4, 12});
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.transpose(1, 2); });

  const Tensor m = iota({2, 3});
  REQUIRE(m.t().shape() == Shape{3, 2});
  require_close(m.t().contiguous(), Tensor::of({{0.0, 3}, {1.0, 4}, {2.0, 5}}, {.dtype = kFloat64}));
  REQUIRE(iota({5}).t().shape() == Shape{5});
  require_view_of(iota(m.shape()), [](const Tensor& t) { return t.t(); });

  require_grads({2, 3, 4}, [](const std::vector<Tensor>& t) { return t[0].permute({2, 0, 1}); });
  require_grads({2, 3, 4}, [](const std::vector<Tensor>& t) { return t[0].transpose(0, 2); });
  require_grads({2, 3}, [](const std::vector<Tensor>& t) { return t[0].t(); });

  REQUIRE_ERROR(x.t(), "t: t() expects a tensor with <= 2 dimensions, but self is 3D");
  REQUIRE_ERROR(m.permute({0}),
                "permute: number of dimensions in the tensor input does not match the length of the desired ordering "
                "of dimensions i.e. input.dim() = 2 is not equal to len(dims) = 1");
  REQUIRE_ERROR(m.transpose(0, 2), "transpose: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

TEST_CASE("narrow, slice with steps and negative bounds, select") {
  const Tensor x = iota({3, 4});
  require_close(x.narrow(1, 1, 2), Tensor::of({{1.0, 2}, {5.0, 6}, {9.0, 10}}, {.dtype = kFloat64}));
  require_close(x.narrow(0, -2, 2), Tensor::of({{4.0, 5, 6, 7}, {8.0, 9, 10, 11}}, {.dtype = kFloat64}));
  REQUIRE(x.narrow(1, 4, 0).shape() == Shape{3, 0});
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.narrow(1, 1, 2); });

  // As Python's x[:, -3:-1:2], x[:, -100:100:3] and x[::2].
  const Tensor s1 = x.slice(1, -3, -1, 2);
  REQUIRE(s1.shape() == Shape{3, 1});
  REQUIRE(s1.strides() == Shape{4, 2});
  require_close(s1, Tensor::of({{1.0}, {5.0}, {9.0}}, {.dtype = kFloat64}));
  const Tensor s2 = x.slice(1, -100, 100, 3);
  REQUIRE(s2.shape() == Shape{3, 2});
  require_close(s2, Tensor::of({{0.0, 3}, {4.0, 7}, {8.0, 11}}, {.dtype = kFloat64}));
  require_close(x.slice(0, 0, 3, 2), Tensor::of({{0.0, 1, 2, 3}, {8.0, 9, 10, 11}}, {.dtype = kFloat64}));
  REQUIRE(x.slice(1, 3, 1).shape() == Shape{3, 0});
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.slice(1, -3, 4, 2); });

  require_close(x.select(0, 1), Tensor::of({4.0, 5, 6, 7}, {.dtype = kFloat64}));
  require_close(x.select(1, -1), Tensor::of({3.0, 7, 11}, {.dtype = kFloat64}));
  REQUIRE(x.select(0, 2).select(0, 3).item() == 11.0);
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.select(1, 2); });

  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].narrow(1, 1, 2); });
  require_grads({5, 4}, [](const std::vector<Tensor>& t) { return t[0].slice(0, -4, 5, 2).slice(1, 1, -1); });
  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].select(1, -2); });

  REQUIRE_ERROR(x.narrow(1, 2, 3), "narrow: start (2) + length (3) exceeds dimension size (4).");
  REQUIRE_ERROR(x.narrow(1, 5, 0), "narrow: start out of range (expected to be in range of [-4, 4], but got 5)");
  REQUIRE_ERROR(x.slice(1, 0, 4, 0), "slice: slice step must be positive, got 0");
  REQUIRE_ERROR(x.select(0, 5), "select: index 5 out of range for tensor of size [3, 4] at dimension 0");
  REQUIRE_ERROR(x.select(0, -4), "select: index -4 out of range for tensor of size [3, 4] at dimension 0");
  REQUIRE_ERROR(Tensor::scalar(1).select(0, 0), "select: select() cannot be applied to a 0-dim tensor.");
}

TEST_CASE("squeeze and unsqueeze") {
  const Tensor x = iota({2, 1, 3, 1});
  REQUIRE(x.squeeze().shape() == Shape{2, 3});
  REQUIRE(x.squeeze(1).shape() == Shape{2, 3, 1});
  REQUIRE(x.squeeze(-1).shape() == Shape{2, 1, 3});
  REQUIRE(x.squeeze(0).shape() == Shape{2, 1, 3, 1});  // not of size 1: unchanged
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.squeeze(); });

  const Tensor m = iota({2, 3});
  REQUIRE(m.unsqueeze(0).shape() == Shape{1, 2, 3});
  REQUIRE(m.unsqueeze(-1).shape() == Shape{2, 3, 1});
  REQUIRE(m.unsqueeze(1).strides() == Shape{3, 3, 1});
  REQUIRE(m.unsqueeze(2).strides() == Shape{3, 1, 1});
  REQUIRE(m.t().select(1, 1).unsqueeze(1).strides() == Shape{1, 1});  // as PyTorch
  require_view_of(iota(m.shape()), [](const Tensor& t) { return t.unsqueeze(1); });
  REQUIRE(Tensor::scalar(2).unsqueeze(0).shape() == Shape{1});

  require_grads({2, 1, 3}, [](const std::vector<Tensor>& t) { return t[0].squeeze(); });
  require_grads({2, 1, 3}, [](const std::vector<Tensor>& t) { return t[0].squeeze(1).unsqueeze(-1); });

  REQUIRE_ERROR(m.unsqueeze(3), "unsqueeze: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
  REQUIRE_ERROR(m.squeeze(2), "squeeze: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

TEST_CASE("expand: broadcasting views with stride 0") {
  const Tensor x = iota({3, 1});
  const Tensor e = x.expand({2, 3, 4});
  REQUIRE(e.shape() == Shape{2, 3, 4});
  REQUIRE(e.strides() == Shape{0, 1, 0});
  require_close(e.select(0, 1).select(1, 3), Tensor::of({0.0, 1, 2}, {.dtype = kFloat64}));
  REQUIRE(x.expand({-1, 5}).shape() == Shape{3, 5});
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.expand({2, 3, 4}); });
  REQUIRE(iota({2}).expand_as(iota({3, 2})).shape() == Shape{3, 2});
  // The gradient of a broadcast is summed back.
  require_grads({3, 1}, [](const std::vector<Tensor>& t) { return t[0].expand({2, 3, 4}); });

  REQUIRE_ERROR(iota({3}).expand({2, 4}),
                "expand: The expanded size of the tensor (4) must match the existing size (3) at non-singleton "
                "dimension 1.  Target sizes: [2, 4].  Tensor sizes: [3]");
  REQUIRE_ERROR(iota({3, 4}).expand({4}),
                "expand: the number of sizes provided (1) must be greater or equal to the number of dimensions in the "
                "tensor (2)");
  REQUIRE_ERROR(iota({3, 4}).expand({-1, 3, 4}),
                "expand: The expanded size of the tensor (-1) isn't allowed in a leading, non-existing dimension 0");
}

TEST_CASE("flatten") {
  const Tensor x = iota({2, 3, 4});
  REQUIRE(x.flatten().shape() == Shape{24});
  REQUIRE(x.flatten(1).shape() == Shape{2, 12});
  REQUIRE(x.flatten(0, 1).shape() == Shape{6, 4});
  REQUIRE(x.flatten(-2, -1).shape() == Shape{2, 12});
  REQUIRE(Tensor::scalar(3).flatten().shape() == Shape{1});
  require_view_of(iota(x.shape()), [](const Tensor& t) { return t.flatten(1); });
  // A transposed tensor cannot be flattened in place: a copy with the right order.
  require_close(iota({2, 3}).t().flatten(), Tensor::of({0.0, 3, 1, 4, 2, 5}, {.dtype = kFloat64}));
  require_grads({2, 3, 4}, [](const std::vector<Tensor>& t) { return t[0].transpose(0, 2).flatten(1); });
  REQUIRE_ERROR(x.flatten(2, 1), "flatten: flatten() has invalid args: start_dim cannot come after end_dim");
}

TEST_CASE("contiguous, clone, to and detach") {
  const Tensor x = iota({3, 4});
  REQUIRE(x.contiguous().same(x));
  const Tensor c = x.t().contiguous();
  REQUIRE(c.is_contiguous());
  REQUIRE(c.storage() != x.storage());
  require_close(c, Tensor::of({{0.0, 4, 8}, {1.0, 5, 9}, {2.0, 6, 10}, {3.0, 7, 11}}, {.dtype = kFloat64}));
  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].t().contiguous(); });

  const Tensor k = x.clone();
  REQUIRE(k.storage() != x.storage());
  require_close(k, x);
  REQUIRE(x.slice(1, 0, 4, 2).clone().is_contiguous());
  require_grads({3, 4}, [](const std::vector<Tensor>& t) { return t[0].slice(1, 0, 4, 3).clone(); });

  REQUIRE(x.to(kFloat64).same(x));
  const Tensor f = x.to(kFloat32);
  REQUIRE(f.dtype() == kFloat32);
  require_close(f, x);
  REQUIRE(Tensor::of({1.7, -2.2}).to(kInt64).to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  // The gradient comes back in the input's dtype.
  Tensor leaf = randn64({3}, 5);
  (leaf.to(kFloat32) * 2.0).sum().backward();
  REQUIRE(leaf.grad().dtype() == kFloat64);
  require_close(leaf.grad(), Tensor::full({3}, 2.0, {.dtype = kFloat64}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& t) { return t[0].to(kFloat64) * 3.0; }, {randn64({2, 2}, 6)}));

  // detach: same storage and version counter, no history; an in-place write through it is caught.
  Tensor a = randn64({4}, 7);
  Tensor y = a.exp();
  Tensor d = y.detach();
  REQUIRE(d.storage() == y.storage());
  REQUIRE_FALSE(d.requires_grad());
  REQUIRE(d.is_leaf());
  REQUIRE_FALSE(d.impl().is_view);
  d.add_(1.0);
  REQUIRE(y.version() == d.version());
  REQUIRE_ERROR_CONTAINS(y.sum().backward(), "has been modified by an inplace operation");
}

TEST_CASE("views keep the version counter of their base for autograd") {
  // A saved tensor modified through a view is detected.
  Tensor a = randn64({2, 3}, 8);
  Tensor y = a * 1.0;
  Tensor z = y.exp();  // saves its result
  {
    autograd::NoGradGuard ng;
    z.select(0, 1).add_(1.0);
  }
  REQUIRE_ERROR_CONTAINS(z.sum().backward(), "exp: one of the variables needed for gradient computation");
}

// ---------------------------------------------------------------------------------------------------
// cat / stack / split / chunk
// ---------------------------------------------------------------------------------------------------

TEST_CASE("cat matches PyTorch") {
  testing::Fixture fx("shape.safetensors");
  require_close(cat({fx["cat.a"], fx["cat.b"], fx["cat.c"]}, 1), fx["cat.dim1"], 0, 0);
  require_close(cat({fx["cat.a"], fx["cat.d"]}, 0), fx["cat.dim0"], 0, 0);
  const Tensor mixed = cat({fx["cat.a"], fx["cat.e64"]}, -1);
  REQUIRE(mixed.dtype() == kFloat64);
  require_close(mixed, fx["cat.mixed"], 0, 0);
  const Tensor empty = Tensor::empty({0});
  require_close(cat({empty, fx["cat.a"], empty, fx["cat.d"]}, 0), fx["cat.skip"], 0, 0);
  require_close(cat({fx["cat.p"], fx["cat.q"], fx["cat.p"]}, 1), fx["cat.3d"], 0, 0);
  // Non-contiguous inputs.
  const Tensor t = iota({4, 3}).t();  // (3, 4)
  require_close(cat({t, iota({3, 2})}, 1),
                Tensor::of({{0.0, 3, 6, 9, 0, 1}, {1.0, 4, 7, 10, 2, 3}, {2.0, 5, 8, 11, 4, 5}}, {.dtype = kFloat64}));
  REQUIRE(cat({Tensor::empty({0}), Tensor::empty({0})}).shape() == Shape{0});
}

TEST_CASE("cat: gradients, including a cast input") {
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[0]}, 1); },
                    {randn64({2, 3}, 1), randn64({2, 2}, 2)}));
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& x) { return cat({x[0], Tensor::ones({1, 3}, {.dtype = kFloat64}), x[1]}, 0); },
      {randn64({2, 3}, 3), randn64({1, 3}, 4)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& x) { Tensor c = cat({x[0], x[1]}, -1); return c * c; },
                        {randn64({2, 3}, 5), randn64({2, 1}, 6)}));
  Tensor a = Tensor::of({1.0, 2.0}, {.requires_grad = true});  // float32, cat into float64
  Tensor b = randn64({3}, 7);
  Tensor y = cat({a, b});
  REQUIRE(y.dtype() == kFloat64);
  (y * Tensor::of({1.0, 2, 3, 4, 5}, {.dtype = kFloat64})).sum().backward();
  REQUIRE(a.grad().dtype() == kFloat32);
  require_close(a.grad(), Tensor::of({1.0, 2.0}));
  require_close(b.grad(), Tensor::of({3.0, 4, 5}, {.dtype = kFloat64}));
}

TEST_CASE("cat: errors") {
  const Tensor a = iota({2, 3});
  REQUIRE_ERROR(cat({}), "cat: expected a non-empty list of Tensors");
  REQUIRE_ERROR(cat({a, iota({2, 4})}, 0),
                "cat: Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor "
                "number 1 in the list.");
  REQUIRE_ERROR(cat({a, a, iota({3, 3})}, 1),
                "cat: Sizes of tensors must match except in dimension 1. Expected size 2 but got size 3 for tensor "
                "number 2 in the list.");
  REQUIRE_ERROR(cat({a, iota({2})}), "cat: Tensors must have same number of dimensions: got 2 and 1");
  REQUIRE_ERROR(cat({a, Tensor::scalar(1)}), "cat: zero-dimensional tensor (at position 1) cannot be concatenated");
  REQUIRE_ERROR(cat({a, a}, 2), "cat: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

TEST_CASE("stack matches PyTorch") {
  testing::Fixture fx("shape.safetensors");
  const std::vector<Tensor> in{fx["stack.in0"], fx["stack.in1"], fx["stack.in2"]};
  for (int64_t dim : {0, 1, 2, -1}) require_close(stack(in, dim), fx[fmt::format("stack.dim{}", dim)], 0, 0);
  REQUIRE(stack({Tensor::scalar(1), Tensor::scalar(2)}).shape() == Shape{2});
  REQUIRE(gradcheck([](const std::vector<Tensor>& x) { return stack({x[0], x[1], x[0]}, 1); },
                    {randn64({2, 3}, 1), randn64({2, 3}, 2)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& x) { Tensor s = stack({x[0], x[1]}, 2); return s * s; },
                        {randn64({2, 3}, 3), randn64({2, 3}, 4)}));
  REQUIRE_ERROR(stack({}), "stack: stack expects a non-empty TensorList");
  REQUIRE_ERROR(stack({iota({2, 3}), iota({3})}),
                "stack: stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [3] at entry 1");
  REQUIRE_ERROR(stack({iota({2, 3})}, 3),
                "stack: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
}

TEST_CASE("split and chunk: views matching PyTorch") {
  testing::Fixture fx("shape.safetensors");
  const Tensor x = fx["split.x"];
  auto check = [&](const std::vector<Tensor>& got, const std::string& prefix, size_t n) {
    REQUIRE(got.size() == n);
    for (size_t i = 0; i < n; ++i) {
      require_close(got[i], fx[fmt::format("{}.{}", prefix, i)], 0, 0);
      REQUIRE(got[i].storage() == x.storage());
    }
  };
  check(split(x, 3, 0), "split.size3", 3);
  check(split(x, {1, 2, 1}, 1), "split.sizes", 3);
  check(chunk(x, 3, 0), "chunk.3", 3);
  check(chunk(x, 4, 1), "chunk.4", 4);

  // torch.chunk piece sizes: ceil(n / chunks), so there may be fewer pieces.
  auto sizes = [](const std::vector<Tensor>& ps) {
    std::vector<int64_t> s;
    for (const auto& p : ps) s.push_back(p.size(0));
    return s;
  };
  REQUIRE(sizes(chunk(iota({6}), 4)) == std::vector<int64_t>{2, 2, 2});
  REQUIRE(sizes(chunk(iota({5}), 4)) == std::vector<int64_t>{2, 2, 1});
  REQUIRE(sizes(chunk(iota({0}), 4)) == std::vector<int64_t>{0, 0, 0, 0});
  REQUIRE(sizes(split(iota({0}), 2)) == std::vector<int64_t>{0});
  REQUIRE(sizes(split(iota({0}), 0)) == std::vector<int64_t>{0});
  REQUIRE(sizes(split(iota({4}), 4)) == std::vector<int64_t>{4});
  REQUIRE(sizes(split(iota({4}), 7)) == std::vector<int64_t>{4});
  REQUIRE(split(iota({2, 5}), 2, -1).back().shape() == Shape{2, 1});

  // Gradients flow through every piece (the slices' backward), also to second order.
  REQUIRE(gradcheck(GradcheckFn([](const std::vector<Tensor>& in) { return split(in[0], 2, 1); }),
                    {randn64({3, 5}, 1)}));
  REQUIRE(gradcheck(GradcheckFn([](const std::vector<Tensor>& in) { return chunk(in[0], 3, 0); }),
                    {randn64({7, 2}, 2)}));
  REQUIRE(gradcheck([](const std::vector<Tensor>& in) {
    auto p = split(in[0], {1, 3, 1}, 0);
    return p[2] * p[0] - p[1].sum({0}, true);
  }, {randn64({5, 2}, 3)}));
  REQUIRE(gradgradcheck([](const std::vector<Tensor>& in) {
    auto p = chunk(in[0], 2, 1);
    return p[0] * p[1] * p[1];
  }, {randn64({3, 4}, 4)}));

  REQUIRE_ERROR(split(iota({2, 3}), -1), "split: split expects split_size be non-negative, but got split_size=-1");
  REQUIRE_ERROR(split(iota({2, 3}), 0),
                "split: split_size can only be 0 if dimension size is 0, but got dimension size of 2");
  REQUIRE_ERROR(split(Tensor::scalar(1), 1), "split: split expects at least a 1-dimensional tensor");
  REQUIRE_ERROR(split(iota({2, 3}), {1, 1}, 1),
                "split: split_with_sizes expects split_sizes to sum exactly to 3 (input tensor's size at dimension 1), "
                "but got split_sizes=[1, 1]");
  REQUIRE_ERROR(split(iota({2, 3}), {1, -1, 3}, 1),
                "split: split_with_sizes expects split_sizes have only non-negative entries, but got "
                "split_sizes=[1, -1, 3]");
  REQUIRE_ERROR(chunk(iota({2, 3}), 0), "chunk: chunk expects `chunks` to be greater than 0, got: 0");
  REQUIRE_ERROR(chunk(Tensor::scalar(1), 2), "chunk: chunk expects at least a 1-dimensional tensor");
  REQUIRE_ERROR(chunk(iota({2, 3}), 2, 2),
                "chunk: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

// ---------------------------------------------------------------------------------------------------
// index_select / index_add / gather / scatter_add / one_hot
// ---------------------------------------------------------------------------------------------------

namespace {

// Naive references over row-major coordinates.
std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> c(s.size());
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    c[d] = i % s[d];
    i /= s[d];
  }
  return c;
}
int64_t ravel(const std::vector<int64_t>& c, const Shape& s) {
  int64_t i = 0;
  for (size_t d = 0; d < s.size(); ++d) i = i * s[d] + c[d];
  return i;
}

Tensor naive_gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const auto xv = x.to_vector<double>();
  const auto iv = index.to_vector<int64_t>();
  std::vector<double> out(iv.size());
  for (size_t p = 0; p < iv.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), index.shape());
    c[dim] = iv[p];
    out[p] = xv[ravel(c, x.shape())];
  }
  return Tensor::from_vector(out, index.shape());
}

Tensor naive_scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  auto out = x.to_vector<double>();
  const auto iv = index.to_vector<int64_t>();
  const auto sv = src.to_vector<double>();
  for (size_t p = 0; p < iv.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), index.shape());
    const double s = sv[ravel(c, src.shape())];
    c[dim] = iv[p];
    out[ravel(c, x.shape())] += s;
  }
  return Tensor::from_vector(out, x.shape());
}

Tensor naive_index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  auto out = x.to_vector<double>();
  const auto iv = index.to_vector<int64_t>();
  const auto sv = src.to_vector<double>();
  for (size_t p = 0; p < sv.size(); ++p) {
    auto c = unravel(static_cast<int64_t>(p), src.shape());
    c[dim] = iv[c[dim]];
    out[ravel(c, x.shape())] += sv[p];
  }
  return Tensor::from_vector(out, x.shape());
}

Tensor random_index(int64_t high, const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randint(0, high, s, &g);
}

}  // namespace

TEST_CASE("index_select and index_add match PyTorch") {
  testing::Fixture fx("shape.safetensors");
  const Tensor x = fx["index_select.x"];
  require_close(index_select(x, 0, fx["index_select.i0"]), fx["index_select.dim0"], 0, 0);
  require_close(index_select(x, 1, fx["index_select.i1"]), fx["index_select.dim1"], 0, 0);
  require_close(index_select(x, -1, fx["index_select.i1"]), fx["index_select.dim1"], 0, 0);
  require_close(index_select(fx["index_select.x3"], 1, i64({2, 2, 0, 1}, {4})), fx["index_select.dim1_3d"], 0, 0);
  // Repeated rows accumulate in the backward.
  Tensor leaf = x.clone().detach().requires_grad_();
  (index_select(leaf, 0, fx["index_select.i0"]) * fx["index_select.v"]).sum().backward();
  require_close(leaf.grad(), fx["index_select.grad_dim0"], 1e-12, 1e-12);
  require_close(index_add(fx["index_add.base"], 0, i64({0, 2, 0}, {3}), fx["index_add.src"]), fx["index_add.out"]);

  // A 0-dim index selects one row; non-contiguous x, int64 data.
  REQUIRE(index_select(x, 1, i64({3}, {})).shape() == Shape{4, 1});
  const Tensor xt = iota({5, 4}).t();  // (4, 5)
  require_close(index_select(xt, 1, i64({4, 0}, {2})), naive_gather(xt, 1, i64({4, 0, 4, 0, 4, 0, 4, 0}, {4, 2})));
  REQUIRE(index_select(Tensor::arange(6).view({2, 3}), 1, i64({2, 2}, {2})).to_vector<int64_t>() ==
          std::vector<int64_t>{2, 2, 5, 5});
  REQUIRE(index_select(x, 0, i64({}, {0})).shape() == Shape{0, 5});
}

TEST_CASE("index_select and index_add: fast paths against naive loops, threaded sizes") {
  // Large enough for the parallel paths: by rows (outer > threads) and by columns (outer == 1).
  for (auto [shape, dim] : {std::pair<Shape, int64_t>{{7, 300, 33}, 1}, {{2000, 61}, 0}, {{3, 5, 4001}, 2}}) {
    const Tensor x = randn64(shape, 3, false);
    const Tensor idx = random_index(shape[dim], {shape[dim] + 3}, 4);
    Shape gshape = shape;
    gshape[dim] = idx.numel();
    // index_select == gather with the index broadcast along the other dims.
    Shape view_shape(shape.size(), 1);
    view_shape[dim] = idx.numel();
    const Tensor gidx = idx.view(view_shape).expand(gshape).contiguous();
    require_close(index_select(x, dim, idx), naive_gather(x, dim, gidx), 0, 0);
    const Tensor src = randn64(gshape, 5, false);
    require_close(index_add(x, dim, idx, src), naive_index_add(x, dim, idx, src), 1e-12, 1e-12);
  }
}

TEST_CASE("index_select and index_add: gradients") {
  const Tensor idx = i64({2, 0, 2, 1, 2}, {5});
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return index_select(x[0], 1, idx); }, {randn64({2, 3, 2}, 1)}));
  REQUIRE(gradgradcheck([&](const std::vector<Tensor>& x) { Tensor y = index_select(x[0], 0, idx); return y * y; },
                        {randn64({3, 2}, 2)}));
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return index_add(x[0], 0, idx, x[1]); },
                    {randn64({3, 4}, 3), randn64({5, 4}, 4)}));
  REQUIRE(gradgradcheck([&](const std::vector<Tensor>& x) { Tensor y = index_add(x[0], 1, idx, x[1]); return y * y; },
                        {randn64({2, 3}, 5), randn64({2, 5}, 6)}));
}

TEST_CASE("index_select and index_add: errors") {
  const Tensor x = iota({2, 3});
  REQUIRE_ERROR(index_select(x, 1, i64({0, 3}, {2})), "index_select: index out of range in self");
  REQUIRE_ERROR(index_select(x, 1, i64({-1}, {1})), "index_select: index out of range in self");
  REQUIRE_ERROR(index_select(x, 1, i64({0, 1}, {1, 2})),
                "index_select: index_select(): Index is supposed to be a vector");
  REQUIRE_ERROR(index_select(x, 1, Tensor::of({0.0, 1.0})),
                "index_select: index_select(): Expected dtype int64 for index");
  REQUIRE_ERROR(index_select(x, 2, i64({0}, {1})),
                "index_select: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
  REQUIRE_ERROR(index_add(x, 1, i64({0, 3}, {2}), iota({2, 2})), "index_add: index out of range in self");
  REQUIRE_ERROR(index_add(x, 1, i64({0, 1}, {1, 2}), iota({2, 2})),
                "index_add: index_add_(): Index is supposed to be a vector, but got dim: 2 with type: Long and size: "
                "[1, 2]");
  REQUIRE_ERROR(index_add(x, 1, Tensor::of({0.0, 1.0}), iota({2, 2})),
                "index_add: index_add_(): Expected dtype int32/int64 for index but got: Float");
  REQUIRE_ERROR(index_add(x, 1, i64({0, 1}, {2}), iota({2, 2}).to(kFloat32)),
                "index_add: index_add_(): self (Double) and source (Float) must have the same scalar type");
  REQUIRE_ERROR(index_add(x, 1, i64({0, 1}, {2}), iota({2, 3})),
                "index_add: index_add_(): Number of indices (2) should be equal to source.size(dim): (3), for dim: 1");
  REQUIRE_ERROR(index_add(x, 1, i64({0, 1}, {2}), iota({3, 2})),
                "index_add: source tensor shape must match self tensor shape, excluding the specified dimension. Got "
                "self.shape = [2, 3] source.shape = [3, 2]");
}

TEST_CASE("gather and scatter_add match PyTorch") {
  testing::Fixture fx("shape.safetensors");
  const Tensor x = fx["gather.x"];
  require_close(gather(x, 1, fx["gather.i1"]), fx["gather.dim1"], 0, 0);
  require_close(gather(x, 0, fx["gather.i0"]), fx["gather.dim0"], 0, 0);
  require_close(gather(x, 0, fx["gather.small"]), fx["gather.dim0_small"], 0, 0);
  require_close(gather(fx["gather.x3"], 1, fx["gather.i3"]), fx["gather.dim1_3d"], 0, 0);
  Tensor leaf = x.clone().detach().requires_grad_();
  (gather(leaf, 1, fx["gather.i1"]) * fx["gather.v"]).sum().backward();
  require_close(leaf.grad(), fx["gather.grad_dim1"], 1e-12, 1e-12);

  Tensor base = fx["scatter_add.base"].clone().detach().requires_grad_();
  Tensor src = fx["scatter_add.src"].clone().detach().requires_grad_();
  Tensor out = scatter_add(base, 1, fx["scatter_add.i"], src);
  require_close(out, fx["scatter_add.dim1"], 1e-12, 1e-12);
  (out * fx["scatter_add.v"]).sum().backward();
  require_close(base.grad(), fx["scatter_add.grad_base"], 1e-12, 1e-12);
  require_close(src.grad(), fx["scatter_add.grad_src"], 1e-12, 1e-12);
  require_close(scatter_add(fx["scatter_add.base"], 0, fx["scatter_add.i0"], fx["scatter_add.src0"]),
                fx["scatter_add.dim0_partial"], 1e-12, 1e-12);
  REQUIRE(scatter_add(x, 0, i64({}, {0, 4}), x).shape() == x.shape());
}

TEST_CASE("gather and scatter_add: against naive loops on odd, strided and threaded shapes") {
  struct Case {
    Shape x, index, src;
    int64_t dim;
  };
  for (const Case& c : {Case{{3, 7}, {3, 1}, {3, 2}, 1}, Case{{5, 3, 2}, {7, 3, 1}, {7, 3, 2}, 0},
                        Case{{4, 6, 5}, {3, 9, 5}, {4, 9, 5}, 1}, Case{{1}, {3}, {3}, 0},
                        Case{{64, 40, 30}, {64, 40, 17}, {64, 40, 17}, 2},
                        Case{{300, 200}, {500, 200}, {500, 200}, 0}}) {
    const Tensor x = randn64(c.x, 1, false);
    const Tensor idx = random_index(c.x[c.dim], c.index, 2);
    require_close(gather(x, c.dim, idx), naive_gather(x, c.dim, idx), 0, 0);
    const Tensor src = randn64(c.src, 3, false);
    require_close(scatter_add(x, c.dim, idx, src), naive_scatter_add(x, c.dim, idx, src), 1e-12, 1e-12);
  }
  // Transposed x and index, an expanded src.
  const Tensor x = iota({5, 4}).t();                   // (4, 5)
  const Tensor idx = random_index(4, {5, 3}, 7).t();   // (3, 5), non-contiguous
  require_close(gather(x, 0, idx), naive_gather(x, 0, idx), 0, 0);
  const Tensor src = iota({5}).expand({3, 5});
  require_close(scatter_add(x, 0, idx, src), naive_scatter_add(x, 0, idx, src.contiguous()), 0, 0);
  // float32 and int64 data.
  const Tensor xf = Tensor::arange(20, {.dtype = kFloat32}).view({4, 5});
  require_close(gather(xf, 1, idx.t().narrow(0, 0, 4)), naive_gather(xf, 1, idx.t().narrow(0, 0, 4)), 0, 0);
  REQUIRE(gather(Tensor::arange(6).view({2, 3}), 1, i64({2, 0}, {2, 1})).to_vector<int64_t>() ==
          std::vector<int64_t>{2, 3});
}

TEST_CASE("gather and scatter_add: gradients") {
  const Tensor idx = i64({0, 2, 2, 1, 1, 1, 0, 0}, {2, 4});
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0], 1, idx); }, {randn64({2, 3}, 1)}));
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0], 0, idx.narrow(1, 0, 2)); },
                    {randn64({3, 5}, 2)}));
  REQUIRE(gradgradcheck([&](const std::vector<Tensor>& x) { Tensor y = gather(x[0], 1, idx); return y * y; },
                        {randn64({2, 3}, 3)}));
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return scatter_add(x[0], 1, idx, x[1]); },
                    {randn64({2, 3}, 4), randn64({2, 4}, 5)}));
  // src larger than index: the elements index does not reach get a zero gradient.
  REQUIRE(gradcheck([&](const std::vector<Tensor>& x) { return scatter_add(x[0], 1, idx.narrow(1, 0, 3), x[1]); },
                    {randn64({2, 3}, 6), randn64({3, 5}, 7)}));
  REQUIRE(gradgradcheck([&](const std::vector<Tensor>& x) { Tensor y = scatter_add(x[0], 1, idx, x[1]); return y * y; },
                        {randn64({2, 3}, 8), randn64({2, 4}, 9)}));
}

TEST_CASE("gather and scatter_add: errors") {
  const Tensor x = iota({2, 3});
  REQUIRE_ERROR(gather(x, 1, i64({0, 3}, {1, 2})), "gather: index 3 is out of bounds for dimension 1 with size 3");
  REQUIRE_ERROR(gather(x, 1, i64({0, -1}, {1, 2})), "gather: index -1 is out of bounds for dimension 1 with size 3");
  REQUIRE_ERROR(gather(x, 1, i64({0, 1}, {2})),
                "gather: Index tensor must have the same number of dimensions as input tensor");
  REQUIRE_ERROR(gather(x, 1, i64({0, 1, 0, 1, 0, 1}, {3, 2})),
                "gather: Size does not match at dimension 0 expected index [3, 2] to be smaller than self [2, 3] apart "
                "from dimension 1");
  REQUIRE_ERROR(gather(x, 1, Tensor::of({{0.0, 1.0}})), "gather: gather(): Expected dtype int64 for index");
  REQUIRE_ERROR(gather(x, 2, i64({0}, {1, 1})),
                "gather: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
  const Tensor src = iota({2, 2});
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 3}, {1, 2}), src),
                "scatter_add: index 3 is out of bounds for dimension 1 with size 3");
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 1}, {1, 2}), iota({1, 1})),
                "scatter_add: Expected index [1, 2] to be smaller than self [2, 3] apart from dimension 1 and to be "
                "smaller size than src [1, 1]");
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 1, 0, 1, 0, 1}, {3, 2}), iota({3, 2})),
                "scatter_add: Expected index [3, 2] to be smaller than self [2, 3] apart from dimension 1 and to be "
                "smaller size than src [3, 2]");
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 1}, {2}), src),
                "scatter_add: Index tensor must have the same number of dimensions as self tensor");
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 1}, {1, 2}), iota({2})),
                "scatter_add: Index tensor must have the same number of dimensions as src tensor");
  REQUIRE_ERROR(scatter_add(x, 1, i64({0, 1}, {1, 2}), src.to(kFloat32)),
                "scatter_add: scatter(): Expected self.dtype to be equal to src.dtype");
  REQUIRE_ERROR(scatter_add(x, 1, Tensor::of({{0.0, 1.0}}), src),
                "scatter_add: scatter(): Expected dtype int64 for index");
}

TEST_CASE("one_hot matches PyTorch") {
  testing::Fixture fx("shape.safetensors");
  const Tensor labels = fx["one_hot.labels"];
  const Tensor a = one_hot(labels);
  REQUIRE(a.dtype() == kInt64);
  REQUIRE(a.shape() == fx["one_hot.auto"].shape());
  REQUIRE(a.to_vector<int64_t>() == fx["one_hot.auto"].to_vector<int64_t>());
  REQUIRE(one_hot(labels, 6).to_vector<int64_t>() == fx["one_hot.six"].to_vector<int64_t>());
  REQUIRE(one_hot(labels.t(), 6).to_vector<int64_t>() == one_hot(labels.t().contiguous(), 6).to_vector<int64_t>());
  REQUIRE(one_hot(i64({2}, {}), -1).shape() == Shape{3});
  REQUIRE(one_hot(i64({}, {0, 2}), 3).shape() == Shape{0, 2, 3});

  REQUIRE_ERROR(one_hot(i64({0, -1}, {2})), "one_hot: Class values must be non-negative.");
  REQUIRE_ERROR(one_hot(i64({0, 3}, {2}), 3), "one_hot: Class values must be smaller than num_classes.");
  REQUIRE_ERROR(one_hot(Tensor::of({0.0, 1.0})), "one_hot: one_hot is only applicable to index tensor.");
  REQUIRE_ERROR(one_hot(i64({}, {0})), "one_hot: Can not infer total number of classes from empty tensor.");
}
