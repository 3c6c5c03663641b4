// dist/: the world of one (always), and two ranks under mpirun (the tests tagged [.mpi], which the
// "dist: 2 ranks" ctest entry runs as `mpirun -np 2 test_dist [.mpi]`).
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/dist/ddp.h>
#include <tapegrad/dist/process_group.h>
#include <tapegrad/dist/sync_batch_norm.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/optim/sgd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

using namespace tapegrad;

namespace {
struct Affine : nn::Module {
  Tensor w, b, running;
  Affine() : Module("Affine") {
    Generator gen(static_cast<uint64_t>(dist::world()->rank()) + 7);  // different on every rank
    w = register_parameter("w", Tensor::randn({4}, {}, &gen));
    b = register_parameter("b", Tensor::randn({4}, {}, &gen));
    running = register_buffer("running", Tensor::randn({4}, {}, &gen));
  }
  Tensor forward(const Tensor& x) override { return (x * w + b).tanh(); }
};

// A fixed batch of 8 rows, the same on every rank.
Tensor full_batch() {
  Generator gen(123);
  return Tensor::randn({8, 4}, {}, &gen);
}
}  // namespace

TEST_CASE("a world of one needs no launcher and communicates nothing") {
  auto g = dist::world();
  if (g->size() != 1) return;  // under mpirun the [.mpi] tests cover this
  REQUIRE(g->rank() == 0);
  Tensor t = Tensor::of({1.0, 2.0});
  g->all_reduce(t);
  REQUIRE(t.to_vector<float>() == std::vector<float>{1, 2});
  REQUIRE(g->all_gather(t).shape() == Shape{1, 2});
  REQUIRE_ERROR(g->broadcast(t, 1), "broadcast: root 1 is out of range for a world of 1");
}

TEST_CASE("collectives over two ranks", "[.mpi]") {
  auto g = dist::world();
  REQUIRE(g->size() == 2);
  const double r = g->rank();
  Tensor t = Tensor::of({1.0 + r, 10.0 * r});
  g->all_reduce(t);
  REQUIRE(t.to_vector<float>() == std::vector<float>{3, 10});
  Tensor m = Tensor::of({r, -r}, {.dtype = kFloat64});
  g->all_reduce(m, dist::ReduceOp::Max);
  REQUIRE(m.to_vector<double>() == std::vector<double>{1, 0});
  Tensor gathered = g->all_gather(Tensor::full({3}, r, {.dtype = kInt64}));
  REQUIRE(gathered.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 1, 1, 1});
  Tensor b = Tensor::full({2}, 5.0 + r);
  g->broadcast(b, 1);
  REQUIRE(b.to_vector<float>() == std::vector<float>{6, 6});
  g->barrier();
}

TEST_CASE("DDP on two halves matches one process on the whole batch", "[.mpi]") {
  auto g = dist::world();
  REQUIRE(g->size() == 2);
  auto inner = std::make_shared<Affine>();
  dist::DistributedDataParallel ddp(inner);
  // Rank 0's values were broadcast.
  Tensor w0 = inner->w.clone(), run0 = inner->running.clone();
  g->broadcast(w0, 0);
  REQUIRE(allclose(inner->w, w0, 0, 0));

  // Reference: the whole batch in this process, from the same initial weights.
  auto ref = std::make_shared<Affine>();
  ref->load_state_dict(inner->state_dict());
  Tensor x = full_batch();
  (*ref)(x).pow(2.0).mean().backward();

  Tensor half = x.narrow(0, 4 * g->rank(), 4);
  ddp(half).pow(2.0).mean().backward();
  ddp.sync_gradients();
  testing::require_close(inner->w.grad(), ref->w.grad(), 1e-5, 1e-7);
  testing::require_close(inner->b.grad(), ref->b.grad(), 1e-5, 1e-7);
}

namespace {
// Linear -> BatchNorm1d -> ReLU -> Linear, deterministic weights.
std::shared_ptr<nn::Sequential> small_net() {
  manual_seed(5);
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 6), std::make_shared<nn::BatchNorm1d>(6),
                                          std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(6, 3));
}
}  // namespace

TEST_CASE("convert_sync_batchnorm replaces batch norms in place, sharing their state and mode") {
  auto net = small_net();
  auto bn = std::dynamic_pointer_cast<nn::BatchNorm1d>((*net)[1]);
  bn->eval();
  auto root = dist::convert_sync_batchnorm(net);
  REQUIRE(root == net);  // the root is not a batch norm: modified in place
  auto sync = std::dynamic_pointer_cast<dist::SyncBatchNorm>((*net)[1]);
  REQUIRE(sync != nullptr);
  REQUIRE(sync->weight.same(bn->weight));
  REQUIRE(sync->running_var.same(bn->running_var));
  REQUIRE(sync->num_batches_tracked.same(bn->num_batches_tracked));
  REQUIRE_FALSE(sync->is_training());
  REQUIRE(sync->repr() == "SyncBatchNorm(6, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  std::vector<std::string> keys;
  for (auto& [k, v] : net->state_dict()) keys.push_back(k);
  REQUIRE(keys[2] == "1.weight");
  REQUIRE(keys[5] == "1.running_var");
  // A batch norm at the root is returned as the replacement.
  auto alone = dist::convert_sync_batchnorm(std::make_shared<nn::BatchNorm2d>(3));
  REQUIRE(std::dynamic_pointer_cast<dist::SyncBatchNorm>(alone) != nullptr);
}

TEST_CASE("SyncBatchNorm in a world of one is BatchNorm") {
  if (dist::world()->size() != 1) return;
  manual_seed(3);
  Tensor x = Tensor::randn({5, 3, 4});
  nn::BatchNorm1d bn(3);
  dist::SyncBatchNorm sync(3);
  testing::require_close(sync(x), bn(x), 0, 0);
  testing::require_close(sync.running_var, bn.running_var, 0, 0);
  REQUIRE_ERROR(sync(Tensor::zeros({3})), "SyncBatchNorm: expected at least 2D input (got 1D input)");
  REQUIRE_ERROR(dist::SyncBatchNorm(0)(Tensor::zeros({2, 0})),
                "SyncBatchNorm: SyncBatchNorm number of input channels should be non-zero");
}

TEST_CASE("SyncBatchNorm over two ranks equals BatchNorm over the whole batch, also with unequal halves", "[.mpi]") {
  auto g = dist::world();
  REQUIRE(g->size() == 2);
  for (int64_t split : {4, 3, 1}) {
    Generator gen(99);
    Tensor x = (Tensor::randn({8, 3, 5}, {.dtype = kFloat64}, &gen) * 2.0 + 1.0).detach();
    Tensor gy = Tensor::randn({8, 3, 5}, {.dtype = kFloat64}, &gen);
    nn::NormOptions o{.dtype = kFloat64};
    nn::BatchNorm1d ref(3, o);
    dist::SyncBatchNorm sync(3, o);
    {
      autograd::NoGradGuard ng;
      Tensor w = Tensor::randn({3}, {.dtype = kFloat64}, &gen);
      ref.weight.copy_(w);
      sync.weight.copy_(w);
    }
    Tensor xr = x.clone().requires_grad_();
    Tensor yr = ref(xr);
    yr.backward(gy);
    const int64_t lo = g->rank() == 0 ? 0 : split, n = g->rank() == 0 ? split : 8 - split;
    Tensor xs = x.narrow(0, lo, n).clone().requires_grad_();
    Tensor ys = sync(xs);
    ys.backward(gy.narrow(0, lo, n));
    testing::require_close(ys, yr.narrow(0, lo, n).detach(), 1e-10, 1e-12);
    testing::require_close(xs.grad(), xr.grad().narrow(0, lo, n), 1e-10, 1e-12);
    testing::require_close(sync.running_mean, ref.running_mean, 1e-12, 1e-12);
    testing::require_close(sync.running_var, ref.running_var, 1e-12, 1e-12);  // unbiased with the global count
    REQUIRE(sync.num_batches_tracked.item() == 1);
    Tensor wg = sync.weight.grad().clone(), bg = sync.bias.grad().clone();
    g->all_reduce(wg);
    g->all_reduce(bg);  // local parameter gradients sum to the whole batch's
    testing::require_close(wg, ref.weight.grad(), 1e-10, 1e-12);
    testing::require_close(bg, ref.bias.grad(), 1e-10, 1e-12);
  }
}

TEST_CASE("20 DDP steps with SyncBatchNorm on two ranks match one process on the full batch", "[.mpi]") {
  auto g = dist::world();
  REQUIRE(g->size() == 2);
  auto ref = small_net();
  auto net = small_net();
  dist::convert_sync_batchnorm(net);
  dist::DistributedDataParallel ddp(net);
  optim::SGD opt_ref(ref->parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::SGD opt(ddp.parameters(), {.lr = 0.1, .momentum = 0.9});
  Generator gen(7);
  for (int step = 0; step < 20; ++step) {
    Tensor x = Tensor::randn({8, 4}, {}, &gen), y = Tensor::randn({8, 3}, {}, &gen);
    opt_ref.zero_grad();
    ((*ref)(x) - y).pow(2.0).mean().backward();
    opt_ref.step();
    opt.zero_grad();
    Tensor xs = x.narrow(0, 4 * g->rank(), 4), ys = y.narrow(0, 4 * g->rank(), 4);
    (ddp(xs) - ys).pow(2.0).mean().backward();
    ddp.sync_gradients();
    opt.step();
  }
  auto a = ref->state_dict(), b = net->state_dict();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    testing::require_close(b[i].second, a[i].second, 1e-4, 1e-5);
  }
}

// ---- a rank that dies or stops responding ----
// Run by tests/support/dist_failure.sh under `mpirun -np 2`, which checks that the job ends with an
// error within a bounded time and that the output says why. Rank 1 misbehaves after one good
// collective; rank 0 keeps calling collectives with a 3 s timeout.

namespace {
void collectives_until_failure() {
  dist::set_timeout_seconds(3);
  auto g = dist::world();
  REQUIRE(g->size() == 2);
  Tensor t = Tensor::of({1.0});
  g->all_reduce(t);  // both ranks are alive here
  REQUIRE(t.item() == 2);
}

void rank0_expects_timeout() {
  auto g = dist::world();
  Tensor t = Tensor::of({1.0});
  const auto start = std::chrono::steady_clock::now();
  std::string message;
  try {
    g->all_reduce(t);
  } catch (const Error& e) {
    message = e.what();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(stderr, "rank 0 failed after {:.1f} s: {}\n", seconds, message);
  REQUIRE(message == "all_reduce: rank 0 timed out after 3 s waiting for the other ranks (a rank died or stopped responding)");
  REQUIRE(seconds >= 3);
  REQUIRE(seconds < 10);
  // The group is unusable from now on, with a message that says why.
  REQUIRE_ERROR(g->barrier(), "barrier: the process group of rank 0 is unusable after an earlier failure (" + message + ")");
  fmt::print(stderr, "rank 0: later collectives fail at once\n");
}
}  // namespace

TEST_CASE("rank 1 exits early: rank 0 does not hang", "[.mpi-rank-exits]") {
  collectives_until_failure();
  if (dist::world()->rank() == 1) std::_Exit(3);
  rank0_expects_timeout();  // unless the launcher ends rank 0 first, which it may
}

TEST_CASE("rank 1 stops responding: rank 0 times out with a clear error", "[.mpi-rank-stalls]") {
  collectives_until_failure();
  if (dist::world()->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(600));
  rank0_expects_timeout();
}

TEST_CASE("a bad TAPEGRAD_DIST_TIMEOUT or timeout is an error") {
  REQUIRE_ERROR(dist::set_timeout_seconds(0), "dist: the timeout must be a positive number of seconds, got 0");
  REQUIRE_ERROR(dist::set_timeout_seconds(-1), "dist: the timeout must be a positive number of seconds, got -1");
  REQUIRE_ERROR(dist::set_timeout_seconds(INFINITY), "dist: the timeout must be a positive number of seconds, got inf");
}
