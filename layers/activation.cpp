#include "activation.h"

#include "../core/ops/elementwise.h"
#include "../core/ops/softmax.h"

namespace tapegrad::nn {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor Softmax::forward(const Tensor& x) { return softmax(x, dim); }
Tensor LogSoftmax::forward(const Tensor& x) { return log_softmax(x, dim); }

}  // namespace tapegrad::nn

#include "../core/autograd.h"
#include "../core/ops/activation.h"
#include "init.h"
#include "normalization.h"

namespace tapegrad::nn {

Tensor LeakyReLU::forward(const Tensor& x) { return leaky_relu(x, negative_slope); }
std::string LeakyReLU::extra_repr() const { return "negative_slope=" + python_float(negative_slope); }
Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }

Dropout::Dropout(double p) : Module("Dropout"), p(p) {
  TG_CHECK(p >= 0 && p <= 1, "Dropout: dropout probability has to be between 0 and 1, but got {}", p);
}
Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training()); }
std::string Dropout::extra_repr() const { return fmt::format("p={}, inplace=False", python_float(p)); }

Embedding::Embedding(int64_t num, int64_t dim, EmbeddingOptions o)
    : Module("Embedding"), num_embeddings(num), embedding_dim(dim), options(o) {
  if (o.padding_idx) {
    int64_t& p = *options.padding_idx;
    TG_CHECK(p < num && p >= -num, "Embedding: Padding_idx must be within num_embeddings");
    if (p < 0) p += num;
  }
  weight = register_parameter("weight", Tensor::empty({num, dim}, {.dtype = o.dtype}));
  init::normal_(weight);
  if (options.padding_idx) {
    autograd::NoGradGuard ng;
    weight.select(0, *options.padding_idx).zero_();
  }
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices, options.padding_idx); }

std::string Embedding::extra_repr() const {
  std::string s = fmt::format("{}, {}", num_embeddings, embedding_dim);
  if (options.padding_idx) s += fmt::format(", padding_idx={}", *options.padding_idx);
  return s;
}

}  // namespace tapegrad::nn
