// Optimizers and gradient clipping against PyTorch (tests/fixtures/gen_optim.py), state dicts,
// error messages, and the fused kernels against naive loops.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/optim/optim.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <set>

#include "support/fixtures.h"

// Counts heap allocations, to check that a step after the first allocates nothing. AddressSanitizer
// provides its own operator new, which must not be mixed with this one.
#if defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAPEGRAD_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef TAPEGRAD_COUNT_ALLOCATIONS
#define TAPEGRAD_COUNT_ALLOCATIONS 1
#endif

static std::atomic<long> g_allocations{0};
#if TAPEGRAD_COUNT_ALLOCATIONS
[[gnu::noinline]] void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) { return operator new(n); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

using namespace tapegrad;
using optim::GroupOptions;
using optim::ParamGroup;

namespace {

const testing::Fixture& fx() {
  static const testing::Fixture f("optim.safetensors");
  return f;
}

constexpr int kSteps = 20;
constexpr double kCurvature = 0.3;

struct Config {
  std::string name;
  DType dtype;
  // Builds the optimizer over groups [p0, p1] and [p2] (the second with these overrides).
  std::function<std::unique_ptr<optim::Optimizer>(std::vector<ParamGroup>)> make;
  GroupOptions overrides;
};

template <typename Opt, typename Options>
std::function<std::unique_ptr<optim::Optimizer>(std::vector<ParamGroup>)> maker(Options o) {
  return [o](std::vector<ParamGroup> groups) { return std::make_unique<Opt>(std::move(groups), o); };
}

// The same table as CONFIGS in gen_optim.py.
const std::vector<Config>& configs() {
  using P = std::pair<double, double>;
  static const std::vector<Config> c = {
      {"sgd", kFloat32, maker<optim::SGD>(optim::SGDOptions{.lr = 0.1}), {{"lr", 0.05}}},
      {"sgd_momentum",
       kFloat32,
       maker<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9}),
       {{"lr", 0.05}, {"momentum", 0.5}}},
      {"sgd_dampening",
       kFloat32,
       maker<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.3}),
       {{"dampening", 0.0}}},
      {"sgd_nesterov_wd",
       kFloat32,
       maker<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}),
       {{"weight_decay", 0.1}}},
      {"sgd_maximize",
       kFloat32,
       maker<optim::SGD>(optim::SGDOptions{.lr = 0.02, .momentum = 0.8, .weight_decay = 0.02, .maximize = true}),
       {{"momentum", 0.0}}},
      {"adam", kFloat32, maker<optim::Adam>(optim::AdamOptions{.lr = 0.01}), {{"lr", 0.02}, {"betas", P{0.8, 0.99}}}},
      {"adam_amsgrad_wd",
       kFloat32,
       maker<optim::Adam>(optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}),
       {{"eps", 1e-3}}},
      {"adam_maximize",
       kFloat32,
       maker<optim::Adam>(optim::AdamOptions{.lr = 0.01, .weight_decay = 0.05, .maximize = true}),
       {{"amsgrad", true}}},
      {"adamw", kFloat32, maker<optim::AdamW>(optim::AdamWOptions{.lr = 0.01}), {{"weight_decay", 0.1}}},
      {"adamw_amsgrad",
       kFloat32,
       maker<optim::AdamW>(optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.05, .amsgrad = true}),
       {{"lr", 0.03}, {"maximize", true}}},
      {"rmsprop", kFloat32, maker<optim::RMSprop>(optim::RMSpropOptions{.lr = 0.01}), {{"alpha", 0.9}}},
      {"rmsprop_centered_momentum",
       kFloat32,
       maker<optim::RMSprop>(
           optim::RMSpropOptions{.lr = 0.01, .weight_decay = 0.01, .momentum = 0.9, .centered = true}),
       {{"lr", 0.005}, {"centered", false}}},
      {"rmsprop_momentum_maximize",
       kFloat32,
       maker<optim::RMSprop>(
           optim::RMSpropOptions{.lr = 0.01, .alpha = 0.95, .eps = 1e-4, .momentum = 0.5, .maximize = true}),
       {{"momentum", 0.0}, {"centered", true}}},
      {"adagrad", kFloat32, maker<optim::Adagrad>(optim::AdagradOptions{.lr = 0.1}), {{"lr", 0.05}}},
      {"adagrad_lr_decay",
       kFloat32,
       maker<optim::Adagrad>(
           optim::AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .weight_decay = 0.1, .initial_accumulator_value = 0.1}),
       {{"eps", 1e-5}, {"maximize", true}}},
      {"sgd_f64",
       kFloat64,
       maker<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}),
       {}},
      {"adam_f64",
       kFloat64,
       maker<optim::Adam>(optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}),
       {{"lr", 0.03}}},
      {"adamw_f64", kFloat64, maker<optim::AdamW>(optim::AdamWOptions{.lr = 0.01}), {}},
      {"rmsprop_f64",
       kFloat64,
       maker<optim::RMSprop>(optim::RMSpropOptions{.lr = 0.01, .momentum = 0.9, .centered = true}),
       {}},
      {"adagrad_f64", kFloat64, maker<optim::Adagrad>(optim::AdagradOptions{.lr = 0.1, .lr_decay = 0.01}), {}},
  };
  return c;
}

std::vector<Tensor> initial_params(DType dtype) {
  std::vector<Tensor> ps;
  for (int i = 0; i < 3; ++i) {
    Tensor p = Tensor::empty(fx()[fmt::format("init.{}", i)].shape(), {.dtype = dtype});
    p.copy_(fx()[fmt::format("init.{}", i)]);
    ps.push_back(p.requires_grad_());
  }
  return ps;
}

std::unique_ptr<optim::Optimizer> build(const Config& c, const std::vector<Tensor>& ps) {
  return c.make({ParamGroup{{ps[0], ps[1]}, {}}, ParamGroup{{ps[2]}, c.overrides}});
}

bool has_grad(int i, int t) { return i != 2 || t % 3 != 1; }

// grad_i = noise_i[t] + 0.3 * p_i, computed with the same two roundings as the generator.
void set_grads(const std::vector<Tensor>& ps, int t) {
  for (int i = 0; i < 3; ++i) {
    Tensor p = ps[i];
    if (!has_grad(i, t)) {
      p.set_grad(Tensor());
      continue;
    }
    const Tensor noise = fx()[fmt::format("noise.{}", i)].select(0, t).to(p.dtype());
    p.set_grad(noise + kCurvature * p.detach());
  }
}

// PyTorch's numbers are reproduced to the last bit: the multiply-adds are fused exactly where
// PyTorch's CPU kernels fuse them. Without a hardware FMA those kernels round differently, so the
// comparison then allows a few units in the last place.
void require_same(const Tensor& actual, const Tensor& expected) {
#if defined(__FMA__) || defined(__aarch64__)
  testing::require_close(actual, expected, 0, 0);
#else
  testing::require_close(actual, expected, actual.dtype() == kFloat32 ? 1e-6 : 1e-14, 1e-12);
#endif
}

void check_step(const std::vector<Tensor>& ps, const std::string& name, int t) {
  for (int i = 0; i < 3; ++i) {
    INFO("parameter " << i << " after step " << t + 1);
    require_same(ps[i], fx()[fmt::format("{}.traj.{}", name, i)].select(0, t));
  }
}

// The optimizer state against PyTorch's state_dict after `when` ("mid" = 10 steps, "final" = 20).
void check_state(const optim::Optimizer& opt, const std::string& name, const std::string& when) {
  const SafetensorsFile sd = opt.state_dict();
  const std::string prefix = name + "." + when + ".";
  std::set<std::string> ours, theirs;
  for (const auto& [key, t] : sd.tensors) {
    ours.insert(key);
    INFO(key);
    REQUIRE(fx().has(prefix + key));
    const Tensor& expected = fx()[prefix + key];
    if (key.ends_with(".step"))
      REQUIRE(t.item() == expected.item());
    else
      require_same(t, expected);
  }
  // Every state tensor PyTorch has, we have.
  for (int i = 0; i < 3; ++i)
    for (const char* k :
         {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg", "sum"}) {
      const std::string key = fmt::format("state.{}.{}", i, k);
      INFO(prefix + key);
      REQUIRE(fx().has(prefix + key) == ours.count(key) > 0);
    }
}

}  // namespace

TEST_CASE("optimizers reproduce PyTorch's trajectories, two groups, skipped parameters") {
  for (const Config& c : configs()) {
    SECTION(c.name) {
      std::vector<Tensor> ps = initial_params(c.dtype);
      auto opt = build(c, ps);
      for (int t = 0; t < kSteps; ++t) {
        set_grads(ps, t);
        opt->step();
        check_step(ps, c.name, t);
        if (t == kSteps / 2 - 1) check_state(*opt, c.name, "mid");
      }
      check_state(*opt, c.name, "final");
    }
  }
}

TEST_CASE("resuming from PyTorch's state after 10 steps continues PyTorch's trajectory") {
  for (const Config& c : configs()) {
    SECTION(c.name) {
      // Parameters as PyTorch left them after 10 steps; state tensors from PyTorch's state_dict.
      std::vector<Tensor> ps = initial_params(c.dtype);
      for (int i = 0; i < 3; ++i) {
        autograd::NoGradGuard ng;
        ps[i].copy_(fx()[fmt::format("{}.traj.{}", c.name, i)].select(0, kSteps / 2 - 1));
      }
      auto opt = build(c, ps);
      SafetensorsFile sd = opt->state_dict();  // for the param_groups metadata
      sd.tensors.clear();
      const std::string prefix = c.name + ".mid.";
      for (int i = 0; i < 3; ++i)
        for (const char* k :
             {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg", "sum"}) {
          const std::string key = fmt::format("state.{}.{}", i, k);
          if (fx().has(prefix + key)) sd.tensors.emplace_back(key, fx()[prefix + key]);
        }
      opt->load_state_dict(sd);
      for (int t = kSteps / 2; t < kSteps; ++t) {
        set_grads(ps, t);
        opt->step();
        check_step(ps, c.name, t);
      }
    }
  }
}

TEST_CASE("vector paths: a 515-element parameter matches PyTorch's vectorized kernels") {
  for (const Config& c : configs()) {
    if (!fx().has("large." + c.name)) continue;
    SECTION(c.name) {
      Tensor p = fx()["large.init"].clone().requires_grad_();
      // Only the first group's options: build with one group and no overrides.
      auto opt = c.make({ParamGroup{{p}, {}}});
      for (int t = 0; t < 5; ++t) {
        p.set_grad(fx()["large.grad"].select(0, t).contiguous());
        opt->step();
      }
      require_same(p, fx()["large." + c.name]);
    }
  }
}

TEST_CASE("a state dict saved to a safetensors file resumes the identical trajectory") {
  const auto dir = std::filesystem::temp_directory_path();
  for (const Config& c : configs()) {
    SECTION(c.name) {
      std::vector<Tensor> ref = initial_params(c.dtype);
      auto ref_opt = build(c, ref);
      std::vector<Tensor> ps = initial_params(c.dtype);
      auto opt = build(c, ps);
      const std::string path = (dir / fmt::format("tapegrad_optim_{}_{}.safetensors", c.name, ::getpid())).string();
      for (int t = 0; t < kSteps / 2; ++t) {
        set_grads(ps, t);
        opt->step();
      }
      opt->save(path);
      // A new optimizer over copies of the parameters, restored from the file.
      std::vector<Tensor> resumed;
      for (const Tensor& p : ps) resumed.push_back(p.detach().clone().requires_grad_());
      auto resumed_opt = build(c, resumed);
      resumed_opt->load(path);
      std::filesystem::remove(path);
      for (int t = 0; t < kSteps; ++t) {
        set_grads(ref, t);
        ref_opt->step();
        if (t < kSteps / 2) continue;
        set_grads(resumed, t);
        resumed_opt->step();
        for (int i = 0; i < 3; ++i) REQUIRE(resumed[i].to_vector<double>() == ref[i].to_vector<double>());
      }
    }
  }
}

TEST_CASE("state_dict layout: PyTorch's names, param_groups JSON with indices") {
  Tensor a = Tensor::zeros({2, 3}, {.requires_grad = true}), b = Tensor::zeros({3}, {.requires_grad = true});
  Tensor c = Tensor::zeros({1}, {.requires_grad = true});
  optim::Adam opt({ParamGroup{{a, b}, {}}, ParamGroup{{c}, {{"lr", 0.5}, {"amsgrad", true}}}}, {.lr = 0.1});
  a.set_grad(Tensor::ones({2, 3}));
  c.set_grad(Tensor::ones({1}));
  opt.step();
  const SafetensorsFile sd = opt.state_dict();
  std::vector<std::string> names;
  for (const auto& [k, t] : sd.tensors) names.push_back(k);
  REQUIRE(names == std::vector<std::string>{"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq", "state.2.step",
                                            "state.2.exp_avg", "state.2.exp_avg_sq", "state.2.max_exp_avg_sq"});
  REQUIRE(sd.at("state.0.step").dtype() == kFloat32);
  REQUIRE(sd.at("state.0.step").dim() == 0);
  REQUIRE(sd.metadata.at("optimizer") == "Adam");
  // As PyTorch's group dicts: the group's own keys first, then the defaults it did not set, "params" last.
  REQUIRE(sd.metadata.at("param_groups") ==
          R"([{"lr":0.1,"betas":[0.9,0.999],"eps":1e-08,"weight_decay":0.0,"amsgrad":false,"maximize":false,)"
          R"("decoupled_weight_decay":false,"params":[0,1]},{"lr":0.5,"amsgrad":true,"betas":[0.9,0.999],)"
          R"("eps":1e-08,"weight_decay":0.0,"maximize":false,"decoupled_weight_decay":false,"params":[2]}])");
  // The hyper-parameters come back with the state (a scheduler's lr changes survive a restart).
  opt.param_groups()[1].options.set("lr", 0.25);
  const SafetensorsFile changed = opt.state_dict();
  optim::Adam other({ParamGroup{{a, b}, {}}, ParamGroup{{c}, {}}}, {.lr = 0.1});
  other.load_state_dict(changed);
  REQUIRE(other.param_groups()[1].options.number("lr") == 0.25);
  REQUIRE(other.param_groups()[1].options.flag("amsgrad"));
  REQUIRE(other.state(c) != nullptr);
  REQUIRE(other.state(b) == nullptr);
  // Loaded state is a copy, not an alias of the dict's tensors.
  REQUIRE(other.state(a)->at("exp_avg").data() != sd.at("state.0.exp_avg").data());
}

TEST_CASE("load_state_dict rejects a state dict that does not fit") {
  Tensor a = Tensor::zeros({2, 3}, {.requires_grad = true}), b = Tensor::zeros({3}, {.requires_grad = true});
  optim::SGD opt({a, b}, {.lr = 0.1, .momentum = 0.9});
  a.set_grad(Tensor::ones({2, 3}));
  b.set_grad(Tensor::ones({3}));
  opt.step();
  const SafetensorsFile sd = opt.state_dict();

  Tensor c = Tensor::zeros({3}, {.requires_grad = true});
  optim::SGD two_groups({ParamGroup{{a}, {}}, ParamGroup{{b}, {}}}, {.lr = 0.1, .momentum = 0.9});
  REQUIRE_ERROR(two_groups.load_state_dict(sd),
                "SGD: loaded state dict has a different number of parameter groups (the optimizer has 2, the state "
                "dict 1)");
  optim::SGD three({a, b, c}, {.lr = 0.1, .momentum = 0.9});
  REQUIRE_ERROR(three.load_state_dict(sd),
                "SGD: loaded state dict contains a parameter group that doesn't match the size of optimizer's group "
                "(group 0: the optimizer has 3 parameters, the state dict 2)");
  Tensor d = Tensor::zeros({4}, {.requires_grad = true});
  optim::SGD wrong_shape({a, d}, {.lr = 0.1, .momentum = 0.9});
  REQUIRE_ERROR(wrong_shape.load_state_dict(sd),
                "SGD: load_state_dict: 'state.1.momentum_buffer' has shape (3,), but parameter 1 has shape (4,)");
  optim::Adam adam({a, b});
  REQUIRE_ERROR(adam.load_state_dict(sd), "Adam: load_state_dict: the state dict was saved by SGD");
  SafetensorsFile bad = sd;
  bad.tensors.emplace_back("state.5.momentum_buffer", Tensor::zeros({3}));
  REQUIRE_ERROR(opt.load_state_dict(bad),
                "SGD: load_state_dict: tensor 'state.5.momentum_buffer' refers to parameter 5, which no group lists");
  bad = sd;
  bad.tensors.emplace_back("momentum_buffer", Tensor::zeros({3}));
  REQUIRE_ERROR(opt.load_state_dict(bad),
                "SGD: load_state_dict: unexpected tensor 'momentum_buffer' (expected state.<index>.<name>)");
  bad = sd;
  bad.metadata.erase("param_groups");
  REQUIRE_ERROR(opt.load_state_dict(bad), "SGD: load_state_dict: the state dict has no 'param_groups' metadata");
  bad = sd;
  bad.metadata["param_groups"] = R"([{"lr":-1,"momentum":0.9,"dampening":0,"weight_decay":0,"nesterov":false,)"
                                 R"("maximize":false,"params":[0,1]}])";
  REQUIRE_ERROR(opt.load_state_dict(bad), "SGD: Invalid learning rate: -1");
  bad.metadata["param_groups"] = R"([{"lr":0.1,"params":[0,1]}])";
  REQUIRE_ERROR(opt.load_state_dict(bad), "SGD: load_state_dict: param_groups[0] has no 'momentum'");
  // A failed load leaves the optimizer as it was.
  REQUIRE(opt.param_groups()[0].options.number("lr") == 0.1);
  REQUIRE(opt.state(a)->contains("momentum_buffer"));
}

TEST_CASE("constructor errors use PyTorch's messages after the optimizer's name") {
  Tensor w = Tensor::zeros({2}, {.requires_grad = true});
  REQUIRE_ERROR(optim::SGD(std::vector<Tensor>{}), "SGD: optimizer got an empty parameter list");
  REQUIRE_ERROR(optim::Adam(std::vector<ParamGroup>{}), "Adam: optimizer got an empty parameter list");
  REQUIRE_ERROR(optim::SGD({w * 2.0}), "SGD: can't optimize a non-leaf Tensor");
  REQUIRE_ERROR(optim::SGD({Tensor()}), "SGD: optimizer can only optimize Tensors, but one of the params is undefined");
  REQUIRE_ERROR(optim::SGD({Tensor::zeros({2}, {.dtype = kInt64})}),
                "SGD: can only optimize Tensors of floating point dtype (float32 or float64), but one of the params "
                "is int64");
  REQUIRE_ERROR(optim::SGD({w, w}), "SGD: optimizer contains a parameter group with duplicate parameters");
  REQUIRE_ERROR(optim::SGD({ParamGroup{{w}, {}}, ParamGroup{{w}, {}}}),
                "SGD: some parameters appear in more than one parameter group");
  REQUIRE_ERROR(optim::SGD({w}, {.lr = -1}), "SGD: Invalid learning rate: -1");
  REQUIRE_ERROR(optim::SGD({w}, {.momentum = -1}), "SGD: Invalid momentum value: -1");
  REQUIRE_ERROR(optim::SGD({w}, {.weight_decay = -1}), "SGD: Invalid weight_decay value: -1");
  REQUIRE_ERROR(optim::SGD({w}, {.nesterov = true}), "SGD: Nesterov momentum requires a momentum and zero dampening");
  REQUIRE_ERROR(optim::SGD({w}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                "SGD: Nesterov momentum requires a momentum and zero dampening");
  // Validation comes before the parameter checks, as in PyTorch.
  REQUIRE_ERROR(optim::SGD(std::vector<Tensor>{}, {.lr = -1}), "SGD: Invalid learning rate: -1");
  REQUIRE_ERROR(optim::Adam({w}, {.lr = -0.5}), "Adam: Invalid learning rate: -0.5");
  REQUIRE_ERROR(optim::Adam({w}, {.eps = -1e-8}), "Adam: Invalid epsilon value: -1e-08");
  REQUIRE_ERROR(optim::Adam({w}, {.betas = {1.0, 0.999}}), "Adam: Invalid beta parameter at index 0: 1");
  REQUIRE_ERROR(optim::Adam({w}, {.betas = {0.9, -0.1}}), "Adam: Invalid beta parameter at index 1: -0.1");
  REQUIRE_ERROR(optim::Adam({w}, {.weight_decay = -1}), "Adam: Invalid weight_decay value: -1");
  REQUIRE_ERROR(optim::AdamW({w}, {.weight_decay = -1}), "AdamW: Invalid weight_decay value: -1");
  REQUIRE_ERROR(optim::AdamW({w}, {.betas = {0.9, 1.5}}), "AdamW: Invalid beta parameter at index 1: 1.5");
  REQUIRE_ERROR(optim::RMSprop({w}, {.alpha = -1}), "RMSprop: Invalid alpha value: -1");
  REQUIRE_ERROR(optim::RMSprop({w}, {.eps = -1}), "RMSprop: Invalid epsilon value: -1");
  REQUIRE_ERROR(optim::RMSprop({w}, {.momentum = -1}), "RMSprop: Invalid momentum value: -1");
  REQUIRE_ERROR(optim::Adagrad({w}, {.lr_decay = -1}), "Adagrad: Invalid lr_decay value: -1");
  REQUIRE_ERROR(optim::Adagrad({w}, {.initial_accumulator_value = -1}),
                "Adagrad: Invalid initial_accumulator_value value: -1");
  REQUIRE_ERROR(optim::Adagrad({w}, {.eps = -1}), "Adagrad: Invalid epsilon value: -1");
  // A group override is checked too, and must have the option's kind.
  REQUIRE_ERROR(optim::SGD({ParamGroup{{w}, {{"momentum", -2}}}}), "SGD: Invalid momentum value: -2");
  REQUIRE_ERROR(optim::SGD({ParamGroup{{w}, {{"lr", true}}}}),
                "SGD: param group option 'lr' must be a number, got true");
  REQUIRE_ERROR(optim::Adam({ParamGroup{{w}, {{"betas", 0.9}}}}),
                "Adam: param group option 'betas' must be a pair of numbers, got 0.9");
}

TEST_CASE("groups take the defaults for the options they do not set; add_param_group") {
  Tensor a = Tensor::zeros({2}, {.requires_grad = true}), b = Tensor::zeros({2}, {.requires_grad = true});
  optim::SGD opt({ParamGroup{{a}, {{"lr", 0.5}, {"name", 3}}}}, {.lr = 0.1, .momentum = 0.9});
  const GroupOptions& g = opt.param_groups()[0].options;
  REQUIRE(g.number("lr") == 0.5);
  REQUIRE(g.number("momentum") == 0.9);
  REQUIRE(g.number("name") == 3);  // extra keys are kept, as in a PyTorch group dict
  opt.add_param_group({.params = {b}});
  REQUIRE(opt.param_groups()[1].options.number("lr") == 0.1);
  REQUIRE_ERROR(opt.add_param_group({.params = {a}}), "SGD: some parameters appear in more than one parameter group");
  REQUIRE(opt.param_groups().size() == 2);
}

TEST_CASE("parameters without a gradient are skipped entirely; versions bump once per update") {
  Tensor a = Tensor::ones({3}, {.requires_grad = true}), b = Tensor::ones({3}, {.requires_grad = true});
  optim::AdamW opt({a, b}, {.lr = 0.1, .weight_decay = 0.5});
  a.set_grad(Tensor::ones({3}));
  const uint64_t va = a.version(), vb = b.version();
  opt.step();
  REQUIRE(a.version() == va + 1);
  REQUIRE(b.version() == vb);  // no decoupled decay either
  REQUIRE(b.to_vector<float>() == std::vector<float>{1, 1, 1});
  REQUIRE(opt.state(b) == nullptr);
  REQUIRE(opt.state(a)->at("step").item() == 1);
  // step() records nothing on the tape.
  REQUIRE(a.is_leaf());
  REQUIRE(a.requires_grad());
}

TEST_CASE("zero_grad sets gradients to undefined, or zeroes them in place") {
  Tensor a = Tensor::ones({3}, {.requires_grad = true});
  optim::SGD opt({a});
  (a * a).sum().backward();
  opt.zero_grad();
  REQUIRE_FALSE(a.grad().defined());
  (a * a).sum().backward();
  Tensor g = a.grad();
  opt.zero_grad(false);
  REQUIRE(a.grad().same(g));
  REQUIRE(g.to_vector<float>() == std::vector<float>{0, 0, 0});
  // A gradient with history (create_graph) is detached before zeroing.
  Tensor x = Tensor::ones({3}, {.requires_grad = true});
  optim::SGD ox({x});
  (x * x * x).sum().backward({}, false, true);
  REQUIRE(x.grad().requires_grad());
  ox.zero_grad(false);
  REQUIRE_FALSE(x.grad().requires_grad());
  REQUIRE(x.grad().to_vector<float>() == std::vector<float>{0, 0, 0});
}

TEST_CASE("a step after the first allocates nothing") {
  if (!TAPEGRAD_COUNT_ALLOCATIONS) {
    WARN("allocations are not counted under AddressSanitizer");
    return;
  }
  for (const Config& c : configs()) {
    SECTION(c.name) {
      std::vector<Tensor> ps = initial_params(c.dtype);
      auto opt = build(c, ps);
      std::vector<Tensor> grads;
      for (int i = 0; i < 3; ++i) {
        grads.push_back(Tensor::full(ps[i].shape(), 0.1 * (i + 1), {.dtype = c.dtype}));
        ps[i].set_grad(grads[i]);
      }
      opt->step();
      const long before = g_allocations.load();
      for (int t = 0; t < 3; ++t) opt->step();
      REQUIRE(g_allocations.load() == before);
    }
  }
}

// ---- the fused kernels against naive loops, on odd and large (parallel) sizes ----

namespace {

// PyTorch's formulas, one element at a time in double, straight from the documentation.
struct Naive {
  std::vector<double> p, m, v, vmax, buf, sum, ga;
  int t = 0;
};

void naive_adam(Naive& s, const std::vector<double>& grad, double lr, double b1, double b2, double eps, double wd,
                bool amsgrad, bool decoupled) {
  s.t += 1;
  for (size_t i = 0; i < s.p.size(); ++i) {
    double g = grad[i];
    if (decoupled)
      s.p[i] *= 1 - lr * wd;
    else
      g += wd * s.p[i];
    s.m[i] = b1 * s.m[i] + (1 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1 - b2) * g * g;
    s.vmax[i] = std::max(s.vmax[i], s.v[i]);
    const double denom = std::sqrt(amsgrad ? s.vmax[i] : s.v[i]) / std::sqrt(1 - std::pow(b2, s.t)) + eps;
    s.p[i] -= lr / (1 - std::pow(b1, s.t)) * s.m[i] / denom;
  }
}

void naive_sgd(Naive& s, const std::vector<double>& grad, double lr, double mom, double damp, double wd,
               bool nesterov) {
  s.t += 1;
  for (size_t i = 0; i < s.p.size(); ++i) {
    double g = grad[i] + wd * s.p[i];
    s.buf[i] = s.t == 1 ? g : mom * s.buf[i] + (1 - damp) * g;
    g = nesterov ? g + mom * s.buf[i] : s.buf[i];
    s.p[i] -= lr * g;
  }
}

void naive_rmsprop(Naive& s, const std::vector<double>& grad, double lr, double alpha, double eps, double mom,
                   bool centered) {
  for (size_t i = 0; i < s.p.size(); ++i) {
    const double g = grad[i];
    s.v[i] = alpha * s.v[i] + (1 - alpha) * g * g;
    s.ga[i] = alpha * s.ga[i] + (1 - alpha) * g;
    const double avg = std::sqrt(centered ? s.v[i] - s.ga[i] * s.ga[i] : s.v[i]) + eps;
    s.buf[i] = mom * s.buf[i] + g / avg;
    s.p[i] -= lr * s.buf[i];
  }
}

void naive_adagrad(Naive& s, const std::vector<double>& grad, double lr, double lr_decay, double eps) {
  s.t += 1;
  const double clr = lr / (1 + (s.t - 1) * lr_decay);
  for (size_t i = 0; i < s.p.size(); ++i) {
    s.sum[i] += grad[i] * grad[i];
    s.p[i] -= clr * grad[i] / (std::sqrt(s.sum[i]) + eps);
  }
}

}  // namespace

TEST_CASE("fused kernels match naive loops in float64 (odd sizes and the parallel path)") {
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{100003}}) {
    for (int which = 0; which < 5; ++which) {
      INFO("n = " << n << ", optimizer " << which);
      Tensor p = testing::randn64({n}, 100 + n, false).requires_grad_();
      Naive s;
      s.p = p.to_vector<double>();
      s.m = s.v = s.vmax = s.buf = s.sum = s.ga = std::vector<double>(n, 0.0);
      std::unique_ptr<optim::Optimizer> opt;
      switch (which) {
        case 0:
          opt = std::make_unique<optim::Adam>(std::vector<Tensor>{p},
                                              optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true});
          break;
        case 1:
          opt = std::make_unique<optim::AdamW>(std::vector<Tensor>{p}, optim::AdamWOptions{.lr = 0.01});
          break;
        case 2:
          opt = std::make_unique<optim::SGD>(
              std::vector<Tensor>{p},
              optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
          break;
        case 3:
          opt = std::make_unique<optim::RMSprop>(std::vector<Tensor>{p},
                                                 optim::RMSpropOptions{.lr = 0.01, .momentum = 0.5, .centered = true});
          break;
        default:
          opt = std::make_unique<optim::Adagrad>(std::vector<Tensor>{p},
                                                 optim::AdagradOptions{.lr = 0.1, .lr_decay = 0.01});
          break;
      }
      for (int t = 0; t < 5; ++t) {
        Tensor g = testing::randn64({n}, 1000 * t + n, false);
        const auto gv = g.to_vector<double>();
        p.set_grad(g);
        opt->step();
        switch (which) {
          case 0:
            naive_adam(s, gv, 0.01, 0.9, 0.999, 1e-8, 0.1, true, false);
            break;
          case 1:
            naive_adam(s, gv, 0.01, 0.9, 0.999, 1e-8, 0.01, false, true);
            break;
          case 2:
            naive_sgd(s, gv, 0.1, 0.9, 0.0, 0.01, true);
            break;
          case 3:
            naive_rmsprop(s, gv, 0.01, 0.99, 1e-8, 0.5, true);
            break;
          default:
            naive_adagrad(s, gv, 0.1, 0.01, 1e-10);
            break;
        }
      }
      testing::require_close(p, Tensor::from_vector(s.p, {n}), 1e-12, 1e-14);
    }
  }
}

TEST_CASE("the parallel path gives bit-identical results to the serial one") {
  // One large parameter (split across threads) against the same values as small serial pieces.
  const int64_t n = 100000, piece = 1000;
  Tensor big = testing::randn64({n}, 5, false).to(kFloat32).requires_grad_();
  std::vector<Tensor> pieces;
  for (int64_t k = 0; k < n / piece; ++k)
    pieces.push_back(big.detach().narrow(0, k * piece, piece).clone().requires_grad_());
  optim::Adam big_opt({big}, {.lr = 0.01, .amsgrad = true});
  optim::Adam piece_opt(pieces, {.lr = 0.01, .amsgrad = true});
  for (int t = 0; t < 3; ++t) {
    Tensor g = testing::randn64({n}, 50 + t, false).to(kFloat32);
    big.set_grad(g);
    for (int64_t k = 0; k < n / piece; ++k) pieces[k].set_grad(g.narrow(0, k * piece, piece).contiguous());
    big_opt.step();
    piece_opt.step();
  }
  const auto b = big.to_vector<float>();
  for (int64_t k = 0; k < n / piece; ++k) {
    const auto v = pieces[k].to_vector<float>();
    REQUIRE(std::equal(v.begin(), v.end(), b.begin() + k * piece));
  }
}

TEST_CASE("non-contiguous parameters and gradients") {
  // A transposed leaf and an expanded gradient give the same update as their contiguous copies.
  Tensor base = testing::randn64({4, 3}, 9, false).to(kFloat32);
  Tensor strided = base.t().detach().requires_grad_();
  REQUIRE_FALSE(strided.is_contiguous());
  Tensor dense = base.t().contiguous().detach().requires_grad_();
  optim::RMSprop o1({strided}, {.lr = 0.01, .momentum = 0.9, .centered = true});
  optim::RMSprop o2({dense}, {.lr = 0.01, .momentum = 0.9, .centered = true});
  for (int t = 0; t < 3; ++t) {
    Tensor row = testing::randn64({1, 4}, 70 + t, false).to(kFloat32);
    strided.set_grad(row.expand({3, 4}));
    dense.set_grad(row.expand({3, 4}).contiguous());
    const uint64_t v = strided.version();
    o1.step();
    o2.step();
    REQUIRE(strided.version() > v);
  }
  REQUIRE(strided.to_vector<float>() == dense.to_vector<float>());
}

// ---- gradient clipping ----

TEST_CASE("clip_grad_norm_ matches PyTorch for several norm types") {
  struct Case {
    const char* name;
    double norm_type, max_norm;
  };
  for (const Case& c : {Case{"l2", 2.0, 1.0}, Case{"l2_noclip", 2.0, 100.0}, Case{"l1", 1.0, 2.5},
                        Case{"inf", INFINITY, 0.7}, Case{"l3", 3.0, 1.5}, Case{"l0_5", 0.5, 10.0}}) {
    SECTION(c.name) {
      std::vector<Tensor> ps;
      for (int i = 0; i < 3; ++i) {
        const Tensor& g = fx()[fmt::format("clip.grad.{}", i)];
        Tensor p = Tensor::zeros(g.shape(), {.requires_grad = true});
        p.set_grad(g.clone());
        ps.push_back(p);
      }
      ps.push_back(Tensor::zeros({5}, {.requires_grad = true}));  // no gradient: ignored
      const double total = optim::clip_grad_norm_(ps, c.max_norm, c.norm_type);
      const double expected = fx()[fmt::format("clip.{}.norm", c.name)].item();
      // PyTorch sums in float32 in its own order; we sum in double and round.
      REQUIRE(total == Approx(expected).epsilon(1e-6));
      for (int i = 0; i < 3; ++i)
        testing::require_close(ps[i].grad(), fx()[fmt::format("clip.{}.grad.{}", c.name, i)], 2e-6, 1e-7);
    }
  }
}

TEST_CASE("clip_grad_norm_: scaling rule, empty lists, non-finite norms, float64") {
  Tensor p = Tensor::zeros({2}, {.requires_grad = true});
  REQUIRE(optim::clip_grad_norm_({p}, 1.0) == 0.0);  // no gradient
  p.set_grad(Tensor::of({3.0, 4.0}));
  // Not clipped: 6 / (5 + 1e-6) >= 1 leaves the gradient bit-identical.
  REQUIRE(optim::clip_grad_norm_({p}, 6.0) == 5.0);
  REQUIRE(p.grad().to_vector<float>() == std::vector<float>{3, 4});
  // Clipped: multiplied by max_norm / (total + 1e-6), evaluated in float32 as PyTorch.
  const uint64_t v = p.grad().version();
  REQUIRE(optim::clip_grad_norm_({p}, 1.0) == 5.0);
  const float coef = (1.0f / (5.0f + 1e-6f)) * 1.0f;
  REQUIRE(p.grad().to_vector<float>() == std::vector<float>{3.0f * coef, 4.0f * coef});
  REQUIRE(p.grad().version() == v + 1);

  Tensor q = Tensor::zeros({2}, {.dtype = kFloat64, .requires_grad = true});
  q.set_grad(Tensor::of({3.0, 4.0}, {.dtype = kFloat64}));
  REQUIRE(optim::clip_grad_norm_({q}, 0.5) == 5.0);
  const double coef64 = (1.0 / (5.0 + 1e-6)) * 0.5;
  REQUIRE(q.grad().to_vector<double>() == std::vector<double>{3.0 * coef64, 4.0 * coef64});

  p.set_grad(Tensor::of({1.0, INFINITY}));
  REQUIRE_ERROR(optim::clip_grad_norm_({p}, 1.0, 2.0, true),
                "clip_grad_norm_: The total norm of order 2.0 for gradients from `parameters` is non-finite, so it "
                "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
                "`error_if_nonfinite=False`");
  REQUIRE_ERROR(optim::clip_grad_norm_({p}, 1.0, INFINITY, true),
                "clip_grad_norm_: The total norm of order inf for gradients from `parameters` is non-finite, so it "
                "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
                "`error_if_nonfinite=False`");
  // Without the error, PyTorch scales by the coefficient anyway: 1 * 0 and inf * 0.
  REQUIRE(std::isinf(optim::clip_grad_norm_({p}, 1.0)));
  const auto g = p.grad().to_vector<float>();
  REQUIRE(g[0] == 0.0f);
  REQUIRE(std::isnan(g[1]));
}

TEST_CASE("clip_grad_value_ matches PyTorch") {
  std::vector<Tensor> ps;
  for (int i = 0; i < 3; ++i) {
    const Tensor& g = fx()[fmt::format("clip.grad.{}", i)];
    Tensor p = Tensor::zeros(g.shape(), {.requires_grad = true});
    p.set_grad(i == 0 ? g.t().contiguous().t() : g.clone());  // the first one strided
    ps.push_back(p);
  }
  optim::clip_grad_value_(ps, 1.1);
  for (int i = 0; i < 3; ++i)
    REQUIRE(ps[i].grad().to_vector<float>() == fx()[fmt::format("clip.value.grad.{}", i)].to_vector<float>());
  Tensor n = Tensor::zeros({3}, {.requires_grad = true});
  n.set_grad(Tensor::of({NAN, -5.0, 0.5}));
  optim::clip_grad_value_({n}, 1.0);
  const auto v = n.grad().to_vector<float>();
  REQUIRE(std::isnan(v[0]));
  REQUIRE(v[1] == -1.0f);
  REQUIRE(v[2] == 0.5f);
}
