// Recurrent layers: the fused layer kernels by gradcheck, and the modules against PyTorch.
#include "support/fixtures.h"

#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/ops/rnn.h>

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
