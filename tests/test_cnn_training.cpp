// Training the documents' CNN follows PyTorch step for step: four SGD steps with momentum on fixed
// weights and batches (tests/fixtures/gen_cnn_training.py), then the parameters, BatchNorm buffers
// and eval-mode outputs. Each piece has its own tests; this one checks that they compose the way
// PyTorch's do (conv -> BatchNorm -> ReLU -> MaxPool -> Linear, mean cross-entropy, SGD with
// momentum, running statistics, eval mode). Run single-threaded and multi-threaded: the result may
// differ only by rounding.
#include <support/fixtures.h>
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/optim/sgd.h>

#include <omp.h>

#include <cmath>

using namespace tapegrad;
using tapegrad::testing::Fixture;
using tapegrad::testing::require_close;

namespace {

// scale * sin(0.7 i + phase) over the elements in row-major order (the generator's wave()).
Tensor wave(const Shape& shape, double scale, double phase) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(scale * std::sin(0.7 * static_cast<double>(i) + phase));
  return t;
}

struct CNN : nn::Module {
  nn::ModuleRef<nn::Conv2d> conv1;
  nn::ModuleRef<nn::BatchNorm2d> bn1;
  nn::ModuleRef<nn::ReLU> relu;
  nn::ModuleRef<nn::MaxPool2d> pool;
  nn::ModuleRef<nn::Linear> fc;
  CNN() : Module("CNN") {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 64, nn::Conv2dOptions{.kernel_size = 3, .padding = 1}));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(64));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2));
    fc = register_module("fc", std::make_shared<nn::Linear>(64 * 16 * 16, 10));
  }
  Tensor forward(const Tensor& x) override { return fc(pool(relu(bn1(conv1(x)))).view({-1, 64 * 16 * 16})); }
};

void check_training(int threads) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  Fixture fx("cnn_training.safetensors");
  CNN model;
  {
    autograd::NoGradGuard ng;
    model.conv1->weight.copy_(wave({64, 3, 3, 3}, 0.19, 0.1));
    model.conv1->bias.copy_(wave({64}, 0.19, 0.2));
    model.fc->weight.copy_(wave({10, 16384}, 1.0 / 128, 0.3));
    model.fc->bias.copy_(wave({10}, 1.0 / 128, 0.4));
  }
  optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});
  nn::CrossEntropyLoss criterion;
  std::vector<float> losses;
  for (int t = 0; t < 4; ++t) {
    Tensor x = wave({16, 3, 32, 32}, 1.0, 0.5 + t);
    Tensor y = Tensor::empty({16}, {.dtype = DType::Int64});
    for (int j = 0; j < 16; ++j) y.data_ptr<int64_t>()[j] = (7 * (16 * t + j) + t) % 10;
    opt.zero_grad();
    Tensor loss = criterion(model(x), y);
    loss.backward();
    opt.step();
    losses.push_back(static_cast<float>(loss.item()));
  }
  // The losses grow (the fixed batches are far from images); the rounding differences grow with them.
  require_close(Tensor::from_vector(losses, {4}), fx["loss"], 1e-4, 1e-5);
  for (auto& [name, value] : model.state_dict()) {
    INFO(name);
    if (name == "fc.weight") continue;
    if (name == "bn1.num_batches_tracked") {
      CHECK(value.item<int64_t>() == fx[name].item<int64_t>());
      continue;
    }
    require_close(value, fx[name], 1e-3, 1e-5);
  }
  const Tensor w = model.fc->weight.detach();
  require_close(w.to(DType::Float64).sum({1}).to(DType::Float32), fx["fc.weight.row_sum"], 1e-3, 1e-4);
  require_close(w.slice(1, 0, 16384, 251), fx["fc.weight.every251"], 1e-3, 1e-5);
  model.eval();
  autograd::NoGradGuard ng;
  require_close(model(wave({16, 3, 32, 32}, 1.0, 0.5)), fx["eval_logits"], 1e-3, 1e-3);
  omp_set_num_threads(before);
}

}  // namespace

TEST_CASE("CNN training: four SGD steps match PyTorch, one thread", "[cnn_training]") { check_training(1); }
TEST_CASE("CNN training: four SGD steps match PyTorch, two threads", "[cnn_training]") { check_training(2); }
