// The library inside a host program: its version, and independent models trained on the host's threads.
#include "support/fixtures.h"

#include <tapegrad/tapegrad.h>

#include <omp.h>

#include <cstring>
#include <latch>
#include <thread>
#include <vector>

using namespace tapegrad;

TEST_CASE("version() is the project's version") { REQUIRE(version() == TAPEGRAD_EXPECTED_VERSION); }

namespace {

// What one training run produced: the loss of every step and the final parameters.
struct Run {
  std::vector<double> losses;
  std::vector<std::vector<float>> parameters;
};

Tensor nll(const Tensor& logits, const Tensor& labels) {
  return -gather(log_softmax(logits, 1), 1, labels.unsqueeze(1)).mean();
}

// Trains an MLP and an LSTM classifier from `seed` (data and initialization) with Adam, adding fresh
// noise from this thread's default generator to the MLP's inputs at every step, so the runs draw
// from their generators throughout. The MLP's activations (1024 x 256 float32, 1 MB) go through the
// storage allocator's shared cache of large buffers: concurrent runs hand buffers to each other.
//
// Determinism needs a fixed thread count: the OpenMP kernels and OpenBLAS split work by the number of
// threads, and a different split sums in a different order. Each run uses one OpenMP thread (set for
// the calling thread only).
Run train(uint64_t seed) {
  omp_set_num_threads(1);
  manual_seed(seed);
  Generator gen(seed + 1000);
  const Tensor x = Tensor::randn({1024, 32}, {}, &gen);
  const Tensor y = Tensor::randint(0, 4, {1024}, &gen);
  const Tensor seq = Tensor::randn({6, 64, 8}, {}, &gen);
  const Tensor seq_y = Tensor::randint(0, 4, {64}, &gen);

  auto mlp = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(32, 256), std::make_shared<nn::Tanh>(),
                                              std::make_shared<nn::Linear>(256, 256), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(256, 4));
  auto lstm = std::make_shared<nn::LSTM>(8, 32);
  auto head = std::make_shared<nn::Linear>(32, 4);
  std::vector<Tensor> params = mlp->parameters();
  for (const auto& m : {nn::ModulePtr(lstm), nn::ModulePtr(head)})
    for (const Tensor& p : m->parameters()) params.push_back(p);

  optim::Adam opt(params, {.lr = 1e-2});

  Run run;
  for (int step = 0; step < 15; ++step) {
    const Tensor last = lstm->forward(seq).select(0, -1);
    const Tensor noisy = x + Tensor::randn(x.shape()) * 0.1;
    const Tensor loss = nll((*mlp)(noisy), y) + nll((*head)(last), seq_y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    run.losses.push_back(loss.item());
  }
  for (const Tensor& p : params) run.parameters.push_back(p.to_vector<float>());
  return run;
}

bool same_bits(const Run& a, const Run& b) {
  if (a.losses.size() != b.losses.size() || a.parameters.size() != b.parameters.size()) return false;
  if (std::memcmp(a.losses.data(), b.losses.data(), a.losses.size() * sizeof(double)) != 0) return false;
  for (size_t i = 0; i < a.parameters.size(); ++i) {
    const auto& p = a.parameters[i];
    const auto& q = b.parameters[i];
    if (p.size() != q.size() || std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) != 0) return false;
  }
  return true;
}

// One run on a thread of its own (as the concurrent ones are).
Run train_alone(uint64_t seed) {
  Run run;
  std::thread([&] { run = train(seed); }).join();
  return run;
}

}  // namespace

TEST_CASE("Two threads training two models at once give the very bits each gives alone") {
  const Run alone_a = train_alone(1);
  const Run alone_b = train_alone(2);
  REQUIRE(same_bits(alone_a, train_alone(1)));
  REQUIRE_FALSE(same_bits(alone_a, alone_b));  // the seeds matter: the comparison below can fail

  for (int round = 0; round < 3; ++round) {
    Run a, b;
    std::latch start(2);
    std::thread ta([&] {
      start.arrive_and_wait();
      a = train(1);
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      b = train(2);
    });
    ta.join();
    tb.join();
    INFO("round " << round);
    REQUIRE(same_bits(a, alone_a));
    REQUIRE(same_bits(b, alone_b));
  }
}

TEST_CASE("Grad mode and the default generator belong to the thread that sets them") {
  manual_seed(5);
  const double first = Tensor::rand({1}).item();
  manual_seed(5);
  autograd::NoGradGuard no_grad;
  bool other_grad_mode = false;
  std::thread([&] {
    other_grad_mode = autograd::grad_enabled();
    manual_seed(99);
    Tensor::rand({1000});
  }).join();
  REQUIRE(other_grad_mode);  // a new thread starts with grad mode on
  REQUIRE_FALSE(autograd::grad_enabled());
  REQUIRE(Tensor::rand({1}).item() == first);  // untouched by the other thread's seeding and draws
}
