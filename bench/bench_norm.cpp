// Forward and backward of the normalization ops in GB/s of memory moved, next to a triad loop.
//
// Bytes counted: the tensors an op must touch at least once, each once; parameters and statistics
// (C or D elements) are negligible and not counted.
//   forward:  read x, write y              = 2 · numel · sizeof(float)
//   backward: read x and dy, write dx      = 3 · numel · sizeof(float)   (dweight, dbias included)
//   triad:    a[i] = b[i] + s·c[i]         = 3 · n · sizeof(float), n = the same numel
// Prints CSV: op,pass,ms,gbps with ms the best of the timed runs (the machine is shared: the fastest
// run is the one least disturbed by other processes). bench/run_norm.sh pairs it with PyTorch.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

double best_ms(const std::function<void()>& f, int iters) {
  for (int i = 0; i < 3; ++i) f();  // warm up: caches, allocator, thread pool
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return *std::min_element(ms.begin(), ms.end());
}

void report(const std::string& op, const std::string& pass, double ms, double bytes) {
  std::printf("%s,%s,%.4f,%.2f\n", op.c_str(), pass.c_str(), ms, bytes / (ms * 1e-3) / 1e9);
}

using Fn = std::function<Tensor(const Tensor& x, const Tensor& w, const Tensor& b)>;

void bench_op(const std::string& op, const Shape& shape, const Shape& pshape, const Fn& f, int iters) {
  Generator gen(0);
  Tensor x = Tensor::randn(shape, {}, &gen).requires_grad_();
  Tensor w = Tensor::ones(pshape, {.requires_grad = true}), b = Tensor::zeros(pshape, {.requires_grad = true});
  const double bytes = static_cast<double>(x.numel()) * sizeof(float);
  report(op, "forward", best_ms([&] { (void)f(x, w, b); }, iters), 2 * bytes);
  Tensor y = f(x, w, b);
  const Tensor g = Tensor::randn(shape, {}, &gen);
  report(op, "backward",
         best_ms(
             [&] {
               (void)autograd::grad({y}, {x, w, b}, {g}, /*retain_graph=*/true);
             },
             iters),
         3 * bytes);
}

// The triad is timed between the ops and its best run reported at the end, so that the reference is
// not one sample taken while another process held a core.
double g_triad_ms = 1e30;
int64_t g_triad_n = 0;

void bench_triad(int64_t n, int iters) {
  Tensor a = Tensor::empty({n}), b = Tensor::ones({n}), c = Tensor::ones({n});
  float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  const float* pc = c.data_ptr<float>();
  const float s = 0.5f;
  const double ms = best_ms(
      [&] {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
      },
      iters);
  g_triad_ms = std::min(g_triad_ms, ms);
  g_triad_n = n;
}

}  // namespace

int main(int argc, char** argv) {
  // bench_norm [iters] [op,op,...]: the ops to run (all by default), e.g. "layer_norm1024".
  const int iters = argc > 1 ? std::atoi(argv[1]) : 20;
  std::vector<std::string> only;
  for (std::string list = argc > 2 ? argv[2] : ""; !list.empty();) {
    const size_t comma = list.find(',');
    only.push_back(list.substr(0, comma));
    list = comma == std::string::npos ? "" : list.substr(comma + 1);
  }
  auto run = [&](const std::string& op) { return only.empty() || std::find(only.begin(), only.end(), op) != only.end(); };
  std::fprintf(stderr, "tapegrad: %d threads\n", omp_get_max_threads());
  const Shape img{64, 64, 32, 32};
  bench_triad(numel_of(img), iters);
  Tensor rm = Tensor::zeros({64}), rv = Tensor::ones({64});
  if (run("batch_norm2d"))
    bench_op(
        "batch_norm2d", img, {64},
        [&](const Tensor& x, const Tensor& w, const Tensor& b) { return batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5); },
        iters);
  bench_triad(numel_of(img), iters);
  if (run("instance_norm2d"))
    bench_op(
        "instance_norm2d", img, {64},
        [](const Tensor& x, const Tensor& w, const Tensor& b) { return instance_norm(x, {}, {}, w, b); }, iters);
  bench_triad(numel_of(img), iters);
  if (run("group_norm32"))
    bench_op(
        "group_norm32", img, {64},
        [](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 32, w, b); }, iters);
  bench_triad(numel_of(img), iters);
  if (run("layer_norm1024"))
    bench_op(
        "layer_norm1024", {4096, 1024}, {1024},
        [](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {1024}, w, b); }, iters);
  bench_triad(numel_of(img), iters);
  report("triad", "-", g_triad_ms, 3.0 * static_cast<double>(g_triad_n) * sizeof(float));
  return 0;
}
