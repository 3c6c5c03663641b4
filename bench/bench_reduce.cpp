// Reductions and softmax on a (4096, 1024) float32 tensor: best time of repeated runs, wall clock, or
// process CPU time with BENCH_CPU_TIME=1 (steadier for one thread on a busy machine).
// Prints "name<TAB>ms" lines; bench/run_reduce.sh puts them next to PyTorch's (bench_reduce.py).
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <vector>

using namespace tapegrad;

namespace {

double now_ms() {
  static const bool cpu = std::getenv("BENCH_CPU_TIME") && std::getenv("BENCH_CPU_TIME")[0] == '1';
  if (cpu) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double best_ms(const std::function<void()>& f, int reps = 30) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_ms();
    f();
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  return t.front();  // the best run: the machine may be shared
}

}  // namespace

int main() {
  Generator gen(0);
  const Tensor x = Tensor::randn({4096, 1024}, {}, &gen);
  const Tensor g = Tensor::randn({4096, 1024}, {}, &gen);
  const std::vector<std::pair<const char*, std::function<void()>>> cases = {
      {"sum(dim=1)", [&] { sum(x, {1}); }},
      {"sum(dim=0)", [&] { sum(x, {0}); }},
      {"sum()", [&] { sum(x); }},
      {"sum(dim=0) of x.t()", [&] { sum(x.t(), {0}); }},
      {"mean(dim=1)", [&] { mean(x, {1}); }},
      {"var(dim=1)", [&] { var(x, {1}); }},
      {"var(dim=0)", [&] { var(x, {0}); }},
      {"amax(dim=1)", [&] { amax(x, {1}); }},
      {"amax(dim=0)", [&] { amax(x, {0}); }},
      {"argmax(dim=1)", [&] { argmax(x, 1); }},
      {"max(dim=0)", [&] { max(x, 0); }},
      {"logsumexp(dim=1)", [&] { logsumexp(x, {1}); }},
      {"softmax(dim=1)", [&] { softmax(x, 1); }},
      {"softmax(dim=0)", [&] { softmax(x, 0); }},
      {"log_softmax(dim=1)", [&] { log_softmax(x, 1); }},
      {"softmax fwd+bwd(dim=1)",
       [&] {
         Tensor xr = x.detach().requires_grad_();
         softmax(xr, 1).backward(g);
       }},
      {"log_softmax fwd+bwd(dim=1)",
       [&] {
         Tensor xr = x.detach().requires_grad_();
         log_softmax(xr, 1).backward(g);
       }},
  };
  for (const auto& [name, f] : cases) std::printf("%s\t%.3f\n", name, best_ms(f));
}
