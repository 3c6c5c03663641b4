// Batches from a Dataset: samplers (which indices, in which order, each epoch) and the DataLoader
// (worker threads that load and transform ahead of the consumer).
//
// Determinism: an epoch's index order depends only on (seed, epoch), and sample i of epoch e is
// loaded with a Generator seeded from (seed, e, i), so batch order and contents depend only on the
// seed and epoch, never on num_workers or thread timing.
//
//   data::DataLoader loader(std::make_shared<data::ImageFolder>("train", transform),
//                           {.batch_size = 64, .shuffle = true, .seed = 1, .num_workers = 2});
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (data::Batch& b : loader.epoch(epoch)) train_step(b.data, b.labels);
#pragma once

#include "dataset.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace tapegrad::data {

// ---- samplers ----

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The dataset indices of one epoch, in order.
  virtual std::vector<int64_t> indices(int64_t epoch) const = 0;
  // How many indices() returns.
  virtual int64_t size() const = 0;
};

// 0, 1, ..., n - 1 every epoch.
class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t n);
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return n_; }

 private:
  int64_t n_;
};

// A permutation of 0..n-1 drawn from a generator seeded from (seed, epoch): a new one each epoch.
class RandomSampler : public Sampler {
 public:
  RandomSampler(int64_t n, uint64_t seed);
  std::vector<int64_t> indices(int64_t epoch) const override;
  int64_t size() const override { return n_; }

 private:
  int64_t n_;
  uint64_t seed_;
};

// torch.utils.data.DistributedSampler: rank's share of the dataset. With shuffle, every rank draws the
// same permutation from seed + epoch (tapegrad's generator, not torch.randperm). Without drop_last
// the list is padded by repeating indices from its start until it divides evenly, so every rank gets
// ceil(n / num_replicas); with drop_last the tail is dropped and each rank gets
// ceil((n - num_replicas) / num_replicas) when n is not divisible. Rank r takes positions
// r, r + num_replicas, ...
//   "DistributedSampler: Invalid rank 4, rank should be in the interval [0, 3]"
class DistributedSampler : public Sampler {
 public:
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);
  std::vector<int64_t> indices(int64_t epoch) const override;
  // PyTorch's interface: indices() uses the epoch set here (the DataLoader passes its own epoch).
  std::vector<int64_t> indices() const { return indices(epoch_); }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t size() const override { return num_samples_; }
  int64_t total_size() const { return num_samples_ * num_replicas_; }

 private:
  int64_t n_, num_replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_;
  int64_t epoch_ = 0;
};

// A random permutation of 0..n-1 (Fisher-Yates with gen.below).
std::vector<int64_t> randperm(int64_t n, Generator& gen);

// The seed of sample `index` in `epoch` for a loader seeded with `seed` (a strong 64-bit mix).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

// ---- DataLoader ----

struct Batch {
  Tensor data;                   // (N, ...) the examples' data stacked
  Tensor labels;                 // (N) int64
  std::vector<int64_t> indices;  // the dataset indices of the N examples
};

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;      // a RandomSampler(seed); cannot be combined with a sampler
  uint64_t seed = 0;         // order and per-sample random transforms
  bool drop_last = false;    // drop a last batch smaller than batch_size
  int64_t num_workers = 0;   // 0: batches are loaded on the consumer's thread when asked for
  int64_t prefetch = 2;      // batches each worker may load ahead of the consumer (PyTorch's prefetch_factor)
};

class DataLoader {
 public:
  // The examples of a batch must have equal shapes and dtypes; otherwise the batch fails with
  // "DataLoader: stack expects each tensor to be equal size, but got [3, 32, 32] at entry 0 and
  // [3, 28, 28] at entry 5".
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {},
             std::shared_ptr<const Sampler> sampler = nullptr);

  // Batches per epoch (len(loader)).
  int64_t size() const;
  const DataLoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

  // One pass over the data. Workers start when it is created and stop (joined, nothing left running)
  // when it is destroyed, also when the consumer stops early. An exception thrown while loading a batch
  // is rethrown by next() at that batch's turn, as it was thrown (the worker's message, unchanged).
  class Epoch;
  class Iterator;
  Epoch epoch(int64_t epoch) const;

  // Range-for over the loader itself runs epochs 0, 1, 2, ... in turn (set_epoch chooses the next).
  Iterator begin();
  std::nullptr_t end() const { return nullptr; }
  void set_epoch(int64_t epoch) { next_epoch_ = epoch; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  std::shared_ptr<const Sampler> sampler_;
  int64_t next_epoch_ = 0;
};

namespace detail {
struct EpochState;
}

class DataLoader::Iterator {
 public:
  Iterator() = default;
  explicit Iterator(std::shared_ptr<detail::EpochState> state);
  Batch& operator*() { return *current_; }
  Batch* operator->() { return &*current_; }
  Iterator& operator++();
  bool operator==(std::nullptr_t) const { return !current_.has_value(); }
  bool operator!=(std::nullptr_t) const { return current_.has_value(); }

 private:
  std::shared_ptr<detail::EpochState> state_;
  std::optional<Batch> current_;
};

class DataLoader::Epoch {
 public:
  explicit Epoch(std::shared_ptr<detail::EpochState> state) : state_(std::move(state)) {}
  // The next batch, or nothing after the last one.
  std::optional<Batch> next();
  // Batches in this pass.
  int64_t size() const;
  Iterator begin() { return Iterator(state_); }
  std::nullptr_t end() const { return nullptr; }

 private:
  std::shared_ptr<detail::EpochState> state_;
};

}  // namespace tapegrad::data
