// The normalization modules against PyTorch's modules: the fixtures of gen_norm.py are PyTorch module
// runs (training steps with running statistics, then eval), replayed here through the tapegrad modules.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/normalization.h>

#include <functional>

using namespace tapegrad;

namespace {

void set_affine(const testing::Fixture& fx, const std::string& name, nn::Module& m, Tensor w, Tensor b) {
  if (!w.defined()) return;
  autograd::NoGradGuard ng;
  w.copy_(fx[name + ".w"]);
  b.copy_(fx[name + ".b"]);
  (void)m;
}

// Forward with a gradient: returns y and checks dx, dw, db against the fixture (suffix "" or "e").
void check_grads(const testing::Fixture& fx, const std::string& name, nn::Module& m, const Tensor& x_in, Tensor w,
                 Tensor b, const std::string& sfx, const Tensor& expected_y, double rtol, double atol) {
  Tensor x = x_in.clone().requires_grad_();
  if (w.defined()) {
    w.set_grad({});
    b.set_grad({});
  }
  Tensor y = m(x);
  testing::require_close(y, expected_y, rtol, atol);
  y.backward(fx[name + ".g" + sfx]);
  testing::require_close(x.grad(), fx[name + ".dx" + sfx], rtol, atol);
  if (w.defined()) {
    testing::require_close(w.grad(), fx[name + ".dw" + sfx], rtol, atol);
    testing::require_close(b.grad(), fx[name + ".db" + sfx], rtol, atol);
  }
}

template <typename M>
void stateful(const std::string& file, const std::string& name, std::shared_ptr<M> m, int steps, double rtol,
              double atol) {
  testing::Fixture fx(file);
  set_affine(fx, name, *m, m->weight, m->bias);
  m->train();
  for (int k = 0; k < steps; ++k) {
    const std::string K = std::to_string(k);
    if (k == steps - 1) {
      check_grads(fx, name, *m, fx[name + ".x" + K], m->weight, m->bias, "", fx[name + ".y" + K], rtol, atol);
    } else {
      testing::require_close((*m)(fx[name + ".x" + K]), fx[name + ".y" + K], rtol, atol);
    }
    if (fx.has(name + ".rm" + K)) {
      testing::require_close(m->running_mean, fx[name + ".rm" + K], rtol, atol);
      testing::require_close(m->running_var, fx[name + ".rv" + K], rtol, atol);
    }
  }
  m->eval();
  check_grads(fx, name, *m, fx[name + ".xe"], m->weight, m->bias, "e", fx[name + ".ye"], rtol, atol);
}

template <typename M>
void stateless(const std::string& file, const std::string& name, std::shared_ptr<M> m, double rtol, double atol) {
  testing::Fixture fx(file);
  set_affine(fx, name, *m, m->weight, m->bias);
  check_grads(fx, name, *m, fx[name + ".x0"], m->weight, m->bias, "", fx[name + ".y0"], rtol, atol);
}

}  // namespace

TEST_CASE("normalization modules replay PyTorch's module runs") {
  for (auto [file, dt, rtol, atol] : {std::tuple{"norm.safetensors", kFloat32, 1e-4, 1e-5},
                                      std::tuple{"norm64.safetensors", kFloat64, 1e-10, 1e-12}}) {
    DYNAMIC_SECTION(file) {
      using namespace nn;
      const NormOptions o{.dtype = dt};
      stateful(file, "bn1d_nc", std::make_shared<BatchNorm1d>(5, o), 3, rtol, atol);
      stateful(file, "bn1d_ncl", std::make_shared<BatchNorm1d>(3, o), 3, rtol, atol);
      stateful(file, "bn2d", std::make_shared<BatchNorm2d>(4, o), 3, rtol, atol);
      stateful(file, "bn2d_cma", std::make_shared<BatchNorm2d>(4, NormOptions{.momentum = std::nullopt, .dtype = dt}), 3,
               rtol, atol);
      stateful(file, "bn2d_noaffine",
               std::make_shared<BatchNorm2d>(3, NormOptions{.momentum = 0.3, .affine = false, .dtype = dt}), 3, rtol,
               atol);
      stateful(file, "bn3d", std::make_shared<BatchNorm3d>(2, o), 3, rtol, atol);
      stateful(file, "bn2d_notrack",
               std::make_shared<BatchNorm2d>(3, NormOptions{.track_running_stats = false, .dtype = dt}), 1, rtol, atol);
      stateful(file, "in1d",
               std::make_shared<InstanceNorm1d>(4, InstanceNormOptions{.affine = true, .track_running_stats = true, .dtype = dt}),
               3, rtol, atol);
      stateful(file, "in2d", std::make_shared<InstanceNorm2d>(3, InstanceNormOptions{.dtype = dt}), 1, rtol, atol);
      stateful(file, "in3d",
               std::make_shared<InstanceNorm3d>(
                   2, InstanceNormOptions{.momentum = 0.5, .affine = true, .track_running_stats = true, .dtype = dt}),
               3, rtol, atol);
      stateless(file, "in1d_unbatched", std::make_shared<InstanceNorm1d>(4, InstanceNormOptions{.affine = true, .dtype = dt}),
                rtol, atol);
      stateless(file, "ln", std::make_shared<LayerNorm>(8, LayerNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "ln2", std::make_shared<LayerNorm>(Shape{4, 5}, LayerNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "ln_noaffine",
                std::make_shared<LayerNorm>(6, LayerNormOptions{.elementwise_affine = false, .dtype = dt}), rtol, atol);
      stateless(file, "ln_size1", std::make_shared<LayerNorm>(1, LayerNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "gn", std::make_shared<GroupNorm>(3, 6, GroupNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "gn_noaffine", std::make_shared<GroupNorm>(2, 4, GroupNormOptions{.affine = false, .dtype = dt}),
                rtol, atol);
      stateless(file, "gn_nospatial", std::make_shared<GroupNorm>(3, 6, GroupNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "gn_g1", std::make_shared<GroupNorm>(1, 4, GroupNormOptions{.dtype = dt}), rtol, atol);
      stateless(file, "gn_gc", std::make_shared<GroupNorm>(4, 4, GroupNormOptions{.dtype = dt}), rtol, atol);
    }
  }
}

TEST_CASE("parameters, buffers and state-dict keys are PyTorch's") {
  auto keys = [](const nn::Module& m) {
    std::vector<std::string> k;
    for (const auto& [n, t] : m.state_dict()) k.push_back(n);
    return k;
  };
  using V = std::vector<std::string>;
  nn::BatchNorm2d bn(3);
  REQUIRE(keys(bn) == V{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  REQUIRE(bn.num_batches_tracked.dtype() == kInt64);
  REQUIRE(bn.num_batches_tracked.dim() == 0);
  REQUIRE(bn.running_var.to_vector<float>() == std::vector<float>{1, 1, 1});
  REQUIRE(keys(nn::BatchNorm1d(3, {.affine = false})) == V{"running_mean", "running_var", "num_batches_tracked"});
  REQUIRE(keys(nn::BatchNorm1d(3, {.track_running_stats = false})) == V{"weight", "bias"});
  REQUIRE(keys(nn::InstanceNorm2d(3)).empty());
  REQUIRE(keys(nn::InstanceNorm2d(3, {.affine = true, .track_running_stats = true})).size() == 5);
  REQUIRE(keys(nn::LayerNorm(Shape{2, 3})) == V{"weight", "bias"});
  REQUIRE(nn::LayerNorm(Shape{2, 3}).weight.shape() == Shape{2, 3});
  REQUIRE(keys(nn::LayerNorm(4, {.bias = false})) == V{"weight"});
  REQUIRE(keys(nn::GroupNorm(2, 4, {.affine = false})).empty());
}

TEST_CASE("num_batches_tracked counts training batches, also empty ones; eval and InstanceNorm never count") {
  nn::BatchNorm1d bn(2);
  bn(Tensor::randn({4, 2}));
  bn(Tensor::zeros({0, 2}));
  REQUIRE(bn.num_batches_tracked.item() == 2);
  bn.eval();
  bn(Tensor::randn({4, 2}));
  REQUIRE(bn.num_batches_tracked.item() == 2);
  nn::InstanceNorm1d in(2, {.track_running_stats = true});
  in(Tensor::randn({3, 2, 5}));
  REQUIRE(in.num_batches_tracked.item() == 0);
}

TEST_CASE("modules print like PyTorch") {
  REQUIRE(nn::BatchNorm2d(64).repr() == "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  REQUIRE(nn::BatchNorm1d(3, {.eps = 0.001, .momentum = std::nullopt}).repr() ==
          "BatchNorm1d(3, eps=0.001, momentum=None, affine=True, track_running_stats=True)");
  REQUIRE(nn::InstanceNorm2d(64).repr() ==
          "InstanceNorm2d(64, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
  REQUIRE(nn::LayerNorm(128).repr() == "LayerNorm((128,), eps=1e-05, elementwise_affine=True)");
  REQUIRE(nn::LayerNorm(Shape{4, 5}).repr() == "LayerNorm((4, 5), eps=1e-05, elementwise_affine=True)");
  REQUIRE(nn::GroupNorm(4, 64).repr() == "GroupNorm(4, 64, eps=1e-05, affine=True)");
  REQUIRE(nn::python_float(1.0) == "1.0");
  REQUIRE(nn::python_float(1e-5) == "1e-05");
}

TEST_CASE("normalization modules reject bad input with PyTorch's messages") {
  nn::BatchNorm1d bn1(3);
  REQUIRE_ERROR(bn1(Tensor::zeros({2, 3, 4, 5})), "BatchNorm1d: expected 2D or 3D input (got 4D input)");
  REQUIRE_ERROR(nn::BatchNorm2d(3)(Tensor::zeros({2, 3, 4})), "BatchNorm2d: expected 4D input (got 3D input)");
  REQUIRE_ERROR(nn::BatchNorm3d(3)(Tensor::zeros({2, 3, 4, 4})), "BatchNorm3d: expected 5D input (got 4D input)");
  REQUIRE_ERROR(bn1(Tensor::zeros({4, 5})), "batch_norm: running_mean should contain 5 elements not 3");
  REQUIRE_ERROR(bn1(Tensor::zeros({1, 3})),
                "batch_norm: Expected more than 1 value per channel when training, got input size torch.Size([1, 3])");
  nn::BatchNorm1d untracked(3, {.track_running_stats = false});
  untracked.eval();  // still batch statistics, so still the check
  REQUIRE_ERROR(untracked(Tensor::zeros({1, 3})),
                "batch_norm: Expected more than 1 value per channel when training, got input size torch.Size([1, 3])");
  REQUIRE_ERROR(nn::InstanceNorm2d(3)(Tensor::zeros({3, 4})), "InstanceNorm2d: expected 3D or 4D input (got 2D input)");
  REQUIRE_ERROR(nn::InstanceNorm1d(3, {.affine = true})(Tensor::zeros({2, 4, 5})),
                "InstanceNorm1d: expected input's size at dim=1 to match num_features (3), but got: 4.");
  REQUIRE_ERROR(nn::GroupNorm(4, 6), "GroupNorm: num_channels must be divisible by num_groups");
  REQUIRE_ERROR(nn::LayerNorm(Shape{3, 4})(Tensor::zeros({2, 4, 3})),
                "layer_norm: Given normalized_shape=[3, 4], expected input with shape [*, 3, 4], but got input of size[2, 4, 3]");
}
