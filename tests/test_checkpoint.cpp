// Checkpoints: a training run stopped at any step and resumed from its checkpoint (model with buffers,
// optimizer state, LR scheduler, the random generator, the position in the data) ends with the same
// weights, bit for bit, as the run that was never stopped; a save killed at any point leaves the
// previous checkpoint loadable; the generator's state round-trips.
#include <tapegrad/core/autograd.h>
#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/dataset.h>
#include <tapegrad/layers/activation.h>
#include <tapegrad/layers/container.h>
#include <tapegrad/layers/linear.h>
#include <tapegrad/layers/loss.h>
#include <tapegrad/layers/normalization.h>
#include <tapegrad/optim/optim.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace tapegrad;
using tapegrad::testing::TempDir;
namespace fs = std::filesystem;

namespace {

enum class Recipe { SgdMomentumStepLR, AdamCosine };

// A model with parameters, buffers (BatchNorm's running statistics) and randomness (Dropout), its
// optimizer and scheduler, and the data: everything a checkpoint must capture.
struct Trainer {
  std::shared_ptr<nn::Sequential> model;
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::LRScheduler> sched;
  std::shared_ptr<data::DataLoader> loader;
  nn::CrossEntropyLoss criterion;
  Recipe recipe;
  int64_t steps_per_epoch = 0;

  Trainer(Recipe r, uint64_t init_seed) : recipe(r) {
    manual_seed(init_seed);
    model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(6, 16), std::make_shared<nn::BatchNorm1d>(16),
                                             std::make_shared<nn::ReLU>(), std::make_shared<nn::Dropout>(0.25),
                                             std::make_shared<nn::Linear>(16, 3));
    if (r == Recipe::SgdMomentumStepLR) {
      opt = std::make_unique<optim::SGD>(model->parameters(),
                                         optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
      sched = std::make_unique<optim::StepLR>(*opt, /*step_size=*/1, /*gamma=*/0.5);
    } else {
      opt = std::make_unique<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 0.01, .weight_decay = 1e-4});
      sched = std::make_unique<optim::CosineAnnealingLR>(*opt, /*T_max=*/30);
    }
    // The data is the same for every trainer; its order depends on the loader's seed and the epoch.
    Generator g(42);
    Tensor x = Tensor::randn({56, 6}, {}, &g);
    Tensor y = Tensor::randint(0, 3, {56}, &g);
    loader = std::make_shared<data::DataLoader>(std::make_shared<data::TensorDataset>(x, y),
                                                data::DataLoaderOptions{.batch_size = 8, .shuffle = true, .seed = 7});
    steps_per_epoch = loader->size();
  }

  // Trains from (epoch, batch) up to, not including, (stop_epoch, stop_batch). The scheduler steps
  // once per epoch (StepLR) or once per batch (cosine).
  void train(int64_t epoch, int64_t batch, int64_t stop_epoch, int64_t stop_batch) {
    model->train();
    for (int64_t e = epoch; e <= stop_epoch; ++e) {
      int64_t i = 0;
      for (auto& b : loader->epoch(e)) {
        if (e == epoch && i < batch) {
          ++i;
          continue;
        }
        if (e == stop_epoch && i >= stop_batch) return;
        opt->zero_grad();
        Tensor loss = criterion(model->forward(b.data), b.labels);
        loss.backward();
        opt->step();
        if (recipe == Recipe::AdamCosine) sched->step();
        ++i;
      }
      if (recipe == Recipe::SgdMomentumStepLR) sched->step();
    }
  }

  // Everything needed to continue after (epoch, batch): the next batch to train.
  SafetensorsFile checkpoint(int64_t epoch, int64_t batch) const {
    SafetensorsFile ck;
    for (auto& [k, v] : model->state_dict()) ck.tensors.emplace_back("model." + k, v);
    SafetensorsFile os = opt->state_dict();
    for (auto& [k, v] : os.tensors) ck.tensors.emplace_back("optimizer." + k, v);
    ck.metadata = os.metadata;
    ck.metadata["scheduler"] = sched->state_dict();
    ck.metadata["rng"] = default_generator().get_state();
    ck.metadata["epoch"] = std::to_string(epoch);
    ck.metadata["batch"] = std::to_string(batch);
    return ck;
  }

  std::pair<int64_t, int64_t> restore(const SafetensorsFile& ck) {
    NamedTensors mstate;
    SafetensorsFile ostate;
    for (auto& [k, v] : ck.tensors) {
      if (k.rfind("model.", 0) == 0) mstate.emplace_back(k.substr(6), v);
      if (k.rfind("optimizer.", 0) == 0) ostate.tensors.emplace_back(k.substr(10), v);
    }
    ostate.metadata = {{"param_groups", ck.metadata.at("param_groups")}, {"optimizer", ck.metadata.at("optimizer")}};
    model->load_state_dict(mstate);
    opt->load_state_dict(ostate);
    sched->load_state_dict(ck.metadata.at("scheduler"));
    default_generator().set_state(ck.metadata.at("rng"));
    return {std::stoll(ck.metadata.at("epoch")), std::stoll(ck.metadata.at("batch"))};
  }
};

// Bitwise equality of every entry of two state dicts.
void require_identical(const NamedTensors& a, const NamedTensors& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    REQUIRE(a[i].first == b[i].first);
    const Tensor x = a[i].second.contiguous(), y = b[i].second.contiguous();
    REQUIRE(x.shape() == y.shape());
    REQUIRE(x.dtype() == y.dtype());
    REQUIRE(std::memcmp(x.data(), y.data(), static_cast<size_t>(x.numel()) * element_size(x.dtype())) == 0);
  }
}

NamedTensors snapshot(const NamedTensors& s) {
  NamedTensors out;
  for (auto& [k, v] : s) out.emplace_back(k, v.clone());
  return out;
}

}  // namespace

TEST_CASE("a run resumed from a checkpoint ends with the same weights as an uninterrupted run") {
  const Recipe recipe = GENERATE(Recipe::SgdMomentumStepLR, Recipe::AdamCosine);
  const int64_t epochs = 4;
  Trainer reference(recipe, 1);
  reference.train(0, 0, epochs, 0);
  const NamedTensors expected = snapshot(reference.model->state_dict());
  const NamedTensors expected_opt = snapshot(reference.opt->state_dict().tensors);
  const std::vector<double> expected_lr = reference.sched->get_last_lr();

  TempDir dir("tapegrad-checkpoint");
  const std::string path = dir / "ck.safetensors";
  // Stops at the start of an epoch, in the middle of one, and just before the end.
  const int64_t spe = reference.steps_per_epoch;
  for (auto [stop_epoch, stop_batch] : std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {2, 3}, {3, spe - 1}}) {
    INFO("stopped at epoch " << stop_epoch << " batch " << stop_batch);
    {
      Trainer first(recipe, 1);
      first.train(0, 0, stop_epoch, stop_batch);
      const SafetensorsFile ck = first.checkpoint(stop_epoch, stop_batch);
      save_safetensors(path, ck.tensors, ck.metadata);
    }
    // A different initialization and a generator in another state: the checkpoint must restore both.
    Trainer resumed(recipe, 999);
    (void)Tensor::rand({17});
    const auto [epoch, batch] = resumed.restore(load_safetensors(path));
    REQUIRE(epoch == stop_epoch);
    REQUIRE(batch == stop_batch);
    resumed.train(epoch, batch, epochs, 0);
    require_identical(resumed.model->state_dict(), expected);
    require_identical(resumed.opt->state_dict().tensors, expected_opt);
    REQUIRE(resumed.sched->get_last_lr() == expected_lr);
  }
}

TEST_CASE("a run without the generator's state in its checkpoint diverges (the test can tell)") {
  // Guards the test above: Dropout draws from the default generator, so leaving it out must show.
  Trainer reference(Recipe::SgdMomentumStepLR, 1);
  reference.train(0, 0, 2, 0);
  Trainer first(Recipe::SgdMomentumStepLR, 1);
  first.train(0, 0, 1, 2);
  SafetensorsFile ck = first.checkpoint(1, 2);
  Trainer resumed(Recipe::SgdMomentumStepLR, 999);
  const std::string other_rng = default_generator().get_state();
  ck.metadata["rng"] = other_rng;
  resumed.restore(ck);
  resumed.train(1, 2, 2, 0);
  const Tensor a = resumed.model->state_dict().front().second, b = reference.model->state_dict().front().second;
  REQUIRE(a.to_vector<float>() != b.to_vector<float>());
}

TEST_CASE("Generator state round-trips exactly and rejects foreign text") {
  Generator g(123);
  (void)g.normal();  // leaves a spare normal behind
  const std::string state = g.get_state();
  const double u = g.uniform(), n1 = g.normal(), n2 = g.normal();
  const uint64_t k = g.next_u64();
  Generator h(5);
  h.set_state(state);
  REQUIRE(h.initial_seed() == 123);
  REQUIRE(h.uniform() == u);
  REQUIRE(h.normal() == n1);
  REQUIRE(h.normal() == n2);
  REQUIRE(h.next_u64() == k);
  REQUIRE_ERROR(h.set_state("hello"),
                "Generator::set_state: expected a state written by Generator::get_state(), got one starting with 'hello'");
  REQUIRE_ERROR(h.set_state(state.substr(0, state.size() / 2)),
                fmt::format("Generator::set_state: the state is truncated or corrupt ({} characters)", state.size() / 2));
  REQUIRE_ERROR(h.set_state(state + " 17"), "Generator::set_state: unexpected text after the state");
  // A failed set_state leaves the generator as it was.
  REQUIRE(h.initial_seed() == 123);
}

// ---- saves that die part way ----

namespace {

// Two checkpoints of different sizes and contents; a load must give exactly one of them.
SafetensorsFile version(int v) {
  SafetensorsFile f;
  f.tensors.emplace_back("w", Tensor::full({v == 0 ? 3000 : 5000}, static_cast<double>(v + 1)));
  f.tensors.emplace_back("b", Tensor::full({7}, static_cast<double>(-v)));
  f.metadata["version"] = std::to_string(v);
  return f;
}

int version_of(const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  const int v = std::stoi(f.metadata.at("version"));
  const SafetensorsFile want = version(v);
  REQUIRE(f.tensors.size() == want.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) REQUIRE(f.tensors[i].second.to_vector<float>() == want.tensors[i].second.to_vector<float>());
  return v;
}

}  // namespace

TEST_CASE("a save SIGKILLed at a random point leaves the previous checkpoint loadable") {
  TempDir dir("tapegrad-checkpoint");
  const std::string path = dir / "ck.safetensors";
  const SafetensorsFile v0 = version(0);
  save_safetensors(path, v0.tensors, v0.metadata);
  std::mt19937 rng(2024);
  int seen_new = 0, seen_old = 0;
  for (int round = 0; round < 40; ++round) {
    // The child saves the other version over and over until it is killed.
    const int next = 1 - version_of(path);
    const SafetensorsFile f = version(next);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (;;) save_safetensors(path, f.tensors, f.metadata);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    const int v = version_of(path);  // complete, whichever it is
    (v == next ? seen_new : seen_old)++;
  }
  // The killed saves leave their temporary files (nothing can remove them), never a damaged target.
  for (auto& e : fs::directory_iterator(dir.path())) {
    const std::string name = e.path().filename().string();
    REQUIRE((name == "ck.safetensors" || name.rfind("ck.safetensors.tmp-", 0) == 0));
  }
  INFO("old " << seen_old << ", new " << seen_new);
  REQUIRE(seen_old + seen_new == 40);
}

TEST_CASE("a later save removes the temporary files that killed saves left, once they are an hour old") {
  TempDir dir("tapegrad-checkpoint");
  const std::string path = dir / "ck.safetensors";
  const SafetensorsFile v0 = version(0), v1 = version(1);
  save_safetensors(path, v0.tensors, v0.metadata);
  // A child that saves until it is killed in the middle of a write: its temporary file stays.
  auto killed_save = [&] {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (;;) save_safetensors(path, v1.tensors, v1.metadata);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return pid;
  };
  std::vector<std::string> leftovers;
  for (int i = 0; i < 20 && leftovers.empty(); ++i) {
    killed_save();
    for (auto& e : fs::directory_iterator(dir.path()))
      if (e.path().filename().string().rfind("ck.safetensors.tmp-", 0) == 0) leftovers.push_back(e.path().string());
  }
  REQUIRE(!leftovers.empty());
  const auto two_hours_ago = fs::file_time_type::clock::now() - std::chrono::hours(2);
  for (const auto& f : leftovers) fs::last_write_time(f, two_hours_ago);
  // Kept: a dead process's file modified recently, an old file of a live process (pid 1 exists in any
  // pid namespace), and names that only look alike.
  const pid_t dead = killed_save();
  const std::string recent = path + fmt::format(".tmp-{}-0badc0de", dead);
  const std::string live = path + ".tmp-1-0badc0de";
  const std::string other = path + ".tmp-notapid-0badc0de";
  const std::string other2 = path + fmt::format(".tmp-{}-0badc0de.bak", dead);
  for (const auto& f : {recent, live, other, other2}) std::ofstream(f) << "x";
  for (const auto& f : {live, other, other2}) fs::last_write_time(f, two_hours_ago);
  save_safetensors(path, v0.tensors, v0.metadata);
  for (const auto& f : leftovers) {
    INFO(f);
    REQUIRE(!fs::exists(f));
  }
  for (const auto& f : {recent, live, other, other2}) {
    INFO(f);
    REQUIRE(fs::exists(f));
  }
  REQUIRE(version_of(path) == 0);
}

TEST_CASE("a save that fails after any number of bytes leaves the previous checkpoint intact") {
  TempDir dir("tapegrad-checkpoint");
  const std::string path = dir / "ck.safetensors";
  const SafetensorsFile v0 = version(0), v1 = version(1);
  save_safetensors(path, v0.tensors, v0.metadata);
  const std::string before = read_file(path);
  // RLIMIT_FSIZE makes the write fail once the temporary file reaches `limit` bytes: every limit up to
  // the new file's size is one injected failure.
  save_safetensors(dir / "probe", v1.tensors, v1.metadata);
  const auto full = static_cast<rlim_t>(fs::file_size(dir / "probe"));
  fs::remove(dir / "probe");
  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  int failures = 0;
  for (rlim_t limit = 0; limit < full; limit += 1013) {
    struct rlimit l = old_limit;
    l.rlim_cur = limit;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &l) == 0);
    std::string message;
    try {
      save_safetensors(path, v1.tensors, v1.metadata);
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    INFO("limit " << limit);
    REQUIRE(message == fmt::format("save: cannot write '{}': File too large", path));
    REQUIRE(read_file(path) == before);
    REQUIRE(version_of(path) == 0);
    ++failures;
  }
  std::signal(SIGXFSZ, old_handler);
  REQUIRE(failures > 10);
  // With no limit the new checkpoint replaces the old one, and no temporary file is left.
  save_safetensors(path, v1.tensors, v1.metadata);
  REQUIRE(version_of(path) == 1);
  REQUIRE(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
}
