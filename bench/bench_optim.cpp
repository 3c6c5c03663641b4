// Time of one optimizer step over a model-sized parameter list (float32), in milliseconds.
// Compare with bench_optim.py (PyTorch); bench/run_optim.sh prints both side by side.
//   usage: bench_optim [total_params_millions=10] [tensors=10] [iterations=30]
#include <tapegrad/core/random.h>
#include <tapegrad/optim/optim.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

double median_ms(const std::function<void()>& f, int iterations) {
  f();  // the first step creates the state
  std::vector<double> t;
  for (int i = 0; i < iterations; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const double millions = argc > 1 ? std::atof(argv[1]) : 10.0;
  const int tensors = argc > 2 ? std::atoi(argv[2]) : 10;
  const int iterations = argc > 3 ? std::atoi(argv[3]) : 30;
  const int64_t per = static_cast<int64_t>(millions * 1e6 / tensors);

  Generator gen(0);
  auto make_params = [&] {
    std::vector<Tensor> ps;
    for (int i = 0; i < tensors; ++i) {
      Tensor p = Tensor::randn({per}, {}, &gen).requires_grad_();
      p.set_grad(Tensor::randn({per}, {}, &gen));
      ps.push_back(p);
    }
    return ps;
  };

  struct Case {
    std::string name;
    std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)> make;
  };
  const std::vector<Case> cases = {
      {"sgd", [](auto ps) { return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.01}); }},
      {"sgd_momentum",
       [](auto ps) {
         return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.01, .momentum = 0.9, .nesterov = true});
       }},
      {"adam", [](auto ps) { return std::make_unique<optim::Adam>(ps, optim::AdamOptions{.lr = 1e-3}); }},
      {"adamw_amsgrad",
       [](auto ps) { return std::make_unique<optim::AdamW>(ps, optim::AdamWOptions{.lr = 1e-3, .amsgrad = true}); }},
      {"rmsprop_centered",
       [](auto ps) {
         return std::make_unique<optim::RMSprop>(ps, optim::RMSpropOptions{.momentum = 0.9, .centered = true});
       }},
      {"adagrad", [](auto ps) { return std::make_unique<optim::Adagrad>(ps, optim::AdagradOptions{}); }},
  };
  std::printf("# tapegrad optimizer step, %.1fM float32 parameters in %d tensors, median of %d\n", millions, tensors,
              iterations);
  for (const Case& c : cases) {
    auto opt = c.make(make_params());
    std::printf("%-18s %8.2f ms\n", c.name.c_str(), median_ms([&] { opt->step(); }, iterations));
  }
  std::vector<Tensor> ps = make_params();
  std::printf("%-18s %8.2f ms\n", "clip_grad_norm_",
              median_ms([&] { optim::clip_grad_norm_(ps, 1e9); }, iterations));
  return 0;
}
