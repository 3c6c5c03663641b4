// The tape: recording, replay, accumulation, version checks, printing.
#include "support/fixtures.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>

using namespace tapegrad;

TEST_CASE("backward of a small expression accumulates into leaves") {
  Tensor a = Tensor::of({1.0, 2.0, 3.0}, {.requires_grad = true});
  Tensor b = Tensor::of({4.0, 5.0, 6.0}, {.requires_grad = true});
  Tensor y = (a * b + a).sum();
  y.backward();
  testing::require_close(a.grad(), Tensor::of({5.0, 6.0, 7.0}));
  testing::require_close(b.grad(), Tensor::of({1.0, 2.0, 3.0}));
}
