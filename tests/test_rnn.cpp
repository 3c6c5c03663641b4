// Recurrent layers: the fused layer kernels by gradcheck, and the modules against PyTorch.
#include "support/fixtures.h"

#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/ops/rnn.h>

#include <cmath>
#include <functional>

using namespace tapegrad;
using testing::randn64;

namespace {
Tensor lengths_of(std::vector<int64_t> v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }
}  // namespace

TEST_CASE("lstm_layer backward through time passes gradcheck") {
  const int64_t L = 4, N = 3, I = 2, H = 3;
  for (bool reverse : {false, true}) {
    for (bool padded : {false, true}) {
      DYNAMIC_SECTION("reverse " << reverse << " padded " << padded) {
        Tensor lengths = padded ? lengths_of({4, 2, 1}) : Tensor();
        std::vector<Tensor> in{randn64({L, N, I}, 1), randn64({N, H}, 2), randn64({N, H}, 3), randn64({4 * H, I}, 4),
                               randn64({4 * H, H}, 5), randn64({4 * H}, 6), randn64({4 * H}, 7)};
        REQUIRE(gradcheck(
            [&](const std::vector<Tensor>& x) {
              auto r = lstm_layer(x[0], x[1], x[2], x[3], x[4], x[5], x[6], Tensor(), reverse, lengths);
              return std::vector<Tensor>{r.output, r.h_n, r.c_n};
            },
            in));
      }
    }
  }
}

TEST_CASE("lstm_layer with a projection passes gradcheck") {
  const int64_t L = 3, N = 2, I = 3, H = 4, P = 2;
  std::vector<Tensor> in{randn64({L, N, I}, 11), randn64({N, P}, 12), randn64({N, H}, 13), randn64({4 * H, I}, 14),
                         randn64({4 * H, P}, 15), randn64({4 * H}, 16), randn64({4 * H}, 17), randn64({P, H}, 18)};
  REQUIRE(gradcheck(
      [&](const std::vector<Tensor>& x) {
        auto r = lstm_layer(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], false, lengths_of({3, 2}));
        return std::vector<Tensor>{r.output, r.h_n, r.c_n};
      },
      in));
}

TEST_CASE("gru_layer and rnn_layer pass gradcheck") {
  const int64_t L = 4, N = 3, I = 2, H = 3;
  for (bool reverse : {false, true}) {
    std::vector<Tensor> in{randn64({L, N, I}, 21), randn64({N, H}, 22), randn64({3 * H, I}, 23),
                           randn64({3 * H, H}, 24), randn64({3 * H}, 25), randn64({3 * H}, 26)};
    REQUIRE(gradcheck(
        [&](const std::vector<Tensor>& x) {
          auto r = gru_layer(x[0], x[1], x[2], x[3], x[4], x[5], reverse, lengths_of({4, 1, 3}));
          return std::vector<Tensor>{r.output, r.h_n};
        },
        in));
    for (bool relu : {false, true}) {
      std::vector<Tensor> rin{randn64({L, N, I}, 31), randn64({N, H}, 32), randn64({H, I}, 33), randn64({H, H}, 34),
                              randn64({H}, 35), randn64({H}, 36)};
      REQUIRE(gradcheck(
          [&](const std::vector<Tensor>& x) {
            auto r = rnn_layer(x[0], x[1], x[2], x[3], x[4], x[5], relu, reverse, lengths_of({2, 4, 3}));
            return std::vector<Tensor>{r.output, r.h_n};
          },
          rin));
    }
  }
}

TEST_CASE("padded steps change nothing") {
  // A sequence of length 2 padded to 4 gives the same result as the sequence alone.
  const int64_t H = 3;
  Tensor x = randn64({4, 1, 2}, 41, false), h0 = randn64({1, H}, 42, false), c0 = randn64({1, H}, 43, false);
  Tensor wih = randn64({4 * H, 2}, 44, false), whh = randn64({4 * H, H}, 45, false);
  for (bool reverse : {false, true}) {
    auto padded = lstm_layer(x, h0, c0, wih, whh, {}, {}, {}, reverse, lengths_of({2}));
    auto alone = lstm_layer(x.narrow(0, 0, 2), h0, c0, wih, whh, {}, {}, {}, reverse);
    testing::require_close(padded.h_n, alone.h_n, 1e-12, 1e-12);
    testing::require_close(padded.c_n, alone.c_n, 1e-12, 1e-12);
    testing::require_close(padded.output.narrow(0, 0, 2), alone.output, 1e-12, 1e-12);
    testing::require_close(padded.output.narrow(0, 2, 2), Tensor::zeros({2, 1, H}, {.dtype = kFloat64}));
  }
}

// ---- the modules against PyTorch ----

#include <tapegrad/core/autograd.h>
#include <tapegrad/layers/rnn.h>

namespace {
struct RnnCase {
  std::string name;
  std::function<std::shared_ptr<nn::RNNBase>()> make;
};

NamedTensors params_of(const testing::Fixture& fx, const std::string& name, const nn::Module& m) {
  NamedTensors state;
  for (const auto& [k, v] : m.state_dict()) state.emplace_back(k, fx[name + ".param." + k]);
  return state;
}
}  // namespace

TEST_CASE("LSTM, GRU and RNN modules match PyTorch: outputs, states and every gradient") {
  testing::Fixture fx("rnn.safetensors");
  const nn::RNNOptions f64{.dtype = kFloat64};
  auto with = [&](nn::RNNOptions o) {
    o.dtype = kFloat64;
    return o;
  };
  std::vector<RnnCase> cases{
      {"lstm1", [&] { return std::make_shared<nn::LSTM>(4, 5, f64); }},
      {"lstm2_bi", [&] { return std::make_shared<nn::LSTM>(4, 5, with({.num_layers = 2, .bidirectional = true})); }},
      {"lstm3_bf", [&] { return std::make_shared<nn::LSTM>(4, 5, with({.num_layers = 3, .batch_first = true})); }},
      {"lstm_proj",
       [&] { return std::make_shared<nn::LSTM>(4, 6, with({.num_layers = 2, .bidirectional = true, .proj_size = 3})); }},
      {"lstm_unbatched", [&] { return std::make_shared<nn::LSTM>(4, 5, with({.num_layers = 2})); }},
      {"lstm_nobias", [&] { return std::make_shared<nn::LSTM>(4, 5, with({.bias = false})); }},
      {"lstm_packed", [&] { return std::make_shared<nn::LSTM>(4, 5, with({.num_layers = 2, .bidirectional = true})); }},
      {"gru2_bi", [&] { return std::make_shared<nn::GRU>(4, 5, with({.num_layers = 2, .bidirectional = true})); }},
      {"gru_packed", [&] { return std::make_shared<nn::GRU>(4, 5, f64); }},
      {"rnn_tanh", [&] { return std::make_shared<nn::RNN>(4, 5, with({.num_layers = 2})); }},
      {"rnn_relu_bi",
       [&] { return std::make_shared<nn::RNN>(4, 5, with({.bidirectional = true, .nonlinearity = "relu"})); }},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      auto m = c.make();
      m->load_state_dict(params_of(fx, c.name, *m));
      Tensor x = fx[c.name + ".x"].clone().requires_grad_();
      Tensor h0 = fx.has(c.name + ".h0") ? fx[c.name + ".h0"].clone().requires_grad_() : Tensor();
      Tensor c0 = fx.has(c.name + ".c0") ? fx[c.name + ".c0"].clone().requires_grad_() : Tensor();
      Tensor lengths = fx.has(c.name + ".lengths") ? fx[c.name + ".lengths"] : Tensor();
      auto out = m->forward(x, h0, c0, lengths);
      testing::require_close(out.output, fx[c.name + ".output"], 1e-10, 1e-12);
      testing::require_close(out.h_n, fx[c.name + ".h_n"], 1e-10, 1e-12);
      Tensor loss = (out.output * fx[c.name + ".g_output"]).sum() + (out.h_n * fx[c.name + ".g_h_n"]).sum();
      if (fx.has(c.name + ".c_n")) {
        testing::require_close(out.c_n, fx[c.name + ".c_n"], 1e-10, 1e-12);
        loss = loss + (out.c_n * fx[c.name + ".g_c_n"]).sum();
      }
      loss.backward();
      testing::require_close(x.grad(), fx[c.name + ".grad.x"], 1e-9, 1e-11);
      if (h0.defined()) testing::require_close(h0.grad(), fx[c.name + ".grad.h0"], 1e-9, 1e-11);
      if (c0.defined()) testing::require_close(c0.grad(), fx[c.name + ".grad.c0"], 1e-9, 1e-11);
      for (const auto& [k, p] : m->named_parameters()) {
        INFO(k);
        testing::require_close(p.grad(), fx[c.name + ".grad." + k], 1e-9, 1e-11);
      }
    }
  }
}

TEST_CASE("LSTM parameters: PyTorch's names, shapes and initialization bounds") {
  nn::LSTM lstm(100, 128, {.num_layers = 2, .bidirectional = true, .proj_size = 64});
  std::vector<std::string> keys;
  for (const auto& [k, v] : lstm.state_dict()) keys.push_back(k);
  REQUIRE(keys.size() == 20);
  REQUIRE(keys[0] == "weight_ih_l0");
  REQUIRE(keys[4] == "weight_hr_l0");
  REQUIRE(keys[5] == "weight_ih_l0_reverse");
  REQUIRE(keys[10] == "weight_ih_l1");
  REQUIRE(lstm.layers[2].w_ih.shape() == Shape{512, 128});  // layer 1 reads both directions' projections
  REQUIRE(lstm.layers[0].w_hh.shape() == Shape{512, 64});
  const double bound = 1.0 / std::sqrt(128.0);
  for (const Tensor& p : lstm.parameters()) {
    REQUIRE(amax(abs(p)).item() <= bound);
    REQUIRE(amax(abs(p)).item() > 0.9 * bound);
  }
  REQUIRE(lstm.repr() == "LSTM(100, 128, proj_size=64, num_layers=2, bidirectional=True)");
}

TEST_CASE("recurrent modules reject bad input and options with PyTorch's messages") {
  nn::LSTM lstm(4, 5, {.num_layers = 2});
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 3, 4, 1})), "LSTM: Expected input to be 2D or 3D, got 4D instead");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 3, 7})), "LSTM: input.size(-1) must be equal to input_size. Expected 4, got 7");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 2, 4}), Tensor::zeros({2, 5}), Tensor::zeros({2, 5})),
                "LSTM: For batched 3-D input, hx and cx should also be 3-D but got (2-D, 2-D) tensors");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 4}), Tensor::zeros({2, 1, 5}), Tensor::zeros({2, 1, 5})),
                "LSTM: For unbatched 2-D input, hx and cx should also be 2-D but got (3-D, 3-D) tensors");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 2, 4}), Tensor::zeros({2, 3, 5}), Tensor::zeros({2, 2, 5})),
                "LSTM: Expected hidden[0] size (2, 2, 5), got [2, 3, 5]");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 2, 4}), Tensor::zeros({2, 2, 5}), Tensor::zeros({1, 2, 5})),
                "LSTM: Expected hidden[1] size (2, 2, 5), got [1, 2, 5]");
  REQUIRE_ERROR(lstm.forward(Tensor::zeros({2, 2, 4}, {.dtype = kFloat64})),
                "LSTM: input must have the type torch.float32, got type torch.float64");
  REQUIRE_ERROR(nn::LSTM(4, 5, {.dropout = 1.5}),
                "LSTM: dropout should be a number in range [0, 1] representing the probability of an element being zeroed");
  REQUIRE_ERROR(nn::LSTM(4, 5, {.proj_size = 5}), "LSTM: proj_size has to be smaller than hidden_size");
  REQUIRE_ERROR(nn::LSTM(4, 5, {.proj_size = -1}), "LSTM: proj_size should be a positive integer or zero to disable projections");
  REQUIRE_ERROR(nn::LSTM(4, 0), "LSTM: hidden_size must be greater than zero");
  REQUIRE_ERROR(nn::GRU(4, 5, {.num_layers = 0}), "GRU: num_layers must be greater than zero");
  REQUIRE_ERROR(nn::GRU(4, 5, {.proj_size = 2}), "GRU: proj_size argument is only supported for LSTM, not RNN or GRU");
  nn::GRU gru(4, 5);
  REQUIRE_ERROR(gru.forward(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 5})),
                "GRU: For batched 3-D input, hx should also be 3-D but got 2-D tensor");
  REQUIRE_ERROR(gru.forward(Tensor::zeros({2, 3, 4}), Tensor::zeros({2, 3, 5})), "GRU: Expected hidden size (1, 3, 5), got [2, 3, 5]");
}

TEST_CASE("cells equal one step of the layer") {
  nn::LSTMCell cell(3, 4, true, kFloat64);
  Tensor x = randn64({2, 3}, 51), h = randn64({2, 4}, 52), c = randn64({2, 4}, 53);
  auto [h1, c1] = cell.forward(x, h, c);
  auto r = lstm_layer(x.unsqueeze(0), h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, {}, false);
  testing::require_close(h1, r.h_n, 0, 0);
  testing::require_close(c1, r.c_n, 0, 0);
  auto [hu, cu] = cell.forward(x.select(0, 0), h.select(0, 0), c.select(0, 0));  // unbatched
  testing::require_close(hu, h1.select(0, 0), 0, 0);
  REQUIRE(cell.repr() == "LSTMCell(3, 4)");
  nn::GRUCell gcell(3, 4, false);
  REQUIRE(gcell.forward(Tensor::zeros({3})).shape() == Shape{4});
  REQUIRE(gcell.repr() == "GRUCell(3, 4, bias=False)");
  nn::RNNCell rcell(3, 4, true, "relu");
  REQUIRE(rcell.repr() == "RNNCell(3, 4, nonlinearity=relu)");
  REQUIRE_ERROR(rcell.forward(Tensor::zeros({2, 5})), "RNNCell: input has inconsistent input_size: got 5 expected 3");
}
