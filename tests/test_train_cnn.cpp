// examples/train_cnn end to end: tiny image folders written to a temporary directory, the program run
// as a user runs it, and its outputs read back (stdout, stderr, exit status, metrics, curves,
// checkpoints).
#include <fmt/core.h>
#include <sys/wait.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/data/image.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.h"

using namespace tapegrad;
using tapegrad::testing::TempDir;
namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs train_cnn with `args` (already shell-quoted where needed), stdout and stderr captured apart.
Run train_cnn(const TempDir& dir, const std::string& args) {
  const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd =
      fmt::format("OMP_NUM_THREADS=1 '{}' {} >'{}' 2>'{}' </dev/null", TAPEGRAD_TRAIN_CNN, args, out, err);
  const int raw = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

// A gray image whose brightness and stripes depend on the class, so that a few steps learn it.
data::Image class_image(int cls, int variant, int64_t size = 12) {
  data::Image im(size, size, 1);
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      int v = 0;
      if (cls == 0) v = 20 + 5 * variant;                    // dark
      if (cls == 1) v = 230 - 5 * variant;                   // bright
      if (cls == 2) v = ((x + variant) / 2) % 2 ? 240 : 10;  // vertical stripes
      im.at(y, x, 0) = static_cast<uint8_t>(v);
    }
  return im;
}

const std::vector<std::string> kClasses = {"bright", "dark", "stripes"};

// root/train/<class>/<i>.png (per_class_train each) and root/test/<class>/<i>.png (per_class_test).
void write_folder(const std::string& root, int per_class_train = 8, int per_class_test = 3,
                  std::vector<std::string> test_classes = kClasses) {
  const int of_class[3] = {1, 0, 2};  // bright, dark, stripes -> the pattern drawn
  for (const auto& [split, n, names] : {std::tuple{std::string("train"), per_class_train, kClasses},
                                        std::tuple{std::string("test"), per_class_test, test_classes}}) {
    for (size_t c = 0; c < names.size(); ++c) {
      const fs::path d = fs::path(root) / split / names[c];
      fs::create_directories(d);
      for (int i = 0; i < n; ++i)
        write_file_atomic((d / fmt::format("{}.png", i)).string(), data::encode_png(class_image(of_class[c % 3], i)));
    }
  }
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

bool has_line_matching(const std::string& text, const std::string& pattern) {
  const std::regex re(pattern);
  for (const std::string& l : lines_of(text))
    if (std::regex_match(l, re)) return true;
  return false;
}

// The tensors of a safetensors file by name, as raw bytes (bit-identity checks).
std::map<std::string, std::string> tensor_bytes(const std::string& path) {
  std::map<std::string, std::string> out;
  for (auto& [name, t] : load_safetensors(path).tensors) {
    const Tensor c = t.contiguous();
    out[name] =
        std::string(static_cast<const char*>(c.data()), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
  }
  return out;
}

const std::string kQuick = "--threads 1 --workers 1 --batch-size 8";

}  // namespace

TEST_CASE("train_cnn trains on an image folder and reports metrics, confusion matrix, curves; predict classifies",
          "[train_cnn]") {
  TempDir dir("train_cnn_test");
  write_folder(dir / "data");
  const Run r = train_cnn(dir, fmt::format("--data '{}' --epochs 2 {} --metrics '{}' --save '{}'", dir / "data", kQuick,
                                           dir / "m.jsonl", dir / "ck.safetensors"));
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  // Plain progress lines when stdout is not a terminal: batches, running loss, images/s, ETA.
  CHECK(has_line_matching(r.out, R"(epoch 1 3/3  loss [0-9.]+  [0-9]+ images/s  ETA 0s)"));
  CHECK(
      has_line_matching(r.out, R"(training on 24 images \(3 classes\) from .*, testing on 9, 1 rank\(s\), 1 threads)"));
  for (int e : {1, 2})
    CHECK(has_line_matching(r.out, fmt::format(R"(epoch {}  train_loss [0-9.]+  test_loss [0-9.]+  test_acc [0-9.]+%  )"
                                               R"([0-9.]+s \([0-9]+ images/s, [0-9.]+s waiting for data\))",
                                               e)));
  // The confusion matrix: a header, then one row per class with its name and 3 counts summing to 3.
  CHECK(r.out.find("         (rows: true class, columns: predicted)\n            0     1     2\n") !=
        std::string::npos);
  for (size_t c = 0; c < kClasses.size(); ++c)
    CHECK(has_line_matching(r.out, fmt::format(R"( *{}( +[0-3]){{3}}   \({}\))", kClasses[c], c)));

  const auto metrics = lines_of(read_text(dir / "m.jsonl"));
  REQUIRE(metrics.size() == 2);
  for (int e = 0; e < 2; ++e)
    CHECK(std::regex_match(metrics[static_cast<size_t>(e)],
                           std::regex(fmt::format(R"(\{{"epoch": {}, "train_loss": [0-9.]+, "test_loss": [0-9.]+, )"
                                                  R"("test_acc": [0-9.]+, "seconds": [0-9.]+, "images_per_second": )"
                                                  R"([0-9.]+, "data_wait_seconds": [0-9.]+\}})",
                                                  e + 1))));
  const std::string svg = read_text(dir / "m.svg");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("train_cnn --model bn") != std::string::npos);
  CHECK(svg.find("</svg>") != std::string::npos);

  const std::string img = dir / "data/test/stripes/0.png";
  const Run p = train_cnn(dir, fmt::format("predict --checkpoint '{}' '{}'", dir / "ck.safetensors", img));
  INFO(p.out << p.err);
  REQUIRE(p.status == 0);
  CHECK(std::regex_match(p.out, std::regex(fmt::format(R"({}: (bright|dark|stripes) \([0-9]+\.[0-9]%\)\n)", img))));
}

TEST_CASE("train_cnn: clear errors for folders it cannot train on", "[train_cnn]") {
  TempDir dir("train_cnn_test");
  SECTION("an empty folder") {
    fs::create_directories(dir / "empty");
    const Run r = train_cnn(dir, fmt::format("--data '{}' {}", dir / "empty", kQuick));
    CHECK(r.status == 1);
    CHECK(r.err == fmt::format("error: train_cnn: '{0}' has no train folder; expected {0}/train/<class>/<images> and "
                               "{0}/test/<class>/<images>\n",
                               dir / "empty"));
  }
  SECTION("a folder without classes") {
    fs::create_directories(dir / "d/train");
    fs::create_directories(dir / "d/test");
    const Run r = train_cnn(dir, fmt::format("--data '{}' {}", dir / "d", kQuick));
    CHECK(r.status == 1);
    CHECK(r.err == fmt::format("error: ImageFolder: Couldn't find any class folder in {}.\n", dir / "d/train"));
  }
  SECTION("test classes that differ from the training classes") {
    write_folder(dir / "d", 2, 1, {"bright", "dark"});
    const Run r = train_cnn(dir, fmt::format("--data '{}' {}", dir / "d", kQuick));
    CHECK(r.status == 1);
    CHECK(
        r.err ==
        "error: train_cnn: the test classes (bright, dark) differ from the training classes (bright, dark, stripes)\n");
  }
  SECTION("a checkpoint of another model") {
    write_folder(dir / "d", 2, 1);
    REQUIRE(
        train_cnn(dir, fmt::format("--data '{}' {} --save '{}'", dir / "d", kQuick, dir / "bn.safetensors")).status ==
        0);
    const Run r = train_cnn(
        dir, fmt::format("--data '{}' {} --model gn --resume '{}'", dir / "d", kQuick, dir / "bn.safetensors"));
    CHECK(r.status == 1);
    CHECK(r.err == fmt::format("error: train_cnn: cannot resume --model gn with 3 classes from '{}' (a --model bn "
                               "checkpoint): load_state_dict: Error(s) in loading state_dict for CNN:\n"
                               "\tUnexpected key(s) in state_dict: \"bn1.running_mean\", \"bn1.running_var\", "
                               "\"bn1.num_batches_tracked\". \n",
                               dir / "bn.safetensors"));
    CHECK(!fs::exists(dir / "gn.safetensors"));
  }
}

TEST_CASE("train_cnn: a corrupt image is named and skipped, or an error with --strict", "[train_cnn]") {
  TempDir dir("train_cnn_test");
  write_folder(dir / "d", 4, 1);
  // A valid header with its pixel data cut off: only decoding the whole file finds it.
  const std::string png = data::encode_png(class_image(2, 0));
  const std::string bad = dir / "d/train/dark/truncated.png";
  write_file_atomic(bad, png.substr(0, png.size() / 2));
  const Run r = train_cnn(dir, fmt::format("--data '{}' {}", dir / "d", kQuick));
  INFO(r.out << r.err);
  CHECK(r.status == 0);
  CHECK(r.err.rfind(fmt::format("warning: ImageFolder: skipping '{}': ", bad), 0) == 0);
  CHECK(lines_of(r.err).size() == 1);
  CHECK(r.out.find("training on 12 images (3 classes)") != std::string::npos);

  const Run s = train_cnn(dir, fmt::format("--data '{}' {} --strict", dir / "d", kQuick));
  CHECK(s.status == 1);
  CHECK(s.err.rfind(fmt::format("error: ImageFolder: '{}' is not a valid image: ", bad), 0) == 0);
  CHECK(s.out.find("epoch 1") == std::string::npos);
}

TEST_CASE("train_cnn --resume continues bit-identically", "[train_cnn]") {
  TempDir dir("train_cnn_test");
  write_folder(dir / "d");
  const std::string common = fmt::format("--data '{}' {} --seed 3 --lr 0.05", dir / "d", kQuick);
  REQUIRE(train_cnn(dir, fmt::format("{} --epochs 3 --save '{}'", common, dir / "full.safetensors")).status == 0);
  REQUIRE(train_cnn(dir, fmt::format("{} --epochs 1 --save '{}'", common, dir / "half.safetensors")).status == 0);
  const Run r = train_cnn(dir, fmt::format("{} --epochs 2 --resume '{}' --save '{}'", common, dir / "half.safetensors",
                                           dir / "resumed.safetensors"));
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("resumed from") != std::string::npos);
  CHECK(r.out.find("epoch 3  train_loss") != std::string::npos);
  const auto full = tensor_bytes(dir / "full.safetensors"), resumed = tensor_bytes(dir / "resumed.safetensors");
  CHECK(full.size() == resumed.size());
  CHECK(full.count("model.fc.weight") == 1);
  for (const auto& [name, bytes] : full) {
    INFO(name);
    REQUIRE(resumed.count(name) == 1);
    CHECK(resumed.at(name) == bytes);
  }
  // And it differs from the checkpoint it resumed from (training did happen).
  CHECK(tensor_bytes(dir / "half.safetensors").at("model.fc.weight") != full.at("model.fc.weight"));
}

TEST_CASE("train_cnn stops on a non-finite loss, or skips such batches with --skip-nonfinite", "[train_cnn]") {
  TempDir dir("train_cnn_test");
  write_folder(dir / "d");
  // A learning rate this large overflows the weights on the first step.
  const std::string common =
      fmt::format("--data '{}' {} --lr 1e30 --save '{}'", dir / "d", kQuick, dir / "ck.safetensors");
  const Run r = train_cnn(dir, common);
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  CHECK(r.err == "error: train_cnn: the loss is nan at epoch 1, step 2; pass --skip-nonfinite to skip such batches\n");
  CHECK(!fs::exists(dir / "ck.safetensors"));

  const Run s = train_cnn(dir, common + " --skip-nonfinite --epochs 2");
  INFO(s.out << s.err);
  CHECK(s.status == 0);
  CHECK(s.err ==
        "warning: skipped 2 of 3 batches of epoch 1 whose loss was not finite\n"
        "warning: skipped 3 of 3 batches of epoch 2 whose loss was not finite\n");
}
