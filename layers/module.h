// Module: named parameters, buffers and submodules, in the spirit of torch.nn.Module.
//
// A user model reads like the Python:
//
//   struct CNN : nn::Module {
//     nn::ModuleRef<nn::Conv2d> conv1;
//     nn::ModuleRef<nn::Linear> fc;
//     CNN() : Module("CNN") {
//       conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 64, nn::Conv2dOptions{.kernel_size = 3, .padding = 1}));
//       fc = register_module("fc", std::make_shared<nn::Linear>(64 * 16 * 16, 10));
//     }
//     Tensor forward(const Tensor& x) override { return fc(conv1(x).flatten(1)); }
//   };
//
// Registration returns a handle to the very object in the registry, so the member and the registry can
// never drift apart: a Tensor handle shares its TensorImpl (to(dtype) and load_state_dict change it in
// place), and a ModuleRef looks its child up through the registry slot, so replacing a child
// (convert_sync_batchnorm) is seen by the member too.
//
// state_dict() keys are PyTorch's: pre-order over modules, children in registration order, parameters
// then buffers of each module in registration order, joined with dots ("conv1.weight", "bn1.running_mean").
#pragma once

#include "../core/serialize.h"
#include "../core/tensor.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad::nn {

class Module;
using ModulePtr = std::shared_ptr<Module>;

// A registry slot: the registry and every handle to a child share it.
using ModuleSlot = std::shared_ptr<ModulePtr>;

// Handle to a registered child module of type T. Calling it runs the child's forward; -> reaches T's
// members. If the child was replaced by a module of another type, -> throws (calling still works).
template <typename T>
class ModuleRef {
 public:
  ModuleRef() = default;
  explicit ModuleRef(ModuleSlot slot) : slot_(std::move(slot)) {}

  T* operator->() const { return &**this; }
  T& operator*() const;
  std::shared_ptr<T> ptr() const { return std::dynamic_pointer_cast<T>(module()); }
  const ModulePtr& module() const;
  Tensor operator()(const Tensor& x) const;
  explicit operator bool() const { return slot_ && *slot_; }

 private:
  ModuleSlot slot_;
};

// Raised by load_state_dict; also what strict=false returns.
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

// ---- hooks (torch.nn.Module's register_forward_pre_hook, register_forward_hook, register_full_backward_hook) ----
// pre(module, input) before forward: a defined return value replaces the input.
using ForwardPreHook = std::function<Tensor(Module& module, const Tensor& input)>;
// post(module, input, output) after forward.
using ForwardHook = std::function<void(Module& module, const Tensor& input, const Tensor& output)>;
// backward(module, grad_input, grad_output) once the gradient of the module's input is known: grad_output
// is the gradient of the loss with respect to the module's output, grad_input the one with respect to its
// input (undefined when the input does not require grad). A defined return value replaces grad_input.
// The module must outlive the backward of the graphs it recorded.
using BackwardHook = std::function<Tensor(Module& module, const Tensor& grad_input, const Tensor& grad_output)>;

// The hooks of one module, shared with the handles that can remove them.
struct ModuleHooks {
  std::vector<std::pair<size_t, ForwardPreHook>> forward_pre;
  std::vector<std::pair<size_t, ForwardHook>> forward;
  std::vector<std::pair<size_t, BackwardHook>> backward;
  size_t next_id = 0;
  void remove(size_t id);
};

// What register_*_hook returns: remove() unregisters the hook. Removing twice, or after the module is
// gone, does nothing.
class HookHandle {
 public:
  HookHandle() = default;
  HookHandle(std::weak_ptr<ModuleHooks> hooks, size_t id) : hooks_(std::move(hooks)), id_(id) {}
  void remove();
  size_t id() const { return id_; }

 private:
  std::weak_ptr<ModuleHooks> hooks_;
  size_t id_ = 0;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  // type_name is what the printed tree and error messages call this module ("Conv2d", "CNN").
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- forward ----
  // The single-tensor forward that Sequential and ModuleRef call. Modules with other signatures
  // (losses, LSTM) add their own overloads.
  virtual Tensor forward(const Tensor& x);
  // forward() with the registered hooks around it: forward pre-hooks, forward, forward hooks; with
  // backward hooks, the input and output pass through identity nodes ("backward_hook") whose backward
  // calls them. In anomaly mode the nodes recorded here remember the module path ("Net.head (LogHead)").
  Tensor operator()(const Tensor& x);
  HookHandle register_forward_pre_hook(ForwardPreHook hook);
  HookHandle register_forward_hook(ForwardHook hook);
  HookHandle register_full_backward_hook(BackwardHook hook);
  // Same as handle.remove() for the handle with this id.
  void remove_forward_hook(size_t id) { hooks_->remove(id); }

  // ---- registration ----
  // An undefined tensor (e.g. bias=false) is not registered, like PyTorch's None: not in the state dict.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  ModuleRef<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    return ModuleRef<M>(register_module_slot(name, std::move(module)));
  }
  // Puts `module` in the slot of the existing child `name` (every handle to it sees the new one).
  void replace_module(const std::string& name, ModulePtr module);

  // ---- access ----
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<ModulePtr> children() const;
  std::vector<std::pair<std::string, ModulePtr>> named_children() const;
  // This module and all below it, pre-order; the root's name is "".
  std::vector<ModulePtr> modules();
  std::vector<std::pair<std::string, ModulePtr>> named_modules();
  // A direct parameter or buffer by name (undefined if absent).
  Tensor parameter(const std::string& name) const;
  Tensor buffer(const std::string& name) const;
  // Replace a registered parameter's / buffer's tensor (every later lookup sees the new one).
  void set_parameter(const std::string& name, const Tensor& value);
  void set_buffer(const std::string& name, const Tensor& value);

  // ---- modes ----
  // Sets the training flag here and below. Only dropout, batch/instance norm and the RNNs care.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Clears every parameter's .grad (set_to_none) or zeros it in place.
  void zero_grad(bool set_to_none = true);
  // Converts floating parameters and buffers in place (integer buffers such as num_batches_tracked stay).
  void to(DType dtype);

  // ---- state ----
  NamedTensors state_dict() const;
  // Copies values into the existing tensors (same objects; dtype converted). Shape mismatches are always
  // an error; missing and unexpected keys are an error when strict. All problems are listed in one
  // message, as PyTorch's "Error(s) in loading state_dict for CNN: ...".
  LoadStateDictResult load_state_dict(const NamedTensors& state, bool strict = true);
  // state_dict to / from a safetensors file (atomic write).
  void save(const std::string& path) const;
  void load(const std::string& path, bool strict = true);

  // ---- printing ----
  const std::string& type_name() const { return type_name_; }
  // The text inside the parentheses of this module's line: "3, 64, kernel_size=(3, 3), ...".
  virtual std::string extra_repr() const { return ""; }
  // The module tree in PyTorch's format.
  std::string repr() const;

 protected:
  ModuleSlot register_module_slot(const std::string& name, ModulePtr module);
  // Hook for subclasses that accept older checkpoints (BatchNorm without num_batches_tracked).
  virtual void adapt_state_dict(const std::string& /*prefix*/, NamedTensors& /*state*/) const {}

 private:
  void collect_state(const std::string& prefix, NamedTensors& out) const;
  void check_name(const std::string& name, const char* what) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, ModuleSlot>> children_;
  std::shared_ptr<ModuleHooks> hooks_ = std::make_shared<ModuleHooks>();
};

template <typename T>
const ModulePtr& ModuleRef<T>::module() const {
  if (!slot_ || !*slot_) fail("ModuleRef: the module handle is empty (was it registered?)");
  return *slot_;
}

template <typename T>
T& ModuleRef<T>::operator*() const {
  T* p = dynamic_cast<T*>(module().get());
  if (!p) fail("ModuleRef: the child is now a {} and has no members of the requested type", module()->type_name());
  return *p;
}

template <typename T>
Tensor ModuleRef<T>::operator()(const Tensor& x) const {
  return (*module())(x);
}

}  // namespace tapegrad::nn
