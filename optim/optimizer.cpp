#include "optimizer.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "../core/autograd.h"

namespace tapegrad::optim {

namespace {

using json = nlohmann::ordered_json;

const char* kind_name(Hyper::Kind k) {
  switch (k) {
    case Hyper::Kind::Number:
      return "a number";
    case Hyper::Kind::Flag:
      return "a flag";
    case Hyper::Kind::Pair:
      return "a pair of numbers";
  }
  return "?";
}

// JSON has no inf/nan: those are written as the strings Python's float() reads back.
json number_to_json(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

std::optional<double> number_from_json(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    if (s == "nan") return NAN;
  }
  return std::nullopt;
}

json hyper_to_json(const Hyper& h) {
  switch (h.kind()) {
    case Hyper::Kind::Number:
      return number_to_json(h.number());
    case Hyper::Kind::Flag:
      return h.flag();
    case Hyper::Kind::Pair:
      return json::array({number_to_json(h.pair().first), number_to_json(h.pair().second)});
  }
  return nullptr;
}

std::optional<Hyper> hyper_from_json(const json& j) {
  if (j.is_boolean()) return Hyper(j.get<bool>());
  if (auto v = number_from_json(j)) return Hyper(*v);
  if (j.is_array() && j.size() == 2) {
    auto a = number_from_json(j[0]), b = number_from_json(j[1]);
    if (a && b) return Hyper(std::pair<double, double>{*a, *b});
  }
  return std::nullopt;
}

// "state.<i>.<name>" -> (i, name)
std::optional<std::pair<size_t, std::string>> parse_state_key(const std::string& key) {
  constexpr std::string_view prefix = "state.";
  if (key.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t dot = key.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot + 1 == key.size()) return std::nullopt;
  size_t index = 0;
  const char* first = key.data() + prefix.size();
  const char* last = key.data() + dot;
  auto [ptr, ec] = std::from_chars(first, last, index);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return std::pair{index, key.substr(dot + 1)};
}

}  // namespace

// ---- Hyper ----

double Hyper::number() const {
  TG_CHECK(kind_ == Kind::Number, "optimizer: expected a number, got {} ({})", kind_name(kind_), str());
  return a_;
}

bool Hyper::flag() const {
  TG_CHECK(kind_ == Kind::Flag, "optimizer: expected a flag, got {} ({})", kind_name(kind_), str());
  return a_ != 0;
}

std::pair<double, double> Hyper::pair() const {
  TG_CHECK(kind_ == Kind::Pair, "optimizer: expected a pair of numbers, got {} ({})", kind_name(kind_), str());
  return {a_, b_};
}

std::string Hyper::str() const {
  switch (kind_) {
    case Kind::Number:
      return fmt::format("{}", a_);
    case Kind::Flag:
      return a_ != 0 ? "true" : "false";
    case Kind::Pair:
      return fmt::format("({}, {})", a_, b_);
  }
  return "?";
}

// ---- GroupOptions ----

GroupOptions::GroupOptions(std::initializer_list<std::pair<std::string, Hyper>> items) {
  for (const auto& [k, v] : items) set(k, v);
}

const Hyper* GroupOptions::find(std::string_view key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return &v;
  return nullptr;
}

const Hyper& GroupOptions::at(std::string_view key) const {
  const Hyper* h = find(key);
  if (!h) fail("optimizer: param group has no option '{}'", key);
  return *h;
}

void GroupOptions::set(std::string_view key, Hyper value) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = value;
      return;
    }
  }
  items_.emplace_back(std::string(key), value);
}

void GroupOptions::set_default(std::string_view key, Hyper value) {
  if (!find(key)) items_.emplace_back(std::string(key), value);
}

// ---- ParamState ----

bool ParamState::contains(std::string_view name) const {
  for (const auto& [k, v] : items_)
    if (k == name) return true;
  return false;
}

const Tensor& ParamState::at(std::string_view name) const {
  for (const auto& [k, v] : items_)
    if (k == name) return v;
  fail("optimizer: parameter state has no '{}'", name);
}

void ParamState::set(std::string_view name, Tensor t) {
  for (auto& [k, v] : items_) {
    if (k == name) {
      v = std::move(t);
      return;
    }
  }
  items_.emplace_back(std::string(name), std::move(t));
}

// ---- Optimizer ----

Optimizer::Optimizer(std::string name, GroupOptions defaults)
    : name_(std::move(name)), defaults_(std::move(defaults)) {}

std::vector<ParamGroup> Optimizer::single_group(std::vector<Tensor> params) {
  if (params.empty()) return {};
  return {ParamGroup{std::move(params), {}}};
}

void Optimizer::add_initial_groups(std::vector<ParamGroup> groups) {
  TG_CHECK(!groups.empty(), "{}: optimizer got an empty parameter list", name_);
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroup group) {
  std::set<const TensorImpl*> seen;
  for (const Tensor& p : group.params) {
    TG_CHECK(p.defined(), "{}: optimizer can only optimize Tensors, but one of the params is undefined", name_);
    TG_CHECK(p.is_leaf(), "{}: can't optimize a non-leaf Tensor", name_);
    TG_CHECK(is_floating(p.dtype()),
             "{}: can only optimize Tensors of floating point dtype (float32 or float64), but one of the params is {}",
             name_, dtype_name(p.dtype()));
    TG_CHECK(seen.insert(p.impl_ptr().get()).second,
             "{}: optimizer contains a parameter group with duplicate parameters", name_);
  }
  for (const auto& [key, value] : defaults_.items()) {
    if (group.options.contains(key)) {
      const Hyper& given = group.options.at(key);
      TG_CHECK(given.kind() == value.kind(), "{}: param group option '{}' must be {}, got {}", name_, key,
               kind_name(value.kind()), given.str());
    } else {
      group.options.set(key, value);
    }
  }
  validate(group.options);
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params)
      TG_CHECK(!seen.count(p.impl_ptr().get()), "{}: some parameters appear in more than one parameter group", name_);
  groups_.push_back(std::move(group));
  on_group_added(groups_.back());
}

void Optimizer::zero_grad(bool set_to_none) {
  for (ParamGroup& g : groups_) {
    for (Tensor& p : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
        continue;
      }
      // A gradient built with create_graph has history: detach it before zeroing, as PyTorch.
      if (!grad.is_leaf() || grad.requires_grad()) {
        grad = grad.detach();
        p.set_grad(grad);
      }
      autograd::NoGradGuard no_grad;
      grad.zero_();
    }
  }
}

const ParamState* Optimizer::state(const Tensor& param) const {
  auto it = state_.find(param.impl_ptr().get());
  return it == state_.end() ? nullptr : &it->second;
}

const Tensor& Optimizer::state_tensor(const ParamState& state, std::string_view key) const {
  for (const auto& [k, v] : state.items())
    if (k == key) return v;
  fail("{}: the state of a parameter has no '{}' (was a state dict of another configuration loaded?)", name_, key);
}

SafetensorsFile Optimizer::state_dict() const {
  SafetensorsFile out;
  json groups = json::array();
  size_t index = 0;
  for (const ParamGroup& g : groups_) {
    json jg = json::object();
    for (const auto& [k, v] : g.options.items()) jg[k] = hyper_to_json(v);
    json params = json::array();
    for (const Tensor& p : g.params) {
      if (const ParamState* s = state(p)) {
        for (const auto& [k, t] : s->items()) out.tensors.emplace_back(fmt::format("state.{}.{}", index, k), t);
      }
      params.push_back(index++);
    }
    jg["params"] = std::move(params);
    groups.push_back(std::move(jg));
  }
  out.metadata["optimizer"] = name_;
  out.metadata["param_groups"] = groups.dump();
  return out;
}

void Optimizer::load_state_dict(const SafetensorsFile& sd) {
  if (auto it = sd.metadata.find("optimizer"); it != sd.metadata.end())
    TG_CHECK(it->second == name_, "{}: load_state_dict: the state dict was saved by {}", name_, it->second);
  auto pg = sd.metadata.find("param_groups");
  TG_CHECK(pg != sd.metadata.end(), "{}: load_state_dict: the state dict has no 'param_groups' metadata", name_);
  json saved;
  try {
    saved = json::parse(pg->second);
  } catch (const json::exception& e) {
    fail("{}: load_state_dict: 'param_groups' is not valid JSON: {}", name_, e.what());
  }
  TG_CHECK(saved.is_array(), "{}: load_state_dict: 'param_groups' must be a JSON list of groups", name_);
  TG_CHECK(saved.size() == groups_.size(),
           "{}: loaded state dict has a different number of parameter groups (the optimizer has {}, the state dict {})",
           name_, groups_.size(), saved.size());

  // Parse everything before changing anything, so a bad state dict leaves the optimizer untouched.
  std::vector<GroupOptions> new_options(groups_.size());
  std::unordered_map<size_t, const Tensor*> id_map;  // saved index -> parameter
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const json& jg = saved[gi];
    TG_CHECK(jg.is_object() && jg.contains("params") && jg["params"].is_array(),
             "{}: load_state_dict: param_groups[{}] must be an object with a 'params' list", name_, gi);
    const json& ids = jg["params"];
    TG_CHECK(ids.size() == groups_[gi].params.size(),
             "{}: loaded state dict contains a parameter group that doesn't match the size of optimizer's group "
             "(group {}: the optimizer has {} parameters, the state dict {})",
             name_, gi, groups_[gi].params.size(), ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
      TG_CHECK(ids[k].is_number_unsigned(), "{}: load_state_dict: param_groups[{}].params must hold indices", name_,
               gi);
      id_map[ids[k].get<size_t>()] = &groups_[gi].params[k];
    }
    for (const auto& [key, value] : jg.items()) {
      if (key == "params") continue;
      auto h = hyper_from_json(value);
      TG_CHECK(h.has_value(), "{}: load_state_dict: param_groups[{}].{} is not a number, flag or pair: {}", name_, gi,
               key, value.dump());
      new_options[gi].set(key, *h);
    }
    for (const auto& [key, value] : defaults_.items()) {
      TG_CHECK(new_options[gi].contains(key), "{}: load_state_dict: param_groups[{}] has no '{}'", name_, gi, key);
      TG_CHECK(new_options[gi].at(key).kind() == value.kind(), "{}: load_state_dict: param_groups[{}].{} must be {}",
               name_, gi, key, kind_name(value.kind()));
    }
    validate(new_options[gi]);
  }

  std::unordered_map<const TensorImpl*, ParamState> new_state;
  for (const auto& [key, t] : sd.tensors) {
    auto parsed = parse_state_key(key);
    TG_CHECK(parsed.has_value(), "{}: load_state_dict: unexpected tensor '{}' (expected state.<index>.<name>)", name_,
             key);
    const auto& [index, name] = *parsed;
    auto it = id_map.find(index);
    TG_CHECK(it != id_map.end(), "{}: load_state_dict: tensor '{}' refers to parameter {}, which no group lists", name_,
             key, index);
    const Tensor& p = *it->second;
    Tensor copy;
    if (name == "step") {
      TG_CHECK(t.numel() == 1 && (is_floating(t.dtype()) || t.dtype() == DType::Int64),
               "{}: load_state_dict: '{}' must hold one number, got shape {}", name_, key, shape_str(t.shape()));
      copy = Tensor::scalar(t.item(), DType::Float32);
    } else {
      TG_CHECK(t.shape() == p.shape(), "{}: load_state_dict: '{}' has shape {}, but parameter {} has shape {}", name_,
               key, shape_str(t.shape()), index, shape_str(p.shape()));
      TG_CHECK(is_floating(t.dtype()), "{}: load_state_dict: '{}' must be a floating point tensor, got {}", name_, key,
               dtype_name(t.dtype()));
      copy = Tensor::empty(p.shape(), {.dtype = p.dtype()});
      autograd::NoGradGuard no_grad;
      copy.copy_(t);
    }
    new_state[p.impl_ptr().get()].set(name, copy);
  }

  for (size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].options = std::move(new_options[gi]);
  state_ = std::move(new_state);
}

void Optimizer::save(const std::string& path) const {
  const SafetensorsFile sd = state_dict();
  save_safetensors(path, sd.tensors, sd.metadata);
}

void Optimizer::load(const std::string& path) { load_state_dict(load_safetensors(path)); }

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

}  // namespace tapegrad::optim
