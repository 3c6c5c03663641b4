// Anomaly mode: a NaN or Inf produced in backward names the op and the module it was recorded in.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/layers/linear.h>

#include <fmt/core.h>

using namespace tapegrad;

struct LogHead : nn::Module {
  LogHead() : Module("LogHead") {}
  Tensor forward(const Tensor& x) override { return x.log(); }
};

struct Net : nn::Module {
  nn::ModuleRef<nn::Linear> body;
  nn::ModuleRef<LogHead> head;
  Net() : Module("Net") {
    body = register_module("body", std::make_shared<nn::Linear>(2, 2, nn::LinearOptions{.bias = false}));
    head = register_module("head", std::make_shared<LogHead>());
  }
  Tensor forward(const Tensor& x) override { return head(body(x)).sum(); }
};

int main() {
  auto net = std::make_shared<Net>();
  net->body->weight.detach().copy_(Tensor::of({{1.0, 0.0}, {0.0, 0.0}}));  // output 1 is always 0
  Tensor x = Tensor::of({{1.0, 2.0}});

  autograd::DetectAnomalyGuard anomaly;  // on in this scope
  Tensor loss = (*net)(x);
  try {
    loss.backward();
  } catch (const Error& e) {
    fmt::print("{}\n", e.what());
  }
}
