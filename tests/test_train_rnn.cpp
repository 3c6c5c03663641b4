// examples/train_rnn: its training step against PyTorch, and the program itself on tiny word lists of its
// own (metrics, checkpoints and resuming, predict, errors, a non-finite loss).
#include <common/models.h>
#include <sys/wait.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/optim/adam.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "support/fixtures.h"

using namespace tapegrad;
namespace fs = std::filesystem;

namespace {

NamedTensors with_prefix(const testing::Fixture& fx, const std::string& prefix, const nn::Module& m) {
  NamedTensors out;
  for (const auto& [k, v] : m.state_dict()) out.emplace_back(k, fx[prefix + k]);
  return out;
}

}  // namespace

TEST_CASE("RNNWithLayerNorm with cross-entropy and Adam follows PyTorch step by step") {
  testing::Fixture fx("train_rnn.safetensors");
  examples::RNNWithLayerNorm model(100, 16, 10);
  model.load_state_dict(with_prefix(fx, "init.", model));
  optim::Adam opt(model.parameters(), {.lr = 2e-3});
  for (int s = 0; fx.has(fmt::format("step{}.loss", s)); ++s) {
    // One-hot batch from character indices; index 0 is padding (an all-zero step).
    const Tensor chars = fx[fmt::format("step{}.chars", s)];
    const int64_t L = chars.size(0), N = chars.size(1);
    Tensor x = Tensor::zeros({L, N, 100});
    const auto idx = chars.to_vector<int64_t>();
    for (int64_t i = 0; i < L * N; ++i)
      if (idx[static_cast<size_t>(i)] > 0) x.data_ptr<float>()[i * 100 + idx[static_cast<size_t>(i)]] = 1;
    opt.zero_grad();
    Tensor loss = cross_entropy(model(x), fx[fmt::format("step{}.labels", s)]);
    INFO("step " << s);
    testing::require_close(loss, fx[fmt::format("step{}.loss", s)], 1e-5, 1e-6);
    loss.backward();
    if (s == 0)
      for (const auto& [k, p] : model.named_parameters()) {
        INFO("gradient of " << k);
        testing::require_close(p.grad(), fx["grad0." + k], 1e-4, 1e-6);
      }
    opt.step();
  }
  for (const auto& [k, v] : model.state_dict()) {
    INFO("parameter " << k << " after the last step");
    testing::require_close(v, fx["final." + k], 1e-4, 1e-5);
  }
}

// ---- the program ----

namespace {

struct Run {
  int code;
  std::string output;  // stdout and stderr
};

Run run_train_rnn(const std::string& args) {
  const std::string cmd = std::string(TAPEGRAD_TRAIN_RNN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Ten word lists under the default languages' file names, each language built from its own letters so
// that the task is learnable; with an apostrophe word, a duplicate and capitals to be cleaned away.
class TinyWordLists {
 public:
  TinyWordLists() : dir_(fs::temp_directory_path() / fmt::format("tapegrad_train_rnn_{}", getpid())) {
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "dict");
    const std::vector<std::string> langs{"american-english", "ngerman", "french", "italian", "spanish",
                                         "portuguese",       "dutch",   "danish", "swedish", "polish"};
    const std::string letters = "abcdefghijklmnopqrstuvwxyz";
    std::mt19937 rng(7);
    for (size_t l = 0; l < langs.size(); ++l) {
      std::ofstream f(dir_ / "dict" / langs[l]);
      f << "Don't\n";
      const std::string own = letters.substr(2 * l, 6);
      for (int w = 0; w < 60; ++w) {
        std::string word;
        const int len = 3 + static_cast<int>(rng() % 22);  // some longer than the 20 steps
        for (int c = 0; c < len; ++c) word += own[rng() % own.size()];
        f << word << "\n";
        if (w == 0) f << "  " << word << "\n";  // a duplicate once stripped
      }
      f << (l == 1 ? "Straße\n" : "ABC\n");
    }
  }
  ~TinyWordLists() { fs::remove_all(dir_); }
  std::string dict() const { return (dir_ / "dict").string(); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // The options every quick run shares.
  std::string base() const {
    return "--dict-dir " + dict() + " --train-per-lang 30 --test-per-lang 10 --threads 1 --quiet";
  }

 private:
  fs::path dir_;
};

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream f(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace

TEST_CASE("train_rnn writes a metrics line per epoch and a per-language accuracy table") {
  TinyWordLists w;
  const Run r = run_train_rnn(w.base() + " --epochs 2 --metrics " + w.path("m.jsonl"));
  INFO(r.output);
  REQUIRE(r.code == 0);
  const auto m = read_metrics(w.path("m.jsonl"));
  REQUIRE(m.size() == 2);
  for (size_t i = 0; i < m.size(); ++i) {
    REQUIRE(m[i]["epoch"] == static_cast<int>(i) + 1);
    for (const char* k : {"train_loss", "test_loss", "test_acc", "seconds"}) REQUIRE(m[i].contains(k));
    REQUIRE(m[i]["test_acc"].get<double>() >= 0);
    REQUIRE(m[i]["test_acc"].get<double>() <= 1);
    REQUIRE(std::isfinite(m[i]["train_loss"].get<double>()));
  }
  REQUIRE(fs::exists(w.path("m.svg")));
  REQUIRE(r.output.find("300 training and 100 test words") != std::string::npos);
  REQUIRE(r.output.find("test accuracy per language after epoch 2") != std::string::npos);
  for (const char* lang : {"american-english", "polish"}) REQUIRE(r.output.find(lang) != std::string::npos);
}

TEST_CASE("train_rnn resumed from a checkpoint gives the uninterrupted run's results bit for bit") {
  TinyWordLists w;
  const std::string base = w.base() + " --seed 3 --batch-size 32";
  REQUIRE(run_train_rnn(base + " --epochs 3 --save " + w.path("full.st") + " --metrics " + w.path("full.jsonl")).code ==
          0);
  REQUIRE(run_train_rnn(base + " --epochs 1 --save " + w.path("part.st")).code == 0);
  const Run r = run_train_rnn(base + " --epochs 3 --resume " + w.path("part.st") + " --save " + w.path("resumed.st") +
                              " --metrics " + w.path("resumed.jsonl"));
  INFO(r.output);
  REQUIRE(r.code == 0);
  REQUIRE(r.output.find("resumed from") != std::string::npos);
  const SafetensorsFile a = load_safetensors(w.path("full.st")), b = load_safetensors(w.path("resumed.st"));
  REQUIRE(a.tensors.size() == b.tensors.size());
  REQUIRE(a.tensors.size() > 16);  // the model and Adam's state
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(a.tensors[i].first == b.tensors[i].first);
    const Tensor x = a.tensors[i].second.to(kFloat64), y = b.tensors[i].second.to(kFloat64);
    REQUIRE(x.to_vector<double>() == y.to_vector<double>());
  }
  REQUIRE(a.metadata.at("epoch") == "3");
  const auto full = read_metrics(w.path("full.jsonl")), resumed = read_metrics(w.path("resumed.jsonl"));
  REQUIRE(full.size() == 3);
  REQUIRE(resumed.size() == 2);
  for (size_t i = 0; i < 2; ++i)
    for (const char* k : {"epoch", "train_loss", "test_loss", "test_acc"}) REQUIRE(resumed[i][k] == full[i + 1][k]);
  // A checkpoint at the requested epoch leaves nothing to do.
  const Run done = run_train_rnn(base + " --epochs 3 --resume " + w.path("full.st"));
  REQUIRE(done.code == 0);
  REQUIRE(done.output.find("nothing to do: the checkpoint is at epoch 3 and --epochs is 3") != std::string::npos);
}

TEST_CASE("train_rnn predict prints every language's probability for each word") {
  TinyWordLists w;
  REQUIRE(run_train_rnn(w.base() + " --epochs 1 --save " + w.path("ck.st")).code == 0);
  const Run r = run_train_rnn("predict --checkpoint " + w.path("ck.st") + " abcabc Zyxzyx");
  INFO(r.output);
  REQUIRE(r.code == 0);
  std::istringstream lines(r.output);
  std::string line;
  for (const std::string word : {"abcabc", "Zyxzyx"}) {
    REQUIRE(std::getline(lines, line));
    REQUIRE(line.rfind(word + ": ", 0) == 0);
    double total = 0;
    double last = 101;
    for (int k = 0; k < 10; ++k) {
      REQUIRE(std::getline(lines, line));
      const double p = std::stod(line.substr(line.rfind(' ', line.size() - 2) + 1));
      REQUIRE(p <= last);  // most likely first
      last = p;
      total += p;
    }
    REQUIRE(total == Approx(100).margin(0.1));
  }
}

TEST_CASE("train_rnn stops at a non-finite loss, or skips such batches when told to") {
  TinyWordLists w;
  const Run r = run_train_rnn(w.base() + " --epochs 1 --lr 1e38");
  REQUIRE(r.code != 0);
  REQUIRE(r.output.find(
              "error: train_rnn: the loss is nan at epoch 1, step 2; pass --skip-nonfinite to skip such batches") !=
          std::string::npos);
  const Run s = run_train_rnn(w.base() + " --epochs 1 --lr 1e38 --skip-nonfinite");
  INFO(s.output);
  REQUIRE(s.code == 0);
  REQUIRE(s.output.find("epoch 1: skipped 4 of 5 batches whose loss was not finite") != std::string::npos);
}

TEST_CASE("train_rnn refuses bad options and missing word lists with a clear message") {
  TinyWordLists w;
  auto fails_with = [](const std::string& args, const std::string& message) {
    const Run r = run_train_rnn(args);
    INFO(args << "\n" << r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find(message) != std::string::npos);
  };
  fails_with("--dict-dir " + w.path("nowhere"),
             "error: train_rnn: the word list folder '" + w.path("nowhere") + "' does not exist");
  fs::remove(fs::path(w.dict()) / "polish");
  fails_with(w.base(), "error: load_language_words: cannot read the word list '" + w.dict() + "/polish'");
  fails_with("--dict-dir " + w.dict() + " --train-per-lang 100", "usable words, fewer than the 1100 requested");
  fails_with("--epochs 0", "--epochs");
  fails_with("--lr fast", "--lr");
  fails_with("--batch-size -4", "--batch-size");
  fails_with("--no-such-option", "--no-such-option");
  fails_with("predict --checkpoint " + w.path("missing.st") + " word",
             "error: train_rnn predict: the checkpoint '" + w.path("missing.st") + "' does not exist");
  fails_with("predict word", "--checkpoint");
  fails_with("--resume " + w.path("missing.st"),
             "error: train_rnn: the checkpoint '" + w.path("missing.st") + "' does not exist");
  fails_with(w.base() + " --init " + w.path("missing.st") + " --resume " + w.path("missing.st"),
             "error: train_rnn: --init and --resume exclude each other");
}
