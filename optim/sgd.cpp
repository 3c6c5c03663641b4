// clang-format off
#include "kernel.h"  // first: its pragma must precede every function of this file
// clang-format on

#include "sgd.h"

#include "../core/autograd.h"

namespace tapegrad::optim {

namespace {

GroupOptions to_options(const SGDOptions& o) {
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov},
          {"maximize", o.maximize}};
}

struct SGDStep {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

// One fused pass over p[lo, hi). `buf` is the momentum buffer (Momentum); on the First step it
// receives g itself (PyTorch's clone). The roundings follow PyTorch's single-tensor loop op by op:
// d_p.add(p, alpha=wd), buf.mul_(m).add_(d_p, alpha=1-dampening), d_p.add(buf, alpha=m),
// p.add_(d_p, alpha=-lr).
template <typename T, bool Maximize, bool Decay, bool Momentum, bool First, bool Nesterov>
void sgd_range(T* __restrict p, const T* __restrict grad, T* __restrict buf, int64_t lo, int64_t hi, T wd, T mom,
               T keep, T neg_lr) {
  using detail::fmadd;
  for (int64_t i = lo; i < hi; ++i) {
    T g = Maximize ? -grad[i] : grad[i];
    if constexpr (Decay) g = fmadd(wd, p[i], g);
    if constexpr (Momentum) {
      const T b = First ? g : fmadd(keep, g, buf[i] * mom);
      buf[i] = b;
      g = Nesterov ? fmadd(mom, b, g) : b;
    }
    p[i] = fmadd(neg_lr, g, p[i]);
  }
}

// Below this many elements an SGD update runs on one thread: it streams three arrays once, and for
// tensors that fit in the L2 (a quarter million floats or fewer) waking the other threads costs more than
// the loop (the documents' CNN's largest parameter, its fc weight, has 164K elements).
constexpr int64_t kSGDGrain = int64_t{1} << 18;

template <typename T>
void sgd_kernel(T* p, const T* grad, T* buf, int64_t n, const SGDStep& s, bool first) {
  const T wd = static_cast<T>(s.weight_decay), mom = static_cast<T>(s.momentum);
  const T keep = static_cast<T>(1 - s.dampening), neg_lr = static_cast<T>(-s.lr);
  detail::with_flags(
      [&]<bool Maximize, bool Decay, bool Momentum, bool First, bool Nesterov>() {
        if constexpr (Momentum || (!First && !Nesterov)) {  // First and Nesterov only exist with momentum
          detail::parallel_chunks(
              n,
              [&](int64_t lo, int64_t hi) {
                sgd_range<T, Maximize, Decay, Momentum, First, Nesterov>(p, grad, buf, lo, hi, wd, mom, keep, neg_lr);
              },
              kSGDGrain);
        }
      },
      s.maximize, s.weight_decay != 0, buf != nullptr, buf != nullptr && first, buf != nullptr && s.nesterov);
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options) : SGD(single_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults) : Optimizer("SGD", to_options(defaults)) {
  validate(this->defaults());
  add_initial_groups(std::move(groups));
}

void SGD::validate(const GroupOptions& o) const {
  const double lr = o.number("lr"), momentum = o.number("momentum"), wd = o.number("weight_decay");
  TG_CHECK(lr >= 0, "SGD: Invalid learning rate: {}", lr);
  TG_CHECK(momentum >= 0, "SGD: Invalid momentum value: {}", momentum);
  TG_CHECK(wd >= 0, "SGD: Invalid weight_decay value: {}", wd);
  TG_CHECK(!o.flag("nesterov") || (momentum > 0 && o.number("dampening") == 0),
           "SGD: Nesterov momentum requires a momentum and zero dampening");
}

void SGD::step() {
  autograd::NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    const GroupOptions& o = group.options;
    const SGDStep s{o.number("lr"),           o.number("momentum"), o.number("dampening"),
                    o.number("weight_decay"), o.flag("nesterov"),   o.flag("maximize")};
    for (const Tensor& param : group.params) {
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& state = state_of(param);
      Tensor buf;
      bool first = false;
      if (s.momentum != 0) {
        first = !state.contains("momentum_buffer");
        if (first) state.set("momentum_buffer", Tensor::empty(param.shape(), {.dtype = param.dtype()}));
        buf = state_tensor(state, "momentum_buffer");
      }
      detail::update_contiguous(param, grad, [&](const Tensor& p, const Tensor& g) {
        dispatch_floating(p.dtype(), "SGD", [&]<typename T>() {
          sgd_kernel<T>(p.data_ptr<T>(), g.data_ptr<T>(), buf.defined() ? buf.data_ptr<T>() : nullptr, p.numel(), s,
                        first);
        });
      });
    }
  }
}

}  // namespace tapegrad::optim
