// Collective communication between the processes of a data-parallel job.
//
// world() is the group of every process: MPI's world when the program was started by an MPI launcher
// (mpirun -np N), otherwise a world of one that needs no launcher and does no communication. MPI itself
// stays inside the library (no mpi.h here).
//
// Every collective waits at most timeout_seconds() for the other ranks; a rank that died or stopped
// responding makes the others throw tapegrad::Error instead of hanging.
#pragma once

#include "../core/tensor.h"

#include <memory>

namespace tapegrad::dist {

enum class ReduceOp { Sum, Max, Min };

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // t <- op over ranks of t, in place. t must be contiguous (float32, float64 or int64).
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // Every rank's t stacked: shape (size(), *t.shape()). Shapes must agree across ranks.
  virtual Tensor all_gather(const Tensor& t) = 0;
  // t <- root's t, in place.
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;
};

// The world of one: rank 0 of 1, every collective is the identity.
class LocalProcessGroup : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  Tensor all_gather(const Tensor& t) override;
  void broadcast(Tensor& t, int root = 0) override;
  void barrier() override {}
};

// MPI's world if launched by mpirun (and MPI support was built), else a LocalProcessGroup.
std::shared_ptr<ProcessGroup> world();
// True when this process was started by an MPI launcher with more than one rank.
bool launched_distributed();
// How long a collective waits for the other ranks (default 300 s; TAPEGRAD_DIST_TIMEOUT overrides).
double timeout_seconds();
void set_timeout_seconds(double seconds);

}  // namespace tapegrad::dist
