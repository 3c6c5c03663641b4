// Times the loss and activation ops, forward + backward, on typical training shapes.
// Prints one "name  ms" line per case (the median of several runs); bench/run_loss.sh puts these
// next to PyTorch's numbers from bench_loss.py.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

using namespace tapegrad;

namespace {

double median_ms(const std::function<void()>& f, int reps) {
  f();
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void report(const char* name, double ms) { std::printf("%-28s %9.3f\n", name, ms); }

// Forward + backward of a scalar loss with respect to x.
void fwd_bwd(const char* name, const Tensor& x0, const std::function<Tensor(const Tensor&)>& f, int reps = 20) {
  Tensor x = x0.detach().requires_grad_();
  report(name, median_ms([&] { autograd::grad({f(x)}, {x}); }, reps));
}

void fwd(const char* name, const Tensor& x, const std::function<Tensor(const Tensor&)>& f, int reps = 20) {
  autograd::NoGradGuard ng;
  report(name, median_ms([&] { f(x); }, reps));
}

}  // namespace

int main() {
  Generator gen(0);
  const Tensor logits = Tensor::randn({256, 1000}, {}, &gen);
  const Tensor labels = Tensor::randint(0, 1000, {256}, &gen);
  const Tensor seg = Tensor::randn({8, 21, 128, 128}, {}, &gen);
  const Tensor seg_labels = Tensor::randint(0, 21, {8, 128, 128}, &gen);
  const Tensor probs = Tensor::rand({256, 1000}, {}, &gen);
  const Tensor big = Tensor::randn({1 << 20}, {}, &gen);
  const Tensor big_t = Tensor::rand({1 << 20}, {}, &gen);
  const Tensor table = Tensor::randn({50000, 256}, {}, &gen);
  const Tensor tokens = Tensor::randint(0, 50000, {64, 128}, &gen);

  fwd("ce_fwd 256x1000", logits, [&](const Tensor& x) { return cross_entropy(x, labels); });
  fwd_bwd("ce 256x1000", logits, [&](const Tensor& x) { return cross_entropy(x, labels); });
  fwd_bwd("ce_ls 256x1000", logits,
          [&](const Tensor& x) { return cross_entropy(x, labels, {}, -100, Reduction::Mean, 0.1); });
  fwd_bwd("ce_prob 256x1000", logits, [&](const Tensor& x) { return cross_entropy(x, probs); });
  fwd_bwd(
      "ce_seg 8x21x128x128", seg, [&](const Tensor& x) { return cross_entropy(x, seg_labels); }, 10);
  fwd_bwd("bce_logits 1M", big, [&](const Tensor& x) { return binary_cross_entropy_with_logits(x, big_t); });
  fwd_bwd("mse 1M", big, [&](const Tensor& x) { return mse_loss(x, big_t); });
  fwd_bwd("gelu 1M", big, [&](const Tensor& x) { return sum(gelu(x)); });
  fwd_bwd("silu 1M", big, [&](const Tensor& x) { return sum(silu(x)); });
  fwd_bwd("dropout 1M", big, [&](const Tensor& x) { return sum(dropout(x, 0.1, true, &gen)); });
  fwd_bwd(
      "embedding 64x128 of 50000x256", table, [&](const Tensor& w) { return sum(embedding(w, tokens)); }, 10);
  return 0;
}
