// The documents' models end to end: a training step and inference, next to PyTorch (bench_models.py).
//
//   bench_models [--threads N] [--iters N] [--model cnn-bn|cnn-in|cnn-gn|rnn-ln] [--profile] [--floor]
//                [--conv auto|gemm|direct]
//
// Models (examples/common/models.h), batch 64: the CNN with BatchNorm2d, InstanceNorm2d and
// GroupNorm(32, 64) on (64, 3, 32, 32), and RNNWithLayerNorm on (32, 64, 100).
// Training step: zero_grad, forward, cross-entropy, backward, SGD(lr 0.01, momentum 0.9) step.
// Inference: eval mode under no-grad. Each figure is the median of --iters runs (default 20) after 5
// warm-up runs. Prints one line per figure: `<model> <metric> <value>`, metrics train_step_ms,
// infer_ms, peak_rss_mb.
//
// peak_rss_mb is how far the resident set grows above where it stood before the first training step
// (model, optimizer and batch already built): the peak of the kernel's high-water mark (VmHWM, reset
// through /proc/self/clear_refs just before) minus VmRSS. So the fixed cost of the runtime (PyTorch's
// Python and libraries, tapegrad's library) is not counted on either side. Without --model every
// model runs in a fresh process of its own (this program re-executes itself), so that one model's
// freed memory never lowers the next one's figure.
//
// --profile: a table of one training step by op (forward and backward time of every tape node,
// averaged over --iters steps), with the optimizer and the untracked rest (engine, gradient
// accumulation) as rows of their own. --floor: for the CNNs, the physical floor of the training step,
// its GEMM work at the measured sgemm rate plus its memory traffic at the measured triad bandwidth.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/optim/sgd.h>

#include "../examples/common/models.h"

#include <cblas.h>
#include <omp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

extern char** environ;

using namespace tapegrad;

namespace {

struct Args {
  int threads = 2;
  int iters = 20;
  std::string model;  // empty: all, each in a process of its own
  bool profile = false;
  bool floor = false;
  std::string conv = "auto";  // set_conv2d_algorithm
};

const char* const kModels[] = {"cnn-bn", "cnn-in", "cnn-gn", "rnn-ln"};
constexpr int kWarmup = 5;
constexpr int64_t kBatch = 64;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A field of /proc/self/status in kB ("VmRSS", "VmHWM"); -1 if absent.
long status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false where that is not possible.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f.flush());
}

struct Workload {
  std::shared_ptr<nn::Module> model;
  Tensor x, y;
  bool cnn = false;
};

Workload make(const std::string& name) {
  Generator gen(0);
  manual_seed(0);
  Workload w;
  if (name == "rnn-ln") {
    w.model = std::make_shared<examples::RNNWithLayerNorm>();
    w.x = Tensor::randn({32, kBatch, 100}, {}, &gen);
  } else {
    w.model = std::make_shared<examples::CNN>(name.substr(4));
    w.x = Tensor::randn({kBatch, 3, 32, 32}, {}, &gen);
    w.cnn = true;
  }
  w.y = Tensor::randint(0, 10, {kBatch}, &gen);
  return w;
}

// ---- the per-op profile ----

struct OpTime {
  int64_t calls = 0;
  double fwd_ms = 0, bwd_ms = 0;
};

void profile(Workload& w, optim::SGD& opt, int iters) {
  std::map<std::string, OpTime> ops;
  double step_ms = 0, opt_ms = 0, zero_ms = 0;
  autograd::set_profiling_enabled(true);
  for (int i = 0; i < iters; ++i) {
    const double t0 = now_ms();
    opt.zero_grad();
    const double t1 = now_ms();
    autograd::profile_mark();
    Tensor loss = cross_entropy(w.model->forward(w.x), w.y);
    loss.backward();
    const double t2 = now_ms();
    opt.step();
    const double t3 = now_ms();
    step_ms += t3 - t0;
    opt_ms += t3 - t2;
    zero_ms += t1 - t0;
    for (const auto& node : autograd::tape({loss})) {
      OpTime& o = ops[node->name];
      o.calls += 1;
      o.fwd_ms += node->forward_ms;
      o.bwd_ms += node->backward_ms;
    }
  }
  autograd::set_profiling_enabled(false);
  struct Row {
    std::string name;
    double calls, fwd, bwd;
  };
  std::vector<Row> rows;
  double tracked = 0;
  for (const auto& [name, o] : ops) {
    rows.push_back({name, static_cast<double>(o.calls) / iters, o.fwd_ms / iters, o.bwd_ms / iters});
    tracked += (o.fwd_ms + o.bwd_ms) / iters;
  }
  rows.push_back({"sgd.step", 1, opt_ms / iters, 0});
  rows.push_back({"zero_grad", 1, zero_ms / iters, 0});
  tracked += (opt_ms + zero_ms) / iters;
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.fwd + a.bwd > b.fwd + b.bwd; });
  const double step = step_ms / iters;
  rows.push_back({"(engine, grad accumulation)", 0, step - tracked, 0});
  std::printf("# profile of one training step (mean of %d), %d threads: %.2f ms\n", iters, omp_get_max_threads(), step);
  std::printf("# %-28s %6s %9s %9s %9s %6s\n", "op", "calls", "fwd ms", "bwd ms", "ms", "share");
  for (const Row& r : rows)
    std::printf("# %-28s %6.0f %9.3f %9.3f %9.3f %5.1f%%\n", r.name.c_str(), r.calls, r.fwd, r.bwd, r.fwd + r.bwd,
                100 * (r.fwd + r.bwd) / step);
}

// ---- the physical floor of the CNN training step ----

// sgemm GFLOP/s on a large square product, best of a few runs.
double sgemm_gflops() {
  const int n = 1024;
  std::vector<float> a(static_cast<size_t>(n) * n, 1.0f), b(a), c(a);
  double best = 1e30;
  for (int i = 0; i < 8; ++i) {
    const double t0 = now_ms();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, now_ms() - t0);
  }
  return 2.0 * n * n * n / (best * 1e6);
}

// a = b + s c over three arrays of the size of the CNN's activation (larger than the L3 together), GB/s.
double triad_gbps(int64_t n) {
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  float* pa = a.data();
  const float* pb = b.data();
  const float* pc = c.data();
  double best = 1e30;
  for (int i = 0; i < 10; ++i) {
    const double t0 = now_ms();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) pa[j] = pb[j] + 0.5f * pc[j];
    best = std::min(best, now_ms() - t0);
  }
  return 3.0 * static_cast<double>(n) * sizeof(float) / (best * 1e6);
}

// The CNN step's unavoidable work, with A = N·64·32·32 (the conv/norm activation), P = A/4 (pooled):
//   GEMM: conv forward 2·N·64·1024·27 and its weight gradient (same), fc forward and its weight and
//         input gradients 3 · 2·N·16384·10 (the image needs no gradient).
//   memory, in activation-sized float32 tensors: conv writes y (1); the norm reads y for its statistics
//         and again to write z (3); relu+pool reads z and writes the pooled output and the argmax (1 +
//         P/A·3); backward: pool+relu writes dz (1, reading P-sized dy and argmax), the norm reads y and dz
//         for its sums and again to write dy_conv (5), the conv weight gradient reads dy_conv (1).
//   = 12 A + 4 P floats (the RNN is not covered).
void print_floor(const std::string& name, double measured_ms) {
  const double gflops = sgemm_gflops();
  const int64_t A = kBatch * 64 * 32 * 32;
  const double triad = triad_gbps(A);
  const double flops = 2.0 * 2.0 * kBatch * 64 * 1024 * 27 + 3 * 2.0 * kBatch * 16384 * 10;
  const double bytes = (12.0 * A + 4.0 * A / 4) * sizeof(float);
  const double gemm_ms = flops / (gflops * 1e6), mem_ms = bytes / (triad * 1e6);
  std::printf(
      "# floor %s: %.0f MFLOP at %.1f GFLOP/s (sgemm 1024^3) = %.2f ms + %.0f MB at %.1f GB/s (triad) = %.2f ms"
      " -> floor %.2f ms, measured %.2f ms (%.2fx the floor)\n",
      name.c_str(), flops / 1e6, gflops, gemm_ms, bytes / 1e6, triad, mem_ms, gemm_ms + mem_ms, measured_ms,
      measured_ms / (gemm_ms + mem_ms));
}

// ---- one model ----

void run_model(const std::string& name, const Args& args) {
  Workload w = make(name);
  nn::CrossEntropyLoss lossf;
  optim::SGD opt(w.model->parameters(), {.lr = 0.01, .momentum = 0.9});
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = lossf(w.model->forward(w.x), w.y);
    loss.backward();
    opt.step();
  };
  w.model->train();
  const long rss0 = status_kb("VmRSS");
  if (!reset_peak_rss()) std::fprintf(stderr, "bench_models: cannot reset VmHWM; peak_rss_mb includes the setup\n");
  std::vector<double> ms;
  for (int i = 0; i < kWarmup + args.iters; ++i) {
    const double t0 = now_ms();
    step();
    if (i >= kWarmup) ms.push_back(now_ms() - t0);
  }
  const double peak_mb = static_cast<double>(status_kb("VmHWM") - rss0) / 1024.0;
  const double train_ms = median(ms);

  w.model->eval();
  std::vector<double> ims;
  {
    autograd::NoGradGuard ng;
    for (int i = 0; i < kWarmup + args.iters; ++i) {
      const double t0 = now_ms();
      (void)w.model->forward(w.x);
      if (i >= kWarmup) ims.push_back(now_ms() - t0);
    }
  }
  w.model->train();
  std::printf("%s train_step_ms %.2f\n%s infer_ms %.2f\n%s peak_rss_mb %.1f\n", name.c_str(), train_ms, name.c_str(),
              median(ims), name.c_str(), peak_mb);
  std::fflush(stdout);
  if (args.profile) profile(w, opt, args.iters);
  if ((args.floor || args.profile) && w.cnn) print_floor(name, train_ms);
  std::fflush(stdout);
}

// Runs this program again for one model, in a fresh process.
int run_child(char** argv, const std::string& model) {
  std::vector<std::string> s;
  for (char** a = argv; *a; ++a) s.emplace_back(*a);
  s.emplace_back("--model");
  s.push_back(model);
  std::vector<char*> cargv;
  for (std::string& x : s) cargv.push_back(x.data());
  cargv.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargv.data(), environ) != 0) {
    std::perror("bench_models: posix_spawn");
    return 1;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_models: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      args.threads = std::atoi(value().c_str());
    else if (a == "--iters")
      args.iters = std::max(1, std::atoi(value().c_str()));
    else if (a == "--model")
      args.model = value();
    else if (a == "--profile")
      args.profile = true;
    else if (a == "--floor")
      args.floor = true;
    else if (a == "--conv")
      args.conv = value();
    else {
      std::fprintf(stderr,
                   "usage: bench_models [--threads N] [--iters N] [--model cnn-bn|cnn-in|cnn-gn|rnn-ln] [--profile] "
                   "[--floor] [--conv auto|gemm|direct]\n");
      return 2;
    }
  }
  if (args.model.empty()) {
    int rc = 0;
    for (const char* m : kModels) rc |= run_child(argv, m);
    return rc;
  }
  if (std::find(std::begin(kModels), std::end(kModels), args.model) == std::end(kModels)) {
    std::fprintf(stderr, "bench_models: unknown model '%s'\n", args.model.c_str());
    return 2;
  }
  if (args.conv == "gemm")
    set_conv2d_algorithm(Conv2dAlgorithm::Gemm);
  else if (args.conv == "direct")
    set_conv2d_algorithm(Conv2dAlgorithm::Direct);
  else if (args.conv != "auto") {
    std::fprintf(stderr, "bench_models: --conv must be auto, gemm or direct, got '%s'\n", args.conv.c_str());
    return 2;
  }
  omp_set_num_threads(args.threads);
  openblas_set_num_threads(args.threads);
  run_model(args.model, args);
  return 0;
}
