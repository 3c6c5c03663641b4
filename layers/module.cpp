#include "module.h"

#include "../core/autograd.h"

#include <algorithm>
#include <optional>
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

namespace {

// The modules whose forward is running on this thread, innermost last, with their paths (anomaly mode).
struct Frame {
  const Module* module;
  std::string path;
};
thread_local std::vector<Frame> t_frames;

// Pops the frame pushed by operator(), also when forward throws.
struct FramePop {
  bool active = false;
  ~FramePop() {
    if (active) t_frames.pop_back();
  }
};

// Shared by the two identity nodes of one call with backward hooks.
struct BackwardHookCall {
  Module* module;
  std::vector<BackwardHook> hooks;
  Tensor grad_output;
  bool input_requires_grad = false;
};

// Calls the hooks in registration order; each may replace grad_input.
Tensor run_backward_hooks(BackwardHookCall& call, Tensor grad_input) {
  for (const auto& hook : call.hooks) {
    Tensor r = hook(*call.module, grad_input, call.grad_output);
    if (r.defined()) grad_input = r;
  }
  return grad_input;
}

// An alias of x recorded as its own node, so that backward passes through `backward`.
Tensor identity_node(const Tensor& x, autograd::BackwardFn backward) {
  Tensor out = x.detach();
  autograd::record("backward_hook", {x}, {out}, {}, std::move(backward));
  return out;
}

}  // namespace

void ModuleHooks::remove(size_t id) {
  auto match = [id](const auto& h) { return h.first == id; };
  std::erase_if(forward_pre, match);
  std::erase_if(forward, match);
  std::erase_if(backward, match);
}

void HookHandle::remove() {
  if (auto h = hooks_.lock()) h->remove(id_);
  hooks_.reset();
}

Tensor Module::operator()(const Tensor& input) {
  FramePop pop;
  std::optional<autograd::ForwardScope> scope;
  if (autograd::anomaly_enabled()) {
    // The path from the outermost module running: "Net.head"; a module called outside its parent's
    // forward is named by its type.
    std::string path = type_name_;
    if (!t_frames.empty()) {
      const Frame& parent = t_frames.back();
      for (const auto& [name, slot] : parent.module->children_)
        if (slot->get() == this) path = parent.path + "." + name;
    }
    scope.emplace(t_frames.empty() ? path : fmt::format("{} ({})", path, type_name_));
    t_frames.push_back({this, std::move(path)});
    pop.active = true;
  }
  // Copies: a hook may remove itself.
  const std::shared_ptr<ModuleHooks> hooks = hooks_;
  Tensor x = input;
  if (!hooks->forward_pre.empty()) {
    auto pre = hooks->forward_pre;
    for (auto& [id, hook] : pre) {
      Tensor r = hook(*this, x);
      if (r.defined()) x = r;
    }
  }
  std::shared_ptr<BackwardHookCall> call;
  if (!hooks->backward.empty() && autograd::grad_enabled()) {
    call = std::make_shared<BackwardHookCall>();
    call->module = this;
    for (auto& [id, hook] : hooks->backward) call->hooks.push_back(hook);
    call->input_requires_grad = x.defined() && x.requires_grad();
    if (call->input_requires_grad) {
      // Runs after every use of x inside forward delivered its gradient: the hooks see the total.
      x = identity_node(x, [call](autograd::Context& ctx) -> autograd::Grads {
        Tensor g = run_backward_hooks(*call, ctx.grad());
        call->grad_output = Tensor();
        return {g};
      });
    }
  }
  Tensor out = forward(x);
  if (call && out.defined() && out.requires_grad()) {
    out = identity_node(out, [call](autograd::Context& ctx) -> autograd::Grads {
      call->grad_output = ctx.grad();
      if (!call->input_requires_grad) run_backward_hooks(*call, Tensor());
      return {ctx.grad()};
    });
  }
  if (!hooks->forward.empty()) {
    auto post = hooks->forward;
    for (auto& [id, hook] : post) hook(*this, x, out);
  }
  return out;
}

HookHandle Module::register_forward_pre_hook(ForwardPreHook hook) {
  hooks_->forward_pre.emplace_back(hooks_->next_id, std::move(hook));
  return HookHandle(hooks_, hooks_->next_id++);
}

HookHandle Module::register_forward_hook(ForwardHook hook) {
  hooks_->forward.emplace_back(hooks_->next_id, std::move(hook));
  return HookHandle(hooks_, hooks_->next_id++);
}

HookHandle Module::register_full_backward_hook(BackwardHook hook) {
  hooks_->backward.emplace_back(hooks_->next_id, std::move(hook));
  return HookHandle(hooks_, hooks_->next_id++);
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
