// Activation functions, dropout and embedding, with PyTorch's formulas, defaults and messages.
// (relu, sigmoid and tanh are elementwise ops; softmax and log_softmax live in softmax.h.)
//
// The pointwise activations take float32/float64 tensors of any shape and strides and return a
// new contiguous tensor. Each backward is one fused kernel for the usual first-order pass; when the
// backward is itself recorded (create_graph) the derivative is composed from differentiable ops,
// so higher-order gradients are exact too. saved: self (the input).
#pragma once

#include "../tensor.h"

#include <optional>
#include <string_view>

namespace tapegrad {

// x where x > 0, else negative_slope * x. Gradient 1 / negative_slope (negative_slope at 0).
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);

// x * Phi(x) with Phi the standard normal CDF ("none", exact via erf), or PyTorch's tanh
// approximation 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) ("tanh"). Any other string:
// "gelu: approximate argument must be either none or tanh."
Tensor gelu(const Tensor& x, std::string_view approximate = "none");

// x * sigmoid(x) (a.k.a. swish).
Tensor silu(const Tensor& x);

// log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (for stability, as PyTorch).
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);

// x where x > 0, else alpha (exp(x) - 1). The gradient at 0 is alpha, as PyTorch's.
Tensor elu(const Tensor& x, double alpha = 1.0);

class Generator;

// Inverted dropout: each element is kept with probability 1 - p and scaled by 1 / (1 - p), else
// zeroed. The mask is drawn from `gen` (this thread's default generator when null), one uniform
// per element in row-major order. p = 0 or !training returns x itself (the same tensor); p = 1
// returns zeros (still connected to x, with a zero gradient). p outside [0, 1]:
// "dropout: dropout probability has to be between 0 and 1, but got 1.5".
// saved: the scaled mask (0 or 1 / (1 - p), x's dtype).
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

// Rows of weight (V, D) at int64 `indices` of any shape: the result has shape (*indices.shape, D).
// The weight gradient is dense (V, D): the upstream rows summed into the rows they were read from,
// except that the padding_idx row (negative counts from the end) gets none. The rows are not
// otherwise special: the forward returns the padding row as it is. An index outside [0, V):
// "embedding: index out of range in self". saved: indices.
Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx = std::nullopt);

}  // namespace tapegrad
