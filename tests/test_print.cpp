// Tensor printing: byte-identical to PyTorch's repr (tests/fixtures/gen_print.py writes the inputs to
// print.safetensors and PyTorch's reprs to print.json).
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/print.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

using namespace tapegrad;

namespace {

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream f(std::string(TAPEGRAD_FIXTURES_DIR) + "/print.json");
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
  }();
  return j;
}

Tensor rg(const Tensor& x) { return x.detach().clone().requires_grad_(); }

// The same ops as OPS in gen_print.py.
const std::map<std::string, std::function<Tensor(const Tensor&, const Tensor&)>>& ops() {
  static const std::map<std::string, std::function<Tensor(const Tensor&, const Tensor&)>> m = {
      {"plain", [](const Tensor& x, const Tensor&) { return x; }},
      {"requires_grad", [](const Tensor& x, const Tensor&) { return rg(x); }},
      {"t", [](const Tensor& x, const Tensor&) { return x.t(); }},
      {"expand", [](const Tensor& x, const Tensor&) { return x.expand({3, -1}); }},
      {"step", [](const Tensor& x, const Tensor&) { return x.slice(1, 0, x.size(1), 2); }},
      {"mul", [](const Tensor& x, const Tensor& b) { return rg(x) * b; }},
      {"add", [](const Tensor& x, const Tensor& b) { return rg(x) + b; }},
      {"sub", [](const Tensor& x, const Tensor& b) { return rg(x) - b; }},
      {"neg", [](const Tensor& x, const Tensor&) { return -rg(x); }},
      {"relu", [](const Tensor& x, const Tensor&) { return rg(x).relu(); }},
      {"sum", [](const Tensor& x, const Tensor&) { return rg(x).sum(); }},
      {"sum0", [](const Tensor& x, const Tensor&) { return rg(x).sum({0}); }},
      {"view", [](const Tensor& x, const Tensor&) { return rg(x).view({-1}); }},
      {"select", [](const Tensor& x, const Tensor&) { return rg(x).select(0, 1); }},
      {"slice", [](const Tensor& x, const Tensor&) { return rg(x).slice(0, 1, x.size(0)); }},
      {"unsqueeze", [](const Tensor& x, const Tensor&) { return rg(x).unsqueeze(0); }},
      {"permute", [](const Tensor& x, const Tensor&) { return rg(x).permute({1, 0}); }},
      {"to64", [](const Tensor& x, const Tensor&) { return rg(x).to(kFloat64); }},
      {"clone", [](const Tensor& x, const Tensor&) { return rg(x).clone(); }},
  };
  return m;
}

}  // namespace

TEST_CASE("str() matches PyTorch's repr byte for byte") {
  testing::Fixture fx("print.safetensors");
  const auto& cases = expected()["cases"];
  REQUIRE(cases.size() >= 30);
  for (const auto& c : cases) {
    const std::string name = c["name"], op = c["op"], repr = c["repr"];
    INFO("case " << name << " (op " << op << ")");
    REQUIRE(ops().count(op) == 1);
    const Tensor b = fx.has(name + ".b") ? fx[name + ".b"] : Tensor();
    const Tensor t = ops().at(op)(fx[name], b);
    CHECK(t.str() == repr);
  }
}

TEST_CASE("operator<< prints what str() returns") {
  Tensor t = Tensor::of({{1.0, -2.5}, {0.125, 3.0}});
  std::ostringstream os;
  os << t;
  REQUIRE(os.str() == "tensor([[ 1.0000, -2.5000],\n        [ 0.1250,  3.0000]])");
  REQUIRE(os.str() == t.str());
}

TEST_CASE("printing reads through strides and offsets") {
  // A column of a transposed matrix is neither contiguous nor at offset 0.
  Tensor m = Tensor::arange(0, 12, 1, {.dtype = kFloat32}).view({3, 4});
  REQUIRE(m.t().select(0, 2).str() == "tensor([ 2.,  6., 10.])");
  REQUIRE(m.select(1, 3).str() == "tensor([ 3.,  7., 11.])");
  REQUIRE(Tensor::of({5, 6}, {.dtype = kInt64}).select(0, 1).str() == "tensor(6)");
  REQUIRE(Tensor::scalar(2).expand({2, 3}).str() == "tensor([[2., 2., 2.],\n        [2., 2., 2.]])");
}

TEST_CASE("printing records nothing on the tape and does not copy big tensors") {
  Tensor x = Tensor::ones({3, 1000}).requires_grad_();
  Tensor y = x.t();  // non-contiguous, requires grad
  const auto before = autograd::tape({y}).size();
  const std::string s = y.str();
  REQUIRE(autograd::tape({y}).size() == before);
  REQUIRE(s ==
          "tensor([[1., 1., 1.],\n        [1., 1., 1.],\n        [1., 1., 1.],\n        ...,\n        [1., 1., 1.],\n"
          "        [1., 1., 1.],\n        [1., 1., 1.]], grad_fn=<TBackward0>)");
}

TEST_CASE("an undefined tensor prints as such") { REQUIRE(Tensor().str() == "tensor(undefined)"); }

TEST_CASE("a detached tensor and a tensor made under no_grad print no autograd suffix") {
  Tensor x = Tensor::of({1.0, 2.0}, {.requires_grad = true});
  REQUIRE((x * 2.0).detach().str() == "tensor([2., 4.])");
  autograd::NoGradGuard guard;
  REQUIRE((x * 2.0).str() == "tensor([2., 4.])");
}

TEST_CASE("an int64 or bool result of a graph prints no grad_fn") {
  Tensor x = Tensor::of({1.0, -2.0}, {.requires_grad = true});
  REQUIRE((x > 0.0).str() == "tensor([ True, False])");
}

TEST_CASE("backward node names follow PyTorch for ops called with the same shapes") {
  const auto& names = expected()["backward_names"];
  REQUIRE(names.size() >= 50);
  for (const auto& e : names) {
    const std::string op = e["op"], torch_name = e["name"];
    std::vector<Tensor> inputs;
    for (const auto& s : e["inputs"]) inputs.push_back(Tensor::zeros(s.get<Shape>(), {.requires_grad = true}));
    Tensor out = Tensor::zeros(e["output"].get<Shape>());
    autograd::record(op, inputs, {out}, {}, [](autograd::Context&) -> autograd::Grads { return {}; });
    INFO("op " << op << " inputs " << e["inputs"].dump() << " -> " << torch_name);
    REQUIRE(out.grad_fn());
    CHECK(pytorch_backward_name(*out.grad_fn()) == torch_name);
    const std::string s = out.str();
    CHECK(s.substr(s.rfind("grad_fn=")) == "grad_fn=<" + torch_name + ">)");
  }
}

TEST_CASE("unknown ops fall back to a CamelCase name") {
  auto name_of = [](const std::string& op) {
    Tensor x = Tensor::zeros({2}, {.requires_grad = true});
    Tensor out = Tensor::zeros({2});
    autograd::record(op, {x}, {out}, {}, [](autograd::Context&) -> autograd::Grads { return {}; });
    return pytorch_backward_name(*out.grad_fn());
  };
  REQUIRE(name_of("foo_bar") == "FooBarBackward0");
  REQUIRE(name_of("my_op2d") == "MyOp2dBackward0");
  REQUIRE(name_of("x") == "XBackward0");
}
