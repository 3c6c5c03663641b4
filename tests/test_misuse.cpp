// Misuse, table-driven: every row is a wrong call (ops, layers, optimizers, schedulers, files,
// checkpoints, the data pipeline, the train_cnn program) and the tapegrad::Error message it must give.
// A message names the operation and the problem; the rows pin the text.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/dataset.h>
#include <tapegrad/data/idx.h>
#include <tapegrad/data/image.h>
#include <tapegrad/data/transforms.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/layers/rnn.h>
#include <tapegrad/optim/optim.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>

#include "support/fixtures.h"

using namespace tapegrad;
namespace fs = std::filesystem;

namespace {

// A folder for the file rows, created once; removed at exit.
const fs::path& scratch() {
  static struct Dir {
    fs::path path;
    Dir() {
      std::random_device rd;
      path = fs::temp_directory_path() / fmt::format("tapegrad-misuse-{}-{:08x}", ::getpid(), rd());
      fs::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } dir;
  return dir.path;
}

std::string file(const std::string& name) { return (scratch() / name).string(); }

void write(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// A real checkpoint of a Linear(4, 3) model and its SGD state, and broken copies of it.
std::string good_checkpoint() {
  const std::string path = file("good.safetensors");
  if (!fs::exists(path)) {
    nn::Linear model(4, 3);
    save_safetensors(path, model.state_dict(), {{"kind", "linear"}});
  }
  return path;
}

std::string truncated_checkpoint() {
  const std::string path = file("truncated.safetensors");
  const std::string bytes = read_file(good_checkpoint());
  write(path, bytes.substr(0, bytes.size() - 10));
  return path;
}

struct Row {
  std::string what;                 // the misuse, in words
  std::function<void()> run;        // must throw tapegrad::Error ...
  std::function<std::string()> message;  // ... with exactly this message
};

std::function<std::string()> is(std::string m) {
  return [m] { return m; };
}

std::vector<Row> rows() {
  std::vector<Row> r;
  auto row = [&](std::string what, std::function<void()> run, std::function<std::string()> message) {
    r.push_back({std::move(what), std::move(run), std::move(message)});
  };
  // ---- ops ----
  row("matmul with inner sizes that differ", [] { matmul(Tensor::ones({2, 4}), Tensor::ones({3, 5})); },
      is("matmul: mat1 and mat2 shapes cannot be multiplied (2x4 and 3x5)"));
  row("add of shapes that do not broadcast", [] { add(Tensor::ones({3, 4}), Tensor::ones({3})); },
      is("add: The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1 (shapes (3, 4) and (3,))"));
  row("exp of an integer tensor", [] { exp(Tensor::arange(3)); },
      is("exp: expected a floating point tensor (float32 or float64), got int64"));
  row("view to a size that does not fit", [] { Tensor::ones({3, 4}).view({5, -1}); },
      is("view: shape '[5, -1]' is invalid for input of size 12"));
  row("softmax over a dimension that does not exist", [] { softmax(Tensor::ones({2, 3}), 2); },
      is("softmax: Dimension out of range (expected to be in range of [-2, 1], but got 2)"));
  row("sum over a dimension that does not exist", [] { sum(Tensor::ones({2, 3}), {3}); },
      is("sum: Dimension out of range (expected to be in range of [-2, 1], but got 3)"));
  row("cat of tensors whose other sizes differ", [] { cat({Tensor::ones({2, 3}), Tensor::ones({2, 4})}, 0); },
      is("cat: Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1 in the list."));
  row("cat of nothing", [] { cat({}, 0); }, is("cat: expected a non-empty list of Tensors"));
  row("conv2d with a 3D weight", [] { conv2d(Tensor::ones({1, 3, 8, 8}), Tensor::ones({4, 3, 3})); },
      is("conv2d: Expected 4D weight (out_channels, in_channels/groups, kH, kW), but got weight of size [4, 3, 3]"));
  row("conv2d whose input channels differ from the weight's", [] { conv2d(Tensor::ones({1, 2, 8, 8}), Tensor::ones({4, 3, 3, 3})); },
      is("conv2d: Given groups=1, weight of size [4, 3, 3, 3], expected input[1, 2, 8, 8] to have 3 channels, but got 2 channels instead"));
  row("max_pool2d with a kernel larger than the input", [] { max_pool2d(Tensor::ones({1, 1, 2, 2}), {3, 3}); },
      is("max_pool2d: Given input size: (1x2x2). Calculated output size: (1x0x0). Output size is too small"));
  row("cross_entropy with a class index out of range", [] { cross_entropy(Tensor::zeros({2, 3}), Tensor::of({0, 3}, {.dtype = kInt64})); },
      is("cross_entropy: Target 3 is out of bounds."));
  row("cross_entropy with float targets of another shape (taken for class indices)",
      [] { cross_entropy(Tensor::zeros({2, 3}), Tensor::zeros({2, 4})); },
      is("cross_entropy: 0D or 1D target tensor expected, multi-target not supported"));
  row("mse_loss of shapes that do not broadcast", [] { mse_loss(Tensor::zeros({2, 3}), Tensor::zeros({4})); },
      is("mse_loss: The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1 (shapes (2, 3) and (4,))"));
  row("backward of a non-scalar without a gradient", [] {
        Tensor x = Tensor::ones({3}, {.requires_grad = true});
        (x * 2.0).backward();
      },
      is("backward: grad can be implicitly created only for scalar outputs (got shape (3,))"));
  row("backward of a tensor that does not require grad", [] { Tensor::ones({1}).sum().backward(); },
      is("backward: element 0 of tensors does not require grad and does not have a grad_fn"));
  row("item of a tensor with several elements", [] { (void)Tensor::ones({2}).item(); },
      is("item: a Tensor with 2 elements cannot be converted to Scalar"));
  row("index_select with an index out of range", [] { index_select(Tensor::ones({3, 2}), 0, Tensor::of({0, 5}, {.dtype = kInt64})); },
      is("index_select: index out of range in self"));
  row("embedding with an index out of range", [] { embedding(Tensor::ones({4, 2}), Tensor::of({1, 4}, {.dtype = kInt64})); },
      is("embedding: index out of range in self"));
  row("randint with an empty range", [] { Tensor::randint(3, 3, {2}); },
      is("randint: expected low < high, got low=3 and high=3"));
  // ---- layers ----
  row("Linear fed the wrong number of features", [] { nn::Linear(4, 3).forward(Tensor::ones({2, 5})); },
      is("linear: mat1 and mat2 shapes cannot be multiplied (2x5 and 4x3)"));
  row("Conv2d with channels not divisible by groups", [] { nn::Conv2d(3, 6, {.kernel_size = 3, .groups = 2}); },
      is("Conv2d: in_channels must be divisible by groups"));
  row("BatchNorm2d fed a 2D input", [] { nn::BatchNorm2d(3).forward(Tensor::ones({2, 3})); },
      is("BatchNorm2d: expected 4D input (got 2D input)"));
  row("BatchNorm1d fed the wrong number of features", [] { nn::BatchNorm1d(3).forward(Tensor::ones({2, 4})); },
      is("batch_norm: running_mean should contain 4 elements not 3"));
  row("BatchNorm1d training on one value per channel", [] { nn::BatchNorm1d(3).forward(Tensor::ones({1, 3})); },
      is("batch_norm: Expected more than 1 value per channel when training, got input size torch.Size([1, 3])"));
  row("GroupNorm with channels not divisible by groups", [] { nn::GroupNorm(3, 4); },
      is("GroupNorm: num_channels must be divisible by num_groups"));
  row("LayerNorm fed a different trailing shape", [] { nn::LayerNorm(Shape{4}).forward(Tensor::ones({2, 5})); },
      is("layer_norm: Given normalized_shape=[4], expected input with shape [*, 4], but got input of size[2, 5]"));
  row("Dropout with p outside [0, 1]", [] { nn::Dropout(1.5); },
      is("Dropout: dropout probability has to be between 0 and 1, but got 1.5"));
  row("LSTM fed the wrong input size", [] { nn::LSTM(4, 8).forward(Tensor::ones({5, 2, 3})); },
      is("LSTM: input.size(-1) must be equal to input_size. Expected 4, got 3"));
  row("LSTM with zero hidden units", [] { nn::LSTM(4, 0); }, is("LSTM: hidden_size must be greater than zero"));
  row("Sequential indexed past its end", [] { nn::Sequential(std::make_shared<nn::ReLU>())[3]; },
      is("Sequential: index 3 is out of range"));
  row("Module::load_state_dict with a missing key", [] {
        nn::Linear m(4, 3);
        NamedTensors sd = m.state_dict();
        sd.pop_back();
        m.load_state_dict(sd);
      },
      is("load_state_dict: Error(s) in loading state_dict for Linear:\n\tMissing key(s) in state_dict: \"bias\". "));
  row("Module::load_state_dict with a tensor of another shape", [] {
        nn::Linear m(4, 3);
        m.load_state_dict({{"weight", Tensor::zeros({3, 5})}, {"bias", Tensor::zeros({3})}});
      },
      is("load_state_dict: Error(s) in loading state_dict for Linear:\n\tsize mismatch for weight: copying a param with "
         "shape torch.Size([3, 5]) from checkpoint, the shape in current model is torch.Size([3, 4])."));
  // ---- optimizers and schedulers ----
  row("SGD with a negative learning rate", [] { optim::SGD({Tensor::ones({2}, {.requires_grad = true})}, {.lr = -1}); },
      is("SGD: Invalid learning rate: -1"));
  row("SGD without parameters", [] { optim::SGD(std::vector<Tensor>{}); }, is("SGD: optimizer got an empty parameter list"));
  row("SGD of a non-leaf tensor", [] {
        Tensor w = Tensor::ones({2}, {.requires_grad = true});
        optim::SGD({w * 2.0});
      },
      is("SGD: can't optimize a non-leaf Tensor"));
  row("Adam with beta1 = 1", [] { optim::Adam({Tensor::ones({2}, {.requires_grad = true})}, {.betas = {1.0, 0.999}}); },
      is("Adam: Invalid beta parameter at index 0: 1"));
  row("RMSprop with a negative alpha", [] { optim::RMSprop({Tensor::ones({2}, {.requires_grad = true})}, {.alpha = -1}); },
      is("RMSprop: Invalid alpha value: -1"));
  row("Adam loading an SGD state dict", [] {
        Tensor w = Tensor::ones({2}, {.requires_grad = true});
        optim::SGD sgd({w}, {.lr = 0.1, .momentum = 0.9});
        optim::Adam adam({w});
        adam.load_state_dict(sgd.state_dict());
      },
      is("Adam: load_state_dict: the state dict was saved by SGD"));
  row("SGD loading a model checkpoint instead of an optimizer's", [] {
        Tensor w = Tensor::ones({3, 4}, {.requires_grad = true});
        optim::SGD({w}).load(good_checkpoint());
      },
      is("SGD: load_state_dict: the state dict has no 'param_groups' metadata"));
  row("StepLR with step_size 0", [] {
        optim::SGD opt({Tensor::ones({2}, {.requires_grad = true})}, {.lr = 0.1});
        optim::StepLR(opt, 0);
      },
      is("StepLR: step_size must be a positive integer, got 0"));
  row("scheduler state that is not JSON", [] {
        optim::SGD opt({Tensor::ones({2}, {.requires_grad = true})}, {.lr = 0.1});
        optim::StepLR(opt, 1).load_state_dict("{not json");
      },
      is("StepLR: load_state_dict: not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 3: "
         "syntax error while parsing object key - invalid literal; last read: '{no'; expected string literal"));
  row("clip_grad_norm_ with a non-finite norm and error_if_nonfinite", [] {
        Tensor p = Tensor::ones({2}, {.requires_grad = true});
        (p * INFINITY).sum().backward();
        optim::clip_grad_norm_({p}, 1.0, 2.0, true);
      },
      is("clip_grad_norm_: The total norm of order 2.0 for gradients from `parameters` is non-finite, so it cannot be "
         "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
         "`error_if_nonfinite=False`"));
  // ---- files and checkpoints ----
  row("load_safetensors of a missing file", [] { load_safetensors(file("missing.safetensors")); },
      [] { return fmt::format("read_file: cannot open '{}': No such file or directory", file("missing.safetensors")); });
  row("load_safetensors of a truncated checkpoint", [] { load_safetensors(truncated_checkpoint()); },
      [] { return fmt::format("load_safetensors: '{}' is truncated: tensor 'bias' ends at byte 60 of a 50-byte data section", file("truncated.safetensors")); });
  row("load_safetensors of a text file", [] {
        write(file("notes.txt"), "these are not tensors\n");
        load_safetensors(file("notes.txt"));
      },
      [] { return fmt::format("load_safetensors: '{}' is truncated: header of 8241904413164529780 bytes but only 14 follow", file("notes.txt")); });
  row("load_safetensors of an empty file", [] {
        write(file("empty.safetensors"), "");
        load_safetensors(file("empty.safetensors"));
      },
      [] { return fmt::format("load_safetensors: '{}' is too short to be a safetensors file (0 bytes)", file("empty.safetensors")); });
  row("load_safetensors of a .npy file", [] {
        save_npy(file("x.npy"), Tensor::ones({2}));
        load_safetensors(file("x.npy"));
      },
      [] { return fmt::format("load_safetensors: '{}' is truncated: header of 379676406402707 bytes but only 128 follow", file("x.npy")); });
  row("load_npy of a safetensors checkpoint", [] { load_npy(good_checkpoint()); },
      [] { return fmt::format("load_npy: '{}' is not a .npy file (bad magic)", good_checkpoint()); });
  row("Module::load of a checkpoint of another model", [] { nn::Linear(5, 3).load(good_checkpoint()); },
      is("load_state_dict: Error(s) in loading state_dict for Linear:\n\tsize mismatch for weight: copying a param with "
         "shape torch.Size([3, 4]) from checkpoint, the shape in current model is torch.Size([3, 5])."));
  row("Module::load of a missing checkpoint", [] { nn::Linear(4, 3).load(file("nope.safetensors")); },
      [] { return fmt::format("read_file: cannot open '{}': No such file or directory", file("nope.safetensors")); });
  row("save_safetensors into a missing folder", [] { save_safetensors(file("no/such/dir/ck.safetensors"), {}); },
      [] {
        return fmt::format("save: cannot create a temporary file next to '{}': No such file or directory",
                           file("no/such/dir/ck.safetensors"));
      });
  row("save_safetensors with a duplicate name", [] {
        save_safetensors(file("dup.safetensors"), {{"a", Tensor::ones({1})}, {"a", Tensor::ones({1})}});
      },
      is("save_safetensors: duplicate tensor name 'a'"));
  // ---- data ----
  row("ImageFolder of a missing folder", [] { data::ImageFolder(file("no_images")); },
      [] { return fmt::format("ImageFolder: cannot open root directory '{}': No such file or directory", file("no_images")); });
  row("ImageFolder of a folder without class folders", [] {
        fs::create_directories(file("flat"));
        write(file("flat/a.png"), "x");
        data::ImageFolder(file("flat"));
      },
      [] { return fmt::format("ImageFolder: Couldn't find any class folder in {}.", file("flat")); });
  row("decode_image of bytes that are no image", [] { data::decode_image("certainly not an image"); },
      is("decode_image: cannot decode '<memory>': Image not of any known type, or corrupt"));
  row("parse_idx of a truncated file", [] { data::parse_idx(std::string("\0\0\x08\x01\0\0\0\x05", 8) + "ab"); },
      is("read_idx: '<memory>' is truncated: shape (5,) of uint8 needs 5 bytes of data, but only 2 follow the header"));
  row("TensorDataset of mismatched lengths", [] { data::TensorDataset(Tensor::ones({3, 2}), Tensor::zeros({4}, {.dtype = kInt64})); },
      is("TensorDataset: Size mismatch between tensors"));
  row("DataLoader with batch_size 0", [] {
        data::DataLoader(std::make_shared<data::TensorDataset>(Tensor::ones({3, 2}), Tensor::zeros({3}, {.dtype = kInt64})),
                         {.batch_size = 0});
      },
      is("DataLoader: batch_size should be a positive integer value, but got batch_size=0"));
  row("RandomCrop larger than the image", [] {
        Generator g;
        data::RandomCrop(32)(data::Sample(Tensor::zeros({1, 28, 28})), g);
      },
      is("RandomCrop: Required crop size (32, 32) is larger than input image size (28, 28)"));
  row("Normalize before ToTensor", [] {
        Generator g;
        data::Normalize({0.5}, {0.5})(data::Sample(data::Image(2, 2, 1)), g);
      },
      is("Normalize: expected a float tensor, got an Image (apply ToTensor() first)"));
  return r;
}

}  // namespace

TEST_CASE("misuse of the library throws tapegrad::Error naming the problem") {
  const std::vector<Row> table = rows();
  REQUIRE(table.size() >= 50);
  for (const Row& row : table) {
    DYNAMIC_SECTION(row.what) {
      std::string got = "(no exception)";
      try {
        row.run();
      } catch (const Error& e) {
        got = e.what();
      } catch (const std::exception& e) {
        got = std::string("(not a tapegrad::Error) ") + e.what();
      }
      REQUIRE(got == row.message());
    }
  }
}

// ---- the train_cnn program ----

#ifdef TAPEGRAD_TRAIN_CNN
namespace {

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr together
};

Run run_train_cnn(const std::string& args) {
  const std::string out = file("cli.out");
  const std::string cmd =
      fmt::format("cd '{}' && OMP_NUM_THREADS=1 '{}' {} >'{}' 2>&1", scratch().string(), TAPEGRAD_TRAIN_CNN, args, out);
  const int raw = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.output = read_file(out);
  return r;
}

// An image folder with one class per split, tiny PNGs.
std::string tiny_folder(const std::string& name, const std::vector<std::string>& train_classes,
                        const std::vector<std::string>& test_classes) {
  const std::string root = file(name);
  for (auto [split, classes] : {std::pair{"train", train_classes}, std::pair{"test", test_classes}}) {
    for (const std::string& c : classes) {
      fs::create_directories(root + "/" + split + "/" + c);
      data::Image img(8, 8, 1);
      data::save_png(root + "/" + split + "/" + c + "/0.png", img);
    }
  }
  return root;
}

}  // namespace

TEST_CASE("train_cnn exits non-zero naming the problem for bad options, folders and checkpoints") {
  struct Cli {
    std::string what, args;
    std::vector<std::string> says;  // the output contains each of these
  };
  const std::string folder = tiny_folder("imgs", {"a", "b"}, {"a", "b"});
  const std::string other = tiny_folder("imgs_other", {"a", "b"}, {"a", "c"});
  const std::string missing = file("no_such_data");
  const std::vector<Cli> cases = {
      {"an unknown option", "--bogus 3", {"The following arguments were not expected: 3 --bogus"}},
      {"a model that does not exist", "--model xyz --data " + folder, {"--model: xyz not in {bn,in,gn,sync}"}},
      {"zero epochs", "--epochs 0 --data " + folder, {"--epochs: expected a positive integer, got '0'"}},
      {"a batch size that is not a number", "--batch-size many --data " + folder,
       {"--batch-size: expected a positive integer, got 'many'"}},
      {"a negative learning rate", "--lr -0.1 --data " + folder, {"--lr: expected a number >= 0, got '-0.1'"}},
      {"a fractional number of workers", "--workers 1.5 --data " + folder,
       {"--workers: expected an integer >= 0, got '1.5'"}},
      // The folder and what is missing in it, in an "error: " line.
      {"a data folder that does not exist", "--data " + missing, {"error: ", missing, "train"}},
      {"test classes that differ from the training classes", "--data " + other,
       {"error: train_cnn: the test classes (a, c) differ from the training classes (a, b)"}},
      {"resuming from a missing checkpoint", "--data " + folder + " --resume " + file("none.safetensors"),
       {fmt::format("error: read_file: cannot open '{}': No such file or directory", file("none.safetensors"))}},
      {"resuming from a checkpoint that is not train_cnn's", "--data " + folder + " --resume " + good_checkpoint(),
       {fmt::format("error: train_cnn: '{}'", good_checkpoint()), "checkpoint"}},
      {"predict without a checkpoint", "predict x.png", {"--checkpoint is required"}},
      {"predict with a truncated checkpoint", "predict --checkpoint " + truncated_checkpoint() + " x.png",
       {fmt::format("error: load_safetensors: '{}' is truncated: tensor 'bias' ends at byte 60 of a 50-byte data section",
                    file("truncated.safetensors"))}},
  };
  for (const Cli& c : cases) {
    DYNAMIC_SECTION(c.what) {
      const Run r = run_train_cnn(c.args);
      INFO("train_cnn " << c.args << "\n" << r.output);
      REQUIRE(r.status != 0);
      REQUIRE(r.status < 128);  // an error exit, not a crash
      for (const std::string& part : c.says) REQUIRE(r.output.find(part) != std::string::npos);
    }
  }
}
#endif
