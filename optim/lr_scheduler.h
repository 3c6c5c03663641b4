// Learning-rate schedulers with torch.optim.lr_scheduler's semantics and numbers.
//
// A scheduler writes the learning rate of every parameter group of its optimizer ("lr" in the group's
// options), including once in its constructor (PyTorch's initial step), so the first optimizer step
// already uses the schedule's first value. Call it after optimizer.step():
//
//   optim::SGD opt(params, {.lr = 0.1, .momentum = 0.9});
//   optim::CosineAnnealingLR sched(opt, /*T_max=*/100);
//   for (...) { loss.backward(); opt.step(); opt.zero_grad(); sched.step(); }
//
// The learning rates are computed with PyTorch's recursive ("chainable") formulas, in double, in the
// same order of operations, so a trajectory matches PyTorch's bit for bit (not only approximately) and
// composes with other changes to the group's lr the same way.
//
// On construction with last_epoch == -1 each group gets "initial_lr" (= its lr) unless it has one;
// resuming with last_epoch >= 0 requires it (it is saved in the optimizer's state dict). A scheduler
// keeps a reference to its optimizer, which must outlive it.
//
// state_dict() is a JSON object of the scheduler's fields under PyTorch's attribute names
// ("last_epoch", "_step_count", "base_lrs", "_last_lr", "gamma", ...); store it in a safetensors
// file's metadata next to the optimizer's state. load_state_dict() restores the fields it contains.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "optimizer.h"

namespace tapegrad::optim {

namespace detail {
struct Json;  // nlohmann::ordered_json, private to the library
}

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // last_epoch += 1, then every group's lr = get_lr().
  void step();
  // The learning rates the last step() (or the constructor) wrote, one per group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  // Every group's "initial_lr".
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  const std::string& name() const { return name_; }
  Optimizer& optimizer() const { return optimizer_; }

  std::string state_dict() const;
  void load_state_dict(const std::string& state);

 protected:
  LRScheduler(std::string name, Optimizer& optimizer);

  // The end of every derived constructor (PyTorch's base __init__ runs after the subclass set its
  // fields): sets or checks "initial_lr", base_lrs, last_epoch, then takes the initial step.
  void start(int64_t last_epoch);

  // The new lr of every group, from the current ones (chainable form). Called by step() after
  // last_epoch was incremented.
  virtual std::vector<double> get_lr() = 0;
  // The extra fields of state_dict() / load_state_dict() (defined in lr_scheduler.cpp).
  virtual void save_fields(detail::Json& /*j*/) const {}
  virtual void load_fields(const detail::Json& /*j*/) {}

  // The current lr of each group.
  std::vector<double> group_lrs() const;
  // True during the step taken by the constructor.
  bool is_initial() const { return is_initial_; }
  int64_t step_count() const { return step_count_; }

  Optimizer& optimizer_;
  int64_t last_epoch_ = -1;
  std::vector<double> base_lrs_;

 private:
  std::string name_;
  int64_t step_count_ = 0;
  bool is_initial_ = false;
  std::vector<double> last_lr_;
};

// lr *= gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr *= gamma^k at each milestone epoch that appears k times in `milestones`.
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma = 0.1,
              int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  std::map<int64_t, int64_t> milestones_;  // epoch -> how many times it was listed
  double gamma_;
};

// lr *= gamma every epoch.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  double gamma_;
};

// Cosine annealing from the initial lr to eta_min over T_max epochs (and back up, periodically, if
// stepped further), by PyTorch's recursive formula
//   lr_t = eta_min + (lr_{t-1} - eta_min) * (1 + cos(pi t / T_max)) / (1 + cos(pi (t-1) / T_max)).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  int64_t T_max_;
  double eta_min_;
};

struct LinearLROptions {
  double start_factor = 1.0 / 3;  // in (0, 1]
  double end_factor = 1.0;        // in [0, 1]
  int64_t total_iters = 5;
  int64_t last_epoch = -1;
};

// The lr's factor moves linearly from start_factor to end_factor over total_iters epochs.
class LinearLR : public LRScheduler {
 public:
  explicit LinearLR(Optimizer& optimizer, LinearLROptions options = {});

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

enum class AnnealStrategy { Cos, Linear };

struct OneCycleLROptions {
  // Either total_steps, or epochs and steps_per_epoch (total_steps = epochs * steps_per_epoch).
  std::optional<int64_t> total_steps = {};
  std::optional<int64_t> epochs = {};
  std::optional<int64_t> steps_per_epoch = {};
  double pct_start = 0.3;  // fraction of the cycle spent increasing the lr
  AnnealStrategy anneal_strategy = AnnealStrategy::Cos;
  // Cycle the momentum inversely to the lr: SGD/RMSprop "momentum", or Adam's beta1.
  bool cycle_momentum = true;
  std::vector<double> base_momentum = {0.85};  // one value for every group, or one per group
  std::vector<double> max_momentum = {0.95};
  double div_factor = 25;         // initial_lr = max_lr / div_factor
  double final_div_factor = 1e4;  // min_lr = initial_lr / final_div_factor
  // Three phases (up, down to initial_lr, down to min_lr) instead of two (up, down to min_lr).
  bool three_phase = false;
  int64_t last_epoch = -1;
};

// The 1cycle policy. Writes "initial_lr", "max_lr", "min_lr" (and "max_momentum", "base_momentum")
// into each group, as PyTorch does. Stepping past total_steps throws.
class OneCycleLR : public LRScheduler {
 public:
  // max_lr: one value for every group, or one per group.
  OneCycleLR(Optimizer& optimizer, const std::vector<double>& max_lr, OneCycleLROptions options);

 protected:
  std::vector<double> get_lr() override;
  void save_fields(detail::Json& j) const override;
  void load_fields(const detail::Json& j) override;

 private:
  struct Phase {
    double end_step;
    std::string start_lr, end_lr, start_momentum, end_momentum;  // group option names
  };
  double anneal(double start, double end, double pct) const;

  int64_t total_steps_ = 0;
  std::vector<Phase> phases_;
  AnnealStrategy anneal_strategy_;
  bool cycle_momentum_;
  bool use_beta1_ = false;
};

enum class PlateauMode { Min, Max };
enum class ThresholdMode { Rel, Abs };

struct ReduceLROnPlateauOptions {
  PlateauMode mode = PlateauMode::Min;  // Min: the metric should decrease; Max: increase
  double factor = 0.1;                  // new_lr = lr * factor; must be < 1
  int64_t patience = 10;                // bad epochs tolerated before reducing
  double threshold = 1e-4;
  // Rel: better means below best * (1 - threshold) (Min) / above best * (1 + threshold) (Max);
  // Abs: below best - threshold / above best + threshold.
  ThresholdMode threshold_mode = ThresholdMode::Rel;
  int64_t cooldown = 0;                // epochs to wait after a reduction
  std::vector<double> min_lr = {0.0};  // one value for every group, or one per group
  double eps = 1e-8;                   // reductions smaller than this are skipped
};

// Reduces the lr when a metric has stopped improving. Unlike the others it does not touch the lr in
// its constructor, and step() takes the metric.
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});

  void step(double metric);
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }

  std::string state_dict() const;
  void load_state_dict(const std::string& state);

 private:
  bool is_better(double a, double best) const;
  void reduce_lr();

  Optimizer& optimizer_;
  ReduceLROnPlateauOptions o_;
  std::vector<double> min_lrs_;
  std::optional<double> default_min_lr_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  int64_t last_epoch_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace tapegrad::optim
