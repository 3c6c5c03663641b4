// LSTM, GRU and RNN (multi-layer, bidirectional, batch_first, dropout between layers, LSTM projections),
// and their single-step cells, with PyTorch's parameter names, layouts, initialization and shapes
// (pytorch-semantics.md section 9).
//
// Inputs: (L, N, H_in), or (N, L, H_in) with batch_first, or unbatched (L, H_in). Initial states
// (D·num_layers, N, H_out) — batch_first never applies to them — default to zeros. Variable-length
// batches: pass `lengths` (int64, (N,)); steps past a sequence's length do not change its result, its
// outputs there are zeros, and h_n/c_n hold the state after its last valid step (what PyTorch gives
// for a PackedSequence).
#pragma once

#include "module.h"

namespace tapegrad::nn {

struct RNNOptions {
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  double dropout = 0;  // between layers, training only
  bool bidirectional = false;
  int64_t proj_size = 0;  // LSTM only
  std::string nonlinearity = "tanh";  // RNN only: "tanh" or "relu"
  DType dtype = DType::Float32;
};

struct RNNOutput {
  Tensor output;  // (L, N, D·H_out)
  Tensor h_n;     // (D·num_layers, N, H_out)
  Tensor c_n;     // LSTM only: (D·num_layers, N, H)
};

// The shared machinery of LSTM, GRU and RNN.
class RNNBase : public Module {
 public:
  // forward(x) returns the output sequence only.
  Tensor forward(const Tensor& x) override;
  // h0 / c0 may be undefined (zeros). c0 is for LSTM only.
  RNNOutput forward(const Tensor& x, const Tensor& h0, const Tensor& c0 = {}, const Tensor& lengths = {});
  std::string extra_repr() const override;

  int64_t input_size, hidden_size;
  RNNOptions options;
  // Parameters of layer l, direction d, in PyTorch's order (w_ih, w_hh, b_ih, b_hh, w_hr).
  struct LayerParams {
    Tensor w_ih, w_hh, b_ih, b_hh, w_hr;
  };
  std::vector<LayerParams> layers;  // index l·D + d

 protected:
  enum class Kind { LSTM, GRU, RNN };
  RNNBase(const char* name, Kind kind, int64_t input_size, int64_t hidden_size, RNNOptions options);
  Kind kind_;
};

class LSTM : public RNNBase {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, RNNOptions options = {});
};

class GRU : public RNNBase {
 public:
  GRU(int64_t input_size, int64_t hidden_size, RNNOptions options = {});
};

// Elman RNN: tanh or relu.
class RNN : public RNNBase {
 public:
  RNN(int64_t input_size, int64_t hidden_size, RNNOptions options = {});
};

// One step. Input (N, H_in) or (H_in); states (N, H) or (H).
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, bool bias = true, DType dtype = DType::Float32);
  // Returns (h', c').
  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& h, const Tensor& c);
  Tensor forward(const Tensor& x) override { return forward(x, {}, {}).first; }
  std::string extra_repr() const override;
  int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

class GRUCell : public Module {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, bool bias = true, DType dtype = DType::Float32);
  Tensor forward(const Tensor& x, const Tensor& h);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  std::string extra_repr() const override;
  int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

class RNNCell : public Module {
 public:
  RNNCell(int64_t input_size, int64_t hidden_size, bool bias = true, const std::string& nonlinearity = "tanh",
          DType dtype = DType::Float32);
  Tensor forward(const Tensor& x, const Tensor& h);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  std::string extra_repr() const override;
  int64_t input_size, hidden_size;
  bool relu;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

}  // namespace tapegrad::nn
