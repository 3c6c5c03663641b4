// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "adam.h"

#include <algorithm>

#include "../core/autograd.h"

namespace tapegrad::optim {

namespace {

GroupOptions to_options(const AdamOptions& o) {
  return {{"lr", o.lr},
          {"betas", o.betas},
          {"eps", o.eps},
          {"weight_decay", o.weight_decay},
          {"amsgrad", o.amsgrad},
          {"maximize", o.maximize},
          {"decoupled_weight_decay", o.decoupled_weight_decay}};
}

AdamOptions from_adamw(const AdamWOptions& o) {
  return {.lr = o.lr,
          .betas = o.betas,
          .eps = o.eps,
          .weight_decay = o.weight_decay,
          .amsgrad = o.amsgrad,
          .maximize = o.maximize,
          .decoupled_weight_decay = true};
}

// The scalars of one step, computed in double as Python does, then rounded once to T by the kernel.
struct AdamStep {
  double beta1, beta2, eps, weight_decay;
  double decay_factor;  // AdamW: 1 - lr * wd
  double step_size;     // lr / bc1
  double bc2_sqrt;      // sqrt(1 - beta2^t)
  bool maximize, amsgrad, decoupled;
};

// One fused pass over p[lo, hi), rounding as PyTorch's ops: p.mul_(1 - lr*wd) (Decoupled) or
// g.add(p, alpha=wd) (Coupled); exp_avg.mul_(b1).add_(g, alpha=1-b1);
// exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2); torch.maximum(max_exp_avg_sq, exp_avg_sq) (Amsgrad);
// denom = (sqrt(v) / bc2_sqrt).add_(eps); p.addcdiv_(exp_avg, denom, value=-step_size).
template <typename T>
struct AdamConsts {
  T b1, one_b1, b2, one_b2, wd, decay, eps, bc2_sqrt, neg_step;
};

template <typename T, bool Maximize, bool Coupled, bool Decoupled, bool Amsgrad>
void adam_range(T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v, T* __restrict vmax,
                int64_t lo, int64_t hi, const AdamConsts<T> c) {
  using detail::fmadd;
  T root[detail::kBlock];  // the second moment of the block, then its square root
  for (int64_t b = lo; b < hi; b += detail::kBlock) {
    const int64_t e = std::min(b + detail::kBlock, hi);
    for (int64_t i = b; i < e; ++i) {
      T g = Maximize ? -grad[i] : grad[i];
      T w = p[i];
      if constexpr (Decoupled) {
        w = w * c.decay;
        p[i] = w;
      }
      if constexpr (Coupled) g = fmadd(c.wd, w, g);
      m[i] = fmadd(c.one_b1, g, m[i] * c.b1);
      const T vi = fmadd(c.one_b2 * g, g, v[i] * c.b2);
      v[i] = vi;
      if constexpr (Amsgrad) {
        const T mx = detail::nan_max(vmax[i], vi);
        vmax[i] = mx;
        root[i - b] = mx;
      } else {
        root[i - b] = vi;
      }
    }
    detail::sqrt_inplace(root, e - b);
    for (int64_t i = b; i < e; ++i) {
      const T denom = root[i - b] / c.bc2_sqrt + c.eps;
      p[i] = p[i] + (c.neg_step * m[i]) / denom;
    }
  }
}

template <typename T>
void adam_kernel(T* p, const T* grad, T* m, T* v, T* vmax, int64_t n, const AdamStep& s) {
  const AdamConsts<T> c{static_cast<T>(s.beta1),     static_cast<T>(1 - s.beta1),    static_cast<T>(s.beta2),
                        static_cast<T>(1 - s.beta2), static_cast<T>(s.weight_decay), static_cast<T>(s.decay_factor),
                        static_cast<T>(s.eps),       static_cast<T>(s.bc2_sqrt),     static_cast<T>(-s.step_size)};
  detail::with_flags(
      [&]<bool Maximize, bool Coupled, bool Decoupled, bool Amsgrad>() {
        if constexpr (!(Coupled && Decoupled)) {
          detail::parallel_chunks(n, [&](int64_t lo, int64_t hi) {
            adam_range<T, Maximize, Coupled, Decoupled, Amsgrad>(p, grad, m, v, vmax, lo, hi, c);
          });
        }
      },
      s.maximize, !s.decoupled && s.weight_decay != 0, s.decoupled, vmax != nullptr);
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam("Adam", single_group(std::move(params)), options) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults) : Adam("Adam", std::move(groups), defaults) {}

Adam::Adam(std::string name, std::vector<ParamGroup> groups, AdamOptions defaults)
    : Optimizer(std::move(name), to_options(defaults)) {
  validate(this->defaults());
  add_initial_groups(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam("AdamW", single_group(std::move(params)), from_adamw(options)) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults)
    : Adam("AdamW", std::move(groups), from_adamw(defaults)) {}

void Adam::validate(const GroupOptions& o) const {
  const double lr = o.number("lr"), eps = o.number("eps"), wd = o.number("weight_decay");
  const auto [b1, b2] = o.pair("betas");
  TG_CHECK(lr >= 0, "{}: Invalid learning rate: {}", name(), lr);
  TG_CHECK(eps >= 0, "{}: Invalid epsilon value: {}", name(), eps);
  TG_CHECK(b1 >= 0 && b1 < 1, "{}: Invalid beta parameter at index 0: {}", name(), b1);
  TG_CHECK(b2 >= 0 && b2 < 1, "{}: Invalid beta parameter at index 1: {}", name(), b2);
  TG_CHECK(wd >= 0, "{}: Invalid weight_decay value: {}", name(), wd);
}

void Adam::step() {
  autograd::NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    const GroupOptions& o = group.options;
    const double lr = o.number("lr");
    const auto [beta1, beta2] = o.pair("betas");
    const bool amsgrad = o.flag("amsgrad"), decoupled = o.flag("decoupled_weight_decay");
    for (const Tensor& param : group.params) {
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& state = state_of(param);
      if (state.empty()) {
        state.set("step", Tensor::scalar(0, DType::Float32));
        state.set("exp_avg", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
        state.set("exp_avg_sq", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
        if (amsgrad) state.set("max_exp_avg_sq", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
      }
      // step_t += 1 in float32, then read back as a Python float.
      float& step_t = *state_tensor(state, "step").data_ptr<float>();
      step_t += 1;
      const double t = step_t;
      const Tensor& m = state_tensor(state, "exp_avg");
      const Tensor& v = state_tensor(state, "exp_avg_sq");
      const Tensor* vmax = amsgrad ? &state_tensor(state, "max_exp_avg_sq") : nullptr;
      const AdamStep s{.beta1 = beta1,
                       .beta2 = beta2,
                       .eps = o.number("eps"),
                       .weight_decay = o.number("weight_decay"),
                       .decay_factor = 1 - lr * o.number("weight_decay"),
                       .step_size = lr / (1 - std::pow(beta1, t)),
                       .bc2_sqrt = std::sqrt(1 - std::pow(beta2, t)),
                       .maximize = o.flag("maximize"),
                       .amsgrad = amsgrad,
                       .decoupled = decoupled};
      detail::update_contiguous(param, grad, [&](const Tensor& p, const Tensor& g) {
        dispatch_floating(p.dtype(), name(), [&]<typename T>() {
          adam_kernel<T>(p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), v.data_ptr<T>(),
                         vmax ? vmax->data_ptr<T>() : nullptr, p.numel(), s);
        });
      });
    }
  }
}

}  // namespace tapegrad::optim
