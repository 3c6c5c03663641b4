// The tape.
//
// Every differentiable op, when grad mode is on and one of its inputs requires grad, records one Node:
// the op's name, an edge to where each input's gradient must go, the tensors it saved, and its backward
// function. Nodes are numbered in execution order (Node::seq), so the nodes reachable from a tensor,
// sorted by seq, are the tape of the computation that produced it. backward() replays that tape in
// reverse: a node runs once every node recorded after it has delivered its gradients, which reverse
// execution order guarantees.
//
// Writing an op (see core/ops/elementwise.cpp for many examples):
//
//   Tensor mul(const Tensor& a, const Tensor& b) {
//     Tensor out = ...forward kernel...;
//     autograd::record("mul", {a, b}, {out}, {a, b},   // inputs, outputs, saved
//                      [](autograd::Context& ctx) -> autograd::Grads {
//                        const Tensor& g = ctx.grad(0);
//                        return {g * ctx.saved(1), g * ctx.saved(0)};
//                      });
//     return out;
//   }
//
// The backward returns one gradient per input (undefined where an input needs none); each gradient
// may have the broadcast shape of the op, and the engine reduces it to the input's shape and dtype in
// one place (reduce_grad). Backward functions are written with differentiable ops, so create_graph
// records their own tape for higher-order gradients. Capture non-tensor state (dims, scalars) in the
// lambda; save tensors through `saved`, never by capture, so they are version-checked and freed.
#pragma once

#include "tensor.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tapegrad::autograd {

// ---- grad mode: thread-local ----
bool grad_enabled();
void set_grad_enabled(bool on);

// RAII: no recording in this scope (what optimizers and evaluation use).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// RAII: recording on again inside a NoGradGuard.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// Anomaly mode (thread-local): nodes remember where in the forward they were recorded (the module path
// when recorded inside a Module's forward), and a NaN or Inf produced in backward throws
//   autograd anomaly: the backward of 'log' (node 2 of 5, recorded in Net.head (LogHead) forward) produced nan ...
bool anomaly_enabled();
void set_anomaly_enabled(bool on);

// RAII: anomaly mode on in this scope (torch.autograd.detect_anomaly).
class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard() : prev_(anomaly_enabled()) { set_anomaly_enabled(true); }
  ~DetectAnomalyGuard() { set_anomaly_enabled(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

// RAII (thread-local): the nodes recorded in this scope are "recorded in <where>" (anomaly mode only).
// Module::operator() opens one per module, with its path: "Net.head (LogHead)".
class ForwardScope {
 public:
  explicit ForwardScope(std::string where);
  ~ForwardScope();
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;

 private:
  std::string prev_;
};
// The innermost open ForwardScope ("" outside any).
const std::string& forward_scope();

// Profiling (thread-local): nodes accumulate the wall time of their backward, and record the wall time
// of their forward: the time since the previous node was recorded on this thread (or since
// profile_mark()), so every moment of a forward pass is charged to the op that ends it. Off: no cost
// beyond one flag test per node.
bool profiling_enabled();
void set_profiling_enabled(bool on);
// Starts the forward clock (call before a forward pass that is profiled); set_profiling_enabled(true) does too.
void profile_mark();

// Where a node sends the gradient of one of its inputs: to the node that produced that input (output
// `output_nr` of it), or, for a leaf that requires grad, into that leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;
  uint32_t output_nr = 0;
  std::shared_ptr<TensorImpl> leaf;
  bool valid() const { return node != nullptr || leaf != nullptr; }
};

// A tensor saved for backward, with the storage version it had when saved.
struct SavedTensor {
  Tensor tensor;     // for a saved output: a detached alias, re-linked to the node when unpacked
  uint64_t version = 0;
  bool is_output = false;
  uint32_t output_nr = 0;  // which output, when is_output
  std::string label;  // for the tape printer: "self", "other", "result", ...
};

struct OutputInfo {
  Shape shape;
  DType dtype;
  std::weak_ptr<TensorImpl> retained;  // set by retain_grad()
  std::vector<TensorHook> hooks;       // set by register_hook() on a non-leaf
};

class Context;
using Grads = std::vector<Tensor>;
using BackwardFn = std::function<Grads(Context&)>;

class Node : public std::enable_shared_from_this<Node> {
 public:
  std::string name;  // the op: "mul", "conv2d", "batch_norm", ...
  uint64_t seq = 0;  // execution order
  std::vector<Edge> next;            // one per input
  std::vector<Shape> input_shapes;   // to reduce broadcast gradients
  std::vector<DType> input_dtypes;
  std::vector<OutputInfo> outputs;
  std::vector<SavedTensor> saved;
  BackwardFn backward;
  bool released = false;   // saved tensors freed by a backward without retain_graph
  std::string where;       // anomaly mode: the forward scope the node was recorded in ("" if none)
  double forward_ms = 0;   // profiling
  double backward_ms = 0;  // profiling
  uint64_t backward_calls = 0;

  // Frees the saved tensors and the backward closure.
  void release();
};

// What a backward function sees.
class Context {
 public:
  Context(Node& node, Grads grads) : node_(node), grads_(std::move(grads)) {}
  // The gradient flowing into output i (zeros if nothing reached it).
  const Tensor& grad(size_t i = 0) const { return grads_.at(i); }
  // Saved tensor i, after checking that nothing modified it in place since it was saved.
  Tensor saved(size_t i) const;
  // Whether input i needs a gradient (returning an undefined Tensor for it is then fine).
  bool needs_grad(size_t i) const { return node_.next.at(i).valid(); }
  const Node& node() const { return node_; }

 private:
  Node& node_;
  Grads grads_;
};

// True if grad mode is on and any of the tensors requires grad: whether an op must record.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records a node for `outputs = op(inputs)` when needs_grad(inputs); otherwise does nothing.
// `saved` may contain inputs and outputs; outputs are recognised and stored without a reference
// cycle. `labels` optionally names the saved tensors for the tape printer.
// Returns the node (nullptr when nothing was recorded).
std::shared_ptr<Node> record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                             const std::vector<Tensor>& saved, BackwardFn backward,
                             std::vector<std::string> labels = {});

// Reduces a gradient of broadcast shape to `shape` (summing the broadcast dims) and casts it to dtype.
// The one place where broadcasting is undone.
Tensor reduce_grad(const Tensor& grad, const Shape& shape, DType dtype, const std::string& op);

// Replays the tape behind `roots` in reverse, accumulating into leaves' .grad.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads = {}, bool retain_graph = false,
              bool create_graph = false);

// The gradients of `outputs` with respect to `inputs`, without touching any .grad.
// An input the outputs do not depend on gives an error unless allow_unused (then an undefined Tensor).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool create_graph = false, bool allow_unused = false);

// ---- the tape made visible ----

// The nodes behind `roots`, in execution order.
std::vector<std::shared_ptr<Node>> tape(const std::vector<Tensor>& roots);
// One line per node: index, op, input shapes -> output shapes, saved tensors.
std::string format_tape(const std::vector<Tensor>& roots);
// Graphviz DOT of the same graph: leaves as boxes, ops as ellipses, edges in the direction of data flow.
std::string to_dot(const std::vector<Tensor>& roots);

}  // namespace tapegrad::autograd
