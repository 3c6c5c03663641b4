// Optimizer: the base of SGD, Adam, AdamW, RMSprop and Adagrad, with PyTorch's semantics.
//
// An optimizer holds parameter groups. Each group is a list of parameters plus that group's
// hyper-parameters, keyed by PyTorch's names ("lr", "momentum", "betas", ...). The constructor's
// options fill every key of every group that the group does not set itself, exactly like the
// `defaults` dict of torch.optim.Optimizer:
//
//   optim::SGD opt(model_params, {.lr = 0.1, .momentum = 0.9});                 // one group
//   optim::SGD opt({{.params = {w}},                                              // two groups
//                   {.params = {b}, .options = {{"lr", 0.01}, {"weight_decay", 0.0}}}},
//                  {.lr = 0.1, .momentum = 0.9});
//   opt.param_groups()[1].options.set("lr", 0.001);    // what a scheduler does
//
// step() updates every parameter that has a gradient (parameters whose .grad is undefined are
// skipped entirely: no decay, no state change, no step count), under NoGradGuard, writing the
// parameter in place and bumping its version counter. Per-parameter state (momentum buffers, moment
// estimates, step counts) is created lazily on the first step that sees a gradient, as in PyTorch.
//
// state_dict() is PyTorch's optimizer state in a form save_safetensors() writes directly:
//   tensors   "state.<i>.<name>"  (i = the parameter's position counting through all groups;
//                                  e.g. "state.0.exp_avg", "state.0.step" (a float32 0-dim tensor))
//   metadata  "param_groups"      JSON list, one object per group: its hyper-parameters plus
//                                  "params": [indices]
//             "optimizer"         the class name ("SGD", "Adam", ...)
//
// Misuse throws tapegrad::Error with PyTorch's ValueError text after the optimizer's name, e.g.
// "SGD: Invalid learning rate: -1".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/serialize.h"
#include "../core/tensor.h"

namespace tapegrad::optim {

// One hyper-parameter: a number (lr, momentum, eps, ...), a flag (nesterov, amsgrad, maximize, ...)
// or a pair of numbers (Adam's betas).
class Hyper {
 public:
  enum class Kind { Number, Flag, Pair };

  Hyper(double v) : kind_(Kind::Number), a_(v) {}                                       // NOLINT: implicit on purpose
  Hyper(int v) : kind_(Kind::Number), a_(v) {}                                          // NOLINT
  Hyper(bool v) : kind_(Kind::Flag), a_(v ? 1.0 : 0.0) {}                               // NOLINT
  Hyper(std::pair<double, double> v) : kind_(Kind::Pair), a_(v.first), b_(v.second) {}  // NOLINT

  Kind kind() const { return kind_; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_flag() const { return kind_ == Kind::Flag; }
  bool is_pair() const { return kind_ == Kind::Pair; }
  // The value; each throws when the kind differs.
  double number() const;
  bool flag() const;
  std::pair<double, double> pair() const;
  // "0.1", "true", "(0.9, 0.999)".
  std::string str() const;

  bool operator==(const Hyper& o) const { return kind_ == o.kind_ && a_ == o.a_ && b_ == o.b_; }

 private:
  Kind kind_;
  double a_ = 0, b_ = 0;
};

// A group's hyper-parameters by name, in insertion order (the order the state dict shows them).
class GroupOptions {
 public:
  GroupOptions() = default;
  GroupOptions(std::initializer_list<std::pair<std::string, Hyper>> items);

  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Throws "optimizer: param group has no option 'key'" when absent.
  const Hyper& at(std::string_view key) const;
  double number(std::string_view key) const { return at(key).number(); }
  bool flag(std::string_view key) const { return at(key).flag(); }
  std::pair<double, double> pair(std::string_view key) const { return at(key).pair(); }
  // Inserts or replaces.
  void set(std::string_view key, Hyper value);
  // Inserts only when absent (Python's dict.setdefault).
  void set_default(std::string_view key, Hyper value);
  const std::vector<std::pair<std::string, Hyper>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  const Hyper* find(std::string_view key) const;
  std::vector<std::pair<std::string, Hyper>> items_;
};

struct ParamGroup {
  std::vector<Tensor> params;
  // When passed to a constructor: only the keys that differ from the optimizer's defaults. Inside an
  // optimizer: every key (the defaults filled in), plus whatever schedulers add ("initial_lr", ...).
  GroupOptions options = {};
};

// An optimizer's state for one parameter: named tensors ("step", "exp_avg", ...) in insertion order.
class ParamState {
 public:
  bool empty() const { return items_.empty(); }
  bool contains(std::string_view name) const;
  // Throws "optimizer: parameter state has no '<name>'" when absent.
  const Tensor& at(std::string_view name) const;
  void set(std::string_view name, Tensor t);
  const std::vector<std::pair<std::string, Tensor>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, Tensor>> items_;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;

  // Sets every parameter's .grad to undefined (default, PyTorch >= 2.0) or zeroes it in place.
  void zero_grad(bool set_to_none = true);

  // Adds a group; keys it does not set come from defaults(). Errors as PyTorch: a non-leaf parameter,
  // a parameter already in another group, invalid hyper-parameters.
  void add_param_group(ParamGroup group);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // The constructor's options, by PyTorch's names.
  const GroupOptions& defaults() const { return defaults_; }
  // "SGD", "Adam", ...: the prefix of every error message.
  const std::string& name() const { return name_; }

  // The state of one parameter; nullptr before its first step (or for a tensor not optimized here).
  const ParamState* state(const Tensor& param) const;

  // PyTorch's state dict as safetensors tensors + metadata (see the top of this file). The tensors
  // alias the live state, as PyTorch's do: save or clone them before stepping again.
  SafetensorsFile state_dict() const;
  // Restores a state dict: hyper-parameters of every group and the state of every parameter (copied,
  // cast to the parameter's dtype except "step"). The groups must have the same number of groups and
  // parameters per group, and every state tensor the shape of its parameter.
  void load_state_dict(const SafetensorsFile& state);
  // save_safetensors(path, state_dict()) / load_state_dict(load_safetensors(path)).
  void save(const std::string& path) const;
  void load(const std::string& path);

 protected:
  Optimizer(std::string name, GroupOptions defaults);

  // Called by a derived constructor once it can validate: checks the list is non-empty and adds each
  // group. (The base constructor cannot, since validate() is virtual.)
  void add_initial_groups(std::vector<ParamGroup> groups);
  static std::vector<ParamGroup> single_group(std::vector<Tensor> params);

  // Throws for invalid hyper-parameters of a (complete) group, with PyTorch's messages.
  virtual void validate(const GroupOptions& options) const = 0;
  // Called after a group was added (Adagrad creates its state here, eagerly, as PyTorch does).
  virtual void on_group_added(ParamGroup& /*group*/) {}

  // The state of a parameter, created empty on first use.
  ParamState& state_of(const Tensor& param) { return state_[param.impl_ptr().get()]; }
  // state.at(key) with an error naming the optimizer and the parameter when a loaded state lacks it.
  const Tensor& state_tensor(const ParamState& state, std::string_view key) const;

  std::vector<ParamGroup> groups_;

 private:
  std::string name_;
  GroupOptions defaults_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
};

// Formats a double the way Python's str(float) does: "2.0", "0.1", "inf", "1e-06".
std::string py_float(double v);

}  // namespace tapegrad::optim
