// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

namespace tapegrad::optim {

namespace detail {
struct Json {
  nlohmann::ordered_json j;
};
}  // namespace detail

namespace {

using json = nlohmann::ordered_json;
constexpr double kPi = std::numbers::pi;  // math.pi

// Python's a % b for integers (the result takes the sign of b).
int64_t py_mod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

// JSON has no inf/nan (ReduceLROnPlateau's initial best is inf): those are strings.
json num(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

json nums(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(num(x));
  return a;
}

double to_num(const json& j, std::string_view what, std::string_view key) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    if (s == "nan") return NAN;
  }
  fail("{}: load_state_dict: '{}' must be a number, got {}", what, key, j.dump());
}

// Each reader leaves the target unchanged when the key is absent (PyTorch's __dict__.update).
void read(const json& j, std::string_view what, const char* key, double& out) {
  if (j.contains(key)) out = to_num(j[key], what, key);
}

void read(const json& j, std::string_view what, const char* key, int64_t& out) {
  if (!j.contains(key)) return;
  TG_CHECK(j[key].is_number_integer(), "{}: load_state_dict: '{}' must be an integer, got {}", what, key,
           j[key].dump());
  out = j[key].get<int64_t>();
}

void read(const json& j, std::string_view what, const char* key, bool& out) {
  if (!j.contains(key)) return;
  TG_CHECK(j[key].is_boolean(), "{}: load_state_dict: '{}' must be true or false, got {}", what, key, j[key].dump());
  out = j[key].get<bool>();
}

void read(const json& j, std::string_view what, const char* key, std::vector<double>& out) {
  if (!j.contains(key)) return;
  TG_CHECK(j[key].is_array(), "{}: load_state_dict: '{}' must be a list of numbers, got {}", what, key, j[key].dump());
  std::vector<double> v;
  for (const json& x : j[key]) v.push_back(to_num(x, what, key));
  out = std::move(v);
}

json parse_state(const std::string& state, std::string_view what) {
  json j;
  try {
    j = json::parse(state);
  } catch (const json::exception& e) {
    fail("{}: load_state_dict: not valid JSON: {}", what, e.what());
  }
  TG_CHECK(j.is_object(), "{}: load_state_dict: expected a JSON object, got {}", what, j.dump());
  return j;
}

// One value for every group, or one per group.
std::vector<double> per_group(const std::vector<double>& v, size_t groups, std::string_view what,
                              std::string_view name) {
  if (v.size() == 1) return std::vector<double>(groups, v[0]);
  TG_CHECK(v.size() == groups,
           "{}: {} must have the same length as optimizer.param_groups. {} has {} values, "
           "param_groups has {}.",
           what, name, name, v.size(), groups);
  return v;
}

}  // namespace

// ---- LRScheduler ----

LRScheduler::LRScheduler(std::string name, Optimizer& optimizer) : optimizer_(optimizer), name_(std::move(name)) {}

std::vector<double> LRScheduler::group_lrs() const {
  std::vector<double> lrs;
  for (const ParamGroup& g : optimizer_.param_groups()) lrs.push_back(g.options.number("lr"));
  return lrs;
}

void LRScheduler::start(int64_t last_epoch) {
  auto& groups = optimizer_.param_groups();
  if (last_epoch == -1) {
    for (ParamGroup& g : groups) g.options.set_default("initial_lr", g.options.number("lr"));
  } else {
    for (size_t i = 0; i < groups.size(); ++i)
      TG_CHECK(groups[i].options.contains("initial_lr"),
               "{}: param 'initial_lr' is not specified in param_groups[{}] when resuming an optimizer", name_, i);
  }
  base_lrs_.clear();
  for (const ParamGroup& g : groups) base_lrs_.push_back(g.options.number("initial_lr"));
  last_epoch_ = last_epoch;
  step_count_ = 0;
  is_initial_ = true;
  try {
    step();
  } catch (...) {
    is_initial_ = false;
    throw;
  }
  is_initial_ = false;
}

void LRScheduler::step() {
  ++step_count_;
  ++last_epoch_;
  const std::vector<double> lrs = get_lr();
  auto& groups = optimizer_.param_groups();
  for (size_t i = 0; i < groups.size() && i < lrs.size(); ++i) groups[i].options.set("lr", lrs[i]);
  last_lr_ = group_lrs();
}

std::string LRScheduler::state_dict() const {
  detail::Json out;
  json& j = out.j;
  j["base_lrs"] = nums(base_lrs_);
  j["last_epoch"] = last_epoch_;
  j["_step_count"] = step_count_;
  j["_last_lr"] = nums(last_lr_);
  save_fields(out);
  return j.dump();
}

void LRScheduler::load_state_dict(const std::string& state) {
  detail::Json in{parse_state(state, name_)};
  const json& j = in.j;
  read(j, name_, "base_lrs", base_lrs_);
  read(j, name_, "last_epoch", last_epoch_);
  read(j, name_, "_step_count", step_count_);
  read(j, name_, "_last_lr", last_lr_);
  load_fields(in);
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma, int64_t last_epoch)
    : LRScheduler("StepLR", optimizer), step_size_(step_size), gamma_(gamma) {
  TG_CHECK(step_size > 0, "StepLR: step_size must be a positive integer, got {}", step_size);
  start(last_epoch);
}

std::vector<double> StepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0 || py_mod(last_epoch_, step_size_) != 0) return lrs;
  for (double& lr : lrs) lr = lr * gamma_;
  return lrs;
}

void StepLR::save_fields(detail::Json& j) const {
  j.j["step_size"] = step_size_;
  j.j["gamma"] = num(gamma_);
}

void StepLR::load_fields(const detail::Json& j) {
  read(j.j, name(), "step_size", step_size_);
  read(j.j, name(), "gamma", gamma_);
}

// ---- MultiStepLR ----

MultiStepLR::MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma, int64_t last_epoch)
    : LRScheduler("MultiStepLR", optimizer), gamma_(gamma) {
  for (int64_t m : milestones) ++milestones_[m];
  start(last_epoch);
}

std::vector<double> MultiStepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  auto it = milestones_.find(last_epoch_);
  if (it == milestones_.end()) return lrs;
  for (double& lr : lrs) lr = lr * std::pow(gamma_, static_cast<double>(it->second));
  return lrs;
}

void MultiStepLR::save_fields(detail::Json& j) const {
  // PyTorch keeps a Counter {epoch: count}; a JSON object needs string keys.
  json m = json::object();
  for (const auto& [epoch, count] : milestones_) m[std::to_string(epoch)] = count;
  j.j["milestones"] = std::move(m);
  j.j["gamma"] = num(gamma_);
}

void MultiStepLR::load_fields(const detail::Json& j) {
  if (j.j.contains("milestones")) {
    const json& m = j.j["milestones"];
    TG_CHECK(m.is_object(), "MultiStepLR: load_state_dict: 'milestones' must be an object {{epoch: count}}, got {}",
             m.dump());
    std::map<int64_t, int64_t> milestones;
    for (const auto& [k, v] : m.items()) {
      TG_CHECK(v.is_number_integer(), "MultiStepLR: load_state_dict: milestone counts must be integers, got {}",
               v.dump());
      try {
        milestones[std::stoll(k)] = v.get<int64_t>();
      } catch (const std::exception&) {
        fail("MultiStepLR: load_state_dict: milestone '{}' is not an integer", k);
      }
    }
    milestones_ = std::move(milestones);
  }
  read(j.j, name(), "gamma", gamma_);
}

// ---- ExponentialLR ----

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma, int64_t last_epoch)
    : LRScheduler("ExponentialLR", optimizer), gamma_(gamma) {
  start(last_epoch);
}

std::vector<double> ExponentialLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (is_initial()) return lrs;
  for (double& lr : lrs) lr = lr * gamma_;
  return lrs;
}

void ExponentialLR::save_fields(detail::Json& j) const { j.j["gamma"] = num(gamma_); }
void ExponentialLR::load_fields(const detail::Json& j) { read(j.j, name(), "gamma", gamma_); }

// ---- CosineAnnealingLR ----

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min, int64_t last_epoch)
    : LRScheduler("CosineAnnealingLR", optimizer), T_max_(T_max), eta_min_(eta_min) {
  TG_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be a positive integer, got {}", T_max);
  start(last_epoch);
}

std::vector<double> CosineAnnealingLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (is_initial()) return lrs;
  const double e = static_cast<double>(last_epoch_), T = static_cast<double>(T_max_);
  if (step_count() == 1 && last_epoch_ > 0) {  // closed form when resuming mid-schedule
    for (size_t i = 0; i < lrs.size(); ++i)
      lrs[i] = eta_min_ + (base_lrs_[i] - eta_min_) * (1 + std::cos(e * kPi / T)) / 2;
    return lrs;
  }
  if (py_mod(last_epoch_ - 1 - T_max_, 2 * T_max_) == 0) {  // restart at the bottom of the cosine
    for (size_t i = 0; i < lrs.size(); ++i) lrs[i] = lrs[i] + (base_lrs_[i] - eta_min_) * (1 - std::cos(kPi / T)) / 2;
    return lrs;
  }
  for (double& lr : lrs)
    lr = (1 + std::cos(kPi * e / T)) / (1 + std::cos(kPi * (e - 1) / T)) * (lr - eta_min_) + eta_min_;
  return lrs;
}

void CosineAnnealingLR::save_fields(detail::Json& j) const {
  j.j["T_max"] = T_max_;
  j.j["eta_min"] = num(eta_min_);
}

void CosineAnnealingLR::load_fields(const detail::Json& j) {
  read(j.j, name(), "T_max", T_max_);
  read(j.j, name(), "eta_min", eta_min_);
}

// ---- LinearLR ----

LinearLR::LinearLR(Optimizer& optimizer, LinearLROptions o)
    : LRScheduler("LinearLR", optimizer),
      start_factor_(o.start_factor),
      end_factor_(o.end_factor),
      total_iters_(o.total_iters) {
  TG_CHECK(o.start_factor <= 1.0 && o.start_factor > 0,
           "LinearLR: Starting multiplicative factor expected to be greater than 0 and less or equal to 1.");
  TG_CHECK(o.end_factor <= 1.0 && o.end_factor >= 0,
           "LinearLR: Ending multiplicative factor expected to be between 0 and 1.");
  start(o.last_epoch);
}

std::vector<double> LinearLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) {
    for (double& lr : lrs) lr = lr * start_factor_;
    return lrs;
  }
  if (is_initial() || last_epoch_ > total_iters_) return lrs;
  const double e = static_cast<double>(last_epoch_), n = static_cast<double>(total_iters_);
  for (double& lr : lrs)
    lr = lr * (1.0 + (end_factor_ - start_factor_) / (n * start_factor_ + (e - 1) * (end_factor_ - start_factor_)));
  return lrs;
}

void LinearLR::save_fields(detail::Json& j) const {
  j.j["start_factor"] = num(start_factor_);
  j.j["end_factor"] = num(end_factor_);
  j.j["total_iters"] = total_iters_;
}

void LinearLR::load_fields(const detail::Json& j) {
  read(j.j, name(), "start_factor", start_factor_);
  read(j.j, name(), "end_factor", end_factor_);
  read(j.j, name(), "total_iters", total_iters_);
}

// ---- OneCycleLR ----

OneCycleLR::OneCycleLR(Optimizer& optimizer, const std::vector<double>& max_lr, OneCycleLROptions o)
    : LRScheduler("OneCycleLR", optimizer), anneal_strategy_(o.anneal_strategy), cycle_momentum_(o.cycle_momentum) {
  if (o.total_steps) {
    TG_CHECK(*o.total_steps > 0, "OneCycleLR: Expected positive integer total_steps, but got {}", *o.total_steps);
    total_steps_ = *o.total_steps;
  } else if (o.epochs && o.steps_per_epoch) {
    TG_CHECK(*o.epochs > 0, "OneCycleLR: Expected positive integer epochs, but got {}", *o.epochs);
    TG_CHECK(*o.steps_per_epoch > 0, "OneCycleLR: Expected positive integer steps_per_epoch, but got {}",
             *o.steps_per_epoch);
    total_steps_ = *o.epochs * *o.steps_per_epoch;
  } else {
    fail("OneCycleLR: You must define either total_steps OR (epochs AND steps_per_epoch)");
  }
  TG_CHECK(o.pct_start >= 0 && o.pct_start <= 1, "OneCycleLR: Expected float between 0 and 1 pct_start, but got {}",
           o.pct_start);
  const double total = static_cast<double>(total_steps_);
  if (o.three_phase) {
    phases_ = {{o.pct_start * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
               {2 * o.pct_start * total - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"},
               {total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"}};
  } else {
    phases_ = {{o.pct_start * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
               {total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"}};
  }

  auto& groups = optimizer.param_groups();
  const std::vector<double> max_lrs = per_group(max_lr, groups.size(), "OneCycleLR", "max_lr");
  if (o.last_epoch == -1) {
    for (size_t i = 0; i < groups.size(); ++i) {
      GroupOptions& g = groups[i].options;
      const double initial_lr = max_lrs[i] / o.div_factor;
      g.set("initial_lr", initial_lr);
      g.set("max_lr", max_lrs[i]);
      g.set("min_lr", initial_lr / o.final_div_factor);
    }
  }
  if (cycle_momentum_) {
    const GroupOptions& d = optimizer.defaults();
    TG_CHECK(d.contains("momentum") || d.contains("betas"),
             "OneCycleLR: optimizer must support momentum or beta1 with `cycle_momentum` option enabled");
    use_beta1_ = d.contains("betas");
    const auto max_m = per_group(o.max_momentum, groups.size(), "OneCycleLR", "max_momentum");
    const auto base_m = per_group(o.base_momentum, groups.size(), "OneCycleLR", "base_momentum");
    if (o.last_epoch == -1) {
      for (size_t i = 0; i < groups.size(); ++i) {
        GroupOptions& g = groups[i].options;
        if (use_beta1_)
          g.set("betas", std::pair<double, double>{max_m[i], g.pair("betas").second});
        else
          g.set("momentum", max_m[i]);
        g.set("max_momentum", max_m[i]);
        g.set("base_momentum", base_m[i]);
      }
    }
  }
  start(o.last_epoch);
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (anneal_strategy_ == AnnealStrategy::Cos) {
    const double cos_out = std::cos(kPi * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

std::vector<double> OneCycleLR::get_lr() {
  const int64_t step_num = last_epoch_;
  TG_CHECK(step_num <= total_steps_, "OneCycleLR: Tried to step {} times. The specified number of total steps is {}",
           step_num, total_steps_);
  const double s = static_cast<double>(step_num);
  std::vector<double> lrs;
  for (ParamGroup& group : optimizer_.param_groups()) {
    GroupOptions& g = group.options;
    double start_step = 0, lr = 0, momentum = 0;
    for (size_t i = 0; i < phases_.size(); ++i) {
      const Phase& ph = phases_[i];
      if (s <= ph.end_step || i + 1 == phases_.size()) {
        const double pct = (s - start_step) / (ph.end_step - start_step);
        lr = anneal(g.number(ph.start_lr), g.number(ph.end_lr), pct);
        if (cycle_momentum_) momentum = anneal(g.number(ph.start_momentum), g.number(ph.end_momentum), pct);
        break;
      }
      start_step = ph.end_step;
    }
    lrs.push_back(lr);
    if (cycle_momentum_) {
      if (use_beta1_)
        g.set("betas", std::pair<double, double>{momentum, g.pair("betas").second});
      else
        g.set("momentum", momentum);
    }
  }
  return lrs;
}

void OneCycleLR::save_fields(detail::Json& j) const {
  j.j["total_steps"] = total_steps_;
  json phases = json::array();
  for (const Phase& p : phases_)
    phases.push_back({{"end_step", num(p.end_step)},
                      {"start_lr", p.start_lr},
                      {"end_lr", p.end_lr},
                      {"start_momentum", p.start_momentum},
                      {"end_momentum", p.end_momentum}});
  j.j["_schedule_phases"] = std::move(phases);
  j.j["_anneal_func_type"] = anneal_strategy_ == AnnealStrategy::Cos ? "cos" : "linear";
  j.j["cycle_momentum"] = cycle_momentum_;
  if (cycle_momentum_) j.j["use_beta1"] = use_beta1_;
}

void OneCycleLR::load_fields(const detail::Json& j) {
  read(j.j, name(), "total_steps", total_steps_);
  if (j.j.contains("_schedule_phases")) {
    const json& a = j.j["_schedule_phases"];
    TG_CHECK(a.is_array() && !a.empty(), "OneCycleLR: load_state_dict: '_schedule_phases' must be a non-empty list");
    std::vector<Phase> phases;
    for (const json& p : a) {
      auto str = [&](const char* key) {
        TG_CHECK(p.is_object() && p.contains(key) && p[key].is_string(),
                 "OneCycleLR: load_state_dict: each schedule phase needs a string '{}'", key);
        return p[key].get<std::string>();
      };
      TG_CHECK(p.is_object() && p.contains("end_step"),
               "OneCycleLR: load_state_dict: each schedule phase needs 'end_step'");
      phases.push_back({to_num(p["end_step"], name(), "end_step"), str("start_lr"), str("end_lr"),
                        str("start_momentum"), str("end_momentum")});
    }
    phases_ = std::move(phases);
  }
  if (j.j.contains("_anneal_func_type")) {
    const json& a = j.j["_anneal_func_type"];
    TG_CHECK(a == "cos" || a == "linear",
             "OneCycleLR: load_state_dict: '_anneal_func_type' must be \"cos\" or \"linear\", got {}", a.dump());
    anneal_strategy_ = a == "cos" ? AnnealStrategy::Cos : AnnealStrategy::Linear;
  }
  read(j.j, name(), "cycle_momentum", cycle_momentum_);
  read(j.j, name(), "use_beta1", use_beta1_);
}

// ---- ReduceLROnPlateau ----

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options)
    : optimizer_(optimizer), o_(std::move(options)) {
  TG_CHECK(o_.factor < 1.0, "ReduceLROnPlateau: Factor should be < 1.0.");
  const size_t groups = optimizer.param_groups().size();
  if (o_.min_lr.size() == 1) {
    default_min_lr_ = o_.min_lr[0];
    min_lrs_.assign(groups, o_.min_lr[0]);
  } else {
    TG_CHECK(o_.min_lr.size() == groups, "ReduceLROnPlateau: expected {} min_lrs, got {}", groups, o_.min_lr.size());
    min_lrs_ = o_.min_lr;
  }
  for (const ParamGroup& g : optimizer.param_groups()) last_lr_.push_back(g.options.number("lr"));
  best_ = o_.mode == PlateauMode::Min ? INFINITY : -INFINITY;
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  if (o_.mode == PlateauMode::Min && o_.threshold_mode == ThresholdMode::Rel) return a < best * (1.0 - o_.threshold);
  if (o_.mode == PlateauMode::Min) return a < best - o_.threshold;
  if (o_.threshold_mode == ThresholdMode::Rel) return a > best * (o_.threshold + 1.0);
  return a > best + o_.threshold;
}

void ReduceLROnPlateau::step(double metric) {
  last_epoch_ += 1;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    num_bad_epochs_ += 1;
  }
  if (in_cooldown()) {
    cooldown_counter_ -= 1;
    num_bad_epochs_ = 0;  // bad epochs in cooldown do not count
  }
  if (num_bad_epochs_ > o_.patience) {
    reduce_lr();
    cooldown_counter_ = o_.cooldown;
    num_bad_epochs_ = 0;
  }
  last_lr_.clear();
  for (const ParamGroup& g : optimizer_.param_groups()) last_lr_.push_back(g.options.number("lr"));
}

void ReduceLROnPlateau::reduce_lr() {
  auto& groups = optimizer_.param_groups();
  if (groups.size() != min_lrs_.size()) {
    TG_CHECK(default_min_lr_.has_value(),
             "ReduceLROnPlateau: The number of param groups in the `optimizer` ({}) differs from when "
             "`ReduceLROnPlateau` was initialized ({}), usually due to a new param group being added to the "
             "optimizer. Please modify the `min_lrs` field to match the length of the `optimizer` param groups.",
             groups.size(), min_lrs_.size());
    min_lrs_.assign(groups.size(), *default_min_lr_);
  }
  for (size_t i = 0; i < groups.size(); ++i) {
    const double old_lr = groups[i].options.number("lr");
    const double new_lr = std::max(old_lr * o_.factor, min_lrs_[i]);
    if (old_lr - new_lr > o_.eps) groups[i].options.set("lr", new_lr);
  }
}

std::string ReduceLROnPlateau::state_dict() const {
  json j;
  j["factor"] = num(o_.factor);
  j["min_lrs"] = nums(min_lrs_);
  if (default_min_lr_) j["default_min_lr"] = num(*default_min_lr_);
  j["patience"] = o_.patience;
  j["cooldown"] = o_.cooldown;
  j["cooldown_counter"] = cooldown_counter_;
  j["mode"] = o_.mode == PlateauMode::Min ? "min" : "max";
  j["threshold"] = num(o_.threshold);
  j["threshold_mode"] = o_.threshold_mode == ThresholdMode::Rel ? "rel" : "abs";
  j["best"] = num(best_);
  j["num_bad_epochs"] = num_bad_epochs_;
  j["mode_worse"] = num(o_.mode == PlateauMode::Min ? INFINITY : -INFINITY);
  j["eps"] = num(o_.eps);
  j["last_epoch"] = last_epoch_;
  j["_last_lr"] = nums(last_lr_);
  return j.dump();
}

void ReduceLROnPlateau::load_state_dict(const std::string& state) {
  constexpr std::string_view what = "ReduceLROnPlateau";
  const json j = parse_state(state, what);
  if (j.contains("mode")) {
    TG_CHECK(j["mode"] == "min" || j["mode"] == "max", "ReduceLROnPlateau: mode {} is unknown!", j["mode"].dump());
    o_.mode = j["mode"] == "min" ? PlateauMode::Min : PlateauMode::Max;
  }
  if (j.contains("threshold_mode")) {
    TG_CHECK(j["threshold_mode"] == "rel" || j["threshold_mode"] == "abs",
             "ReduceLROnPlateau: threshold mode {} is unknown!", j["threshold_mode"].dump());
    o_.threshold_mode = j["threshold_mode"] == "rel" ? ThresholdMode::Rel : ThresholdMode::Abs;
  }
  read(j, what, "factor", o_.factor);
  read(j, what, "min_lrs", min_lrs_);
  if (j.contains("default_min_lr")) {
    double v = 0;
    read(j, what, "default_min_lr", v);
    default_min_lr_ = v;
  }
  read(j, what, "patience", o_.patience);
  read(j, what, "cooldown", o_.cooldown);
  read(j, what, "cooldown_counter", cooldown_counter_);
  read(j, what, "threshold", o_.threshold);
  read(j, what, "best", best_);
  read(j, what, "num_bad_epochs", num_bad_epochs_);
  read(j, what, "eps", o_.eps);
  read(j, what, "last_epoch", last_epoch_);
  read(j, what, "_last_lr", last_lr_);
}

}  // namespace tapegrad::optim
