// Elementwise ops: forward kernel and backward formula side by side.
#include "elementwise.h"

#include "../autograd.h"
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
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }
Tensor Tensor::operator-() const { return neg(*this); }

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, "eq", [](auto x, auto y) { return x == y; }); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, "ne", [](auto x, auto y) { return x != y; }); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, "lt", [](auto x, auto y) { return x < y; }); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, "le", [](auto x, auto y) { return x <= y; }); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, "gt", [](auto x, auto y) { return x > y; }); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, "ge", [](auto x, auto y) { return x >= y; }); }
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, double b) { return eq(a, scalar_like(b, a)); }
Tensor operator!=(const Tensor& a, double b) { return ne(a, scalar_like(b, a)); }
Tensor operator<(const Tensor& a, double b) { return lt(a, scalar_like(b, a)); }
Tensor operator<=(const Tensor& a, double b) { return le(a, scalar_like(b, a)); }
Tensor operator>(const Tensor& a, double b) { return gt(a, scalar_like(b, a)); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, scalar_like(b, a)); }

// ---- unary math ----

Tensor exp(const Tensor& a) {
  Tensor out = unary_floating(a, "exp", []<typename T>(T x) { return std::exp(x); });
  // saved: result.  d/da = g * exp(a)
  autograd::record(
      "exp", {a}, {out}, {out}, [](Context& ctx) -> Grads { return {ctx.grad() * ctx.saved(0)}; }, {"result"});
  return out;
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
  {
    autograd::NoGradGuard ng;
    dispatch_all(self.dtype(), [&]<typename T>() {
      const Tensor r = result.to(self.dtype());
      detail::apply_inplace<T, T>(self, r, [](T, T v) { return v; });
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

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  if (autograd::needs_grad({*this, other})) return inplace_recorded(*this, add(*this, other, alpha), "add_");
  return inplace_plain(*this, other, "add_",
                       [alpha]<typename T>(T d, T v) { return static_cast<T>(d + static_cast<T>(alpha) * v); });
}

Tensor& Tensor::sub_(const Tensor& other, double alpha) { return add_(other, -alpha); }
Tensor& Tensor::add_(double value) { return add_(scalar_like(value, *this)); }

Tensor& Tensor::mul_(const Tensor& other) {
  check_inplace(*this, "mul_");
  if (autograd::needs_grad({*this, other})) return inplace_recorded(*this, mul(this->clone(), other), "mul_");
  return inplace_plain(*this, other, "mul_", []<typename T>(T d, T v) { return static_cast<T>(d * v); });
}

Tensor& Tensor::mul_(double value) { return mul_(scalar_like(value, *this)); }

Tensor& Tensor::div_(const Tensor& other) {
  check_inplace(*this, "div_");
  if (autograd::needs_grad({*this, other})) return inplace_recorded(*this, div(this->clone(), other), "div_");
  return inplace_plain(*this, other, "div_", []<typename T>(T d, T v) { return static_cast<T>(d / v); });
}

Tensor& Tensor::div_(double value) { return div_(scalar_like(value, *this)); }

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  dispatch_all(dtype(), [&]<typename T>() {
    const Tensor v = Tensor::empty({}, {.dtype = dtype()});
    *static_cast<T*>(v.data()) = static_cast<T>(value);
    detail::apply_inplace<T, T>(*this, v, [](T, T x) { return x; });
  });
  storage()->bump_version();
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0); }

}  // namespace tapegrad
