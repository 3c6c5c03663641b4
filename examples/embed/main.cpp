// Trains a small MLP on two interleaved half-moons and prints its accuracy: all a program needs from
// tapegrad is the one include and the tapegrad::tapegrad target (see CMakeLists.txt).
#include <tapegrad/tapegrad.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

using namespace tapegrad;

// n points per class: class 0 on the upper unit half circle, class 1 on the lower one shifted to
// (1, 0.5), each coordinate with Gaussian noise of sd 0.1. x (2n, 2) float32, y (2n) int64.
std::pair<Tensor, Tensor> make_moons(int64_t n, Generator& gen) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t label = 0; label < 2; ++label) {
    for (int64_t i = 0; i < n; ++i) {
      const double t = std::numbers::pi * gen.uniform();
      const double px = label == 0 ? std::cos(t) : 1 - std::cos(t);
      const double py = label == 0 ? std::sin(t) : 0.5 - std::sin(t);
      x.push_back(static_cast<float>(px + 0.1 * gen.normal()));
      x.push_back(static_cast<float>(py + 0.1 * gen.normal()));
      y.push_back(label);
    }
  }
  return {Tensor::from_vector(x, {2 * n, 2}), Tensor::from_vector(y, {2 * n})};
}

int main() {
  manual_seed(0);  // the layers' initialization draws from this thread's default generator
  Generator data_gen(1);
  auto [x, y] = make_moons(256, data_gen);

  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 32), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(32, 32), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(32, 2));

  // Full-batch SGD with momentum on the cross-entropy, written with log_softmax and gather.
  optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
  Tensor loss;
  for (int step = 0; step < 300; ++step) {
    loss = -gather(log_softmax((*model)(x), 1), 1, y.unsqueeze(1)).mean();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }

  autograd::NoGradGuard no_grad;
  const double accuracy = (argmax((*model)(x), 1) == y).to(kFloat32).mean().item();
  std::printf("tapegrad %s\n", std::string(version()).c_str());
  std::printf("final loss %.4f, accuracy %.1f%%\n", loss.item(), 100 * accuracy);
  return accuracy >= 0.95 ? 0 : 1;
}
