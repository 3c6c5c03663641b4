// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "rmsprop.h"

#include <algorithm>

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

// One fused pass over p[lo, hi), rounding as PyTorch's ops: g.add(p, alpha=wd);
// square_avg.mul_(a).addcmul_(g, g, value=1-a); grad_avg.mul_(a).add_(g, alpha=1-a) and
// avg = square_avg.addcmul(ga, ga, value=-1).sqrt_() (Centered) or square_avg.sqrt(); avg.add_(eps);
// buf.mul_(m).addcdiv_(g, avg) and p.add_(buf, alpha=-lr) (Momentum) or p.addcdiv_(g, avg, value=-lr).
template <typename T>
struct RMSpropConsts {
  T alpha, one_alpha, wd, eps, mom, neg_lr;
};

template <typename T, bool Maximize, bool Decay, bool Centered, bool Momentum>
void rmsprop_range(T* __restrict p, const T* __restrict grad, T* __restrict sq, T* __restrict ga, T* __restrict buf,
                   int64_t lo, int64_t hi, const RMSpropConsts<T> c) {
  using detail::fmadd;
  auto gradient = [&](int64_t i) {
    T g = Maximize ? -grad[i] : grad[i];
    if constexpr (Decay) g = fmadd(c.wd, p[i], g);
    return g;
  };
  T root[detail::kBlock];  // the (centered) second moment of the block, then its square root
  for (int64_t b = lo; b < hi; b += detail::kBlock) {
    const int64_t e = std::min(b + detail::kBlock, hi);
    for (int64_t i = b; i < e; ++i) {
      const T g = gradient(i);
      const T sqi = fmadd(c.one_alpha * g, g, sq[i] * c.alpha);
      sq[i] = sqi;
      if constexpr (Centered) {
        const T gai = fmadd(c.one_alpha, g, ga[i] * c.alpha);
        ga[i] = gai;
        root[i - b] = fmadd(-gai, gai, sqi);
      } else {
        root[i - b] = sqi;
      }
    }
    detail::sqrt_inplace(root, e - b);
    for (int64_t i = b; i < e; ++i) {
      const T g = gradient(i);  // p is unchanged so far: the same value as above
      const T avg = root[i - b] + c.eps;
      if constexpr (Momentum) {
        const T bi = buf[i] * c.mom + g / avg;
        buf[i] = bi;
        p[i] = fmadd(c.neg_lr, bi, p[i]);
      } else {
        p[i] = p[i] + (c.neg_lr * g) / avg;
      }
    }
  }
}

template <typename T>
void rmsprop_kernel(T* p, const T* grad, T* sq, T* ga, T* buf, int64_t n, const RMSpropStep& s) {
  const RMSpropConsts<T> c{static_cast<T>(s.alpha), static_cast<T>(1 - s.alpha), static_cast<T>(s.weight_decay),
                           static_cast<T>(s.eps),   static_cast<T>(s.momentum),  static_cast<T>(-s.lr)};
  detail::with_flags(
      [&]<bool Maximize, bool Decay, bool Centered, bool Momentum>() {
        detail::parallel_chunks(n, [&](int64_t lo, int64_t hi) {
          rmsprop_range<T, Maximize, Decay, Centered, Momentum>(p, grad, sq, ga, buf, lo, hi, c);
        });
      },
      s.maximize, s.weight_decay != 0, ga != nullptr, buf != nullptr);
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
