#include "autograd.h"

#include "ops/elementwise.h"
#include "ops/reduce.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace tapegrad::autograd {

namespace {
thread_local bool t_grad_enabled = true;
thread_local bool t_anomaly = false;
thread_local bool t_profiling = false;
thread_local std::string t_scope;
thread_local std::chrono::steady_clock::time_point t_last_record;  // profiling: when the last node was recorded
// Execution order across threads: a graph built by several threads still replays correctly.
std::atomic<uint64_t> g_next_seq{0};

std::string second_backward_message(const Node& n) {
  return fmt::format(
      "{}: Trying to backward through the graph a second time (or directly access saved tensors after they have "
      "already been freed). Saved intermediate values of the graph are freed when you call backward() or "
      "autograd::grad(). Specify retain_graph=true if you need to backward through the graph a second time or if you "
      "need to access saved tensors after calling backward.",
      n.name);
}
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }
bool anomaly_enabled() { return t_anomaly; }
void set_anomaly_enabled(bool on) { t_anomaly = on; }
bool profiling_enabled() { return t_profiling; }
void set_profiling_enabled(bool on) {
  t_profiling = on;
  profile_mark();
}
void profile_mark() { t_last_record = std::chrono::steady_clock::now(); }

ForwardScope::ForwardScope(std::string where) : prev_(std::exchange(t_scope, std::move(where))) {}
ForwardScope::~ForwardScope() { t_scope = std::move(prev_); }
const std::string& forward_scope() { return t_scope; }

void Node::release() {
  saved.clear();
  saved.shrink_to_fit();
  backward = nullptr;
  released = true;
}

Tensor Context::saved(size_t i) const {
  if (node_.released) throw Error(second_backward_message(node_));
  const SavedTensor& s = node_.saved.at(i);
  if (!s.tensor.defined()) return s.tensor;  // record() accepts undefined entries (an absent optional input)
  if (s.tensor.version() != s.version) {
    fail(
        "{}: one of the variables needed for gradient computation has been modified by an inplace operation: "
        "[{} {}]{} is at version {}; expected version {} instead.",
        node_.name, dtype_name(s.tensor.dtype()), shape_list(s.tensor.shape()),
        s.is_output ? fmt::format(", which is output {} of {},", s.output_nr, node_.name) : "", s.tensor.version(),
        s.version);
  }
  if (!s.is_output) return s.tensor;
  // A saved output was stored without its grad_fn (no reference cycle); re-link it so that a
  // create_graph backward can differentiate through it.
  Tensor t = s.tensor.detach();
  t.impl().requires_grad = true;
  t.impl().grad_fn = const_cast<Node&>(node_).shared_from_this();
  t.impl().output_nr = s.output_nr;
  return t;
}

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<Node> record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                             const std::vector<Tensor>& saved, BackwardFn backward, std::vector<std::string> labels) {
  if (!needs_grad(inputs)) return nullptr;
  auto node = std::make_shared<Node>();
  if (t_profiling) {
    const auto now = std::chrono::steady_clock::now();
    node->forward_ms = std::chrono::duration<double, std::milli>(now - t_last_record).count();
    t_last_record = now;
  }
  node->name = std::move(name);
  node->seq = g_next_seq.fetch_add(1, std::memory_order_relaxed);
  node->backward = std::move(backward);
  node->next.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined() && in.requires_grad()) {
      if (in.grad_fn()) {
        e.node = in.grad_fn();
        e.output_nr = in.output_nr();
      } else {
        e.leaf = in.impl_ptr();
      }
    }
    node->next.push_back(std::move(e));
    node->input_shapes.push_back(in.defined() ? in.shape() : Shape{});
    node->input_dtypes.push_back(in.defined() ? in.dtype() : DType::Float32);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl& o = outputs[i].impl();
    node->outputs.push_back(OutputInfo{o.shape, o.dtype, {}, {}});
    if (!is_floating(o.dtype)) continue;
    o.requires_grad = true;
    o.grad_fn = node;
    o.output_nr = static_cast<uint32_t>(i);
  }
  node->saved.reserve(saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    const Tensor& s = saved[i];
    SavedTensor st;
    st.label = i < labels.size() ? labels[i] : fmt::format("saved{}", i);
    if (s.defined()) {
      st.version = s.version();
      for (size_t k = 0; k < outputs.size(); ++k) {
        if (outputs[k].same(s)) {
          st.is_output = true;
          st.output_nr = static_cast<uint32_t>(k);
        }
      }
      st.tensor = st.is_output ? s.detach() : s;
    }
    node->saved.push_back(std::move(st));
  }
  if (t_anomaly) node->where = t_scope;
  return node;
}

Tensor reduce_grad(const Tensor& grad, const Shape& shape, DType dtype, const std::string& op) {
  Tensor g = grad;
  if (g.shape() != shape) {
    TG_CHECK(numel_of(shape) <= g.numel() || g.numel() == 0,
             "{}: backward returned a gradient of shape {} for an input of shape {}", op, shape_str(g.shape()),
             shape_str(shape));
    g = sum_to(g, shape);
  }
  if (g.dtype() != dtype) g = g.to(dtype);
  return g;
}

namespace {

// Adds g into a leaf's .grad: the one place where gradients accumulate.
void accumulate_into_leaf(TensorImpl& leaf, Tensor g, bool create_graph) {
  for (const auto& hook : leaf.hooks) {
    Tensor r = hook(g);
    if (r.defined()) g = r;
  }
  TG_CHECK(g.shape() == leaf.shape && g.dtype() == leaf.dtype,
           "backward: gradient of shape {} ({}) does not match its leaf of shape {} ({})", shape_str(g.shape()),
           dtype_name(g.dtype()), shape_str(leaf.shape), dtype_name(leaf.dtype));
  if (!leaf.grad) {
    if (create_graph) {
      leaf.grad = g.impl_ptr();
      return;
    }
    // Keep the incoming buffer when nobody else can see it; otherwise copy, so that accumulating into
    // .grad later never writes into another tensor.
    const bool owned = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && g.is_contiguous();
    leaf.grad = owned ? g.detach().impl_ptr() : g.detach().clone().impl_ptr();
    leaf.grad->requires_grad = false;
    leaf.grad->grad_fn = nullptr;
    return;
  }
  Tensor existing(leaf.grad);
  if (create_graph) {
    leaf.grad = (existing + g).impl_ptr();
  } else {
    NoGradGuard ng;
    existing.add_(g);
  }
}

// Anomaly mode: the gradient a backward produced for input i must be finite. `index` and `count`
// place the node in the tape being replayed.
void check_finite(const Node& n, const Tensor& g, size_t i, size_t index, size_t count) {
  if (!g.defined() || !is_floating(g.dtype())) return;
  const auto v = g.to_vector<double>();
  size_t bad = 0, first = v.size();
  bool nan = false;
  for (size_t k = 0; k < v.size(); ++k) {
    if (std::isfinite(v[k])) continue;
    if (bad++ == 0) {
      first = k;
      nan = std::isnan(v[k]);
    }
  }
  if (bad == 0) return;
  fail("autograd anomaly: the backward of '{}' (node {} of {}, recorded {}) produced {} in the gradient of its input {} "
       "(shape {}, {} of {} values not finite, the first at flat index {})",
       n.name, index, count, n.where.empty() ? "outside any module" : fmt::format("in {} forward", n.where),
       nan ? "nan" : "inf", i, shape_str(g.shape()), bad, v.size(), first);
}

struct Capture {
  std::unordered_map<const TensorImpl*, size_t> leaves;
  std::unordered_map<const Node*, std::vector<std::pair<uint32_t, size_t>>> outputs;
  std::vector<Tensor> grads;
};

void add_grad(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = slot + g;
  }
}

std::vector<std::shared_ptr<Node>> reachable(const std::vector<Tensor>& roots) {
  std::vector<std::shared_ptr<Node>> out;
  std::unordered_set<const Node*> seen;
  std::vector<std::shared_ptr<Node>> stack;
  for (const Tensor& r : roots)
    if (r.defined() && r.grad_fn()) stack.push_back(r.grad_fn());
  while (!stack.empty()) {
    auto n = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(n.get()).second) continue;
    for (const Edge& e : n->next)
      if (e.node && !seen.count(e.node.get())) stack.push_back(e.node);
    out.push_back(std::move(n));
  }
  return out;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool retain_graph,
                  bool create_graph, Capture* capture) {
  TG_CHECK(root_grads.empty() || root_grads.size() == roots.size(),
           "backward: got {} tensors and {} gradients", roots.size(), root_grads.size());
  std::unordered_map<const Node*, Grads> pending;

  // A leaf's gradients are summed over the whole replay and accumulated into .grad once at the end, so
  // its hooks run once per backward however many times the leaf was used.
  std::vector<std::pair<std::shared_ptr<TensorImpl>, Tensor>> leaf_grads;
  std::unordered_map<const TensorImpl*, size_t> leaf_slot;
  // Takes g by value: when the caller moves its last reference in, .grad can keep the buffer.
  auto deliver_leaf = [&](const std::shared_ptr<TensorImpl>& leaf, Tensor g) {
    if (capture) {
      auto it = capture->leaves.find(leaf.get());
      if (it != capture->leaves.end()) add_grad(capture->grads[it->second], g);
      return;
    }
    auto [it, added] = leaf_slot.try_emplace(leaf.get(), leaf_grads.size());
    if (added)
      leaf_grads.emplace_back(leaf, std::move(g));
    else
      add_grad(leaf_grads[it->second].second, g);
  };

  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    TG_CHECK(r.requires_grad(), "backward: element {} of tensors does not require grad and does not have a grad_fn",
             i);
    Tensor g = root_grads.empty() ? Tensor() : root_grads[i];
    if (!g.defined()) {
      TG_CHECK(r.numel() == 1, "backward: grad can be implicitly created only for scalar outputs (got shape {})",
               shape_str(r.shape()));
      g = Tensor::ones_like(r);
    } else {
      TG_CHECK(g.shape() == r.shape(), "backward: expected a gradient of shape {} for element {}, got {}",
               shape_str(r.shape()), i, shape_str(g.shape()));
      if (g.dtype() != r.dtype()) g = g.to(r.dtype());
    }
    if (!r.grad_fn()) {
      deliver_leaf(r.impl_ptr(), g);
      continue;
    }
    Grads& slots = pending[r.grad_fn().get()];
    slots.resize(r.grad_fn()->outputs.size());
    add_grad(slots[r.output_nr()], g);
  }

  auto nodes = reachable(roots);
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a->seq > b->seq; });

  std::optional<NoGradGuard> no_grad;
  std::optional<EnableGradGuard> with_grad;
  if (create_graph) with_grad.emplace(); else no_grad.emplace();

  for (size_t pos = 0; pos < nodes.size(); ++pos) {
    const auto& node = nodes[pos];
    auto it = pending.find(node.get());
    if (it == pending.end()) continue;  // no gradient reached this node
    Grads grads = std::move(it->second);
    pending.erase(it);
    grads.resize(node->outputs.size());
    bool any = false;
    for (size_t k = 0; k < grads.size(); ++k) {
      OutputInfo& out = node->outputs[k];
      if (!grads[k].defined()) continue;
      any = true;
      for (const auto& hook : out.hooks) {
        Tensor r = hook(grads[k]);
        if (r.defined()) grads[k] = r;
      }
      if (auto kept = out.retained.lock()) {
        Tensor kept_grad = kept->grad ? Tensor(kept->grad) + grads[k] : grads[k].detach().clone();
        kept->grad = kept_grad.impl_ptr();
      }
    }
    if (capture) {
      auto c = capture->outputs.find(node.get());
      if (c != capture->outputs.end())
        for (auto [nr, idx] : c->second)
          if (grads[nr].defined()) add_grad(capture->grads[idx], grads[nr]);
    }
    if (!any) continue;
    if (node->released || !node->backward) throw Error(second_backward_message(*node));
    for (size_t k = 0; k < grads.size(); ++k)
      if (!grads[k].defined())
        grads[k] = Tensor::zeros(node->outputs[k].shape, {.dtype = node->outputs[k].dtype});

    Context ctx(*node, std::move(grads));
    const auto t0 = t_profiling ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    Grads in_grads = node->backward(ctx);
    if (t_profiling) {
      node->backward_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      node->backward_calls += 1;
    }
    TG_CHECK(in_grads.size() <= node->next.size(), "{}: backward returned {} gradients for {} inputs", node->name,
             in_grads.size(), node->next.size());
    for (size_t i = 0; i < in_grads.size(); ++i) {
      const Edge& e = node->next[i];
      if (!e.valid() || !in_grads[i].defined()) continue;
      Tensor g = reduce_grad(in_grads[i], node->input_shapes[i], node->input_dtypes[i], node->name);
      in_grads[i] = Tensor();  // g may be the same tensor: drop this reference to it
      if (t_anomaly) check_finite(*node, g, i, nodes.size() - 1 - pos, nodes.size());
      if (e.node) {
        Grads& slots = pending[e.node.get()];
        slots.resize(e.node->outputs.size());
        add_grad(slots[e.output_nr], g);
      } else {
        deliver_leaf(e.leaf, std::move(g));
      }
    }
    if (!retain_graph) node->release();
  }
  for (auto& [leaf, g] : leaf_grads) accumulate_into_leaf(*leaf, std::move(g), create_graph);
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads, bool retain_graph,
              bool create_graph) {
  run_backward(roots, root_grads, retain_graph || create_graph, create_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph, bool create_graph,
                         bool allow_unused) {
  Capture cap;
  cap.grads.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    TG_CHECK(in.requires_grad(), "autograd::grad: input {} does not require grad", i);
    if (in.grad_fn())
      cap.outputs[in.grad_fn().get()].push_back({in.output_nr(), i});
    else
      cap.leaves[in.impl_ptr().get()] = i;
  }
  run_backward(outputs, grad_outputs, retain_graph || create_graph, create_graph, &cap);
  for (size_t i = 0; i < inputs.size(); ++i) {
    TG_CHECK(cap.grads[i].defined() || allow_unused,
             "autograd::grad: One of the differentiated Tensors appears to not have been used in the graph. Set "
             "allow_unused=true if this is the desired behavior.");
    if (cap.grads[i].defined() && !create_graph) cap.grads[i] = cap.grads[i].detach();
  }
  return cap.grads;
}

// ---- the tape made visible ----

std::vector<std::shared_ptr<Node>> tape(const std::vector<Tensor>& roots) {
  auto nodes = reachable(roots);
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
  return nodes;
}

namespace {
std::string leaf_label(const TensorImpl& leaf) { return leaf.name.empty() ? "leaf" : fmt::format("'{}'", leaf.name); }
}  // namespace

std::string format_tape(const std::vector<Tensor>& roots) {
  auto nodes = tape(roots);
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].get()] = i;
  std::string s = fmt::format("tape: {} node{}\n", nodes.size(), nodes.size() == 1 ? "" : "s");
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    std::vector<std::string> ins, outs, saved;
    for (size_t k = 0; k < n.next.size(); ++k) {
      const Edge& e = n.next[k];
      const std::string shape = shape_str(n.input_shapes[k]);
      if (e.node)
        ins.push_back(fmt::format("#{}{} {}", index.at(e.node.get()),
                                  e.node->outputs.size() > 1 ? fmt::format(".{}", e.output_nr) : "", shape));
      else if (e.leaf)
        ins.push_back(fmt::format("{} {}", leaf_label(*e.leaf), shape));
      else
        ins.push_back(fmt::format("const {}", shape));
    }
    for (const auto& o : n.outputs) outs.push_back(shape_str(o.shape));
    for (const auto& st : n.saved) {
      if (!st.tensor.defined()) continue;
      saved.push_back(fmt::format("{} {}", st.label, shape_str(st.tensor.shape())));
    }
    s += fmt::format("#{:<3} {:<14} {} -> {}", i, n.name, fmt::join(ins, ", "), fmt::join(outs, ", "));
    if (n.released)
      s += "  saved: (freed)";
    else if (!saved.empty())
      s += fmt::format("  saved: {}", fmt::join(saved, ", "));
    s += "\n";
  }
  return s;
}

std::string to_dot(const std::vector<Tensor>& roots) {
  auto nodes = tape(roots);
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].get()] = i;
  std::unordered_map<const TensorImpl*, size_t> leaves;
  std::string s = "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    std::vector<std::string> outs;
    for (const auto& o : n.outputs) outs.push_back(shape_str(o.shape));
    s += fmt::format("  n{} [shape=ellipse, label=\"#{} {}\\n{}\"];\n", i, i, n.name, fmt::join(outs, ", "));
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    for (size_t k = 0; k < n.next.size(); ++k) {
      const Edge& e = n.next[k];
      if (e.node) {
        s += fmt::format("  n{} -> n{};\n", index.at(e.node.get()), i);
      } else if (e.leaf) {
        auto [it, added] = leaves.try_emplace(e.leaf.get(), leaves.size());
        if (added)
          s += fmt::format("  l{} [shape=box, style=filled, fillcolor=\"#dde8f7\", label=\"{}\\n{}\"];\n", it->second,
                           e.leaf->name.empty() ? "leaf" : e.leaf->name, shape_str(e.leaf->shape));
        s += fmt::format("  l{} -> n{};\n", it->second, i);
      }
    }
  }
  for (const Tensor& r : roots) {
    if (r.defined() && r.grad_fn() && index.count(r.grad_fn().get()))
      s += fmt::format("  n{} [penwidth=2];\n", index.at(r.grad_fn().get()));
  }
  s += "}\n";
  return s;
}

}  // namespace tapegrad::autograd

namespace tapegrad {

// ---- Tensor's autograd members ----

Tensor& Tensor::requires_grad_(bool on) {
  TG_CHECK(is_leaf(),
           "requires_grad_: you can only change requires_grad flags of leaf variables. If you want to use a computed "
           "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().");
  TG_CHECK(!on || is_floating(dtype()),
           "requires_grad_: Only Tensors of floating point dtype can require gradients, got {}", dtype_name(dtype()));
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (!g.defined()) {
    impl().grad.reset();
    return;
  }
  TG_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: expected a gradient of shape {} ({}), got {} ({})",
           shape_str(shape()), dtype_name(dtype()), shape_str(g.shape()), dtype_name(g.dtype()));
  impl().grad = g.impl_ptr();
}

void Tensor::zero_grad() {
  if (!impl().grad) return;
  autograd::NoGradGuard ng;
  Tensor(impl().grad).zero_();
}

void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const {
  autograd::backward({*this}, gradient.defined() ? std::vector<Tensor>{gradient} : std::vector<Tensor>{}, retain_graph,
                     create_graph);
}

void Tensor::retain_grad() const {
  TG_CHECK(requires_grad(), "retain_grad: can't retain_grad on Tensor that has requires_grad=False");
  if (is_leaf()) return;
  grad_fn()->outputs.at(output_nr()).retained = impl_;
}

void Tensor::register_hook(TensorHook hook) const {
  TG_CHECK(requires_grad(), "register_hook: cannot register a hook on a tensor that doesn't require gradient");
  if (is_leaf())
    impl().hooks.push_back(std::move(hook));
  else
    grad_fn()->outputs.at(output_nr()).hooks.push_back(std::move(hook));
}

Tensor& Tensor::set_name(std::string name) {
  impl().name = std::move(name);
  return *this;
}

}  // namespace tapegrad
