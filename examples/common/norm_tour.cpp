// The normalization snippets of the source documents (documents 000, 002, 003 and 004 of the
// collection), each as close to the document's code as C++ allows. Every tensor is printed with its
// PyTorch repr; the section titles, module lines and shapes read as the PyTorch twin prints them
// (tests/fixtures/gen_norm_tour.py), so the two outputs can be compared line by line.
#include "norm_tour.h"

#include <fmt/core.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/dist/sync_batch_norm.h>
#include <tapegrad/layers/module.h>
#include <tapegrad/layers/normalization.h>

#include <memory>
#include <string>
#include <vector>

namespace tapegrad::examples {

namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The documents' hand-written GroupNorm (003), op for op. x.var's default is the *unbiased*
// variance, so it differs from nn::GroupNorm (biased, as PyTorch's) by a factor sqrt(n / (n - 1)).
struct HandGroupNorm : nn::Module {
  int64_t num_groups, num_channels;
  double eps;
  Tensor weight, bias;

  HandGroupNorm(int64_t num_groups_, int64_t num_channels_, double eps_ = 1e-5)
      : Module("GroupNorm"), num_groups(num_groups_), num_channels(num_channels_), eps(eps_) {
    weight = register_parameter("weight", Tensor::ones({1, num_channels, 1, 1}));
    bias = register_parameter("bias", Tensor::zeros({1, num_channels, 1, 1}));
  }

  Tensor forward(const Tensor& input) override {
    // x: (batch_size, num_channels, height, width)
    const int64_t batch_size = input.size(0), height = input.size(2), width = input.size(3);
    Tensor x = input.view({batch_size, num_groups, -1, height, width});
    const Tensor mean = x.mean({2, 3, 4}, /*keepdim=*/true);
    const Tensor var = x.var({2, 3, 4}, /*unbiased=*/true, /*keepdim=*/true);
    x = (x - mean) / (var + eps).sqrt();
    x = x.view({batch_size, num_channels, height, width});
    return x * weight + bias;
  }
};

std::string torch_size(const Tensor& t) { return "torch.Size(" + shape_list(t.shape()) + ")"; }

}  // namespace

Tensor tour_randn(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data_ptr<float>();
  const int64_t n = t.numel();
  const uint64_t base = seed << 40;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    int64_t s = 0;
    for (uint64_t j = 0; j < 12; ++j)
      s += static_cast<int64_t>(splitmix64(base + 12 * static_cast<uint64_t>(i) + j) >> 44);
    p[i] = static_cast<float>(static_cast<double>(s - 6 * (int64_t{1} << 20)) / static_cast<double>(int64_t{1} << 20));
  }
  return t;
}

void norm_tour(std::ostream& out) {
  auto line = [&](const std::string& s) { out << s << '\n'; };
  auto show = [&](const std::string& name, const Tensor& t) { line(name + " = " + t.str()); };
  auto section = [&](const std::string& title) { line("\n== " + title + " =="); };

  line("norm_tour: the normalization snippets of the source documents");
  line("inputs: tour_randn(shape, seed), the same numbers in tapegrad and PyTorch");

  {
    section("000 (1) nn.BatchNorm2d(3) on input_data (4, 3, 32, 32)");
    const Tensor input_data = tour_randn({4, 3, 32, 32}, 1);
    nn::BatchNorm2d batch_norm(3);
    const Tensor output = batch_norm(input_data);
    line("batch_norm = " + batch_norm.repr());
    line("output.shape = " + torch_size(output));
    show("output", output);
    show("batch_norm.running_mean", batch_norm.running_mean);
    show("batch_norm.running_var", batch_norm.running_var);
    show("batch_norm.num_batches_tracked", batch_norm.num_batches_tracked);
  }
  {
    section("000 (2) nn.LayerNorm(3) on input_data (4, 3)");
    const Tensor input_data = tour_randn({4, 3}, 2);
    nn::LayerNorm layer_norm(3);
    const Tensor output = layer_norm(input_data);
    line("layer_norm = " + layer_norm.repr());
    show("input_data", input_data);
    show("output", output);
  }
  {
    section("000 (3) nn.InstanceNorm2d(3) on input_data (4, 3, 32, 32)");
    const Tensor input_data = tour_randn({4, 3, 32, 32}, 3);
    nn::InstanceNorm2d instance_norm(3);
    const Tensor output = instance_norm(input_data);
    line("instance_norm = " + instance_norm.repr());
    show("output", output);
    show("output.var(dim=(2, 3), unbiased=False)", output.var({2, 3}, /*unbiased=*/false));
  }
  {
    section("000 (4) nn.GroupNorm(3, 6) on input_data (4, 6, 32, 32)");
    const Tensor input_data = tour_randn({4, 6, 32, 32}, 4);
    nn::GroupNorm group_norm(3, 6);
    const Tensor output = group_norm(input_data);
    line("group_norm = " + group_norm.repr());
    show("output", output);
  }
  {
    section("000 (5) nn.SyncBatchNorm(3) on input_data (4, 3, 32, 32), a world of one process");
    const Tensor input_data = tour_randn({4, 3, 32, 32}, 5);
    dist::SyncBatchNorm sync_batch_norm(3, {}, std::make_shared<dist::LocalProcessGroup>());
    const Tensor output = sync_batch_norm(input_data);
    line("sync_batch_norm = " + sync_batch_norm.repr());
    show("output", output);
    show("sync_batch_norm.running_mean", sync_batch_norm.running_mean);
    show("sync_batch_norm.running_var", sync_batch_norm.running_var);
  }
  {
    section("003 nn.BatchNorm1d(64) on input_data (32, 64)");
    const Tensor input_data = tour_randn({32, 64}, 6);
    nn::BatchNorm1d batch_norm(64);
    const Tensor output = batch_norm(input_data);
    line(torch_size(output));
    show("output", output);
    show("batch_norm.running_var[:8]", batch_norm.running_var.slice(0, 0, 8));
  }
  {
    section("003 nn.LayerNorm(64) on input_data (32, 64)");
    const Tensor input_data = tour_randn({32, 64}, 7);
    nn::LayerNorm layer_norm(64);
    const Tensor output = layer_norm(input_data);
    line(torch_size(output));
    show("output", output);
  }
  {
    section(
        "003 GroupNorm(num_groups=4, num_channels=64) by hand, next to nn.GroupNorm(4, 64), on inputs (32, 64, 32, "
        "32)");
    const Tensor inputs = tour_randn({32, 64, 32, 32}, 8);
    HandGroupNorm group_norm(/*num_groups=*/4, /*num_channels=*/64);
    const Tensor outputs = group_norm(inputs);
    line(torch_size(outputs));
    nn::GroupNorm builtin(4, 64);
    const Tensor expected = builtin(inputs);
    show("hand:    outputs", outputs);
    show("builtin: outputs", expected);
    show("max |hand - builtin|", max((outputs - expected).abs()));
  }
  {
    section("004 nn.GroupNorm(num_groups=4, num_channels=64) on x (2, 64, 16, 16, 16)");
    line(
        "note: the document's x is (32, 64, 128, 128, 128), 17 GB per float32 tensor; run here on (2, 64, 16, 16, "
        "16)");
    const Tensor x = tour_randn({2, 64, 16, 16, 16}, 9);
    nn::GroupNorm gn(/*num_groups=*/4, /*num_channels=*/64);
    const Tensor y = gn(x);
    line("y.shape = " + torch_size(y));
    show("y", y);
  }
  {
    // Document 002 prints with print("name = ", t): two arguments, so two spaces.
    section("002 nn.BatchNorm2d(num_features=2, eps=0, momentum=0) on data, and by hand");
    Tensor data = Tensor::ones({2, 2, 3, 4});
    data.select(0, 0).select(0, 0).select(0, 0).select(0, 0).fill_(25);
    line("data =  " + data.str());
    line("\n");
    line("=========================使用封装的BatchNorm2d()计算================================");
    nn::BatchNorm2d BN(2, {.eps = 0, .momentum = 0.0});
    const Tensor BN_data = BN(data);
    line("BN_data =  " + BN_data.str());
    line("\n");
    line("=========================自行计算================================");
    // 1. the same channel of both samples side by side; 2. its mean; 3. its biased variance;
    // 4. the formula applied to the first element.
    const Tensor x = cat({data.select(0, 0).select(0, 0), data.select(0, 1).select(0, 0)}, /*dim=*/1);
    const Tensor x_mean = x.mean();
    const Tensor x_var = var(x, {}, /*unbiased=*/false);
    const Tensor bn_first = ((data.select(0, 0).select(0, 0).select(0, 0).select(0, 0) - x_mean) / pow(x_var, 0.5)) *
                                BN.weight.select(0, 0) +
                            BN.bias.select(0, 0);
    line("bn_first =  " + bn_first.str());
  }
}

}  // namespace tapegrad::examples
