// dist/: the world of one (always), and two ranks under mpirun (the tests tagged [.mpi], which the
// "dist: 2 ranks" ctest entry runs as `mpirun -np 2 test_dist [.mpi]`).
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/dist/ddp.h>
#include <tapegrad/dist/process_group.h>

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
