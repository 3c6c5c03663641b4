// train_rnn: the documents' RNNWithLayerNorm (2-layer LSTM(100, 128) -> LayerNorm(128) -> Linear(128, 10) on
// the last step) trained to tell which language a word belongs to, from Debian's word lists
// (/usr/share/dict: wamerican, wngerman, wfrench, witalian, wspanish, wportuguese, wdutch, wdanish, wswedish,
// wpolish). The split and the encoding are those of ../shared/reference/torch_reference_tasks.py (rnn):
// 4000 training and 1000 test words per language, the last 20 characters one-hot over a vocabulary of at
// most 99 characters, left-padded to 20 steps. Adam (lr 2e-3), batch 64, cross-entropy.
//
//   train_rnn [--epochs 6] [--seed 0] [--save FILE] [--resume FILE] ...   train and evaluate
//   train_rnn predict --checkpoint FILE WORD...                           language probabilities of words
//
// --epochs is the total: `--resume FILE` continues a run after its last completed epoch, and gives the
// very numbers the uninterrupted run gives with the same --seed and --threads (each epoch's batch order is
// a function of the seed and the epoch; the checkpoint holds the model, Adam's state and the epoch).
#include <common/cli.h>
#include <common/models.h>
#include <common/report.h>
#include <fmt/core.h>
#include <fmt/format.h>
#include <omp.h>
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/wordlists.h>
#include <tapegrad/optim/adam.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

using namespace tapegrad;
namespace fs = std::filesystem;

using examples::RNNWithLayerNorm;

namespace {

constexpr int64_t kMaxLen = 20, kInputSize = 100, kHidden = 128;
constexpr const char* kFormat = "train_rnn";

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '\n') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "\n" : "") + v[i];
  return s;
}

// The vocabulary as load_language_words builds it: the first 98 distinct characters get 1..98.
std::map<char32_t, int64_t> vocab_of(const std::u32string& chars) {
  std::map<char32_t, int64_t> vocab;
  for (size_t i = 0; i < chars.size() && i < 98; ++i) vocab[chars[i]] = static_cast<int64_t>(i) + 1;
  return vocab;
}

// One batch: (kMaxLen, B, kInputSize) one-hot sequences and (B,) labels.
struct Batch {
  Tensor x, y;
};

Batch make_batch(const std::vector<data::LabeledWord>& set, const int64_t* idx, int64_t n,
                 const std::map<char32_t, int64_t>& vocab) {
  std::vector<std::string> words(static_cast<size_t>(n));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const data::LabeledWord& w = set[static_cast<size_t>(idx[i])];
    words[static_cast<size_t>(i)] = w.word;
    labels[static_cast<size_t>(i)] = w.label;
  }
  return {data::encode_words(words, vocab, kMaxLen, kInputSize), Tensor::from_vector(labels, {n})};
}

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<int64_t>> confusion;
};

// The test set in order, 256 words a batch (as the reference script).
Evaluation evaluate(RNNWithLayerNorm& model, const std::vector<data::LabeledWord>& set,
                    const std::map<char32_t, int64_t>& vocab, int64_t classes) {
  autograd::NoGradGuard ng;
  model.eval();
  Evaluation e;
  e.confusion.assign(static_cast<size_t>(classes), std::vector<int64_t>(static_cast<size_t>(classes), 0));
  const auto n = static_cast<int64_t>(set.size());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i += 256) {
    const int64_t b = std::min<int64_t>(256, n - i);
    Batch batch = make_batch(set, order.data() + i, b, vocab);
    Tensor logits = model(batch.x);
    e.loss += cross_entropy(logits, batch.y, {}, -100, Reduction::Sum).item();
    const auto pred = argmax(logits, 1).to_vector<int64_t>();
    const auto truth = batch.y.to_vector<int64_t>();
    for (size_t k = 0; k < pred.size(); ++k) {
      e.confusion[static_cast<size_t>(truth[k])][static_cast<size_t>(pred[k])] += 1;
      correct += pred[k] == truth[k];
    }
  }
  model.train();
  e.loss /= static_cast<double>(std::max<int64_t>(n, 1));
  e.accuracy = static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(n, 1));
  return e;
}

NamedTensors with_prefix(const NamedTensors& all, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [k, v] : all)
    if (k.rfind(prefix, 0) == 0) out.emplace_back(k.substr(prefix.size()), v);
  return out;
}

SafetensorsFile load_checkpoint(const std::string& path, const char* who) {
  TG_CHECK(fs::exists(path), "{}: the checkpoint '{}' does not exist", who, path);
  SafetensorsFile ck = load_safetensors(path);
  TG_CHECK(ck.metadata.count("format") && ck.metadata.at("format") == kFormat && ck.metadata.count("chars") &&
               ck.metadata.count("languages"),
           "{}: '{}' is not a train_rnn checkpoint (no vocabulary or language names in its metadata)", who, path);
  return ck;
}

int predict(const std::string& checkpoint, const std::vector<std::string>& words) {
  SafetensorsFile ck = load_checkpoint(checkpoint, "train_rnn predict");
  const std::vector<std::string> languages = split_names(ck.metadata.at("languages"));
  const auto vocab = vocab_of(data::decode_utf8_replace(ck.metadata.at("chars")));
  RNNWithLayerNorm model(kInputSize, kHidden, static_cast<int64_t>(languages.size()));
  model.load_state_dict(with_prefix(ck.tensors, "model."));
  model.eval();
  autograd::NoGradGuard ng;
  // The same clean-up as the training words: strip, lowercase.
  std::vector<std::string> clean;
  for (const std::string& w : words)
    clean.push_back(data::encode_utf8(data::python_lower(data::python_strip(data::decode_utf8_replace(w)))));
  Tensor p = softmax(model(data::encode_words(clean, vocab, kMaxLen, kInputSize)), 1);
  const auto probs = p.to_vector<float>();
  const size_t k = languages.size();
  size_t width = 4;
  for (const auto& l : languages) width = std::max(width, l.size());
  for (size_t i = 0; i < words.size(); ++i) {
    std::vector<size_t> order(k);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return probs[i * k + a] > probs[i * k + b]; });
    fmt::print("{}: {}\n", words[i], languages[order[0]]);
    for (size_t j : order) fmt::print("  {:<{}} {:6.2f}%\n", languages[j], width, 100.0 * probs[i * k + j]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Train the documents' RNNWithLayerNorm to tell the language of a word (Debian's word lists)"};
  app.set_help_all_flag("--help-all");
  std::string dict_dir = "/usr/share/dict", save_path, resume_path, metrics_path, init_path;
  int64_t epochs = 6, batch_size = 64, per_lang_train = 4000, per_lang_test = 1000;
  int threads = 1;
  double lr = 2e-3;
  uint64_t seed = 0, split_seed = 0;
  bool skip_nonfinite = false, quiet = false;
  app.add_option("--epochs", epochs, "total number of epochs (a resumed run continues up to it)")
      ->check(examples::positive_int())
      ->capture_default_str();
  app.add_option("--batch-size", batch_size)->check(examples::positive_int())->capture_default_str();
  app.add_option("--lr", lr, "Adam's learning rate")->check(examples::non_negative_number())->capture_default_str();
  app.add_option("--seed", seed, "initialization and batch order")->capture_default_str();
  app.add_option("--split-seed", split_seed, "the train/test split (0: the reference script's)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0: all cores)")
      ->check(examples::non_negative_int())
      ->capture_default_str();
  app.add_option("--dict-dir", dict_dir, "folder with the word lists")->capture_default_str();
  app.add_option("--train-per-lang", per_lang_train, "training words per language")
      ->check(examples::positive_int())
      ->capture_default_str();
  app.add_option("--test-per-lang", per_lang_test, "test words per language")
      ->check(examples::positive_int())
      ->capture_default_str();
  app.add_option("--metrics", metrics_path, "append one JSON line per epoch (curves go next to it as .svg)");
  app.add_option("--save", save_path, "checkpoint written (atomically) after each epoch");
  app.add_option("--resume", resume_path, "checkpoint to continue from");
  app.add_option("--init", init_path,
                 "initial model weights (safetensors, e.g. from PyTorch via tools/torch_safetensors.py)");
  app.add_flag("--skip-nonfinite", skip_nonfinite, "skip batches whose loss is NaN or infinite instead of stopping");
  app.add_flag("--quiet", quiet, "no progress display");
  auto* pred = app.add_subcommand("predict", "print the language probabilities of words with a saved checkpoint");
  std::string checkpoint;
  std::vector<std::string> words;
  pred->add_option("--checkpoint", checkpoint, "a file written by --save")->required();
  pred->add_option("words", words)->required();
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) omp_set_num_threads(threads);
  if (*pred) return predict(checkpoint, words);
  TG_CHECK(resume_path.empty() || init_path.empty(), "train_rnn: --init and --resume exclude each other");

  // Files first: reading the word lists takes seconds.
  for (const std::string& f : {resume_path, init_path})
    TG_CHECK(f.empty() || fs::exists(f), "train_rnn: the checkpoint '{}' does not exist", f);
  TG_CHECK(fs::is_directory(dict_dir), "train_rnn: the word list folder '{}' does not exist", dict_dir);
  const data::LanguageWords lw =
      data::load_language_words(dict_dir, data::default_languages(), per_lang_train, per_lang_test, split_seed);
  const auto classes = static_cast<int64_t>(lw.languages.size());
  const std::string chars = data::encode_utf8(std::u32string(lw.chars.begin(), lw.chars.end()));

  manual_seed(seed);
  RNNWithLayerNorm model(kInputSize, kHidden, classes);
  optim::Adam opt(model.parameters(), {.lr = lr});

  int64_t start_epoch = 0;
  if (!init_path.empty()) {
    model.load_state_dict(load_safetensors(init_path).tensors);
    fmt::print("initial weights from {}\n", init_path);
  }
  if (!resume_path.empty()) {
    SafetensorsFile ck = load_checkpoint(resume_path, "train_rnn");
    TG_CHECK(ck.metadata.at("chars") == chars && split_names(ck.metadata.at("languages")) == lw.languages,
             "train_rnn: '{}' was trained on other words (its vocabulary or languages differ from these word lists')",
             resume_path);
    model.load_state_dict(with_prefix(ck.tensors, "model."));
    opt.load_state_dict(
        SafetensorsFile{with_prefix(ck.tensors, "optimizer."), {{"param_groups", ck.metadata.at("param_groups")}}});
    start_epoch = std::stoll(ck.metadata.at("epoch"));
    fmt::print("resumed from {} after epoch {}\n", resume_path, start_epoch);
  }

  const auto n_train = static_cast<int64_t>(lw.train.size());
  const int64_t steps = (n_train + batch_size - 1) / batch_size;
  data::RandomSampler sampler(n_train, seed);
  fmt::print("{}\n{} languages, {} training and {} test words, {} distinct characters, {} thread(s)\n", model.repr(),
             classes, n_train, lw.test.size(), lw.chars.size(), omp_get_max_threads());

  std::vector<examples::EpochMetrics> history;
  Evaluation ev;
  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    const std::vector<int64_t> order = sampler.indices(epoch);
    examples::Progress progress(fmt::format("epoch {}", epoch + 1), steps, !quiet);
    int64_t skipped = 0;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t b = std::min(batch_size, n_train - s * batch_size);
      Batch batch = make_batch(lw.train, order.data() + s * batch_size, b, lw.vocab);
      opt.zero_grad();
      Tensor loss = cross_entropy(model(batch.x), batch.y);
      const double l = loss.item();
      if (!std::isfinite(l)) {
        TG_CHECK(skip_nonfinite,
                 "train_rnn: the loss is {} at epoch {}, step {}; pass --skip-nonfinite to skip such batches",
                 std::isnan(l) ? "nan"
                 : l > 0       ? "inf"
                               : "-inf",
                 epoch + 1, s + 1);
        ++skipped;
        continue;
      }
      loss.backward();
      opt.step();
      progress.step(l, b);
    }
    const double seconds = progress.finish();
    if (skipped)
      fmt::print("epoch {}: skipped {} of {} batches whose loss was not finite\n", epoch + 1, skipped, steps);
    ev = evaluate(model, lw.test, lw.vocab, classes);
    examples::EpochMetrics m{epoch + 1, progress.running_loss(),
                             ev.loss,   ev.accuracy,
                             seconds,   static_cast<double>(n_train - skipped * batch_size) / seconds};
    history.push_back(m);
    fmt::print("epoch {}  train_loss {:.4f}  test_loss {:.4f}  test_acc {:.2f}%  {:.1f}s ({:.0f} words/s)\n", m.epoch,
               m.train_loss, m.test_loss, 100 * m.test_acc, m.seconds, m.items_per_second);
    std::fflush(stdout);  // a log file sees each epoch as it ends
    if (!metrics_path.empty()) {
      examples::append_metrics(metrics_path, m, false);
      examples::write_curves_svg(fs::path(metrics_path).replace_extension(".svg").string(), history, "train_rnn");
    }
    if (!save_path.empty()) {
      NamedTensors all;
      for (auto& [k, v] : model.state_dict()) all.emplace_back("model." + k, v);
      SafetensorsFile os = opt.state_dict();
      for (auto& [k, v] : os.tensors) all.emplace_back("optimizer." + k, v);
      std::map<std::string, std::string> meta = os.metadata;
      meta["format"] = kFormat;
      meta["epoch"] = std::to_string(epoch + 1);
      meta["seed"] = std::to_string(seed);
      meta["languages"] = join_names(lw.languages);
      meta["chars"] = chars;
      save_safetensors(save_path, all, meta);
    }
  }
  if (history.empty()) {
    fmt::print("nothing to do: the checkpoint is at epoch {} and --epochs is {}\n", start_epoch, epochs);
    return 0;
  }
  fmt::print("test accuracy per language after epoch {}:\n{}", history.back().epoch,
             examples::format_per_class_accuracy(ev.confusion, lw.languages));
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
