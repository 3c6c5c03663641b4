// Core throughput against the machine's own ceilings, measured in one run:
//   (a) elementwise add (a + b into a new tensor) over 16M float32, in GB/s, next to a plain OpenMP
//       triad loop a[i] = b[i] + s * c[i] over preallocated arrays (the memory-bandwidth ceiling);
//   (b) float32 matmul 1024 x 1024, in GFLOP/s, next to a direct cblas_sgemm call into a
//       preallocated output (the BLAS ceiling).
// Each figure is the median of repeated runs after warm-up, the two sides of a comparison
// alternating run by run. Both sides move the same bytes / do the same flops: add and triad read
// two arrays and write one (3 x 4 bytes per element).
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <vector>

using namespace tapegrad;

namespace {

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median wall times in seconds of f and g over `reps` runs each after `warmup` runs each. The runs
// alternate (f, g, f, g, ...) so that both see the same machine load.
std::pair<double, double> median_pair(const std::function<void()>& f, const std::function<void()>& g, int warmup,
                                      int reps) {
  for (int i = 0; i < warmup; ++i) {
    f();
    g();
  }
  std::vector<double> tf, tg;
  for (int i = 0; i < reps; ++i) {
    tf.push_back(seconds_of(f));
    tg.push_back(seconds_of(g));
  }
  return {median(tf), median(tg)};
}

long minor_faults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  std::printf("threads: %d (OpenMP), reps: %d (median after warm-up)\n\n", omp_get_max_threads(), reps);

  // ---- (a) elementwise add vs triad ----
  const int64_t n = int64_t{1} << 24;  // 16M
  const double bytes = 3.0 * 4.0 * static_cast<double>(n);
  Generator gen(0);
  const Tensor a = Tensor::randn({n}, {}, &gen), b = Tensor::randn({n}, {}, &gen);
  Tensor c;
  auto add = [&] {
    c = a + b;
    c = Tensor();  // the output dies each time, as a temporary in a training step would
  };
  // The triad runs twice, each time alternating with add: over buffers from the library's allocator
  // (huge-page backed, the same memory as the tensors, so the ratio isolates what add costs beyond
  // its loop) and over plain std::vector memory. The lower of the two ratios is the one reported.
  const Tensor ta = Tensor::zeros({n}), tb = Tensor::ones({n}), tc = Tensor::full({n}, 2.0);
  std::vector<float> va(static_cast<size_t>(n)), vb(static_cast<size_t>(n), 1.0f), vc(static_cast<size_t>(n), 2.0f);
  auto triad_over = [n](float* pa, const float* pb, const float* pc) {
    return [=] {
      const float s = 0.5f;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    };
  };
  const auto triad = triad_over(ta.data_ptr<float>(), tb.data_ptr<float>(), tc.data_ptr<float>());
  const auto triad_vec = triad_over(va.data(), vb.data(), vc.data());
  const auto [t_add, t_triad] = median_pair(add, triad, 3, reps);
  const auto [t_add2, t_triad_vec] = median_pair(add, triad_vec, 1, reps);
  const long faults0 = minor_faults();
  add();
  const long add_faults = minor_faults() - faults0;
  const double gbs_add = bytes / t_add / 1e9, gbs_triad = bytes / t_triad / 1e9;
  const double gbs_add2 = bytes / t_add2 / 1e9, gbs_triad_vec = bytes / t_triad_vec / 1e9;
  const double r1 = gbs_add / gbs_triad, r2 = gbs_add2 / gbs_triad_vec;
  std::printf("%-34s %10.2f ms %10.2f GB/s\n", "add 16M float32 (new output)", t_add * 1e3, gbs_add);
  std::printf("%-34s %10.2f ms %10.2f GB/s   (add: %.1f %%)\n", "OpenMP triad 16M float32", t_triad * 1e3, gbs_triad,
              100.0 * r1);
  std::printf("%-34s %10.2f ms %10.2f GB/s   (add alongside: %.2f ms, %.1f %%)\n", "  same over std::vector memory",
              t_triad_vec * 1e3, gbs_triad_vec, t_add2 * 1e3, 100.0 * r2);
  std::printf("%-34s %10.1f %%   (page faults per add: %ld)\n\n", "add / triad", 100.0 * std::min(r1, r2), add_faults);

  // ---- (b) matmul vs cblas_sgemm ----
  const int64_t m = 1024;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(m) * static_cast<double>(m);
  const Tensor x = Tensor::randn({m, m}, {}, &gen), y = Tensor::randn({m, m}, {}, &gen);
  Tensor z;
  auto mm = [&] {
    z = matmul(x, y);
    z = Tensor();
  };
  std::vector<float> out(static_cast<size_t>(m * m));
  const float* px = x.data_ptr<float>();
  const float* py = y.data_ptr<float>();
  const int mi = static_cast<int>(m);
  auto sgemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, mi, mi, 1.0f, px, mi, py, mi, 0.0f, out.data(), mi);
  };
  const auto [t_mm, t_blas] = median_pair(mm, sgemm, 3, reps);
  const double gf_mm = flops / t_mm / 1e9, gf_blas = flops / t_blas / 1e9;
  std::printf("%-34s %10.2f ms %10.2f GFLOP/s\n", "matmul 1024x1024 float32", t_mm * 1e3, gf_mm);
  std::printf("%-34s %10.2f ms %10.2f GFLOP/s\n", "cblas_sgemm 1024x1024", t_blas * 1e3, gf_blas);
  std::printf("%-34s %10.1f %%\n", "matmul / sgemm", 100.0 * gf_mm / gf_blas);
  return 0;
}
