// A safetensors checkpoint from arbitrary bytes loaded into a small fixed model: parse_safetensors,
// then load_state_dict (strict and not) and a forward pass. Every step either works or throws
// tapegrad::Error; a failed load leaves every parameter with its shape and dtype.
#include "fuzz_common.h"

#include <tapegrad/core/ops.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/layers/module.h>

using namespace tapegrad;

namespace {

// A Linear(4, 3) "fc" and a child "head" with a bias-free (2, 3) weight and a buffer "scale" (2), with
// parameters registered directly (fixed values: the fuzzer needs no initialization).
struct Head : nn::Module {
  Tensor weight, scale;
  Head() : Module("Head") {
    weight = register_parameter("weight", Tensor::full({2, 3}, 0.5));
    scale = register_buffer("scale", Tensor::ones({2}));
  }
  Tensor forward(const Tensor& x) override { return linear(x, weight) * scale; }
};

struct Net : nn::Module {
  Tensor weight, bias;
  nn::ModuleRef<Head> head;
  Net() : Module("Net") {
    weight = register_parameter("fc_weight", Tensor::full({3, 4}, 0.25));
    bias = register_parameter("fc_bias", Tensor::zeros({3}));
    head = register_module("head", std::make_shared<Head>());
  }
  Tensor forward(const Tensor& x) override { return head(relu(linear(x, weight, bias))); }  // (N, 4) -> (N, 2)
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  SafetensorsFile file;
  try {
    file = parse_safetensors(bytes, "fuzz input");
  } catch (const Error&) {
    return 0;
  }
  auto net = std::make_shared<Net>();
  const NamedTensors before = net->state_dict();
  for (bool strict : {false, true}) {
    try {
      const nn::LoadStateDictResult r = net->load_state_dict(file.tensors, strict);
      FUZZ_CHECK(!strict || (r.missing_keys.empty() && r.unexpected_keys.empty()));
    } catch (const Error&) {
    }
    // Loaded or not, the model keeps its structure.
    const NamedTensors after = net->state_dict();
    FUZZ_CHECK(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      FUZZ_CHECK(after[i].first == before[i].first);
      FUZZ_CHECK(after[i].second.shape() == before[i].second.shape());
      FUZZ_CHECK(after[i].second.dtype() == before[i].second.dtype());
    }
  }
  const Tensor y = (*net)(Tensor::ones({5, 4}));
  FUZZ_CHECK(y.shape() == (Shape{5, 2}));
  fuzz::touch(y.contiguous());
  return 0;
}
