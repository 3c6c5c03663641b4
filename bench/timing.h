// The timing harness of the benchmarks that print one line per measurement: name, median wall ms,
// median process CPU ms (all threads), GFLOP/s from the wall time (0 where flops are not counted).
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

namespace bench {

struct Timing {
  double wall_ms, cpu_ms;  // medians; cpu = process CPU time, all threads
};

inline double cpu_now_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

// Median times of `timed` over `iters` calls after `warmup` untimed ones; `setup` runs before each
// call, outside the clock.
inline Timing measure(int warmup, int iters, const std::function<void()>& setup, const std::function<void()>& timed) {
  std::vector<double> wall, cpu;
  for (int i = 0; i < warmup + iters; ++i) {
    setup();
    const double c0 = cpu_now_ms();
    const auto t0 = std::chrono::steady_clock::now();
    timed();
    const auto t1 = std::chrono::steady_clock::now();
    const double c1 = cpu_now_ms();
    if (i >= warmup) {
      wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      cpu.push_back(c1 - c0);
    }
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

// name, wall ms, cpu ms, GFLOP/s from the wall time (0 where flops are not counted)
inline void report(const char* name, Timing t, double flops) {
  std::printf("%s\t%.3f\t%.3f\t%.1f\n", name, t.wall_ms, t.cpu_ms, flops > 0 ? flops / (t.wall_ms * 1e6) : 0.0);
  std::fflush(stdout);
}

}  // namespace bench
