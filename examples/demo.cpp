// A first look at tapegrad: fit y = 3x - 2 with a one-weight model, then print the tape of one step.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <fmt/core.h>

using namespace tapegrad;

int main() {
  manual_seed(0);
  Tensor x = Tensor::randn({64, 1});
  Tensor y = x * 3.0 - 2.0;
  Tensor w = Tensor::zeros({1}, {.requires_grad = true}).set_name("w");
  Tensor b = Tensor::zeros({1}, {.requires_grad = true}).set_name("b");
  for (int step = 0; step < 100; ++step) {
    Tensor err = x * w + b - y;
    Tensor loss = (err * err).mean();
    if (step == 0) fmt::print("{}\n", autograd::format_tape({loss}));
    w.zero_grad();
    b.zero_grad();
    loss.backward();
    autograd::NoGradGuard no_grad;
    w.sub_(w.grad() * 0.1);
    b.sub_(b.grad() * 0.1);
    if (step % 20 == 0 || step == 99) fmt::print("step {:3d}  loss {:.6f}  w {:.4f}  b {:.4f}\n", step, loss.item(), w.item(), b.item());
  }
}
