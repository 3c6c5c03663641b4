#include "rnn.h"

#include "../core/ops/elementwise.h"
#include "../core/ops/rnn.h"
#include "../core/ops/shape.h"
#include "../core/random.h"
#include "init.h"

#include <cmath>

namespace tapegrad::nn {

namespace {
std::string dims_str(const Tensor& t) { return fmt::format("{}-D", t.dim()); }

// Inverted dropout between layers (fresh mask per call).
Tensor layer_dropout(const Tensor& x, double p) {
  Tensor keep = (Tensor::rand(x.shape(), {.dtype = x.dtype()}) >= p).to(x.dtype());
  return x * (keep * (1.0 / (1.0 - p)));
}
}  // namespace

RNNBase::RNNBase(const char* name, Kind kind, int64_t input_size, int64_t hidden_size, RNNOptions o)
    : Module(name), input_size(input_size), hidden_size(hidden_size), options(std::move(o)), kind_(kind) {
  TG_CHECK(hidden_size > 0, "{}: hidden_size must be greater than zero", name);
  TG_CHECK(options.num_layers > 0, "{}: num_layers must be greater than zero", name);
  TG_CHECK(input_size >= 0, "{}: input_size must be non-negative, got {}", name, input_size);
  TG_CHECK(options.dropout >= 0 && options.dropout <= 1,
           "{}: dropout should be a number in range [0, 1] representing the probability of an element being zeroed",
           name);
  TG_CHECK(options.proj_size >= 0, "{}: proj_size should be a positive integer or zero to disable projections", name);
  TG_CHECK(options.proj_size < hidden_size, "{}: proj_size has to be smaller than hidden_size", name);
  TG_CHECK(kind == Kind::LSTM || options.proj_size == 0, "{}: proj_size argument is only supported for LSTM, not RNN or GRU",
           name);
  TG_CHECK(kind != Kind::RNN || options.nonlinearity == "tanh" || options.nonlinearity == "relu",
           "{}: Unknown nonlinearity '{}'. Select from 'tanh' or 'relu'.", name, options.nonlinearity);
  const int64_t G = kind == Kind::LSTM ? 4 : kind == Kind::GRU ? 3 : 1;
  const int64_t D = options.bidirectional ? 2 : 1;
  const int64_t H_out = options.proj_size > 0 ? options.proj_size : hidden_size;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  const TensorOptions to{.dtype = options.dtype};
  for (int64_t l = 0; l < options.num_layers; ++l) {
    for (int64_t d = 0; d < D; ++d) {
      const std::string sfx = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
      const int64_t in = l == 0 ? input_size : D * H_out;
      LayerParams p;
      p.w_ih = register_parameter("weight_ih" + sfx, Tensor::empty({G * hidden_size, in}, to));
      p.w_hh = register_parameter("weight_hh" + sfx, Tensor::empty({G * hidden_size, H_out}, to));
      if (options.bias) {
        p.b_ih = register_parameter("bias_ih" + sfx, Tensor::empty({G * hidden_size}, to));
        p.b_hh = register_parameter("bias_hh" + sfx, Tensor::empty({G * hidden_size}, to));
      }
      if (options.proj_size > 0) p.w_hr = register_parameter("weight_hr" + sfx, Tensor::empty({H_out, hidden_size}, to));
      layers.push_back(p);
    }
  }
  // Every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), in registration order.
  for (Tensor& p : parameters()) init::uniform_(p, -bound, bound);
}

LSTM::LSTM(int64_t input_size, int64_t hidden_size, RNNOptions o)
    : RNNBase("LSTM", Kind::LSTM, input_size, hidden_size, std::move(o)) {}
GRU::GRU(int64_t input_size, int64_t hidden_size, RNNOptions o)
    : RNNBase("GRU", Kind::GRU, input_size, hidden_size, std::move(o)) {}
RNN::RNN(int64_t input_size, int64_t hidden_size, RNNOptions o)
    : RNNBase("RNN", Kind::RNN, input_size, hidden_size, std::move(o)) {}

Tensor RNNBase::forward(const Tensor& x) { return forward(x, Tensor(), Tensor()).output; }

RNNOutput RNNBase::forward(const Tensor& input, const Tensor& h0_in, const Tensor& c0_in, const Tensor& lengths) {
  const std::string& name = type_name();
  const bool lstm = kind_ == Kind::LSTM;
  TG_CHECK(input.dim() == 2 || input.dim() == 3, "{}: Expected input to be 2D or 3D, got {}D instead", name,
           input.dim());
  TG_CHECK(input.dtype() == options.dtype, "{}: input must have the type torch.{}, got type torch.{}", name,
           dtype_name(options.dtype), dtype_name(input.dtype()));
  TG_CHECK(lstm || !c0_in.defined(), "{}: only LSTM takes a cell state", name);
  const bool batched = input.dim() == 3;
  const int64_t D = options.bidirectional ? 2 : 1;
  const int64_t H_out = options.proj_size > 0 ? options.proj_size : hidden_size;
  Tensor x = batched ? (options.batch_first ? input.transpose(0, 1) : input) : input.unsqueeze(1);
  TG_CHECK(x.size(2) == input_size, "{}: input.size(-1) must be equal to input_size. Expected {}, got {}", name,
           input_size, x.size(2));
  const int64_t N = x.size(1);
  Tensor h0 = h0_in, c0 = c0_in;
  if (h0.defined() || c0.defined()) {
    const int64_t want = batched ? 3 : 2;
    const bool ok = (!h0.defined() || h0.dim() == want) && (!c0.defined() || c0.dim() == want);
    if (lstm)
      TG_CHECK(ok, "{}: For {} input, hx and cx should also be {} but got ({}, {}) tensors", name,
               batched ? "batched 3-D" : "unbatched 2-D", batched ? "3-D" : "2-D", h0.defined() ? dims_str(h0) : "none",
               c0.defined() ? dims_str(c0) : "none");
    else
      TG_CHECK(ok, "{}: For {} input, hx should also be {} but got {} tensor", name,
               batched ? "batched 3-D" : "unbatched 2-D", batched ? "3-D" : "2-D", dims_str(h0));
    if (!batched) {
      if (h0.defined()) h0 = h0.unsqueeze(1);
      if (c0.defined()) c0 = c0.unsqueeze(1);
    }
  }
  const Shape h_shape{D * options.num_layers, N, H_out}, c_shape{D * options.num_layers, N, hidden_size};
  if (!h0.defined()) h0 = Tensor::zeros(h_shape, {.dtype = options.dtype});
  if (lstm && !c0.defined()) c0 = Tensor::zeros(c_shape, {.dtype = options.dtype});
  TG_CHECK(h0.shape() == h_shape, "{}: Expected hidden{} size {}, got {}", name, lstm ? "[0]" : "", shape_str(h_shape),
           shape_list(h0.shape()));
  if (lstm)
    TG_CHECK(c0.shape() == c_shape, "{}: Expected hidden[1] size {}, got {}", name, shape_str(c_shape),
             shape_list(c0.shape()));

  Tensor layer_in = x;
  std::vector<Tensor> hs, cs;
  for (int64_t l = 0; l < options.num_layers; ++l) {
    std::vector<Tensor> outs;
    for (int64_t d = 0; d < D; ++d) {
      const LayerParams& p = layers[static_cast<size_t>(l * D + d)];
      const int64_t k = l * D + d;
      RnnLayerResult r;
      if (kind_ == Kind::LSTM)
        r = lstm_layer(layer_in, h0.select(0, k), c0.select(0, k), p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr, d == 1,
                       lengths);
      else if (kind_ == Kind::GRU)
        r = gru_layer(layer_in, h0.select(0, k), p.w_ih, p.w_hh, p.b_ih, p.b_hh, d == 1, lengths);
      else
        r = rnn_layer(layer_in, h0.select(0, k), p.w_ih, p.w_hh, p.b_ih, p.b_hh, options.nonlinearity == "relu",
                      d == 1, lengths);
      outs.push_back(r.output);
      hs.push_back(r.h_n);
      if (lstm) cs.push_back(r.c_n);
    }
    layer_in = D == 1 ? outs[0] : cat(outs, 2);
    if (options.dropout > 0 && is_training() && l + 1 < options.num_layers)
      layer_in = layer_dropout(layer_in, options.dropout);
  }
  RNNOutput out{layer_in, stack(hs, 0), lstm ? stack(cs, 0) : Tensor()};
  if (!batched) {
    out.output = out.output.squeeze(1);
    out.h_n = out.h_n.squeeze(1);
    if (lstm) out.c_n = out.c_n.squeeze(1);
  } else if (options.batch_first) {
    out.output = out.output.transpose(0, 1);
  }
  return out;
}

std::string RNNBase::extra_repr() const {
  std::string s = fmt::format("{}, {}", input_size, hidden_size);
  if (options.proj_size != 0) s += fmt::format(", proj_size={}", options.proj_size);
  if (options.num_layers != 1) s += fmt::format(", num_layers={}", options.num_layers);
  if (kind_ == Kind::RNN && options.nonlinearity != "tanh") s += fmt::format(", nonlinearity={}", options.nonlinearity);
  if (!options.bias) s += ", bias=False";
  if (options.batch_first) s += ", batch_first=True";
  if (options.dropout != 0) s += fmt::format(", dropout={}", options.dropout);
  if (options.bidirectional) s += ", bidirectional=True";
  return s;
}

// ---- cells: one step of the layer kernels ----

namespace {
struct CellParams {
  Tensor w_ih, w_hh, b_ih, b_hh;
};

CellParams make_cell(Module& m, int64_t gates, int64_t in, int64_t hidden, bool bias, DType dtype) {
  CellParams p;
  p.w_ih = m.register_parameter("weight_ih", Tensor::empty({gates * hidden, in}, {.dtype = dtype}));
  p.w_hh = m.register_parameter("weight_hh", Tensor::empty({gates * hidden, hidden}, {.dtype = dtype}));
  if (bias) {
    p.b_ih = m.register_parameter("bias_ih", Tensor::empty({gates * hidden}, {.dtype = dtype}));
    p.b_hh = m.register_parameter("bias_hh", Tensor::empty({gates * hidden}, {.dtype = dtype}));
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  for (Tensor& t : m.parameters()) init::uniform_(t, -bound, bound);
  return p;
}

// Checks a cell's input and state, returning them batched: x (1, N, I), state (N, H).
std::pair<Tensor, bool> cell_input(const std::string& name, const Tensor& x, int64_t input_size) {
  TG_CHECK(x.dim() == 1 || x.dim() == 2, "{}: Expected input to be 1D or 2D, got {}D instead", name, x.dim());
  const bool batched = x.dim() == 2;
  Tensor xb = batched ? x : x.unsqueeze(0);
  TG_CHECK(xb.size(1) == input_size, "{}: input has inconsistent input_size: got {} expected {}", name, xb.size(1),
           input_size);
  return {xb.unsqueeze(0), batched};
}

Tensor cell_state(const std::string& name, const Tensor& s, bool batched, int64_t n, int64_t hidden, DType dtype,
                  const char* which) {
  if (!s.defined()) return Tensor::zeros({n, hidden}, {.dtype = dtype});
  Tensor b = batched ? s : s.unsqueeze(0);
  TG_CHECK(b.dim() == 2 && b.size(0) == n && b.size(1) == hidden, "{}: Expected {} of shape {}, got {}", name, which,
           shape_str(batched ? Shape{n, hidden} : Shape{hidden}), shape_str(s.shape()));
  return b;
}

std::string cell_repr(int64_t in, int64_t hidden, const Tensor& bias) {
  return fmt::format("{}, {}{}", in, hidden, bias.defined() ? "" : ", bias=False");
}
}  // namespace

LSTMCell::LSTMCell(int64_t in, int64_t hidden, bool bias, DType dtype)
    : Module("LSTMCell"), input_size(in), hidden_size(hidden) {
  auto p = make_cell(*this, 4, in, hidden, bias, dtype);
  weight_ih = p.w_ih, weight_hh = p.w_hh, bias_ih = p.b_ih, bias_hh = p.b_hh;
}

std::pair<Tensor, Tensor> LSTMCell::forward(const Tensor& x, const Tensor& h, const Tensor& c) {
  auto [xb, batched] = cell_input("LSTMCell", x, input_size);
  const int64_t n = xb.size(1);
  Tensor hb = cell_state("LSTMCell", h, batched, n, hidden_size, x.dtype(), "hx");
  Tensor cb = cell_state("LSTMCell", c, batched, n, hidden_size, x.dtype(), "cx");
  auto r = lstm_layer(xb, hb, cb, weight_ih, weight_hh, bias_ih, bias_hh, Tensor(), false);
  if (!batched) return {r.h_n.squeeze(0), r.c_n.squeeze(0)};
  return {r.h_n, r.c_n};
}

std::string LSTMCell::extra_repr() const { return cell_repr(input_size, hidden_size, bias_ih); }

GRUCell::GRUCell(int64_t in, int64_t hidden, bool bias, DType dtype)
    : Module("GRUCell"), input_size(in), hidden_size(hidden) {
  auto p = make_cell(*this, 3, in, hidden, bias, dtype);
  weight_ih = p.w_ih, weight_hh = p.w_hh, bias_ih = p.b_ih, bias_hh = p.b_hh;
}

Tensor GRUCell::forward(const Tensor& x, const Tensor& h) {
  auto [xb, batched] = cell_input("GRUCell", x, input_size);
  Tensor hb = cell_state("GRUCell", h, batched, xb.size(1), hidden_size, x.dtype(), "hx");
  auto r = gru_layer(xb, hb, weight_ih, weight_hh, bias_ih, bias_hh, false);
  return batched ? r.h_n : r.h_n.squeeze(0);
}

std::string GRUCell::extra_repr() const { return cell_repr(input_size, hidden_size, bias_ih); }

RNNCell::RNNCell(int64_t in, int64_t hidden, bool bias, const std::string& nonlinearity, DType dtype)
    : Module("RNNCell"), input_size(in), hidden_size(hidden), relu(nonlinearity == "relu") {
  TG_CHECK(nonlinearity == "tanh" || nonlinearity == "relu", "RNNCell: Unknown nonlinearity: {}", nonlinearity);
  auto p = make_cell(*this, 1, in, hidden, bias, dtype);
  weight_ih = p.w_ih, weight_hh = p.w_hh, bias_ih = p.b_ih, bias_hh = p.b_hh;
}

Tensor RNNCell::forward(const Tensor& x, const Tensor& h) {
  auto [xb, batched] = cell_input("RNNCell", x, input_size);
  Tensor hb = cell_state("RNNCell", h, batched, xb.size(1), hidden_size, x.dtype(), "hx");
  auto r = rnn_layer(xb, hb, weight_ih, weight_hh, bias_ih, bias_hh, relu, false);
  return batched ? r.h_n : r.h_n.squeeze(0);
}

std::string RNNCell::extra_repr() const {
  return cell_repr(input_size, hidden_size, bias_ih) + (relu ? ", nonlinearity=relu" : "");
}

}  // namespace tapegrad::nn
