#include "module.h"

#include "../core/autograd.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>

namespace tapegrad::nn {

namespace {
// PyTorch prints shapes in these messages as torch.Size([64, 3, 3, 3]).
std::string torch_size(const Shape& s) { return fmt::format("torch.Size({})", shape_list(s)); }

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size(); ++i) s += fmt::format("{}\"{}\"", i ? ", " : "", keys[i]);
  return s;
}
}  // namespace

// ---- forward ----

Tensor Module::forward(const Tensor&) { fail("{}: forward(const Tensor&) is not implemented", type_name_); }

Tensor Module::operator()(const Tensor& x) {
  Tensor out = forward(x);
  for (auto& [id, hook] : forward_hooks_) hook(*this, x, out);
  return out;
}

size_t Module::register_forward_hook(ForwardHook hook) {
  forward_hooks_.emplace_back(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

void Module::remove_forward_hook(size_t id) {
  std::erase_if(forward_hooks_, [id](const auto& h) { return h.first == id; });
}

// ---- registration ----

void Module::check_name(const std::string& name, const char* what) const {
  TG_CHECK(!name.empty(), "{}: {} name can't be empty string \"\"", type_name_, what);
  TG_CHECK(name.find('.') == std::string::npos, "{}: {} name can't contain \".\", got \"{}\"", type_name_, what, name);
  auto taken = [&](const auto& v) {
    return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
  };
  TG_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), "{}: attribute '{}' already exists",
           type_name_, name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "parameter");
  if (!t.defined()) return t;
  TG_CHECK(t.is_leaf(), "{}: cannot register parameter '{}': it is not a leaf tensor (detach() it first)", type_name_,
           name);
  t.requires_grad_(requires_grad);
  if (t.name().empty()) t.set_name(name);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "buffer");
  if (!t.defined()) return t;
  buffers_.emplace_back(name, t);
  return t;
}

ModuleSlot Module::register_module_slot(const std::string& name, ModulePtr module) {
  check_name(name, "module");
  TG_CHECK(module != nullptr, "{}: cannot register an empty module as '{}'", type_name_, name);
  auto slot = std::make_shared<ModulePtr>(std::move(module));
  children_.emplace_back(name, slot);
  return slot;
}

void Module::replace_module(const std::string& name, ModulePtr module) {
  TG_CHECK(module != nullptr, "{}: cannot replace '{}' with an empty module", type_name_, name);
  for (auto& [n, slot] : children_) {
    if (n == name) {
      *slot = std::move(module);
      return;
    }
  }
  fail("{}: no child module named '{}'", type_name_, name);
}

// ---- access ----

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out = parameters_;
  if (recurse) {
    for (const auto& [name, slot] : children_)
      for (auto& [n, t] : (*slot)->named_parameters(true)) out.emplace_back(name + "." + n, t);
  }
  // A tensor shared by two modules (tied weights) appears once, under its first name.
  std::vector<std::pair<std::string, Tensor>> unique;
  std::set<const TensorImpl*> seen;
  for (auto& p : out)
    if (seen.insert(p.second.impl_ptr().get()).second) unique.push_back(std::move(p));
  return unique;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out = buffers_;
  if (recurse) {
    for (const auto& [name, slot] : children_)
      for (auto& [n, t] : (*slot)->named_buffers(true)) out.emplace_back(name + "." + n, t);
  }
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, ModulePtr>> Module::named_children() const {
  std::vector<std::pair<std::string, ModulePtr>> out;
  for (const auto& [name, slot] : children_) out.emplace_back(name, *slot);
  return out;
}

std::vector<ModulePtr> Module::children() const {
  std::vector<ModulePtr> out;
  for (const auto& [name, slot] : children_) out.push_back(*slot);
  return out;
}

std::vector<std::pair<std::string, ModulePtr>> Module::named_modules() {
  std::vector<std::pair<std::string, ModulePtr>> out{{"", shared_from_this()}};
  for (const auto& [name, slot] : children_)
    for (auto& [n, m] : (*slot)->named_modules()) out.emplace_back(n.empty() ? name : name + "." + n, m);
  return out;
}

std::vector<ModulePtr> Module::modules() {
  std::vector<ModulePtr> out;
  for (auto& [n, m] : named_modules()) out.push_back(m);
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  for (const auto& [n, t] : parameters_)
    if (n == name) return t;
  return {};
}

Tensor Module::buffer(const std::string& name) const {
  for (const auto& [n, t] : buffers_)
    if (n == name) return t;
  return {};
}

void Module::set_parameter(const std::string& name, const Tensor& value) {
  for (auto& [n, t] : parameters_) {
    if (n == name) {
      t = value;
      return;
    }
  }
  fail("{}: no parameter named '{}'", type_name_, name);
}

void Module::set_buffer(const std::string& name, const Tensor& value) {
  for (auto& [n, t] : buffers_) {
    if (n == name) {
      t = value;
      return;
    }
  }
  fail("{}: no buffer named '{}'", type_name_, name);
}

// ---- modes ----

void Module::train(bool on) {
  training_ = on;
  for (const auto& [name, slot] : children_) (*slot)->train(on);
}

void Module::zero_grad(bool set_to_none) {
  for (Tensor& p : parameters()) {
    if (set_to_none)
      p.set_grad(Tensor());
    else
      p.zero_grad();
  }
}

void Module::to(DType dtype) {
  TG_CHECK(is_floating(dtype), "{}.to: expected a floating dtype, got {}", type_name_, dtype_name(dtype));
  auto convert = [&](Tensor& t) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) return;
    // Change the TensorImpl itself, so every handle (the member, the registry, an optimizer) follows.
    Tensor c = t.detach().to(dtype);
    TensorImpl& impl = t.impl();
    impl.storage = c.storage();
    impl.strides = c.strides();
    impl.offset = c.offset();
    impl.dtype = dtype;
    impl.grad.reset();
  };
  for (auto& [n, t] : parameters_) convert(t);
  for (auto& [n, t] : buffers_) convert(t);
  for (const auto& [name, slot] : children_) (*slot)->to(dtype);
}

// ---- state ----

void Module::collect_state(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [n, t] : parameters_) out.emplace_back(prefix + n, t.detach());
  for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t.detach());
  for (const auto& [name, slot] : children_) (*slot)->collect_state(prefix + name + ".", out);
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect_state("", out);
  return out;
}

LoadStateDictResult Module::load_state_dict(const NamedTensors& state_in, bool strict) {
  NamedTensors state = state_in;
  // Let modules adapt older layouts (pre-order, with their prefix).
  std::vector<std::pair<std::string, const Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    m->adapt_state_dict(prefix, state);
    for (const auto& [name, slot] : m->children_) stack.emplace_back(prefix + name + ".", slot->get());
  }

  NamedTensors own;
  collect_state("", own);
  LoadStateDictResult result;
  std::vector<std::string> mismatches;
  std::set<std::string> used;
  // The checkpoint's entries by name (the first of equal names), so that loading stays linear in the
  // number of entries however many a file holds.
  std::unordered_map<std::string_view, size_t> by_name;
  for (size_t i = 0; i < state.size(); ++i) by_name.try_emplace(state[i].first, i);
  auto find = [&](const std::string& key) {
    auto f = by_name.find(key);
    return f == by_name.end() ? state.end() : state.begin() + static_cast<std::ptrdiff_t>(f->second);
  };
  for (auto& [key, target] : own) {
    auto it = find(key);
    if (it == state.end()) {
      result.missing_keys.push_back(key);
      continue;
    }
    used.insert(key);
    if (it->second.shape() != target.shape()) {
      mismatches.push_back(fmt::format(
          "size mismatch for {}: copying a param with shape {} from checkpoint, the shape in current model is {}.", key,
          torch_size(it->second.shape()), torch_size(target.shape())));
    }
  }
  for (const auto& [key, t] : state)
    if (!used.count(key)) result.unexpected_keys.push_back(key);

  std::vector<std::string> errors;
  if (strict && !result.unexpected_keys.empty())
    errors.push_back(fmt::format("Unexpected key(s) in state_dict: {}. ", quoted_list(result.unexpected_keys)));
  if (strict && !result.missing_keys.empty())
    errors.push_back(fmt::format("Missing key(s) in state_dict: {}. ", quoted_list(result.missing_keys)));
  errors.insert(errors.end(), mismatches.begin(), mismatches.end());
  if (!errors.empty()) {
    std::string msg = fmt::format("load_state_dict: Error(s) in loading state_dict for {}:", type_name_);
    for (const auto& e : errors) msg += "\n\t" + e;
    throw Error(msg);
  }

  // Everything checked: copy (nothing is modified when any check fails).
  autograd::NoGradGuard no_grad;
  for (auto& [key, target] : own) {
    auto it = find(key);
    if (it != state.end()) target.copy_(it->second);
  }
  return result;
}

void Module::save(const std::string& path) const {
  save_safetensors(path, state_dict(), {{"format", "pt"}, {"module", type_name_}});
}

void Module::load(const std::string& path, bool strict) { load_state_dict(load_safetensors(path).tensors, strict); }

// ---- printing ----

std::string Module::repr() const {
  // PyTorch's format: "Type(extra)" for a leaf module, else a block with "(name): child" lines,
  // continuation lines of a child indented by two spaces.
  std::vector<std::string> lines;
  const std::string extra = extra_repr();
  if (!extra.empty()) {
    std::istringstream ss(extra);
    for (std::string l; std::getline(ss, l);) lines.push_back(l);
  }
  for (const auto& [name, slot] : children_) {
    std::string child = (*slot)->repr();
    std::string indented;
    for (size_t i = 0; i < child.size(); ++i) {
      indented.push_back(child[i]);
      if (child[i] == '\n') indented += "  ";
    }
    lines.push_back(fmt::format("({}): {}", name, indented));
  }
  std::string s = type_name_ + "(";
  if (!lines.empty()) {
    if (lines.size() == 1 && children_.empty()) {
      s += lines[0];
    } else {
      s += "\n";
      for (const auto& l : lines) s += "  " + l + "\n";
    }
  }
  return s + ")";
}

}  // namespace tapegrad::nn
