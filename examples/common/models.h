// The source documents' two models, shared by the training programs and the benchmarks.
//
//   CNN:              Conv2d(3, 64, 3, padding=1) -> norm -> ReLU -> MaxPool2d(2) -> Linear(64*16*16, classes)
//                     on (N, 3, 32, 32); norm is "bn" BatchNorm2d(64) (CNNWithBatchNorm), "in" InstanceNorm2d(64)
//                     (CNNWithInstanceNorm), "gn" GroupNorm(32, 64) or "sync" SyncBatchNorm(64).
//   RNNWithLayerNorm: LSTM(input_size, hidden_size, num_layers=2) -> LayerNorm(hidden_size) over its output ->
//                     Linear(hidden_size, classes) on the last time step; input (L, N, input_size).
#pragma once

#include <tapegrad/core/ops/pool.h>
#include <tapegrad/dist/sync_batch_norm.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/layers/rnn.h>

#include <memory>
#include <optional>
#include <string>

namespace tapegrad::examples {

struct CNN : nn::Module {
  nn::ModuleRef<nn::Conv2d> conv1;
  nn::ModuleRef<nn::Module> bn1;
  nn::ModuleRef<nn::ReLU> relu;
  nn::ModuleRef<nn::MaxPool2d> pool;
  nn::ModuleRef<nn::Linear> fc;

  explicit CNN(const std::string& norm, int64_t num_classes = 10) : Module("CNN") {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 64, nn::Conv2dOptions{.kernel_size = 3, .padding = 1}));
    nn::ModulePtr n;
    if (norm == "bn") n = std::make_shared<nn::BatchNorm2d>(64);
    else if (norm == "in") n = std::make_shared<nn::InstanceNorm2d>(64);
    else if (norm == "gn") n = std::make_shared<nn::GroupNorm>(32, 64);
    else if (norm == "sync") n = std::make_shared<dist::SyncBatchNorm>(64);
    else fail("CNN: the normalization must be bn, in, gn or sync, got '{}'", norm);
    bn1 = register_module("bn1", n);
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2));
    fc = register_module("fc", std::make_shared<nn::Linear>(64 * 16 * 16, num_classes));
  }
  // pool(relu(.)) runs as one fused op (the same values and gradients, a pass and a saved tensor fewer).
  Tensor forward(const Tensor& x) override {
    const nn::MaxPool2dOptions& p = pool->options;
    Tensor h = relu_max_pool2d(bn1(conv1(x)), pool->kernel_size.value,
                               p.stride ? std::optional<Int2>(p.stride->value) : std::nullopt, p.padding.value,
                               p.dilation.value, p.ceil_mode);
    return fc(h.view({-1, 64 * 16 * 16}));
  }
};

struct RNNWithLayerNorm : nn::Module {
  nn::ModuleRef<nn::LSTM> rnn;
  nn::ModuleRef<nn::LayerNorm> ln;
  nn::ModuleRef<nn::Linear> fc;

  explicit RNNWithLayerNorm(int64_t input_size = 100, int64_t hidden_size = 128, int64_t num_classes = 10)
      : Module("RNNWithLayerNorm") {
    rnn = register_module("rnn", std::make_shared<nn::LSTM>(input_size, hidden_size, nn::RNNOptions{.num_layers = 2}));
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(hidden_size));
    fc = register_module("fc", std::make_shared<nn::Linear>(hidden_size, num_classes));
  }
  // x: (L, N, input_size) -> logits (N, classes) from the last step.
  Tensor forward(const Tensor& x) override {
    Tensor h = ln(rnn(x));
    return fc(h.select(0, h.size(0) - 1));
  }
};

}  // namespace tapegrad::examples
