// conv2d and max_pool2d timings for the documents' layer; bench/bench_conv.py times the same in PyTorch.
//
// Prints one line per measurement: name, median wall ms, median process CPU ms, GFLOP/s (from the wall
// time; 0 where flops are not counted).
// conv2d flops per pass = 2 N Cout Ho Wo Cin/groups kH kW; a backward with the input gradient is two passes.
//   bench_conv [threads=2] [iters=30]
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <omp.h>

#include <cstdlib>
#include <functional>

#include "timing.h"

using namespace tapegrad;

namespace {

int g_iters = 30;
constexpr int kWarmup = 30;  // also lets the allocator settle: the first 16 MB outputs page-fault

// Median times of `timed` (bench/timing.h); `setup` runs before each call, outside the clock.
bench::Timing measure(const std::function<void()>& setup, const std::function<void()>& timed) {
  return bench::measure(kWarmup, g_iters, setup, timed);
}
using bench::report;

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  if (argc > 2) g_iters = std::atoi(argv[2]);
  omp_set_num_threads(threads);
  Generator gen(0);

  // The documents' layer: N=64, 3 -> 64 channels, 32x32, 3x3, padding 1.
  const int64_t N = 64, Cin = 3, Cout = 64, H = 32, W = 32, K = 3;
  const double flops = 2.0 * N * Cout * H * W * Cin * K * K;
  Tensor x = Tensor::randn({N, Cin, H, W}, {}, &gen);
  Tensor w = Tensor::randn({Cout, Cin, K, K}, {}, &gen);
  Tensor b = Tensor::randn({Cout}, {}, &gen);
  Tensor gy = Tensor::randn({N, Cout, H, W}, {}, &gen);

  {
    autograd::NoGradGuard ng;
    Tensor y;
    report("conv2d_forward", measure([] {}, [&] { y = conv2d(x, w, b, {1, 1}, {1, 1}); }), flops);
  }
  {
    Tensor wg = w.detach().requires_grad_(), bg = b.detach().requires_grad_();
    Tensor y;
    auto setup = [&] {
      wg.set_grad({});
      bg.set_grad({});
      y = conv2d(x, wg, bg, {1, 1}, {1, 1});
    };
    report("conv2d_backward_weight", measure(setup, [&] { y.backward(gy); }), flops);
  }
  {
    Tensor xg = x.detach().requires_grad_(), wg = w.detach().requires_grad_(), bg = b.detach().requires_grad_();
    Tensor y;
    auto setup = [&] {
      xg.set_grad({});
      wg.set_grad({});
      bg.set_grad({});
      y = conv2d(xg, wg, bg, {1, 1}, {1, 1});
    };
    report("conv2d_backward_input_weight", measure(setup, [&] { y.backward(gy); }), 2 * flops);
  }

  // max_pool2d(2) on (64, 64, 32, 32).
  Tensor p = Tensor::randn({64, 64, 32, 32}, {}, &gen);
  Tensor pg = Tensor::randn({64, 64, 16, 16}, {}, &gen);
  {
    autograd::NoGradGuard ng;
    Tensor y;
    report("max_pool2d_forward", measure([] {}, [&] { y = max_pool2d(p, {2, 2}); }), 0);
    report("max_pool2d_forward_indices", measure([] {}, [&] { y = max_pool2d_with_indices(p, {2, 2}).first; }), 0);
  }
  {
    Tensor xg = p.detach().requires_grad_();
    Tensor y;
    auto setup = [&] {
      xg.set_grad({});
      y = max_pool2d(xg, {2, 2});
    };
    report("max_pool2d_backward", measure(setup, [&] { y.backward(pg); }), 0);
  }
  return 0;
}
