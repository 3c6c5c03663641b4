// Recurrent layers over whole sequences: one LSTM, GRU or Elman RNN layer in one direction is ONE tape
// node, with a fused forward (input projection of all steps as one GEMM, then per step one small GEMM
// and one fused gate kernel) and a fused backward through time (per step one fused gate kernel and one
// small GEMM, then the weight gradients of all steps as single GEMMs). Buffers are allocated once per
// call, never per step.
//
// Layout and math are PyTorch's (pytorch-semantics.md section 9): gates stacked in the rows of the
// weights in the order i, f, g, o (LSTM) and r, z, n (GRU); both biases are used.
#pragma once

#include "../tensor.h"

#include <tuple>

namespace tapegrad {

struct RnnLayerResult {
  Tensor output;  // (L, N, H_out): h_t of every step (zeros at padded steps)
  Tensor h_n;     // (N, H_out): the state after the last valid step
  Tensor c_n;     // (N, H): LSTM only
};

// One LSTM layer. x (L, N, I); h0 (N, P) and c0 (N, H) where P = proj_size or H; w_ih (4H, I),
// w_hh (4H, P), b_ih and b_hh (4H) or undefined, w_hr (P, H) or undefined (no projection).
// reverse runs t = L-1 .. 0. lengths (int64, (N,), each in [1, L]) or undefined: steps t >= lengths[n]
// of sequence n are padding: they leave its state unchanged and output zeros.
RnnLayerResult lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                          const Tensor& b_ih, const Tensor& b_hh, const Tensor& w_hr, bool reverse,
                          const Tensor& lengths = {});

// One GRU layer: r = σ(x W_ir + b_ir + h W_hr + b_hr), z likewise, n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)),
// h' = (1 - z) ⊙ n + z ⊙ h. w_ih (3H, I), w_hh (3H, H).
RnnLayerResult gru_layer(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                         const Tensor& b_hh, bool reverse, const Tensor& lengths = {});

// One Elman RNN layer: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu.
RnnLayerResult rnn_layer(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                         const Tensor& b_hh, bool relu, bool reverse, const Tensor& lengths = {});

}  // namespace tapegrad
