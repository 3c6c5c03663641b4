// Elementwise ops: forward kernel and backward formula side by side.
#include "elementwise.h"

#include "../autograd.h"
#include "../inplace.h"
#include "../iter.h"
#include "reduce.h"

#include <cmath>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

// PyTorch's result type: promote, except that a 0-dim tensor does not raise the dtype of a
// dimensioned tensor of the same kind (float32 tensor * float64 scalar stays float32).
DType result_type(const Tensor& a, const Tensor& b) {
  if (a.dtype() == b.dtype()) return a.dtype();
  const bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  auto kind = [](DType t) { return is_floating(t) ? 2 : t == DType::Int64 ? 1 : 0; };
  if (a0 != b0 && kind(a.dtype()) == kind(b.dtype())) return a0 ? b.dtype() : a.dtype();
  return promote_types(a.dtype(), b.dtype());
}

// Runs f<T>(x, y) over the broadcast of a and b after converting both to their result type.
template <typename F>
Tensor binary_numeric(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  const DType dt = result_type(a, b);
  const Tensor x = a.to(dt), y = b.to(dt);
  return dispatch_numeric(dt, op, [&]<typename T>() {
    return detail::map_binary<T, T, T>(x, y, dt, op, [&](T u, T v) { return f.template operator()<T>(u, v); });
  });
}

template <typename F>
Tensor compare(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  const DType dt = result_type(a, b);
  const Tensor x = a.to(dt), y = b.to(dt);
  return dispatch_all(dt, [&]<typename T>() {
    return detail::map_binary<T, T, bool>(x, y, DType::Bool, op, [&](T u, T v) { return f(u, v); });
  });
}

// Floating unary op: out = f(x).
template <typename F>
Tensor unary_floating(const Tensor& a, std::string_view op, F f) {
  return dispatch_floating(a.dtype(), op, [&]<typename T>() {
    return detail::map_unary<T, T>(a, a.dtype(), [&](T x) { return f.template operator()<T>(x); });
  });
}

}  // namespace

Tensor scalar_like(double v, const Tensor& t) { return Tensor::scalar(v, t.dtype()); }

namespace {
// How a C++ number enters an operator with tensor t (PyTorch's wrapped scalars): it takes t's dtype,
// except that a fractional number next to an integer or bool tensor is float32 (int64 tensor * 2.5 is
// float32 [2.5, 5.0], not a truncated int64 product) and an integral number next to a bool tensor is
// int64 (mask + 1 counts, like PyTorch).
Tensor wrap_scalar(double v, const Tensor& t) {
  if (is_floating(t.dtype())) return Tensor::scalar(v, t.dtype());
  if (!std::isfinite(v) || std::trunc(v) != v) return Tensor::scalar(v, kFloat32);
  return Tensor::scalar(v, t.dtype() == kBool ? kInt64 : t.dtype());
}
}  // namespace

// ---- add / sub ----

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = alpha == 1 ? binary_numeric(a, b, "add", []<typename T>(T x, T y) { return x + y; })
                          : binary_numeric(a, b, "add", [alpha]<typename T>(T x, T y) {
                              return static_cast<T>(x + static_cast<T>(alpha) * y);
                            });
  autograd::record("add", {a, b}, {out}, {}, [alpha](Context& ctx) -> Grads {
    const Tensor& g = ctx.grad();
    return {g, alpha == 1 ? g : g * alpha};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = binary_numeric(a, b, "sub", [alpha]<typename T>(T x, T y) {
    return alpha == 1 ? static_cast<T>(x - y) : static_cast<T>(x - static_cast<T>(alpha) * y);
  });
  autograd::record("sub", {a, b}, {out}, {}, [alpha](Context& ctx) -> Grads {
    const Tensor& g = ctx.grad();
    return {g, g * -alpha};
  });
  return out;
}

// ---- mul / div ----

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_numeric(a, b, "mul", []<typename T>(T x, T y) { return static_cast<T>(x * y); });
  // saved: self, other
  autograd::record(
      "mul", {a, b}, {out}, {a, b},
      [](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        return {ctx.needs_grad(0) ? g * ctx.saved(1) : Tensor(), ctx.needs_grad(1) ? g * ctx.saved(0) : Tensor()};
      },
      {"self", "other"});
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  // True division: integer inputs give float32, like PyTorch.
  const bool integral = !is_floating(a.dtype()) && !is_floating(b.dtype());
  const Tensor x = integral ? a.to(kFloat32) : a, y = integral ? b.to(kFloat32) : b;
  Tensor out = binary_numeric(x, y, "div", []<typename T>(T u, T v) { return static_cast<T>(u / v); });
  // saved: self, other.  d/da = g / b ; d/db = -g * a / b^2
  autograd::record(
      "div", {x, y}, {out}, {x, y},
      [](Context& ctx) -> Grads {
        const Tensor& g = ctx.grad();
        const Tensor b = ctx.saved(1);
        Tensor ga = ctx.needs_grad(0) ? g / b : Tensor();
        Tensor gb = ctx.needs_grad(1) ? -g * ctx.saved(0) / (b * b) : Tensor();
        return {ga, gb};
      },
      {"self", "other"});
  return out;
}

Tensor neg(const Tensor& a) {
  Tensor out = dispatch_numeric(a.dtype(), "neg", [&]<typename T>() {
    return detail::map_unary<T, T>(a, a.dtype(), [](T x) { return static_cast<T>(-x); });
  });
  autograd::record("neg", {a}, {out}, {}, [](Context& ctx) -> Grads { return {-ctx.grad()}; });
  return out;
}

// ---- operators ----

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, wrap_scalar(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, wrap_scalar(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, wrap_scalar(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, wrap_scalar(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(wrap_scalar(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(wrap_scalar(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(wrap_scalar(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(wrap_scalar(a, b), b); }
Tensor Tensor::operator-() const { return neg(*this); }

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, "eq", [](auto x, auto y) { return x == y; }); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, "ne", [](auto x, auto y) { return x != y; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, "lt", [](auto x, auto y) { return x < y; }); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, "le", [](auto x, auto y) { return x <= y; }); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, "gt", [](auto x, auto y) { return x > y; }); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, "ge", [](auto x, auto y) { return x >= y; }); }
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return detail::map_binary<bool, bool, bool>(a.to(kBool), b.to(kBool), kBool, "logical_and",
                                              [](bool x, bool y) { return x && y; });
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return detail::map_binary<bool, bool, bool>(a.to(kBool), b.to(kBool), kBool, "logical_or",
                                              [](bool x, bool y) { return x || y; });
}
Tensor logical_not(const Tensor& a) {
  return detail::map_unary<bool, bool>(a.to(kBool), kBool, [](bool x) { return !x; });
}
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, double b) { return eq(a, wrap_scalar(b, a)); }
Tensor operator!=(const Tensor& a, double b) { return ne(a, wrap_scalar(b, a)); }
Tensor operator<(const Tensor& a, double b) { return lt(a, wrap_scalar(b, a)); }
Tensor operator<=(const Tensor& a, double b) { return le(a, wrap_scalar(b, a)); }
Tensor operator>(const Tensor& a, double b) { return gt(a, wrap_scalar(b, a)); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, wrap_scalar(b, a)); }

// ---- unary math ----

Tensor exp(const Tensor& a) {
  Tensor out = unary_floating(a, "exp", []<typename T>(T x) { return std::exp(x); });
  // saved: result.  d/da = g * exp(a)
  autograd::record(
      "exp", {a}, {out}, {out}, [](Context& ctx) -> Grads { return {ctx.grad() * ctx.saved(0)}; }, {"result"});
  return out;
}

Tensor log(const Tensor& a) {
  Tensor out = unary_floating(a, "log", []<typename T>(T x) { return std::log(x); });
  // saved: self.  d/da = g / a
  autograd::record("log", {a}, {out}, {a}, [](Context& ctx) -> Grads { return {ctx.grad() / ctx.saved(0)}; }, {"self"});
  return out;
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_floating(a, "sqrt", []<typename T>(T x) { return std::sqrt(x); });
  // saved: result.  d/da = g / (2 sqrt(a))
  autograd::record(
      "sqrt", {a}, {out}, {out}, [](Context& ctx) -> Grads { return {ctx.grad() / (ctx.saved(0) * 2.0)}; }, {"result"});
  return out;
}

Tensor rsqrt(const Tensor& a) {
  Tensor out = unary_floating(a, "rsqrt", []<typename T>(T x) { return T(1) / std::sqrt(x); });
  // saved: result r = a^(-1/2).  d/da = -g r^3 / 2
  autograd::record(
      "rsqrt", {a}, {out}, {out},
      [](Context& ctx) -> Grads {
        const Tensor r = ctx.saved(0);
        return {ctx.grad() * r * r * r * -0.5};
      },
      {"result"});
  return out;
}

Tensor abs(const Tensor& a) {
  Tensor out = dispatch_numeric(a.dtype(), "abs", [&]<typename T>() {
    return detail::map_unary<T, T>(a, a.dtype(), [](T x) { return x < 0 ? static_cast<T>(-x) : x; });
  });
  // saved: self.  d/da = g sign(a), 0 at a = 0 (as PyTorch)
  autograd::record(
      "abs", {a}, {out}, {a},
      [](Context& ctx) -> Grads {
        const Tensor x = ctx.saved(0);
        Tensor sign = dispatch_floating(x.dtype(), "abs", [&]<typename T>() {
          return detail::map_unary<T, T>(x, x.dtype(), [](T v) { return static_cast<T>((v > 0) - (v < 0)); });
        });
        return {ctx.grad() * sign};
      },
      {"self"});
  return out;
}

Tensor tanh(const Tensor& a) {
  Tensor out = unary_floating(a, "tanh", []<typename T>(T x) { return std::tanh(x); });
  // saved: result y.  d/da = g (1 - y^2)
  autograd::record(
      "tanh", {a}, {out}, {out},
      [](Context& ctx) -> Grads {
        const Tensor y = ctx.saved(0);
        return {ctx.grad() * (1.0 - y * y)};
      },
      {"result"});
  return out;
}

Tensor sigmoid(const Tensor& a) {
  Tensor out = unary_floating(a, "sigmoid", []<typename T>(T x) {
    // Stable on both sides: never exp of a large positive number.
    if (x >= 0) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  });
  // saved: result y.  d/da = g y (1 - y)
  autograd::record(
      "sigmoid", {a}, {out}, {out},
      [](Context& ctx) -> Grads {
        const Tensor y = ctx.saved(0);
        return {ctx.grad() * y * (1.0 - y)};
      },
      {"result"});
  return out;
}

// Where mask is true: g, else 0 (the backward of relu and clamp).
static Tensor mask_grad(const Tensor& g, const Tensor& mask) { return where(mask, g, scalar_like(0, g)); }

Tensor relu(const Tensor& a) {
  Tensor out = dispatch_numeric(a.dtype(), "relu", [&]<typename T>() {
    return detail::map_unary<T, T>(a, a.dtype(), [](T x) { return x > 0 ? x : T(0); });
  });
  // saved: result.  d/da = g where result > 0
  autograd::record(
      "relu", {a}, {out}, {out}, [](Context& ctx) -> Grads { return {mask_grad(ctx.grad(), ctx.saved(0) > 0.0)}; },
      {"result"});
  return out;
}

Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi) {
  TG_CHECK(lo.has_value() || hi.has_value(), "clamp: At least one of 'min' or 'max' must not be None");
  Tensor out = dispatch_numeric(a.dtype(), "clamp", [&]<typename T>() {
    const T l = lo ? static_cast<T>(*lo) : T(0), h = hi ? static_cast<T>(*hi) : T(0);
    const bool has_l = lo.has_value(), has_h = hi.has_value();
    return detail::map_unary<T, T>(a, a.dtype(), [=](T x) {
      if (x != x) return x;  // NaN stays NaN
      if (has_l && x < l) x = l;
      if (has_h && x > h) x = h;  // min > max gives max, like PyTorch
      return x;
    });
  });
  // saved: self.  d/da = g where min <= a <= max
  autograd::record(
      "clamp", {a}, {out}, {a},
      [lo, hi](Context& ctx) -> Grads {
        const Tensor x = ctx.saved(0);
        Tensor mask;
        if (lo) mask = x >= *lo;
        if (hi) mask = mask.defined() ? logical_and(mask, x <= *hi) : x <= *hi;
        return {mask_grad(ctx.grad(), mask)};
      },
      {"self"});
  return out;
}

Tensor Tensor::exp() const { return tapegrad::exp(*this); }
Tensor Tensor::log() const { return tapegrad::log(*this); }
Tensor Tensor::sqrt() const { return tapegrad::sqrt(*this); }
Tensor Tensor::rsqrt() const { return tapegrad::rsqrt(*this); }
Tensor Tensor::abs() const { return tapegrad::abs(*this); }
Tensor Tensor::tanh() const { return tapegrad::tanh(*this); }
Tensor Tensor::sigmoid() const { return tapegrad::sigmoid(*this); }
Tensor Tensor::relu() const { return tapegrad::relu(*this); }
Tensor Tensor::pow(double e) const { return tapegrad::pow(*this, e); }
Tensor Tensor::clamp(std::optional<double> lo, std::optional<double> hi) const { return tapegrad::clamp(*this, lo, hi); }

// ---- pow ----

Tensor pow(const Tensor& a, double e) {
  Tensor out = unary_floating(a, "pow", [e]<typename T>(T x) {
    if (e == 2) return x * x;
    return static_cast<T>(std::pow(x, static_cast<T>(e)));
  });
  // saved: self.  d/da = g e a^(e-1)
  autograd::record(
      "pow", {a}, {out}, {a},
      [e](Context& ctx) -> Grads {
        if (e == 0) return {Tensor::zeros_like(ctx.grad())};
        const Tensor x = ctx.saved(0);
        return {ctx.grad() * (e == 2 ? x * 2.0 : pow(x, e - 1) * e)};
      },
      {"self"});
  return out;
}

Tensor pow(const Tensor& a, const Tensor& e) {
  const DType dt = result_type(a, e);
  const Tensor x = a.to(dt), y = e.to(dt);
  Tensor out = dispatch_floating(dt, "pow", [&]<typename T>() {
    return detail::map_binary<T, T, T>(x, y, dt, "pow", [](T u, T v) { return static_cast<T>(std::pow(u, v)); });
  });
  // saved: self, exponent, result.  d/da = g e a^(e-1) ; d/de = g a^e log(a) (0 where a = 0 and e >= 0)
  autograd::record(
      "pow", {x, y}, {out}, {x, y, out},
      [](Context& ctx) -> Grads {
        const Tensor base = ctx.saved(0), ex = ctx.saved(1), r = ctx.saved(2);
        const Tensor& g = ctx.grad();
        Tensor ga = ctx.needs_grad(0) ? g * ex * pow(base, ex - 1.0) : Tensor();
        Tensor ge;
        if (ctx.needs_grad(1)) {
          const Tensor safe = where((base == 0.0), scalar_like(1, base), base);
          ge = where(logical_and(base == 0.0, ex >= 0.0), scalar_like(0, g), g * r * log(safe));
        }
        return {ga, ge};
      },
      {"self", "exponent", "result"});
  return out;
}

// ---- maximum / minimum / where ----

namespace {
// Backward of maximum/minimum: the gradient goes to the chosen input; ties split it evenly. An input
// gets nothing only where the other one strictly wins, so where a NaN is involved both get the
// gradient, as PyTorch.
Grads select_grads(Context& ctx, bool is_max) {
  const Tensor a = ctx.saved(0), b = ctx.saved(1);
  const Tensor& g = ctx.grad();
  const Tensor a_wins = is_max ? a > b : a < b;
  const Tensor b_wins = is_max ? a < b : a > b;
  const Tensor shared = where(a == b, g * 0.5, g);
  const Tensor zero = scalar_like(0, g);
  return {where(b_wins, zero, shared), where(a_wins, zero, shared)};
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_numeric(a, b, "maximum", []<typename T>(T x, T y) {
    if (x != x) return x;  // NaN propagates
    if (y != y) return y;
    return x > y ? x : y;
  });
  autograd::record(
      "maximum", {a, b}, {out}, {a, b}, [](Context& ctx) { return select_grads(ctx, true); }, {"self", "other"});
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_numeric(a, b, "minimum", []<typename T>(T x, T y) {
    if (x != x) return x;
    if (y != y) return y;
    return x < y ? x : y;
  });
  autograd::record(
      "minimum", {a, b}, {out}, {a, b}, [](Context& ctx) { return select_grads(ctx, false); }, {"self", "other"});
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  TG_CHECK(cond.dtype() == DType::Bool, "where: expected condition to be a boolean tensor, but got a tensor with dtype {}",
           dtype_name(cond.dtype()));
  const DType dt = result_type(a, b);
  const Tensor x = a.to(dt), y = b.to(dt);
  Tensor out = dispatch_all(dt, [&]<typename T>() {
    return detail::map_ternary<bool, T, T, T>(cond, x, y, dt, "where", [](bool c, T u, T v) { return c ? u : v; });
  });
  // saved: condition.  d/da = g where cond ; d/db = g where !cond
  autograd::record(
      "where", {cond, x, y}, {out}, {cond},
      [](Context& ctx) -> Grads {
        const Tensor c = ctx.saved(0);
        const Tensor& g = ctx.grad();
        const Tensor zero = scalar_like(0, g);
        return {Tensor(), ctx.needs_grad(1) ? where(c, g, zero) : Tensor(), ctx.needs_grad(2) ? where(c, zero, g) : Tensor()};
      },
      {"condition"});
  return out;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    if (x[i] == y[i]) continue;
    if (!(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i]))) return false;
  }
  return true;
}

// ---- in-place ----

namespace {

// The checks every in-place op makes before writing into `self`.
void check_inplace(const Tensor& self, std::string_view op) {
  TG_CHECK(!(autograd::grad_enabled() && self.requires_grad() && self.is_leaf()),
           "{}: a leaf Variable that requires grad is being used in an in-place operation.", op);
}

// In-place with autograd: compute the result out of place, write it into self, and make the new node
// self's history (PyTorch's rebase_history). Views of tensors with history are not supported.
Tensor& inplace_recorded(Tensor& self, const Tensor& result, std::string_view op) {
  TG_CHECK(!self.impl().is_view || !self.requires_grad(),
           "{}: in-place operation on a view of a tensor that requires grad is not supported; use the out-of-place op",
           op);
  TG_CHECK(result.shape() == self.shape(), "{}: output with shape {} doesn't match the broadcast shape {}", op,
           shape_list(self.shape()), shape_list(result.shape()));
  {
    autograd::NoGradGuard ng;
    dispatch_all(self.dtype(), [&]<typename T>() {
      const Tensor r = result.to(self.dtype());
      detail::assign<T, T>(self, r, [](T v) { return v; });
    });
  }
  self.storage()->bump_version();
  self.impl().requires_grad = result.requires_grad();
  self.impl().grad_fn = result.grad_fn();
  self.impl().output_nr = result.output_nr();
  return self;
}

// dst = f(dst, src) in place with no history (grad mode off, or nothing requires grad).
template <typename F>
Tensor& inplace_plain(Tensor& self, const Tensor& src, std::string_view op, F f) {
  const Shape shape = detail::broadcast_shapes(self.shape(), src.shape(), op);
  TG_CHECK(shape == self.shape(), "{}: output with shape {} doesn't match the broadcast shape {}", op,
           shape_list(self.shape()), shape_list(shape));
  dispatch_numeric(self.dtype(), op, [&]<typename T>() {
    const Tensor s = src.to(self.dtype());
    detail::apply_inplace<T, T>(self, s, [&](T d, T v) { return f.template operator()<T>(d, v); });
  });
  self.storage()->bump_version();
  return self;
}

}  // namespace

namespace {

// PyTorch's canCast: an in-place op cannot store a floating result in an integer tensor, nor a
// non-bool result in a bool tensor.
void check_cast(DType result, const Tensor& self, std::string_view op) {
  const bool ok = (is_floating(self.dtype()) || !is_floating(result)) && (self.dtype() != kBool || result == kBool);
  TG_CHECK(ok, "{}: result type {} can't be cast to the desired output type {}", op, dtype_name(result),
           dtype_name(self.dtype()));
}

Tensor& add_inplace(Tensor& self, const Tensor& other, double alpha, std::string_view op) {
  check_inplace(self, op);
  check_cast(result_type(self, other), self, op);
  if (autograd::needs_grad({self, other})) return inplace_recorded(self, add(self, other, alpha), op);
  return inplace_plain(self, other, op,
                       [alpha]<typename T>(T d, T v) { return static_cast<T>(d + static_cast<T>(alpha) * v); });
}

}  // namespace

Tensor& Tensor::add_(const Tensor& other, double alpha) { return add_inplace(*this, other, alpha, "add_"); }
Tensor& Tensor::sub_(const Tensor& other, double alpha) { return add_inplace(*this, other, -alpha, "sub_"); }
Tensor& Tensor::add_(double value) { return add_(wrap_scalar(value, *this)); }

Tensor& Tensor::mul_(const Tensor& other) {
  check_inplace(*this, "mul_");
  check_cast(result_type(*this, other), *this, "mul_");
  if (autograd::needs_grad({*this, other})) return inplace_recorded(*this, mul(this->clone(), other), "mul_");
  return inplace_plain(*this, other, "mul_", []<typename T>(T d, T v) { return static_cast<T>(d * v); });
}

Tensor& Tensor::mul_(double value) { return mul_(wrap_scalar(value, *this)); }

Tensor& Tensor::div_(const Tensor& other) {
  check_inplace(*this, "div_");
  // True division: integer by integer gives float32, which an integer tensor cannot hold.
  const DType rt = result_type(*this, other);
  check_cast(is_floating(rt) ? rt : kFloat32, *this, "div_");
  if (autograd::needs_grad({*this, other})) return inplace_recorded(*this, div(this->clone(), other), "div_");
  return inplace_plain(*this, other, "div_", []<typename T>(T d, T v) { return static_cast<T>(d / v); });
}

Tensor& Tensor::div_(double value) { return div_(wrap_scalar(value, *this)); }

void detail::overwrite_inplace(Tensor& self, std::string_view op, const std::function<void()>& write) {
  check_inplace(self, op);
  const bool history = autograd::needs_grad({self});
  TG_CHECK(!history || !self.impl().is_view,
           "{}: in-place operation on a view of a tensor that requires grad is not supported; use the out-of-place op",
           op);
  write();
  self.storage()->bump_version();
  if (!history) return;
  // An alias carrying the old history is the new node's input; the node becomes self's history.
  Tensor old = self.detach();
  old.impl().requires_grad = true;
  old.impl().grad_fn = self.grad_fn();
  old.impl().output_nr = self.output_nr();
  autograd::record(std::string(op), {old}, {self}, {},
                   [](Context& ctx) -> Grads { return {Tensor::zeros_like(ctx.grad())}; });
}

namespace {
Tensor& fill_impl(Tensor& self, double value, std::string_view op) {
  detail::overwrite_inplace(self, op, [&] { detail::fill(self, value); });
  return self;
}
}  // namespace

Tensor& Tensor::fill_(double value) { return fill_impl(*this, value, "fill_"); }
Tensor& Tensor::zero_() { return fill_impl(*this, 0, "zero_"); }

Tensor& Tensor::clamp_(std::optional<double> lo, std::optional<double> hi) {
  check_inplace(*this, "clamp_");
  // clamp saves its input for backward: give it a copy, since self is about to be overwritten.
  if (autograd::needs_grad({*this})) return inplace_recorded(*this, tapegrad::clamp(this->clone(), lo, hi), "clamp_");
  Tensor r = tapegrad::clamp(*this, lo, hi);
  autograd::NoGradGuard ng;
  return copy_(r);
}

}  // namespace tapegrad
