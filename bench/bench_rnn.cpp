// The documents' RNN: RNNWithLayerNorm training steps and its 2-layer LSTM(100, 128) alone;
// bench/bench_rnn.py times the same in PyTorch.
//
// Sequence 32, batch 64, input 100 (examples/common/models.h). Prints one line per measurement: name,
// median wall ms, median process CPU ms, GFLOP/s (from the wall time; 0 where flops are not counted).
// LSTM flops per forward = sum over layers of 2 L N 4H (I + H) (the GEMMs); backward counts twice that.
//   bench_rnn [threads=1] [iters=30]
#include <common/models.h>
#include <omp.h>
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/optim/adam.h>
#include <tapegrad/optim/sgd.h>

#include <cstdlib>
#include <functional>

#include "timing.h"

using namespace tapegrad;

namespace {

int g_iters = 30;
constexpr int kWarmup = 10;

// Median times of `timed` (bench/timing.h); `setup` runs before each call, outside the clock.
bench::Timing measure(const std::function<void()>& setup, const std::function<void()>& timed) {
  return bench::measure(kWarmup, g_iters, setup, timed);
}
using bench::report;

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  if (argc > 2) g_iters = std::atoi(argv[2]);
  omp_set_num_threads(threads);
  manual_seed(0);
  Generator gen(0);

  const int64_t L = 32, N = 64, I = 100, H = 128;
  const double lstm_flops = 2.0 * L * N * 4 * H * (I + H) + 2.0 * L * N * 4 * H * (H + H);
  Tensor x = Tensor::randn({L, N, I}, {}, &gen);
  Tensor y = Tensor::randint(0, 10, {N}, &gen);

  for (const char* opt_name : {"adam", "sgd"}) {
    examples::RNNWithLayerNorm model(I, H, 10);
    std::unique_ptr<optim::Optimizer> opt;
    if (std::string(opt_name) == "adam")
      opt = std::make_unique<optim::Adam>(model.parameters(), optim::AdamOptions{.lr = 2e-3});
    else
      opt = std::make_unique<optim::SGD>(model.parameters(), optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
    auto step = [&] {
      opt->zero_grad();
      Tensor loss = cross_entropy(model(x), y);
      loss.backward();
      opt->step();
    };
    report(std::string(opt_name) == "adam" ? "rnn_ln_train_step_adam" : "rnn_ln_train_step_sgd", measure([] {}, step),
           3 * lstm_flops);
    if (std::string(opt_name) == "adam") {
      autograd::NoGradGuard ng;
      model.eval();
      Tensor out;
      report("rnn_ln_infer", measure([] {}, [&] { out = model(x); }), lstm_flops);
    }
  }

  nn::LSTM lstm(I, H, {.num_layers = 2});
  Tensor gy = Tensor::randn({L, N, H}, {}, &gen);
  {
    autograd::NoGradGuard ng;
    Tensor out;
    report("lstm_forward", measure([] {}, [&] { out = lstm(x); }), lstm_flops);
  }
  report("lstm_forward_backward", measure([&] { lstm.zero_grad(); }, [&] { lstm(x).backward(gy); }), 3 * lstm_flops);
  return 0;
}
