// train_cnn: the documents' CNN (Conv2d 3->64 3x3 pad 1, a normalization, ReLU, MaxPool2d 2,
// Linear 64*16*16 -> 10) trained on a folder of images: DIR/train/<class>/... and DIR/test/<class>/...
// Without --data it trains on Fashion-MNIST from Debian's dataset-fashion-mnist, exported once as such
// a folder, so the same code path serves your own images.
//
//   train_cnn [--data DIR] [--model bn|in|gn|sync] [--epochs 1] ...     train and evaluate
//   train_cnn predict --checkpoint FILE IMAGE...                         classify images
//   mpirun -np 2 train_cnn ...                                           data-parallel (rank 0 reports)
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/dataset.h>
#include <tapegrad/data/idx.h>
#include <tapegrad/data/transforms.h>
#include <tapegrad/dist/ddp.h>
#include <tapegrad/dist/sync_batch_norm.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/conv.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/optim/sgd.h>

#include <CLI/CLI.hpp>
#include <common/cli.h>
#include <common/models.h>
#include <common/report.h>
#include <fmt/core.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>

using namespace tapegrad;
namespace fs = std::filesystem;

using examples::CNN;

namespace {

// Images become 3x32x32 as the model expects: 3 channels (gray replicated), bilinear resize,
// normalized with mean 0.5 and std 0.5.
data::Transform cnn_transform() {
  return data::Compose({data::ToTensor(), data::Resize(32, 32), data::Normalize({0.5, 0.5, 0.5}, {0.5, 0.5, 0.5})});
}

std::string default_data_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base = xdg ? fs::path(xdg) : home ? fs::path(home) / ".cache" : fs::temp_directory_path();
  return (base / "tapegrad" / "fashion-mnist").string();
}

// Fashion-MNIST from Debian's package, exported once as an image folder.
std::string prepare_fashion_mnist(bool verbose) {
  const std::string src = "/usr/share/datasets/fashion-mnist/", root = default_data_dir();
  TG_CHECK(fs::exists(src + "train-images-idx3-ubyte.gz"),
           "train_cnn: no --data given and Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or "
           "scripts/setup.sh --with-data)");
  fs::create_directories(root);
  for (auto [split, prefix] : {std::pair{"train", "train"}, std::pair{"test", "t10k"}}) {
    const std::string dir = root + "/" + split;
    if (verbose && !fs::exists(dir)) fmt::print("exporting Fashion-MNIST {} images to {} (once)\n", split, dir);
    data::export_idx_image_folder(src + prefix + "-images-idx3-ubyte.gz", src + prefix + "-labels-idx1-ubyte.gz", dir,
                                  data::fashion_mnist_classes());
  }
  return root;
}

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<int64_t>> confusion;
};

Evaluation evaluate(nn::Module& model, data::DataLoader& loader, int64_t classes) {
  autograd::NoGradGuard ng;
  model.eval();
  Evaluation e;
  e.confusion.assign(static_cast<size_t>(classes), std::vector<int64_t>(static_cast<size_t>(classes), 0));
  int64_t n = 0, correct = 0;
  for (auto& batch : loader.epoch(0)) {
    Tensor logits = model(batch.data);
    e.loss += cross_entropy(logits, batch.labels, {}, -100, Reduction::Sum).item();
    auto pred = argmax(logits, 1).to_vector<int64_t>();
    auto truth = batch.labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) {
      e.confusion[static_cast<size_t>(truth[i])][static_cast<size_t>(pred[i])] += 1;
      correct += pred[i] == truth[i];
    }
    n += static_cast<int64_t>(pred.size());
  }
  model.train();
  e.loss /= std::max<int64_t>(n, 1);
  e.accuracy = static_cast<double>(correct) / std::max<int64_t>(n, 1);
  return e;
}

// A fixed, seeded subset of the dataset (for --limit), sharded over the ranks like the full set.
class SubsetSampler : public data::Sampler {
 public:
  SubsetSampler(std::vector<int64_t> subset, int64_t replicas, int64_t rank, uint64_t seed)
      : subset_(std::move(subset)), inner_(static_cast<int64_t>(subset_.size()), replicas, rank, true, seed) {}
  std::vector<int64_t> indices(int64_t epoch) const override {
    std::vector<int64_t> out = inner_.indices(epoch);
    for (int64_t& i : out) i = subset_[static_cast<size_t>(i)];
    return out;
  }
  int64_t size() const override { return inner_.size(); }

 private:
  std::vector<int64_t> subset_;
  data::DistributedSampler inner_;
};

int predict(const std::string& checkpoint, const std::vector<std::string>& images) {
  SafetensorsFile file = load_safetensors(checkpoint);
  const std::string norm = file.metadata.count("model") ? file.metadata.at("model") : "bn";
  std::vector<std::string> classes;
  for (size_t i = 0; file.metadata.count(fmt::format("class{}", i)); ++i)
    classes.push_back(file.metadata.at(fmt::format("class{}", i)));
  TG_CHECK(!classes.empty(), "train_cnn predict: '{}' is not a train_cnn checkpoint (no class names)", checkpoint);
  CNN model(norm == "sync" ? "bn" : norm, static_cast<int64_t>(classes.size()));
  NamedTensors state;
  for (auto& [k, v] : file.tensors)
    if (k.rfind("model.", 0) == 0) state.emplace_back(k.substr(6), v);
  model.load_state_dict(state);
  model.eval();
  autograd::NoGradGuard ng;
  Generator gen(0);
  for (const std::string& path : images) {
    Tensor x = data::apply_transform(cnn_transform(), data::convert_channels(data::load_image(path), 3), gen);
    Tensor p = softmax(model(x.unsqueeze(0)), 1).squeeze(0);
    const auto k = argmax(p).item<int64_t>();
    fmt::print("{}: {} ({:.1f}%)\n", path, classes[static_cast<size_t>(k)],
               100 * p.to_vector<double>()[static_cast<size_t>(k)]);
  }
  return 0;
}

// The metrics lines of epochs before `first_epoch` already in `path` (so that a resumed run's curves
// show the whole history). Lines this program did not write are ignored.
std::vector<examples::EpochMetrics> read_metrics(const std::string& path, int64_t first_epoch) {
  std::vector<examples::EpochMetrics> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    examples::EpochMetrics m;
    long long epoch = 0;
    if (std::sscanf(line.c_str(),
                    "{\"epoch\": %lld, \"train_loss\": %lf, \"test_loss\": %lf, \"test_acc\": %lf, \"seconds\": %lf, "
                    "\"images_per_second\": %lf",
                    &epoch, &m.train_loss, &m.test_loss, &m.test_acc, &m.seconds, &m.items_per_second) == 6 &&
        epoch < first_epoch) {
      m.epoch = epoch;
      out.push_back(m);
    }
  }
  return out;
}

// The parts of a checkpoint: the model's state and the optimizer's.
struct Checkpoint {
  NamedTensors model, optimizer;
  std::map<std::string, std::string> metadata;
};

Checkpoint read_checkpoint(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  Checkpoint ck;
  for (auto& [k, v] : file.tensors) {
    if (k.rfind("model.", 0) == 0) ck.model.emplace_back(k.substr(6), v);
    if (k.rfind("optimizer.", 0) == 0) ck.optimizer.emplace_back(k.substr(10), v);
  }
  ck.metadata = std::move(file.metadata);
  return ck;
}


// OpenMP threads that spin while waiting for work take the cores the data-loading workers need (and a
// shared machine's). Passive waiting is the default here; the OpenMP runtime reads OMP_WAIT_POLICY
// when it starts, before main, so the program starts itself again with it set. An explicit
// OMP_WAIT_POLICY is left alone.
void default_passive_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: then run on with the runtime as it is
}

}  // namespace

int main(int argc, char** argv) try {
  default_passive_wait(argv);
  CLI::App app{"Train the documents' CNN on an image folder (default: Fashion-MNIST)"};
  std::string data_dir, model_kind = "bn", save_path, resume_path, metrics_path;
  int64_t epochs = 1, batch_size = 64, limit = 0, workers = 2;
  int threads = 0;
  double lr = 0.01, momentum = 0.9, weight_decay = 0;
  uint64_t seed = 0;
  bool strict = false, skip_nonfinite = false;
  app.add_option("--data", data_dir, "folder with train/<class>/... and test/<class>/...");
  app.add_option("--model", model_kind, "normalization: bn, in, gn or sync")
      ->check(CLI::IsMember({"bn", "in", "gn", "sync"}));
  app.add_option("--epochs", epochs)->check(examples::positive_int());
  app.add_option("--batch-size", batch_size)->check(examples::positive_int());
  app.add_option("--lr", lr)->check(examples::non_negative_number());
  app.add_option("--momentum", momentum)->check(examples::non_negative_number());
  app.add_option("--weight-decay", weight_decay)->check(examples::non_negative_number());
  app.add_option("--seed", seed);
  app.add_option("--threads", threads, "OpenMP threads (default: all cores)")->check(examples::non_negative_int());
  app.add_option("--workers", workers, "data loading threads")->check(examples::non_negative_int());
  app.add_option("--limit", limit, "train on N images only (a seeded random subset), for quick runs")
      ->check(examples::non_negative_int());
  app.add_option("--save", save_path, "checkpoint file written after each epoch");
  app.add_option("--resume", resume_path, "checkpoint to continue from");
  app.add_option("--metrics", metrics_path, "append one JSON line per epoch (curves go next to it as .svg)");
  app.add_flag("--strict", strict, "an unreadable image is an error instead of a skipped file");
  app.add_flag("--skip-nonfinite", skip_nonfinite, "skip a batch whose loss is NaN or infinite instead of stopping");
  auto* pred = app.add_subcommand("predict", "classify images with a saved checkpoint");
  std::string checkpoint;
  std::vector<std::string> images;
  pred->add_option("--checkpoint", checkpoint)->required();
  pred->add_option("images", images)->required();
  CLI11_PARSE(app, argc, argv);
  if (*pred) return predict(checkpoint, images);

  if (threads > 0) omp_set_num_threads(threads);
  auto group = dist::world();
  const bool rank0 = group->rank() == 0;
  // Our own export is known to decode; a folder from elsewhere is decoded once up front, so that a
  // corrupt image is named and skipped (or, with --strict, refused) before training starts.
  data::ImageCheck check = data::ImageCheck::Decode;
  if (data_dir.empty()) {
    data_dir = prepare_fashion_mnist(rank0);
    check = data::ImageCheck::Header;
  }
  for (const char* split : {"train", "test"})
    TG_CHECK(fs::is_directory(fs::path(data_dir) / split),
             "train_cnn: '{}' has no {} folder; expected {}/train/<class>/<images> and {}/test/<class>/<images>",
             data_dir, split, data_dir, data_dir);

  // Only rank 0 prints the warnings about skipped files.
  auto warn = [rank0](const std::string& m) {
    if (rank0) fmt::print(stderr, "warning: {}\n", m);
  };
  data::ImageFolderOptions fo{.channels = 3, .check = check, .strict = strict, .warn = warn};
  auto train_set = std::make_shared<data::ImageFolder>(data_dir + "/train", cnn_transform(), fo);
  auto test_set = std::make_shared<data::ImageFolder>(data_dir + "/test", cnn_transform(), fo);
  TG_CHECK(train_set->classes() == test_set->classes(),
           "train_cnn: the test classes ({}) differ from the training classes ({})",
           fmt::join(test_set->classes(), ", "), fmt::join(train_set->classes(), ", "));
  const auto num_classes = static_cast<int64_t>(train_set->classes().size());
  const int64_t n_train = limit > 0 ? std::min(limit, train_set->size()) : train_set->size();

  manual_seed(seed);
  auto model = std::make_shared<CNN>(model_kind, num_classes);
  dist::DistributedDataParallel ddp(model, group);
  optim::SGD opt(model->parameters(), {.lr = lr, .momentum = momentum, .weight_decay = weight_decay});
  nn::CrossEntropyLoss criterion;

  int64_t start_epoch = 0;
  if (!resume_path.empty()) {
    Checkpoint ck = read_checkpoint(resume_path);
    const std::string kind = ck.metadata.count("model") ? ck.metadata.at("model") : "unknown";
    TG_CHECK(ck.metadata.count("epoch") && ck.metadata.count("param_groups"),
             "train_cnn: '{}' is not a train_cnn checkpoint (no epoch or optimizer state)", resume_path);
    try {
      model->load_state_dict(ck.model);
    } catch (const Error& e) {
      fail("train_cnn: cannot resume --model {} with {} classes from '{}' (a --model {} checkpoint): {}", model_kind,
           num_classes, resume_path, kind, e.what());
    }
    TG_CHECK(kind == model_kind || (kind == "sync" && model_kind == "bn") || (kind == "bn" && model_kind == "sync"),
             "train_cnn: '{}' holds a --model {} checkpoint, not {}", resume_path, kind, model_kind);
    opt.load_state_dict(SafetensorsFile{ck.optimizer, {{"param_groups", ck.metadata.at("param_groups")}}});
    start_epoch = std::stoll(ck.metadata.at("epoch"));
    if (rank0) fmt::print("resumed from {} after epoch {}\n", resume_path, start_epoch);
  }

  // Epoch e is shuffled by DistributedSampler's generator seeded seed + e. --limit takes a seeded random
  // subset (an image folder lists its files class by class) from a stream of its own: drawn from
  // seed + 1, it was epoch 1's permutation too, so epoch 1 visited the images in the order
  // subset[subset[i]], correlated with epoch 0's. Without --limit every image is used as listed.
  std::vector<int64_t> subset(static_cast<size_t>(train_set->size()));
  std::iota(subset.begin(), subset.end(), int64_t{0});
  if (n_train < train_set->size()) {
    Generator subset_gen(seed ^ 0x6c696d6974ULL);  // "limit"
    subset = data::randperm(train_set->size(), subset_gen);
    subset.resize(static_cast<size_t>(n_train));
  }
  auto sampler = std::make_shared<SubsetSampler>(subset, group->size(), group->rank(), seed);
  data::DataLoader train_loader(train_set, {.batch_size = batch_size, .seed = seed, .num_workers = workers}, sampler);
  data::DataLoader test_loader(test_set, {.batch_size = 256, .num_workers = workers});
  if (rank0)
    fmt::print("{}\ntraining on {} images ({} classes) from {}, testing on {}, {} rank(s), {} threads\n", model->repr(),
               n_train, num_classes, data_dir, test_set->size(), group->size(), omp_get_max_threads());

  std::vector<examples::EpochMetrics> history;
  if (!metrics_path.empty() && start_epoch > 0) history = read_metrics(metrics_path, start_epoch + 1);
  for (int64_t epoch = start_epoch; epoch < start_epoch + epochs; ++epoch) {
    examples::Progress progress(fmt::format("epoch {}", epoch + 1), train_loader.size(), rank0, "images");
    data::DataLoader::Epoch batches = train_loader.epoch(epoch);
    double data_wait = 0;
    int64_t skipped = 0;
    for (int64_t step = 1;; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      std::optional<data::Batch> batch = batches.next();
      data_wait += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!batch) break;
      opt.zero_grad();
      Tensor loss = criterion(ddp(batch->data), batch->labels);
      const double l = loss.item();
      // Every rank takes the same decision, so that none waits for the others' gradients alone.
      bool finite = std::isfinite(l);
      if (group->size() > 1) {
        Tensor bad = Tensor::scalar(finite ? 0.0 : 1.0);
        group->all_reduce(bad);
        finite = bad.item() == 0;
      }
      if (!finite) {
        TG_CHECK(skip_nonfinite,
                 "train_cnn: the loss is {} at epoch {}, step {}; pass --skip-nonfinite to skip such batches",
                 std::isfinite(l) ? "not finite on another rank"
                 : std::isnan(l)  ? "nan"
                                  : fmt::format("{}", l),
                 epoch + 1, step);
        ++skipped;
        continue;
      }
      loss.backward();
      ddp.sync_gradients();
      opt.step();
      progress.step(l, batch->labels.numel());
    }
    const double seconds = progress.finish();
    if (skipped > 0 && rank0)
      fmt::print(stderr, "warning: skipped {} of {} batches of epoch {} whose loss was not finite\n", skipped,
                 train_loader.size(), epoch + 1);
    if (!rank0) continue;
    Evaluation ev = evaluate(*model, test_loader, num_classes);
    examples::EpochMetrics m{
        epoch + 1, progress.running_loss(), ev.loss, ev.accuracy, seconds, static_cast<double>(n_train) / seconds,
        data_wait};
    history.push_back(m);
    fmt::print(
        "epoch {}  train_loss {:.4f}  test_loss {:.4f}  test_acc {:.2f}%  {:.1f}s ({:.0f} images/s, "
        "{:.1f}s waiting for data)\n",
        m.epoch, m.train_loss, m.test_loss, 100 * m.test_acc, m.seconds, m.items_per_second, data_wait);
    fmt::print("{}", examples::format_confusion(ev.confusion, train_set->classes()));
    if (!metrics_path.empty()) {
      examples::append_metrics(metrics_path, m);
      const std::string svg = fs::path(metrics_path).replace_extension(".svg").string();
      examples::write_curves_svg(svg, history, "train_cnn --model " + model_kind);
    }
    if (!save_path.empty()) {
      // One file written whole (temporary file, then rename): never a partial checkpoint.
      NamedTensors all;
      for (auto& [k, v] : model->state_dict()) all.emplace_back("model." + k, v);
      SafetensorsFile os = opt.state_dict();
      for (auto& [k, v] : os.tensors) all.emplace_back("optimizer." + k, v);
      std::map<std::string, std::string> meta = os.metadata;
      meta["model"] = model_kind;
      meta["epoch"] = std::to_string(epoch + 1);
      for (size_t i = 0; i < train_set->classes().size(); ++i)
        meta[fmt::format("class{}", i)] = train_set->classes()[i];
      save_safetensors(save_path, all, meta);
    }
  }
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
