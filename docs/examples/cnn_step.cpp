// The tape of one training step of the documents' CNN, and its graph as Graphviz DOT.
//   ./doc_cnn_step [file.dot]
#include "common/models.h"

#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/optim/sgd.h>

#include <fmt/core.h>

#include <fstream>

using namespace tapegrad;

int main(int argc, char** argv) {
  manual_seed(0);
  auto net = std::make_shared<examples::CNN>("bn");
  for (auto& [name, p] : net->named_parameters()) p.set_name(name);  // the tape shows leaves by name
  Tensor images = Tensor::randn({8, 3, 32, 32});
  Tensor labels = Tensor::randint(0, 10, {8});
  optim::SGD opt(net->parameters(), {.lr = 0.01});

  opt.zero_grad();
  Tensor loss = cross_entropy((*net)(images), labels);
  fmt::print("{}", autograd::format_tape({loss}));
  if (argc > 1) std::ofstream(argv[1]) << autograd::to_dot({loss});
  loss.backward();
  opt.step();
  fmt::print("{}", autograd::format_tape({loss}));
}
