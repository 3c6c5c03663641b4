#include "process_group.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

namespace tapegrad::dist {

namespace {
// Process-wide: set from one thread while collectives on another read it. Negative: not read yet from
// TAPEGRAD_DIST_TIMEOUT (read on first use, so a bad value is an Error, not a crash before main).
std::atomic<double> g_timeout{-1.0};

double timeout_from_environment() {
  const char* env = std::getenv("TAPEGRAD_DIST_TIMEOUT");
  if (!env) return 300.0;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  TG_CHECK(end != env && *end == '\0' && v > 0 && std::isfinite(v),
           "dist: TAPEGRAD_DIST_TIMEOUT must be a positive number of seconds, got '{}'", env);
  return v;
}
}  // namespace

double timeout_seconds() {
  double t = g_timeout.load(std::memory_order_relaxed);
  if (t < 0) {
    t = timeout_from_environment();
    g_timeout.store(t, std::memory_order_relaxed);
  }
  return t;
}
void set_timeout_seconds(double s) {
  TG_CHECK(s > 0 && std::isfinite(s), "dist: the timeout must be a positive number of seconds, got {}", s);
  g_timeout.store(s, std::memory_order_relaxed);
}

void LocalProcessGroup::all_reduce(Tensor& t, ReduceOp) {
  TG_CHECK(t.defined(), "all_reduce: expected a defined tensor");
}

Tensor LocalProcessGroup::all_gather(const Tensor& t) { return t.detach().unsqueeze(0).contiguous(); }

void LocalProcessGroup::broadcast(Tensor&, int root) {
  TG_CHECK(root == 0, "broadcast: root {} is out of range for a world of 1", root);
}

bool launched_distributed() {
  // Open MPI, MPICH/PMI and Slurm all announce the world size to each process.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v) > 1;
  }
  return false;
}

#ifndef TAPEGRAD_WITH_MPI
std::shared_ptr<ProcessGroup> world() {
  TG_CHECK(!launched_distributed(),
           "dist: this process was started by an MPI launcher, but tapegrad was built without MPI support");
  static auto local = std::make_shared<LocalProcessGroup>();
  return local;
}
#endif

}  // namespace tapegrad::dist
