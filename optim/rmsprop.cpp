// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "rmsprop.h"

#include "../core/autograd.h"

namespace tapegrad::optim {

namespace {

GroupOptions to_options(const RMSpropOptions& o) {
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"alpha", o.alpha},
          {"eps", o.eps},
          {"centered", o.centered},
          {"weight_decay", o.weight_decay},
          {"maximize", o.maximize}};
}

struct RMSpropStep {
  double lr, alpha, eps, weight_decay, momentum;
  bool maximize;
};

// One fused pass, rounding as PyTorch's ops: square_avg.mul_(a).addcmul_(g, g, value=1-a);
// grad_avg.mul_(a).add_(g, alpha=1-a); avg = square_avg.addcmul(ga, ga, value=-1).sqrt_().add_(eps);
// buf.mul_(m).addcdiv_(g, avg); p.add_(buf, alpha=-lr) or p.addcdiv_(g, avg, value=-lr).
// `ga` is null unless centered, `buf` null unless momentum > 0.
template <typename T>
void rmsprop_kernel(T* __restrict p, const T* __restrict grad, T* __restrict sq, T* __restrict ga, T* __restrict buf,
                    int64_t n, const RMSpropStep& s) {
  using detail::fmadd;
  const T alpha = static_cast<T>(s.alpha), one_alpha = static_cast<T>(1 - s.alpha);
  const T wd = static_cast<T>(s.weight_decay), eps = static_cast<T>(s.eps);
  const T mom = static_cast<T>(s.momentum), neg_lr = static_cast<T>(-s.lr);
  const bool maximize = s.maximize, decay = s.weight_decay != 0;
  detail::parallel_chunks(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      T g = maximize ? -grad[i] : grad[i];
      if (decay) g = fmadd(wd, p[i], g);
      const T sqi = fmadd(one_alpha * g, g, sq[i] * alpha);
      sq[i] = sqi;
      T avg;
      if (ga) {
        const T gai = fmadd(one_alpha, g, ga[i] * alpha);
        ga[i] = gai;
        avg = std::sqrt(fmadd(-gai, gai, sqi));
      } else {
        avg = std::sqrt(sqi);
      }
      avg = avg + eps;
      if (buf) {
        const T b = buf[i] * mom + g / avg;
        buf[i] = b;
        p[i] = fmadd(neg_lr, b, p[i]);
      } else {
        p[i] = p[i] + (neg_lr * g) / avg;
      }
    }
  });
}

}  // namespace

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options)
    : RMSprop(single_group(std::move(params)), options) {}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions defaults) : Optimizer("RMSprop", to_options(defaults)) {
  validate(this->defaults());
  add_initial_groups(std::move(groups));
}

void RMSprop::validate(const GroupOptions& o) const {
  TG_CHECK(o.number("lr") >= 0, "RMSprop: Invalid learning rate: {}", o.number("lr"));
  TG_CHECK(o.number("eps") >= 0, "RMSprop: Invalid epsilon value: {}", o.number("eps"));
  TG_CHECK(o.number("momentum") >= 0, "RMSprop: Invalid momentum value: {}", o.number("momentum"));
  TG_CHECK(o.number("weight_decay") >= 0, "RMSprop: Invalid weight_decay value: {}", o.number("weight_decay"));
  TG_CHECK(o.number("alpha") >= 0, "RMSprop: Invalid alpha value: {}", o.number("alpha"));
}

void RMSprop::step() {
  autograd::NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    const GroupOptions& o = group.options;
    const RMSpropStep s{o.number("lr"),           o.number("alpha"),    o.number("eps"),
                        o.number("weight_decay"), o.number("momentum"), o.flag("maximize")};
    const bool centered = o.flag("centered");
    for (const Tensor& param : group.params) {
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& state = state_of(param);
      if (state.empty()) {
        state.set("step", Tensor::scalar(0, DType::Float32));
        state.set("square_avg", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
        if (s.momentum > 0) state.set("momentum_buffer", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
        if (centered) state.set("grad_avg", Tensor::zeros(param.shape(), {.dtype = param.dtype()}));
      }
      *state_tensor(state, "step").data_ptr<float>() += 1;
      const Tensor& sq = state_tensor(state, "square_avg");
      const Tensor* ga = centered ? &state_tensor(state, "grad_avg") : nullptr;
      const Tensor* buf = s.momentum > 0 ? &state_tensor(state, "momentum_buffer") : nullptr;
      detail::update_contiguous(param, grad, [&](const Tensor& p, const Tensor& g) {
        dispatch_floating(p.dtype(), "RMSprop", [&]<typename T>() {
          rmsprop_kernel<T>(p.data_ptr<T>(), g.data_ptr<T>(), sq.data_ptr<T>(), ga ? ga->data_ptr<T>() : nullptr,
                            buf ? buf->data_ptr<T>() : nullptr, p.numel(), s);
        });
      });
    }
  }
}

}  // namespace tapegrad::optim
