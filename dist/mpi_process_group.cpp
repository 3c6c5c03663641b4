// The MPI process group. Built only when MPI is found (TAPEGRAD_WITH_MPI).
//
// Collectives are issued non-blocking and polled against a deadline, so a peer that died or hangs
// turns into a tapegrad::Error on the others instead of a job that never ends. After such a failure the
// group is broken: the pending collective can never complete, so later collectives throw at once and
// the process exits without MPI_Finalize (which would wait for the missing rank forever); the launcher
// then sees an abnormal exit and ends the remaining ranks.
#include "process_group.h"

#include <mpi.h>

#include <chrono>
#include <string>
#include <thread>

namespace tapegrad::dist {

namespace {

MPI_Datatype mpi_type(DType t, std::string_view op) {
  switch (t) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    default: fail("{}: unsupported dtype {}", op, dtype_name(t));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}

class MpiProcessGroup : public ProcessGroup {
 public:
  MpiProcessGroup() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_mpi_ = true;
    }
    // Errors come back as codes (turned into tapegrad::Error) instead of aborting the job.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiProcessGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized && broken_.empty()) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    check_usable("all_reduce");
    TG_CHECK(t.is_contiguous(), "all_reduce: expected a contiguous tensor");
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, t.data(), static_cast<int>(t.numel()), mpi_type(t.dtype(), "all_reduce"),
                         mpi_op(op), MPI_COMM_WORLD, &req),
          "all_reduce");
    wait(req, "all_reduce");
    t.storage()->bump_version();
  }

  Tensor all_gather(const Tensor& t) override {
    check_usable("all_gather");
    const Tensor src = t.detach().contiguous();
    Shape shape = src.shape();
    shape.insert(shape.begin(), size_);
    Tensor out = Tensor::empty(shape, {.dtype = src.dtype()});
    MPI_Request req;
    const MPI_Datatype type = mpi_type(src.dtype(), "all_gather");
    check(MPI_Iallgather(src.data(), static_cast<int>(src.numel()), type, out.data(), static_cast<int>(src.numel()),
                         type, MPI_COMM_WORLD, &req),
          "all_gather");
    wait(req, "all_gather");
    return out;
  }

  void broadcast(Tensor& t, int root) override {
    check_usable("broadcast");
    TG_CHECK(root >= 0 && root < size_, "broadcast: root {} is out of range for a world of {}", root, size_);
    TG_CHECK(t.is_contiguous(), "broadcast: expected a contiguous tensor");
    MPI_Request req;
    check(MPI_Ibcast(t.data(), static_cast<int>(t.numel()), mpi_type(t.dtype(), "broadcast"), root, MPI_COMM_WORLD,
                     &req),
          "broadcast");
    wait(req, "broadcast");
    t.storage()->bump_version();
  }

  void barrier() override {
    check_usable("barrier");
    MPI_Request req;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "barrier");
    wait(req, "barrier");
  }

 private:
  void check(int code, std::string_view op) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    broken_ = fmt::format("{}: MPI error on rank {}: {}", op, rank_, std::string(text, static_cast<size_t>(len)));
    fail("{}", broken_);
  }

  void check_usable(std::string_view op) const {
    TG_CHECK(broken_.empty(), "{}: the process group of rank {} is unusable after an earlier failure ({})", op, rank_,
             broken_);
  }

  // Waits for a non-blocking request until the deadline; on timeout the job is beyond repair.
  void wait(MPI_Request& req, std::string_view op) {
    const double timeout = timeout_seconds();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    int done = 0;
    auto pause = std::chrono::microseconds(1);
    while (true) {
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), op);
      if (done) return;
      if (std::chrono::steady_clock::now() > deadline) {
        broken_ = fmt::format("{}: rank {} timed out after {} s waiting for the other ranks (a rank died or stopped "
                              "responding)",
                              op, rank_, timeout);
        fail("{}", broken_);
      }
      std::this_thread::sleep_for(pause);
      if (pause < std::chrono::microseconds(500)) pause *= 2;
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
  std::string broken_;  // why the group failed; empty while it works
};

}  // namespace

std::shared_ptr<ProcessGroup> world() {
  static std::shared_ptr<ProcessGroup> group = [] () -> std::shared_ptr<ProcessGroup> {
    if (!launched_distributed()) return std::make_shared<LocalProcessGroup>();
    return std::make_shared<MpiProcessGroup>();
  }();
  return group;
}

}  // namespace tapegrad::dist
