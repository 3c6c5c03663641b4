// Determinism (docs/determinism.md): the same seed and the same number of threads give bit-identical
// results, run after run; the data pipeline's results do not depend on its worker count. What may
// change with the thread count is measured, not assumed, in the last test.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/dataset.h>
#include <tapegrad/data/transforms.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/optim/optim.h>
#include <omp.h>

#include <cstring>
#include <memory>

#include "support/fixtures.h"

using namespace tapegrad;

namespace {

struct Result {
  NamedTensors weights;
  std::vector<double> losses;
};

// A small CNN (conv, BatchNorm, pooling, dropout, linear) trained for two epochs with Adam on data that
// goes through random crops and flips on two loader threads. Every kernel family of a real run is in it.
Result train(uint64_t seed, int threads, int64_t workers = 2) {
  const int old_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  manual_seed(seed);
  auto model = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(3, 8, nn::Conv2dOptions{.kernel_size = 3, .padding = 1}),
      std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Dropout>(0.1), std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(8 * 6 * 6, 4));
  optim::Adam opt(model->parameters(), {.lr = 0.01});
  nn::CrossEntropyLoss criterion;
  Generator g(seed + 100);
  Tensor x = Tensor::randn({48, 3, 14, 14}, {}, &g);
  Tensor y = Tensor::randint(0, 4, {48}, &g);
  data::Transform augment = data::Compose({data::RandomCrop(12), data::RandomHorizontalFlip()});
  data::DataLoader loader(std::make_shared<data::TensorDataset>(x, y, augment),
                          {.batch_size = 16, .shuffle = true, .seed = seed, .num_workers = workers});
  Result r;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    for (auto& b : loader.epoch(epoch)) {
      opt.zero_grad();
      Tensor loss = criterion(model->forward(b.data), b.labels);
      r.losses.push_back(loss.item());
      loss.backward();
      opt.step();
    }
  }
  for (auto& [k, v] : model->state_dict()) r.weights.emplace_back(k, v.clone());
  omp_set_num_threads(old_threads);
  return r;
}

bool identical(const Result& a, const Result& b) {
  if (a.losses != b.losses || a.weights.size() != b.weights.size()) return false;
  for (size_t i = 0; i < a.weights.size(); ++i) {
    const Tensor& x = a.weights[i].second;
    const Tensor& y = b.weights[i].second;
    if (x.shape() != y.shape() ||
        std::memcmp(x.data(), y.data(), static_cast<size_t>(x.numel()) * element_size(x.dtype())) != 0)
      return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the same seed and thread count give bit-identical training, run after run") {
  const int threads = GENERATE(1, 2, 3);
  INFO(threads << " threads");
  const Result a = train(5, threads), b = train(5, threads), c = train(5, threads);
  REQUIRE(identical(a, b));
  REQUIRE(identical(a, c));
  // And the runs are not trivially equal: another seed changes them.
  REQUIRE_FALSE(identical(a, train(6, threads)));
}

TEST_CASE("the data loader's worker count does not change the results") {
  REQUIRE(identical(train(5, 2, /*workers=*/0), train(5, 2, /*workers=*/3)));
}

TEST_CASE("what the thread count changes: the order of floating-point reductions, not the training") {
  // 1 and 2 threads sum in different orders, so the runs differ in the last bits and the differences
  // grow a little over training: the losses and weights agree closely, not bit for bit. The exception
  // is the convolution's bias: BatchNorm right after it cancels its gradient, which is rounding noise
  // only, and Adam scales any gradient, noise included, to steps of about lr, so that bias wanders
  // differently with every summation order (docs/determinism.md); BatchNorm's running mean, which
  // includes that bias, follows it.
  const Result one = train(5, 1), two = train(5, 2);
  REQUIRE_FALSE(identical(one, two));
  REQUIRE(one.losses.size() == two.losses.size());
  for (size_t i = 0; i < one.losses.size(); ++i) REQUIRE(std::abs(one.losses[i] - two.losses[i]) < 1e-4);
  for (size_t i = 0; i < one.weights.size(); ++i) {
    INFO(one.weights[i].first);
    if (one.weights[i].first == "0.bias" || one.weights[i].first == "1.running_mean") continue;
    testing::require_close(one.weights[i].second, two.weights[i].second, 1e-3, 1e-4);
  }
}
