// Elementwise ops with NumPy/PyTorch broadcasting. Inputs may be non-contiguous; outputs are new
// contiguous tensors of the promoted dtype (bool < int64 < float32 < float64; a scalar argument
// takes the tensor's dtype, except that a fractional number with an integer or bool tensor is float32
// and an integral number with a bool tensor is int64, as PyTorch's Python scalars).
#pragma once

#include "../tensor.h"

#include <optional>

namespace tapegrad {

// ---- arithmetic (differentiable in float32/float64) ----
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1);  // a + alpha * b
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1);  // a - alpha * b
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient split evenly on ties, as PyTorch
Tensor minimum(const Tensor& a, const Tensor& b);
// Elements of a where cond is true, else of b. cond is a bool tensor; all three broadcast.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- unary math ----
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
// Either bound may be absent; the gradient passes where min <= a <= max.
Tensor clamp(const Tensor& a, std::optional<double> min, std::optional<double> max);

// ---- comparisons: bool results, not differentiable ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// Logical ops on bool tensors (other dtypes are converted: nonzero is true).
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);

// A 0-dim tensor holding v, with t's dtype: how scalars enter binary ops.
Tensor scalar_like(double v, const Tensor& t);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator==(const Tensor& a, const Tensor& b);
Tensor operator!=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator==(const Tensor& a, double b);
Tensor operator!=(const Tensor& a, double b);
Tensor operator<(const Tensor& a, double b);
Tensor operator<=(const Tensor& a, double b);
Tensor operator>(const Tensor& a, double b);
Tensor operator>=(const Tensor& a, double b);

// True if a and b have the same shape and |a - b| <= atol + rtol * |b| everywhere (NaN equal to NaN).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace tapegrad
