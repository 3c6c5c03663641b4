// Module hooks (forward pre-hooks, forward hooks, full backward hooks, removable handles), tensor
// gradient hooks, and anomaly mode's module paths.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

// y = x * w, elementwise: grad_input = grad_output * w, easy to check by hand.
struct Scale : nn::Module {
  Tensor w;
  explicit Scale(std::vector<double> values) : Module("Scale") {
    w = register_parameter("w", Tensor::from_vector(values, {static_cast<int64_t>(values.size())}));
  }
  Tensor forward(const Tensor& x) override { return x * w; }
};

// log of its input: the op whose backward turns a 0 into inf.
struct LogHead : nn::Module {
  LogHead() : Module("LogHead") {}
  Tensor forward(const Tensor& x) override { return x.log(); }
};

struct Net : nn::Module {
  nn::ModuleRef<Scale> body;
  nn::ModuleRef<LogHead> head;
  Net() : Module("Net") {
    body = register_module("body", std::make_shared<Scale>(std::vector<double>{1.0, 2.0, 0.0}));
    head = register_module("head", std::make_shared<LogHead>());
  }
  Tensor forward(const Tensor& x) override { return head(body(x) * 2.0).sum(); }
};

}  // namespace

TEST_CASE("a forward pre-hook sees and may replace the input; its handle removes it") {
  auto m = std::make_shared<Scale>(std::vector<double>{1.0, 2.0});
  int calls = 0;
  nn::HookHandle h = m->register_forward_pre_hook([&](nn::Module& mod, const Tensor& x) {
    ++calls;
    REQUIRE(mod.type_name() == "Scale");
    return x + 1.0;
  });
  Tensor x = Tensor::of({1.0, 1.0}, {.dtype = kFloat64});
  REQUIRE((*m)(x).to_vector<double>() == std::vector<double>{2.0, 4.0});
  // A pre-hook returning an undefined tensor keeps the input.
  auto keep = m->register_forward_pre_hook([&](nn::Module&, const Tensor&) { return Tensor(); });
  REQUIRE((*m)(x).to_vector<double>() == std::vector<double>{2.0, 4.0});
  REQUIRE(calls == 2);
  h.remove();
  h.remove();  // removing twice does nothing
  REQUIRE((*m)(x).to_vector<double>() == std::vector<double>{1.0, 2.0});
  REQUIRE(calls == 2);
  keep.remove();
}

TEST_CASE("forward hooks run after forward, see the pre-hooked input, and are removable") {
  auto m = std::make_shared<Scale>(std::vector<double>{3.0});
  std::vector<std::string> order;
  auto pre = m->register_forward_pre_hook([&](nn::Module&, const Tensor& x) {
    order.push_back("pre");
    return x * 2.0;
  });
  auto post = m->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor& out) {
    order.push_back("post");
    REQUIRE(in.item() == 2.0);
    REQUIRE(out.item() == 6.0);
  });
  (*m)(Tensor::of({1.0}, {.dtype = kFloat64}));
  REQUIRE(order == std::vector<std::string>{"pre", "post"});
  post.remove();
  pre.remove();
  (*m)(Tensor::of({1.0}, {.dtype = kFloat64}));
  REQUIRE(order.size() == 2);
  // The id form of removal, for code that kept the id.
  auto again = m->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor&) { order.push_back("again"); });
  m->remove_forward_hook(again.id());
  (*m)(Tensor::of({1.0}, {.dtype = kFloat64}));
  REQUIRE(order.size() == 2);
}

TEST_CASE("a full backward hook gets grad_input and grad_output like PyTorch's") {
  auto m = std::make_shared<Scale>(std::vector<double>{2.0, -1.0, 0.5});
  Tensor x = Tensor::of({1.0, 2.0, 3.0}, {.dtype = kFloat64, .requires_grad = true});
  Tensor upstream = Tensor::of({0.5, 1.0, -2.0}, {.dtype = kFloat64});
  int calls = 0;
  Tensor seen_in, seen_out;
  auto h = m->register_full_backward_hook([&](nn::Module& mod, const Tensor& gin, const Tensor& gout) {
    ++calls;
    REQUIRE(mod.type_name() == "Scale");
    seen_in = gin.detach().clone();
    seen_out = gout.detach().clone();
    return Tensor();
  });
  Tensor y = (*m)(x);
  (y * upstream).sum().backward();
  REQUIRE(calls == 1);
  testing::require_close(seen_out, upstream);                                                   // d loss / d y
  testing::require_close(seen_in, Tensor::of({1.0, -1.0, -1.0}, {.dtype = kFloat64}));         // upstream * w
  testing::require_close(x.grad(), seen_in);
  testing::require_close(m->w.grad(), Tensor::of({0.5, 2.0, -6.0}, {.dtype = kFloat64}));     // upstream * x
  h.remove();
  x.set_grad(Tensor());
  (*m)(x).sum().backward();
  REQUIRE(calls == 1);
}

TEST_CASE("a full backward hook may replace grad_input; hooks chain in registration order") {
  auto m = std::make_shared<Scale>(std::vector<double>{2.0, 3.0});
  Tensor x = Tensor::of({1.0, 1.0}, {.dtype = kFloat64, .requires_grad = true});
  std::vector<double> second_saw;
  m->register_full_backward_hook([](nn::Module&, const Tensor& gin, const Tensor&) { return gin * 10.0; });
  m->register_full_backward_hook([&](nn::Module&, const Tensor& gin, const Tensor&) {
    second_saw = gin.to_vector<double>();
    return Tensor();
  });
  (*m)(x).sum().backward();
  REQUIRE(second_saw == std::vector<double>{20.0, 30.0});
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{20.0, 30.0});
  // The parameter's gradient is not affected: grad_input is the gradient of the input only.
  REQUIRE(m->w.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
}

TEST_CASE("a full backward hook on a module whose input needs no grad gets an undefined grad_input") {
  auto lin = std::make_shared<nn::Linear>(3, 2);
  lin->to(kFloat64);
  Tensor x = testing::randn64({4, 3}, 5, /*requires_grad=*/false);
  int calls = 0;
  lin->register_full_backward_hook([&](nn::Module&, const Tensor& gin, const Tensor& gout) {
    ++calls;
    REQUIRE_FALSE(gin.defined());
    REQUIRE(gout.shape() == Shape{4, 2});
    return Tensor();
  });
  (*lin)(x).sum().backward();
  REQUIRE(calls == 1);
  REQUIRE(lin->weight.grad().defined());
  // Without grad mode nothing is recorded and no hook runs.
  {
    autograd::NoGradGuard ng;
    (*lin)(x);
  }
  REQUIRE(calls == 1);
}

TEST_CASE("backward hooks of nested modules run innermost last, outer grad_output first") {
  auto net = std::make_shared<Net>();
  std::vector<std::string> order;
  net->body->register_full_backward_hook([&](nn::Module&, const Tensor&, const Tensor&) {
    order.push_back("body");
    return Tensor();
  });
  net->head->register_full_backward_hook([&](nn::Module&, const Tensor&, const Tensor&) {
    order.push_back("head");
    return Tensor();
  });
  Tensor x = Tensor::of({1.0, 1.0, 1.0}, {.dtype = kFloat64, .requires_grad = true});
  net->body->w.detach().fill_(1.0);
  (*net)(x).backward();
  REQUIRE(order == std::vector<std::string>{"head", "body"});
}

TEST_CASE("tensor hooks run once per backward, for leaves and non-leaves, however often the tensor is used") {
  Tensor a = Tensor::of({1.0, 2.0}, {.dtype = kFloat64, .requires_grad = true});
  Tensor h = a * 3.0;
  int leaf_calls = 0, inner_calls = 0;
  std::vector<double> leaf_saw, inner_saw;
  a.register_hook([&](const Tensor& g) {
    ++leaf_calls;
    leaf_saw = g.to_vector<double>();
    return Tensor();
  });
  h.register_hook([&](const Tensor& g) {
    ++inner_calls;
    inner_saw = g.to_vector<double>();
    return Tensor();
  });
  // a is used three times (in h, and twice directly), h twice.
  Tensor y = (h * h + a * a + a).sum();
  y.backward();
  REQUIRE(leaf_calls == 1);
  REQUIRE(inner_calls == 1);
  REQUIRE(inner_saw == std::vector<double>{6.0, 12.0});              // 2h
  REQUIRE(leaf_saw == std::vector<double>{1.0 * 18 + 2 + 1, 36 + 4 + 1});  // 3 * 2h + 2a + 1
  testing::require_close(a.grad(), Tensor::of({21.0, 41.0}, {.dtype = kFloat64}));
  // A hook's return value replaces the total once.
  Tensor b = Tensor::of({1.0}, {.dtype = kFloat64, .requires_grad = true});
  b.register_hook([](const Tensor& g) { return g + 100.0; });
  (b + b + b).sum().backward();
  REQUIRE(b.grad().item() == 103.0);
}

TEST_CASE("anomaly mode names the op, its place in the tape and the module it was recorded in") {
  auto net = std::make_shared<Net>();
  Tensor x = Tensor::of({1.0, 1.0, 1.0}, {.dtype = kFloat64, .requires_grad = true});
  // Tape: mul (body, x*w), mul (*2.0), log (head), sum. w[2] = 0 makes log's input 0 and its gradient inf.
  {
    autograd::DetectAnomalyGuard anomaly;
    REQUIRE(autograd::anomaly_enabled());
    Tensor loss = (*net)(x);
    REQUIRE_ERROR(loss.backward(),
                  "autograd anomaly: the backward of 'log' (node 2 of 4, recorded in Net.head (LogHead) forward) "
                  "produced inf in the gradient of its input 0 (shape (3,), 1 of 3 values not finite, the first at "
                  "flat index 2)");
  }
  REQUIRE_FALSE(autograd::anomaly_enabled());
  // Outside any module, and a nan.
  autograd::DetectAnomalyGuard anomaly;
  Tensor z = Tensor::of({-1.0, 4.0}, {.dtype = kFloat64, .requires_grad = true});
  Tensor s = z.sqrt();
  REQUIRE_ERROR(s.sum().backward(),
                "autograd anomaly: the backward of 'sqrt' (node 0 of 2, recorded outside any module) produced nan in "
                "the gradient of its input 0 (shape (2,), 1 of 2 values not finite, the first at flat index 0)");
}

TEST_CASE("the module path of a node follows nesting through Sequential") {
  auto seq = std::make_shared<nn::Sequential>(std::vector<std::pair<std::string, nn::ModulePtr>>{
      {"scale", std::make_shared<Scale>(std::vector<double>{1.0})}, {"head", std::make_shared<LogHead>()}});
  autograd::DetectAnomalyGuard anomaly;
  Tensor x = Tensor::of({0.0}, {.dtype = kFloat64, .requires_grad = true});
  Tensor y = (*seq)(x).sum();
  auto nodes = autograd::tape({y});
  REQUIRE(nodes.size() == 3);
  REQUIRE(nodes[0]->where == "Sequential.scale (Scale)");
  REQUIRE(nodes[1]->where == "Sequential.head (LogHead)");
  REQUIRE(nodes[2]->where == "");
  REQUIRE(autograd::forward_scope().empty());
}

TEST_CASE("module hooks match PyTorch's: pre-hook, full backward hooks, a replaced grad_input") {
  const testing::Fixture fx("module_hooks.safetensors");
  auto fc1 = std::make_shared<nn::Linear>(3, 4), fc2 = std::make_shared<nn::Linear>(4, 2);
  fc1->to(kFloat64);
  fc2->to(kFloat64);
  fc1->load_state_dict({{"weight", fx["fc1.weight"]}, {"bias", fx["fc1.bias"]}});
  fc2->load_state_dict({{"weight", fx["fc2.weight"]}, {"bias", fx["fc2.bias"]}});
  std::vector<std::string> order;
  std::map<std::string, std::pair<Tensor, Tensor>> seen;
  auto record = [&](const std::string& name, double scale) {
    return [&, name, scale](nn::Module&, const Tensor& gin, const Tensor& gout) {
      order.push_back(name);
      seen[name] = {gin.detach().clone(), gout.detach().clone()};
      return scale != 1.0 ? gin * scale : Tensor();
    };
  };
  fc2->register_forward_pre_hook([](nn::Module&, const Tensor& x) { return x * 2.0; });
  auto h1 = fc1->register_full_backward_hook(record("fc1", 0.5));
  auto h2 = fc2->register_full_backward_hook(record("fc2", 1.0));
  Tensor x = fx["x"].clone().requires_grad_();
  Tensor out = (*fc2)((*fc1)(x).tanh());
  testing::require_close(out, fx["out"]);
  (out * fx["v"]).sum().backward();
  REQUIRE(order == std::vector<std::string>{"fc2", "fc1"});
  for (const std::string name : {"fc1", "fc2"}) {
    INFO(name);
    testing::require_close(seen[name].first, fx[name + ".grad_input"]);
    testing::require_close(seen[name].second, fx[name + ".grad_output"]);
  }
  testing::require_close(x.grad(), fx["x.grad"]);
  testing::require_close(fc1->weight.grad(), fx["fc1.weight.grad"]);
  testing::require_close(fc1->bias.grad(), fx["fc1.bias.grad"]);
  testing::require_close(fc2->weight.grad(), fx["fc2.weight.grad"]);
  testing::require_close(fc2->bias.grad(), fx["fc2.bias.grad"]);
  h1.remove();
  h2.remove();

  // An input that does not require grad: the hook runs once, grad_input undefined (PyTorch's None).
  int calls = 0;
  fc1->register_full_backward_hook([&](nn::Module&, const Tensor& gin, const Tensor& gout) {
    ++calls;
    REQUIRE_FALSE(gin.defined());
    testing::require_close(gout, fx["nograd.grad_output"]);
    return Tensor();
  });
  (*fc1)(fx["x"]).sum().backward();
  REQUIRE(calls == 1);
}
