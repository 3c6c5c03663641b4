// Module: registration, names, state_dict, modes, printing.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/module.h>

#include <filesystem>

using namespace tapegrad;

namespace {

// A leaf module with a parameter and a buffer, independent of the other layers.
struct Scale : nn::Module {
  Tensor weight, count;
  explicit Scale(int64_t n) : Module("Scale") {
    weight = register_parameter("weight", Tensor::ones({n}));
    count = register_buffer("count", Tensor::zeros({}, {.dtype = kInt64}));
  }
  Tensor forward(const Tensor& x) override { return x * weight; }
  std::string extra_repr() const override { return fmt::format("{}", weight.size(0)); }
};

struct Net : nn::Module {
  nn::ModuleRef<Scale> a, b;
  nn::ModuleRef<nn::Sequential> seq;
  Tensor bias;
  Net() : Module("Net") {
    a = register_module("a", std::make_shared<Scale>(3));
    bias = register_parameter("bias", Tensor::zeros({3}));
    seq = register_module("seq", std::make_shared<nn::Sequential>(std::make_shared<Scale>(3), std::make_shared<nn::ReLU>()));
    b = register_module("b", std::make_shared<Scale>(3));
  }
  Tensor forward(const Tensor& x) override { return b(seq(a(x) + bias)); }
};

std::vector<std::string> keys(const NamedTensors& t) {
  std::vector<std::string> k;
  for (auto& [n, v] : t) k.push_back(n);
  return k;
}

}  // namespace

TEST_CASE("named parameters, buffers and state_dict follow PyTorch's order") {
  auto net = std::make_shared<Net>();
  std::vector<std::string> params;
  for (auto& [n, p] : net->named_parameters()) params.push_back(n);
  REQUIRE(params == std::vector<std::string>{"bias", "a.weight", "seq.0.weight", "b.weight"});
  REQUIRE(keys(net->state_dict()) ==
          std::vector<std::string>{"bias", "a.weight", "a.count", "seq.0.weight", "seq.0.count", "b.weight", "b.count"});
  std::vector<std::string> mods;
  for (auto& [n, m] : net->named_modules()) mods.push_back(n);
  REQUIRE(mods == std::vector<std::string>{"", "a", "seq", "seq.0", "seq.1", "b"});
  REQUIRE(net->children().size() == 3);
}

TEST_CASE("the member and the registry are the same object") {
  auto net = std::make_shared<Net>();
  REQUIRE(net->a->weight.same(net->named_parameters()[1].second));
  net->to(kFloat64);
  REQUIRE(net->a->weight.dtype() == kFloat64);
  REQUIRE(net->a->count.dtype() == kInt64);  // integer buffers keep their dtype
  REQUIRE(net->named_parameters()[1].second.dtype() == kFloat64);
  // Replacing a child is seen through the handle.
  auto replacement = std::make_shared<Scale>(3);
  net->replace_module("a", replacement);
  REQUIRE(&*net->a == replacement.get());
}

TEST_CASE("train and eval are recursive") {
  auto net = std::make_shared<Net>();
  REQUIRE(net->is_training());
  net->eval();
  for (auto& m : net->modules()) REQUIRE_FALSE(m->is_training());
  net->train();
  for (auto& m : net->modules()) REQUIRE(m->is_training());
}

TEST_CASE("load_state_dict copies values and reports every problem at once") {
  auto src = std::make_shared<Net>();
  {
    autograd::NoGradGuard ng;
    src->a->weight.fill_(2);
    src->b->count.fill_(7);
  }
  auto dst = std::make_shared<Net>();
  Tensor before = dst->a->weight;
  dst->load_state_dict(src->state_dict());
  REQUIRE(dst->a->weight.same(before));  // copied into the same tensor
  REQUIRE(dst->a->weight.to_vector<float>() == std::vector<float>{2, 2, 2});
  REQUIRE(dst->b->count.item() == 7);

  NamedTensors bad = src->state_dict();
  bad.erase(bad.begin() + 1);                          // a.weight missing
  bad.emplace_back("extra", Tensor::zeros({1}));       // unexpected
  bad[0].second = Tensor::zeros({4});                  // bias: wrong shape
  REQUIRE_ERROR(dst->load_state_dict(bad),
                "load_state_dict: Error(s) in loading state_dict for Net:\n"
                "\tUnexpected key(s) in state_dict: \"extra\". \n"
                "\tMissing key(s) in state_dict: \"a.weight\". \n"
                "\tsize mismatch for bias: copying a param with shape torch.Size([4]) from checkpoint, the shape in "
                "current model is torch.Size([3]).");
  // Not strict: missing/unexpected are returned, but a shape mismatch is still an error.
  bad[0].second = Tensor::zeros({3});
  auto r = dst->load_state_dict(bad, false);
  REQUIRE(r.missing_keys == std::vector<std::string>{"a.weight"});
  REQUIRE(r.unexpected_keys == std::vector<std::string>{"extra"});
}

TEST_CASE("save and load through a safetensors file") {
  auto src = std::make_shared<Net>();
  {
    autograd::NoGradGuard ng;
    src->bias.fill_(0.25);
  }
  const std::string path = (std::filesystem::temp_directory_path() / "tapegrad_module_test.safetensors").string();
  src->save(path);
  auto dst = std::make_shared<Net>();
  dst->load(path);
  REQUIRE(dst->bias.to_vector<float>() == std::vector<float>{0.25f, 0.25f, 0.25f});
  std::filesystem::remove(path);
}

TEST_CASE("forward, gradients, zero_grad and forward hooks") {
  auto net = std::make_shared<Net>();
  int calls = 0;
  net->register_forward_hook([&](nn::Module& m, const Tensor&, const Tensor& out) {
    ++calls;
    REQUIRE(m.type_name() == "Net");
    REQUIRE(out.shape() == Shape{2, 3});
  });
  Tensor y = (*net)(Tensor::ones({2, 3})).sum();
  y.backward();
  REQUIRE(calls == 1);
  REQUIRE(net->a->weight.grad().defined());
  net->zero_grad();
  REQUIRE_FALSE(net->a->weight.grad().defined());
}

TEST_CASE("the module tree prints like PyTorch") {
  auto net = std::make_shared<Net>();
  REQUIRE(net->repr() ==
          "Net(\n"
          "  (a): Scale(3)\n"
          "  (seq): Sequential(\n"
          "    (0): Scale(3)\n"
          "    (1): ReLU()\n"
          "  )\n"
          "  (b): Scale(3)\n"
          ")");
}

TEST_CASE("registration errors name the module and the problem") {
  Scale s(2);
  REQUIRE_ERROR(s.register_parameter("weight", Tensor::zeros({1})), "Scale: attribute 'weight' already exists");
  REQUIRE_ERROR(s.register_buffer("a.b", Tensor::zeros({1})), "Scale: buffer name can't contain \".\", got \"a.b\"");
}
