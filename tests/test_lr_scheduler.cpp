// Learning-rate schedulers against PyTorch (tests/fixtures/gen_lr_scheduler.py): the sequences must
// agree to the last bit, since both sides evaluate the same double formulas in the same order.
#include <tapegrad/optim/optim.h>

#include <functional>
#include <memory>
#include <variant>

#include "support/fixtures.h"

using namespace tapegrad;
using optim::ParamGroup;

namespace {

const testing::Fixture& fx() {
  static const testing::Fixture f("lr_scheduler.safetensors");
  return f;
}

constexpr int kSteps = 40;

// Two groups, lr 0.1 and 0.05, as in the generator.
std::unique_ptr<optim::Optimizer> sgd() {
  return std::make_unique<optim::SGD>(
      std::vector<ParamGroup>{{.params = {Tensor::zeros({2}, {.requires_grad = true})}},
                              {.params = {Tensor::zeros({3}, {.requires_grad = true})}, .options = {{"lr", 0.05}}}},
      optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
}

std::unique_ptr<optim::Optimizer> adam() {
  return std::make_unique<optim::Adam>(
      std::vector<ParamGroup>{{.params = {Tensor::zeros({2}, {.requires_grad = true})}},
                              {.params = {Tensor::zeros({3}, {.requires_grad = true})}, .options = {{"lr", 0.05}}}},
      optim::AdamOptions{.lr = 0.1});
}

using Scheduler = std::variant<std::unique_ptr<optim::LRScheduler>, std::unique_ptr<optim::ReduceLROnPlateau>>;

struct Case {
  std::string name;
  std::function<std::unique_ptr<optim::Optimizer>()> make_optimizer;
  std::function<std::vector<Scheduler>(optim::Optimizer&)> make_schedulers;
};

template <typename S, typename... Args>
std::vector<Scheduler> one(optim::Optimizer& o, Args... args) {
  std::vector<Scheduler> v;
  v.emplace_back(std::make_unique<S>(o, args...));
  return v;
}

std::vector<Scheduler> plateau(optim::Optimizer& o, optim::ReduceLROnPlateauOptions options) {
  std::vector<Scheduler> v;
  v.emplace_back(std::make_unique<optim::ReduceLROnPlateau>(o, options));
  return v;
}

// The same table as CASES in gen_lr_scheduler.py.
const std::vector<Case>& cases() {
  using optim::AnnealStrategy, optim::PlateauMode, optim::ThresholdMode;
  static const std::vector<Case> c = {
      {"step", sgd, [](auto& o) { return one<optim::StepLR>(o, int64_t{7}, 0.5); }},
      {"multistep", sgd,
       [](auto& o) {
         return one<optim::MultiStepLR>(o, std::vector<int64_t>{5, 12, 12, 30}, 0.3);
       }},
      {"exponential", sgd, [](auto& o) { return one<optim::ExponentialLR>(o, 0.93); }},
      {"cosine", sgd, [](auto& o) { return one<optim::CosineAnnealingLR>(o, int64_t{10}, 0.001); }},
      {"cosine_long", sgd, [](auto& o) { return one<optim::CosineAnnealingLR>(o, int64_t{35}); }},
      {"linear", sgd,
       [](auto& o) {
         return one<optim::LinearLR>(
             o, optim::LinearLROptions{.start_factor = 0.25, .end_factor = 0.9, .total_iters = 12});
       }},
      {"linear_default", sgd, [](auto& o) { return one<optim::LinearLR>(o); }},
      {"onecycle_cos", sgd,
       [](auto& o) {
         return one<optim::OneCycleLR>(o, std::vector<double>{1.0, 0.5},
                                       optim::OneCycleLROptions{.total_steps = kSteps});
       }},
      {"onecycle_linear_three_phase", adam,
       [](auto& o) {
         return one<optim::OneCycleLR>(o, std::vector<double>{0.3},
                                       optim::OneCycleLROptions{.total_steps = kSteps + 5,
                                                                .pct_start = 0.25,
                                                                .anneal_strategy = AnnealStrategy::Linear,
                                                                .base_momentum = {0.8},
                                                                .max_momentum = {0.9, 0.95},
                                                                .div_factor = 10.0,
                                                                .final_div_factor = 100.0,
                                                                .three_phase = true});
       }},
      {"onecycle_epochs_no_momentum", sgd,
       [](auto& o) {
         return one<optim::OneCycleLR>(
             o, std::vector<double>{0.2},
             optim::OneCycleLROptions{.epochs = 4, .steps_per_epoch = 10, .pct_start = 0.4, .cycle_momentum = false});
       }},
      {"chained_step_exponential", sgd,
       [](auto& o) {
         std::vector<Scheduler> v;
         v.emplace_back(std::make_unique<optim::StepLR>(o, 5, 0.5));
         v.emplace_back(std::make_unique<optim::ExponentialLR>(o, 0.95));
         return v;
       }},
      {"plateau_min_rel", sgd,
       [](auto& o) {
         return plateau(o, {.mode = PlateauMode::Min,
                            .factor = 0.5,
                            .patience = 2,
                            .threshold = 0.01,
                            .cooldown = 1,
                            .min_lr = {0.01, 0.002}});
       }},
      {"plateau_max_abs", sgd,
       [](auto& o) {
         return plateau(o, {.mode = PlateauMode::Max,
                            .factor = 0.3,
                            .patience = 1,
                            .threshold = 0.1,
                            .threshold_mode = ThresholdMode::Abs,
                            .eps = 1e-3});
       }},
      {"plateau_min_abs", sgd,
       [](auto& o) {
         return plateau(o, {.factor = 0.7,
                            .patience = 0,
                            .threshold = 0.005,
                            .threshold_mode = ThresholdMode::Abs,
                            .min_lr = {0.03}});
       }},
  };
  return c;
}

void step_all(std::vector<Scheduler>& scheds, int t) {
  const auto metrics = fx()["metrics"].to_vector<double>();
  for (Scheduler& s : scheds) {
    if (auto* p = std::get_if<std::unique_ptr<optim::ReduceLROnPlateau>>(&s))
      (*p)->step(metrics[t]);
    else
      std::get<std::unique_ptr<optim::LRScheduler>>(s)->step();
  }
}

std::vector<double> lrs(const optim::Optimizer& o) {
  std::vector<double> v;
  for (const ParamGroup& g : o.param_groups()) v.push_back(g.options.number("lr"));
  return v;
}

std::vector<double> momenta(const optim::Optimizer& o) {
  std::vector<double> v;
  for (const ParamGroup& g : o.param_groups())
    v.push_back(g.options.contains("betas") ? g.options.pair("betas").first : g.options.number("momentum"));
  return v;
}

std::vector<double> row(const std::string& key, int t) { return fx()[key].select(0, t).to_vector<double>(); }

}  // namespace

TEST_CASE("schedules match PyTorch's to the last bit over 40 steps") {
  for (const Case& c : cases()) {
    SECTION(c.name) {
      auto opt = c.make_optimizer();
      auto scheds = c.make_schedulers(*opt);
      const bool momentum = fx().has(c.name + ".momentum");
      for (int t = 0; t <= kSteps; ++t) {
        if (t > 0) {
          opt->step();  // no gradients: nothing moves, as in the generator
          step_all(scheds, t - 1);
        }
        INFO("after " << t << " scheduler steps");
        REQUIRE(lrs(*opt) == row(c.name + ".lr", t));
        if (momentum) REQUIRE(momenta(*opt) == row(c.name + ".momentum", t));
        if (auto* s = std::get_if<std::unique_ptr<optim::LRScheduler>>(&scheds.back()))
          REQUIRE((*s)->get_last_lr() == lrs(*opt));
        else
          REQUIRE(std::get<std::unique_ptr<optim::ReduceLROnPlateau>>(scheds.back())->get_last_lr() == lrs(*opt));
      }
    }
  }
}

TEST_CASE("the constructor takes the initial step and records initial_lr in the groups") {
  auto opt = sgd();
  optim::LinearLR s(*opt, {.start_factor = 0.5, .total_iters = 4});
  REQUIRE(s.last_epoch() == 0);
  REQUIRE(s.get_last_lr() == std::vector<double>{0.05, 0.025});
  REQUIRE(s.base_lrs() == std::vector<double>{0.1, 0.05});
  REQUIRE(opt->param_groups()[0].options.number("initial_lr") == 0.1);
  REQUIRE(opt->param_groups()[1].options.number("initial_lr") == 0.05);
  // OneCycleLR writes its own bounds into the groups.
  auto opt2 = sgd();
  optim::OneCycleLR one(*opt2, {1.0}, {.total_steps = 10});
  const auto& g = opt2->param_groups()[0].options;
  REQUIRE(g.number("initial_lr") == 1.0 / 25);
  REQUIRE(g.number("max_lr") == 1.0);
  REQUIRE(g.number("min_lr") == 1.0 / 25 / 1e4);
  REQUIRE(g.number("max_momentum") == 0.95);
  REQUIRE(g.number("base_momentum") == 0.85);
  REQUIRE(g.number("momentum") == 0.95);
}

TEST_CASE("scheduler errors") {
  auto opt = sgd();
  REQUIRE_ERROR(optim::LinearLR(*opt, {.start_factor = 0}),
                "LinearLR: Starting multiplicative factor expected to be greater than 0 and less or equal to 1.");
  REQUIRE_ERROR(optim::LinearLR(*opt, {.start_factor = 1.5}),
                "LinearLR: Starting multiplicative factor expected to be greater than 0 and less or equal to 1.");
  REQUIRE_ERROR(optim::LinearLR(*opt, {.end_factor = -0.1}),
                "LinearLR: Ending multiplicative factor expected to be between 0 and 1.");
  REQUIRE_ERROR(optim::StepLR(*opt, 0), "StepLR: step_size must be a positive integer, got 0");
  REQUIRE_ERROR(optim::CosineAnnealingLR(*opt, 0), "CosineAnnealingLR: T_max must be a positive integer, got 0");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {}),
                "OneCycleLR: You must define either total_steps OR (epochs AND steps_per_epoch)");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {.epochs = 3}),
                "OneCycleLR: You must define either total_steps OR (epochs AND steps_per_epoch)");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {.total_steps = 0}),
                "OneCycleLR: Expected positive integer total_steps, but got 0");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {.epochs = -1, .steps_per_epoch = 3}),
                "OneCycleLR: Expected positive integer epochs, but got -1");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {.epochs = 2, .steps_per_epoch = 0}),
                "OneCycleLR: Expected positive integer steps_per_epoch, but got 0");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1}, {.total_steps = 10, .pct_start = 1.5}),
                "OneCycleLR: Expected float between 0 and 1 pct_start, but got 1.5");
  REQUIRE_ERROR(optim::OneCycleLR(*opt, {0.1, 0.2, 0.3}, {.total_steps = 10}),
                "OneCycleLR: max_lr must have the same length as optimizer.param_groups. max_lr has 3 values, "
                "param_groups has 2.");
  optim::Adagrad adagrad({Tensor::zeros({2}, {.requires_grad = true})});
  REQUIRE_ERROR(optim::OneCycleLR(adagrad, {0.1}, {.total_steps = 10}),
                "OneCycleLR: optimizer must support momentum or beta1 with `cycle_momentum` option enabled");
  optim::OneCycleLR ok(adagrad, {0.1}, {.total_steps = 3, .cycle_momentum = false});
  for (int i = 0; i < 3; ++i) ok.step();
  REQUIRE_ERROR(ok.step(), "OneCycleLR: Tried to step 4 times. The specified number of total steps is 3");
  REQUIRE_ERROR(optim::ReduceLROnPlateau(*opt, {.factor = 1.0}), "ReduceLROnPlateau: Factor should be < 1.0.");
  REQUIRE_ERROR(optim::ReduceLROnPlateau(*opt, {.min_lr = {0.1, 0.2, 0.3}}),
                "ReduceLROnPlateau: expected 2 min_lrs, got 3");
  auto fresh = sgd();
  REQUIRE_ERROR(optim::StepLR(*fresh, 3, 0.1, 5),
                "StepLR: param 'initial_lr' is not specified in param_groups[0] when resuming an optimizer");
}

TEST_CASE("scheduler and optimizer state dicts resume the identical schedule") {
  for (const Case& c : cases()) {
    SECTION(c.name) {
      auto ref_opt = c.make_optimizer();
      auto ref = c.make_schedulers(*ref_opt);
      auto opt = c.make_optimizer();
      auto scheds = c.make_schedulers(*opt);
      for (int t = 0; t < 15; ++t) {
        step_all(ref, t);
        step_all(scheds, t);
      }
      // Save the optimizer (the lrs and what schedulers wrote into the groups) and every scheduler;
      // then, as in PyTorch, build new ones and load the optimizer first, the schedulers second.
      const SafetensorsFile opt_state = opt->state_dict();
      std::vector<std::string> sched_states;
      for (Scheduler& s : scheds) sched_states.push_back(std::visit([](auto& p) { return p->state_dict(); }, s));
      auto opt2 = c.make_optimizer();
      auto scheds2 = c.make_schedulers(*opt2);
      opt2->load_state_dict(opt_state);
      for (size_t i = 0; i < scheds2.size(); ++i)
        std::visit([&](auto& p) { p->load_state_dict(sched_states[i]); }, scheds2[i]);
      for (int t = 15; t < kSteps; ++t) {
        step_all(ref, t);
        step_all(scheds2, t);
        REQUIRE(lrs(*opt2) == lrs(*ref_opt));
        REQUIRE(momenta(*opt2) == momenta(*ref_opt));
      }
    }
  }
}

TEST_CASE("a scheduler's state dict holds PyTorch's field names") {
  auto opt = sgd();
  optim::StepLR s(*opt, 3, 0.5);
  s.step();
  REQUIRE(s.state_dict() ==
          R"({"base_lrs":[0.1,0.05],"last_epoch":1,"_step_count":2,"_last_lr":[0.1,0.05],"step_size":3,"gamma":0.5})");
  optim::ReduceLROnPlateau p(*opt, {.patience = 0});
  p.step(1.0);
  p.step(2.0);
  REQUIRE(p.num_bad_epochs() == 0);  // reduced and reset
  REQUIRE(p.get_last_lr() == std::vector<double>{0.1 * 0.1, 0.05 * 0.1});
  optim::ReduceLROnPlateau q(*opt);
  q.load_state_dict(p.state_dict());
  REQUIRE(q.best() == 1.0);
  REQUIRE(q.last_epoch() == 2);
  REQUIRE_ERROR(q.load_state_dict(R"({"best": "x"})"),
                R"(ReduceLROnPlateau: load_state_dict: 'best' must be a number, got "x")");
  REQUIRE_ERROR(s.load_state_dict("[1]"), "StepLR: load_state_dict: expected a JSON object, got [1]");
}
