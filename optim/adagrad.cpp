// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "adagrad.h"

#include <algorithm>

#include "../core/autograd.h"

namespace tapegrad::optim {

namespace {

GroupOptions to_options(const AdagradOptions& o) {
  return {{"lr", o.lr},
          {"lr_decay", o.lr_decay},
          {"eps", o.eps},
          {"weight_decay", o.weight_decay},
          {"initial_accumulator_value", o.initial_accumulator_value},
          {"maximize", o.maximize}};
}

// One fused pass over p[lo, hi), rounding as PyTorch's ops: g.add(p, alpha=wd);
// sum.addcmul_(g, g, value=1); std = sum.sqrt().add_(eps); p.addcdiv_(g, std, value=-clr).
template <typename T, bool Maximize, bool Decay>
void adagrad_range(T* __restrict p, const T* __restrict grad, T* __restrict sum, int64_t lo, int64_t hi, T wd, T eps,
                   T neg_clr) {
  using detail::fmadd;
  auto gradient = [&](int64_t i) {
    T g = Maximize ? -grad[i] : grad[i];
    if constexpr (Decay) g = fmadd(wd, p[i], g);
    return g;
  };
  T root[detail::kBlock];  // the block's sums, then their square roots
  for (int64_t b = lo; b < hi; b += detail::kBlock) {
    const int64_t e = std::min(b + detail::kBlock, hi);
    for (int64_t i = b; i < e; ++i) {
      const T g = gradient(i);
      const T s = fmadd(g, g, sum[i]);
      sum[i] = s;
      root[i - b] = s;
    }
    detail::sqrt_inplace(root, e - b);
    for (int64_t i = b; i < e; ++i) {
      const T g = gradient(i);  // p is unchanged so far: the same value as above
      p[i] = p[i] + (neg_clr * g) / (root[i - b] + eps);
    }
  }
}

template <typename T>
void adagrad_kernel(T* p, const T* grad, T* sum, int64_t n, double clr, double wd, double eps, bool maximize) {
  const T wd_t = static_cast<T>(wd), eps_t = static_cast<T>(eps), neg_clr = static_cast<T>(-clr);
  detail::with_flags(
      [&]<bool Maximize, bool Decay>() {
        detail::parallel_chunks(n, [&](int64_t lo, int64_t hi) {
          adagrad_range<T, Maximize, Decay>(p, grad, sum, lo, hi, wd_t, eps_t, neg_clr);
        });
      },
      maximize, wd != 0);
}

}  // namespace

Adagrad::Adagrad(std::vector<Tensor> params, AdagradOptions options)
    : Adagrad(single_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions defaults) : Optimizer("Adagrad", to_options(defaults)) {
  validate(this->defaults());
  add_initial_groups(std::move(groups));
}

void Adagrad::validate(const GroupOptions& o) const {
  TG_CHECK(o.number("lr") >= 0, "Adagrad: Invalid learning rate: {}", o.number("lr"));
  TG_CHECK(o.number("lr_decay") >= 0, "Adagrad: Invalid lr_decay value: {}", o.number("lr_decay"));
  TG_CHECK(o.number("weight_decay") >= 0, "Adagrad: Invalid weight_decay value: {}", o.number("weight_decay"));
  TG_CHECK(o.number("initial_accumulator_value") >= 0, "Adagrad: Invalid initial_accumulator_value value: {}",
           o.number("initial_accumulator_value"));
  TG_CHECK(o.number("eps") >= 0, "Adagrad: Invalid epsilon value: {}", o.number("eps"));
}

void Adagrad::on_group_added(ParamGroup& group) {
  const double init = group.options.number("initial_accumulator_value");
  for (const Tensor& p : group.params) {
    ParamState& state = state_of(p);
    state.set("step", Tensor::scalar(0, DType::Float32));
    state.set("sum", Tensor::full(p.shape(), init, {.dtype = p.dtype()}));
  }
}

void Adagrad::step() {
  autograd::NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    const GroupOptions& o = group.options;
    const double lr = o.number("lr"), lr_decay = o.number("lr_decay"), wd = o.number("weight_decay");
    const double eps = o.number("eps");
    const bool maximize = o.flag("maximize");
    for (const Tensor& param : group.params) {
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& state = state_of(param);
      if (state.empty()) {  // a state dict without this parameter was loaded
        state.set("step", Tensor::scalar(0, DType::Float32));
        state.set("sum", Tensor::full(param.shape(), o.number("initial_accumulator_value"), {.dtype = param.dtype()}));
      }
      float& step_t = *state_tensor(state, "step").data_ptr<float>();
      step_t += 1;
      const double t = step_t;
      const double clr = lr / (1 + (t - 1) * lr_decay);
      const Tensor& sum = state_tensor(state, "sum");
      detail::update_contiguous(param, grad, [&](const Tensor& p, const Tensor& g) {
        dispatch_floating(p.dtype(), "Adagrad", [&]<typename T>() {
          adagrad_kernel<T>(p.data_ptr<T>(), g.data_ptr<T>(), sum.data_ptr<T>(), p.numel(), clr, wd, eps, maximize);
        });
      });
    }
  }
}

}  // namespace tapegrad::optim
