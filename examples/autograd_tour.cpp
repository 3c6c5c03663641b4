// A tour of the tape, from one scalar expression to one training step of the documents' CNN.
// Each stage prints the tape that the forward recorded and the gradients that backward replayed into
// the leaves, and checks them against central finite differences (gradcheck, float64).
//
//   ./autograd_tour            all four stages
//   ./autograd_tour --dot F    also write the CNN step's graph as Graphviz DOT to F
#include "common/models.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/gradcheck.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/optim/sgd.h>

#include <fmt/core.h>

#include <fstream>
#include <string>
#include <vector>

using namespace tapegrad;

namespace {

double norm(const Tensor& g) { return (g * g).sum().sqrt().item(); }

void stage(const char* title) { fmt::print("\n==== {} ====\n", title); }

void report(const char* what, bool ok) {
  fmt::print("gradcheck {}: {}\n", what, ok ? "ok" : "FAILED");
  if (!ok) std::exit(1);
}

// 1. Scalars: y = a * b + exp(a), dy/da = b + exp(a), dy/db = a.
void scalars() {
  stage("1. a scalar expression");
  Tensor a = Tensor::scalar(2.0, kFloat64).requires_grad_().set_name("a");
  Tensor b = Tensor::scalar(-3.0, kFloat64).requires_grad_().set_name("b");
  Tensor ab = a * b;  // two statements: the tape order is the order the ops ran
  Tensor y = ab + a.exp();
  fmt::print("{}", autograd::format_tape({y}));
  y.backward();
  fmt::print("dy/da = {:.6f} (b + exp(a) = {:.6f})\ndy/db = {:.6f} (a = 2)\n", a.grad().item(),
             -3.0 + std::exp(2.0), b.grad().item());
  report("scalar expression", gradcheck([](const std::vector<Tensor>& v) { return v[0] * v[1] + v[0].exp(); },
                                         {a.detach().requires_grad_(), b.detach().requires_grad_()}));
}

// 2. Tensors with broadcasting: the gradient of b (4,) sums over the broadcast rows.
void tensors() {
  stage("2. a tensor expression with broadcasting");
  Tensor x = Tensor::randn({3, 4}, {.dtype = kFloat64}).requires_grad_().set_name("x");
  Tensor b = Tensor::randn({4}, {.dtype = kFloat64}).requires_grad_().set_name("b");
  Tensor y = (x * b).tanh().softmax(1).log().mean();
  fmt::print("{}", autograd::format_tape({y}));
  y.backward();
  fmt::print("x.grad: shape {}, b.grad: shape {}\n", shape_str(x.grad().shape()), shape_str(b.grad().shape()));
  report("tensor expression",
         gradcheck([](const std::vector<Tensor>& v) { return (v[0] * v[1]).tanh().softmax(1).log(); }, {x, b}));
}

// 3. An MLP: Linear -> Tanh -> Linear, cross-entropy loss.
void mlp() {
  stage("3. an MLP");
  auto net = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(5, 8), std::make_shared<nn::Tanh>(),
                                              std::make_shared<nn::Linear>(8, 3));
  net->to(kFloat64);
  for (auto& [name, p] : net->named_parameters()) p.set_name(name);  // the tape shows leaves by name
  Tensor x = Tensor::randn({4, 5}, {.dtype = kFloat64});
  Tensor target = Tensor::of({0, 2, 1, 2}, {.dtype = kInt64});
  Tensor loss = cross_entropy((*net)(x), target);
  fmt::print("{}", autograd::format_tape({loss}));
  loss.backward();
  for (auto& [name, p] : net->named_parameters())
    fmt::print("{:<9} grad norm {:.6f}\n", name, norm(p.grad()));
  // The parameters are the inputs of the check: the network as a function of them.
  auto params = net->parameters();
  report("MLP parameters", gradcheck(
                               [&](const std::vector<Tensor>& w) {
                                 Tensor h = linear(x, w[0], w[1]).tanh();
                                 return cross_entropy(linear(h, w[2], w[3]), target);
                               },
                               params));
}

// 4. One training step of the documents' CNN (Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d -> Linear).
void cnn_step(const std::string& dot_path) {
  stage("4. one training step of the CNN");
  auto net = std::make_shared<examples::CNN>("bn");
  Tensor images = Tensor::randn({2, 3, 32, 32});
  Tensor labels = Tensor::of({3, 7}, {.dtype = kInt64});
  for (auto& [name, p] : net->named_parameters()) p.set_name(name);
  optim::SGD opt(net->parameters(), {.lr = 0.01});
  opt.zero_grad();
  Tensor loss = cross_entropy((*net)(images), labels);
  fmt::print("{}", autograd::format_tape({loss}));
  if (!dot_path.empty()) std::ofstream(dot_path) << autograd::to_dot({loss});
  loss.backward();
  fmt::print("after backward the saved tensors are freed:\n{}", autograd::format_tape({loss}));
  for (auto& [name, p] : net->named_parameters())
    fmt::print("{:<12} {:<18} grad norm {:.4f}\n", name, shape_str(p.shape()), norm(p.grad()));
  // conv1.bias gets exactly zero: BatchNorm subtracts each channel's mean, so a per-channel constant
  // added before it cannot change the loss.
  opt.step();

  // The check, in float64: the gradients of the normalization's affine parameters and the conv bias
  // (192 numbers; every other parameter's gradient passes through the same nodes).
  net->to(kFloat64);
  Tensor x64 = images.to(kFloat64);
  Tensor gamma = net->bn1->parameter("weight"), beta = net->bn1->parameter("bias");
  Tensor conv_bias = net->conv1->bias;
  auto cnn = [&](const std::vector<Tensor>& w) {
    Tensor h = conv2d(x64, net->conv1->weight, w[0], {1, 1}, {1, 1});
    h = max_pool2d(batch_norm(h, {}, {}, w[1], w[2], /*training=*/true).relu(), {2, 2});
    return cross_entropy(net->fc(h.view({-1, 64 * 16 * 16})), labels);
  };
  report("CNN (conv bias, BatchNorm weight and bias)", gradcheck(cnn, {conv_bias, gamma, beta}));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dot_path;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--dot") dot_path = argv[i + 1];
  manual_seed(0);
  scalars();
  tensors();
  mlp();
  cnn_step(dot_path);
  return 0;
}
