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
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

using namespace tapegrad;

namespace {

int g_iters = 30;
constexpr int kWarmup = 30;  // also lets the allocator settle: the first 16 MB outputs page-fault

struct Timing {
  double wall_ms, cpu_ms;  // medians; cpu = process CPU time, all threads
};

double cpu_now_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

// Median times of `timed`; `setup` runs before each call, outside the clock.
Timing measure(const std::function<void()>& setup, const std::function<void()>& timed) {
  std::vector<double> wall, cpu;
  for (int i = 0; i < kWarmup + g_iters; ++i) {
    setup();
    const double c0 = cpu_now_ms();
    const auto t0 = std::chrono::steady_clock::now();
    timed();
    const auto t1 = std::chrono::steady_clock::now();
    const double c1 = cpu_now_ms();
    if (i >= kWarmup) {
      wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      cpu.push_back(c1 - c0);
    }
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

// name, wall ms, cpu ms, GFLOP/s from the wall time (0 where flops are not counted)
void report(const char* name, Timing t, double flops) {
  std::printf("%s\t%.3f\t%.3f\t%.1f\n", name, t.wall_ms, t.cpu_ms, flops > 0 ? flops / (t.wall_ms * 1e6) : 0.0);
  std::fflush(stdout);
}

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
