// The layer modules: options, initialization, printing and that each forwards to its functional op.
#include "support/fixtures.h"

#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>

#include <cmath>

using namespace tapegrad;

TEST_CASE("modules print like PyTorch's") {
  REQUIRE(nn::Conv2d(3, 64, {.kernel_size = 3, .padding = 1}).repr() ==
          "Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))");
  REQUIRE(nn::Conv2d(8, 16, {.kernel_size = {3, 5}, .stride = 2, .dilation = 2, .groups = 4, .bias = false}).repr() ==
          "Conv2d(8, 16, kernel_size=(3, 5), stride=(2, 2), dilation=(2, 2), groups=4, bias=False)");
  REQUIRE(nn::Conv2d(4, 4, {.kernel_size = 3, .padding = "same"}).repr() ==
          "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=same)");
  REQUIRE(nn::MaxPool2d(2).repr() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  REQUIRE(nn::AvgPool2d({2, 3}, {.stride = 1}).repr() == "AvgPool2d(kernel_size=(2, 3), stride=1, padding=0)");
  REQUIRE(nn::AdaptiveAvgPool2d({5, 7}).repr() == "AdaptiveAvgPool2d(output_size=(5, 7))");
  REQUIRE(nn::Linear(16384, 10).repr() == "Linear(in_features=16384, out_features=10, bias=True)");
  REQUIRE(nn::LeakyReLU().repr() == "LeakyReLU(negative_slope=0.01)");
  REQUIRE(nn::GELU("tanh").repr() == "GELU(approximate='tanh')");
  REQUIRE(nn::Dropout().repr() == "Dropout(p=0.5, inplace=False)");
  REQUIRE(nn::Embedding(10, 3, {.padding_idx = 0}).repr() == "Embedding(10, 3, padding_idx=0)");
  REQUIRE(nn::CrossEntropyLoss().repr() == "CrossEntropyLoss()");
  REQUIRE(nn::Softmax(1).repr() == "Softmax(dim=1)");
}

TEST_CASE("default initialization is PyTorch's: U(-1/sqrt(fan_in), 1/sqrt(fan_in))") {
  manual_seed(1);
  nn::Conv2d conv(3, 64, {.kernel_size = 3, .padding = 1});
  const double bound = 1.0 / std::sqrt(27.0);
  REQUIRE(conv.weight.shape() == Shape{64, 3, 3, 3});
  REQUIRE(amax(abs(conv.weight)).item() <= bound);
  REQUIRE(amax(abs(conv.weight)).item() > 0.95 * bound);
  REQUIRE(amax(abs(conv.bias)).item() <= bound);
  // Uniform: variance bound^2 / 3.
  REQUIRE(var(conv.weight.flatten()).item() == Approx(bound * bound / 3).epsilon(0.1));
  nn::Linear fc(16384, 10);
  REQUIRE(amax(abs(fc.weight)).item() <= 1.0 / 128);
  nn::Embedding emb(10, 4, {.padding_idx = 2});
  REQUIRE(sum(abs(emb.weight.select(0, 2))).item() == 0);
}

TEST_CASE("modules forward to their functional ops") {
  manual_seed(2);
  Tensor x = Tensor::randn({2, 4, 6, 6});
  nn::Conv2d conv(4, 6, {.kernel_size = 3, .stride = 2, .padding = 1, .groups = 2});
  testing::require_close(conv(x), conv2d(x, conv.weight, conv.bias, {2, 2}, Int2{1, 1}, {1, 1}, 2), 0, 0);
  nn::MaxPool2d mp(2);
  testing::require_close(mp(x), max_pool2d(x, {2, 2}), 0, 0);
  REQUIRE(mp.forward_with_indices(x).second.dtype() == kInt64);
  testing::require_close(nn::AvgPool2d(3, {.stride = 1, .padding = 1})(x), avg_pool2d(x, {3, 3}, Int2{1, 1}, {1, 1}), 0, 0);
  REQUIRE(nn::AdaptiveAvgPool2d(1)(x).shape() == Shape{2, 4, 1, 1});
  Tensor logits = Tensor::randn({5, 3});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 1, 0}, {5});
  testing::require_close(nn::CrossEntropyLoss({.label_smoothing = 0.1})(logits, labels),
                         cross_entropy(logits, labels, {}, -100, Reduction::Mean, 0.1), 0, 0);
  nn::Dropout drop(0.5);
  drop.eval();
  REQUIRE(drop(x).same(x));
}

TEST_CASE("layer options are validated with PyTorch's messages") {
  REQUIRE_ERROR(nn::Conv2d(3, 6, {.kernel_size = 3, .groups = 2}), "Conv2d: in_channels must be divisible by groups");
  REQUIRE_ERROR(nn::Conv2d(4, 6, {.kernel_size = 3, .groups = 4}), "Conv2d: out_channels must be divisible by groups");
  REQUIRE_ERROR(nn::Conv2d(4, 4, {.kernel_size = 3, .groups = 0}), "Conv2d: groups must be a positive integer");
  REQUIRE_ERROR(nn::Conv2d(4, 4, {.kernel_size = 3, .padding = "foo"}),
                "Conv2d: Invalid padding string 'foo', should be one of {'valid', 'same'}");
  REQUIRE_ERROR(nn::Conv2d(4, 4, {.kernel_size = 3, .stride = 2, .padding = "same"}),
                "Conv2d: padding='same' is not supported for strided convolutions");
  REQUIRE_ERROR(nn::Dropout(1.5), "Dropout: dropout probability has to be between 0 and 1, but got 1.5");
  nn::Conv2d conv(3, 8, {.kernel_size = 3});
  REQUIRE_ERROR_CONTAINS(conv(Tensor::zeros({2, 4, 5, 5})),
                         "expected input[2, 4, 5, 5] to have 3 channels, but got 4 channels instead");
}

TEST_CASE("the documents' CNN: shapes, parameter names and one training step") {
  manual_seed(0);
  auto net = std::make_shared<nn::Sequential>(
      std::vector<std::pair<std::string, nn::ModulePtr>>{{"conv1", std::make_shared<nn::Conv2d>(3, 64, nn::Conv2dOptions{.kernel_size = 3, .padding = 1})},
                                                         {"bn1", std::make_shared<nn::BatchNorm2d>(64)},
                                                         {"relu", std::make_shared<nn::ReLU>()},
                                                         {"pool", std::make_shared<nn::MaxPool2d>(2)},
                                                         {"flatten", std::make_shared<nn::Flatten>()},
                                                         {"fc", std::make_shared<nn::Linear>(64 * 16 * 16, 10)}});
  Tensor x = Tensor::randn({4, 3, 32, 32});
  Tensor y = (*net)(x);
  REQUIRE(y.shape() == Shape{4, 10});
  nn::CrossEntropyLoss()(y, Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4}, {4})).backward();
  for (const auto& [name, p] : net->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
  }
  REQUIRE(net->state_dict().size() == 9);
}

TEST_CASE("a PyTorch-trained model's weights load and reproduce its outputs") {
  // tests/fixtures/gen_checkpoint.py trains a small CNN in PyTorch and exports it with
  // tools/torch_safetensors.py (state_dict keys unchanged).
  auto net = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(3, 8, nn::Conv2dOptions{.kernel_size = 3, .padding = 1}),
      std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(8 * 4 * 4, 5));
  net->load(std::string(TAPEGRAD_FIXTURES_DIR) + "/trained_cnn.safetensors");
  auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>((*net)[1]);
  REQUIRE(bn->num_batches_tracked.item() == 10);
  net->eval();
  testing::Fixture fx("trained_cnn_outputs.safetensors");
  testing::require_close((*net)(fx["x"]), fx["y_eval"], 1e-5, 1e-6);
}
