#include "dataloader.h"

#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

namespace tapegrad::data {

// ---- samplers ----

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
// Epoch permutations and per-sample generators draw from separate streams.
constexpr uint64_t kOrderStream = 0x6f72646572ULL, kSampleStream = 0x73616d706c65ULL;
}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return splitmix64(splitmix64(splitmix64(seed ^ kSampleStream) ^ static_cast<uint64_t>(epoch)) ^
                    static_cast<uint64_t>(index));
}

std::vector<int64_t> randperm(int64_t n, Generator& gen) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[static_cast<size_t>(i)], p[gen.below(static_cast<uint64_t>(i + 1))]);
  return p;
}

SequentialSampler::SequentialSampler(int64_t n) : n_(n) {
  TG_CHECK(n >= 0, "SequentialSampler: expected a non-negative size, got {}", n);
}

std::vector<int64_t> SequentialSampler::indices(int64_t) const {
  std::vector<int64_t> v(static_cast<size_t>(n_));
  for (int64_t i = 0; i < n_; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

RandomSampler::RandomSampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  TG_CHECK(n >= 0, "RandomSampler: expected a non-negative size, got {}", n);
}

std::vector<int64_t> RandomSampler::indices(int64_t epoch) const {
  Generator gen(splitmix64(splitmix64(seed_ ^ kOrderStream) ^ static_cast<uint64_t>(epoch)));
  return randperm(n_, gen);
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle,
                                       uint64_t seed, bool drop_last)
    : n_(dataset_size), num_replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
  TG_CHECK(dataset_size >= 0, "DistributedSampler: expected a non-negative dataset size, got {}", dataset_size);
  TG_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be positive, got {}", num_replicas);
  TG_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: Invalid rank {}, rank should be in the interval [0, {}]",
           rank, num_replicas - 1);
  // math.ceil((n - r) / r) when dropping an uneven tail, else math.ceil(n / r).
  if (drop_last && n_ % num_replicas != 0) {
    const int64_t m = n_ - num_replicas;
    num_samples_ = m <= 0 ? 0 : (m + num_replicas - 1) / num_replicas;
  } else {
    num_samples_ = (n_ + num_replicas - 1) / num_replicas;
  }
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch) const {
  std::vector<int64_t> all;
  if (shuffle_) {
    Generator gen(seed_ + static_cast<uint64_t>(epoch));
    all = randperm(n_, gen);
  } else {
    all = SequentialSampler(n_).indices(epoch);
  }
  const auto total = static_cast<size_t>(total_size());
  if (!drop_last_) {
    // Pad by repeating the list from its start (several times over when it is short).
    const size_t n = all.size();
    for (size_t i = 0; all.size() < total && n > 0; ++i) all.push_back(all[i % n]);
  }
  all.resize(std::min(all.size(), total));
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(num_samples_));
  for (size_t i = static_cast<size_t>(rank_); i < all.size(); i += static_cast<size_t>(num_replicas_)) mine.push_back(all[i]);
  return mine;
}

// ---- batches ----

namespace {

// The examples stacked into one batch (torch's default_collate for (tensor, int) pairs).
Batch collate(std::vector<Example>& examples, std::vector<int64_t> indices) {
  const Tensor& first = examples.front().data;
  TG_CHECK(first.defined(), "DataLoader: the dataset returned an undefined tensor at entry 0");
  for (size_t i = 1; i < examples.size(); ++i) {
    const Tensor& t = examples[i].data;
    TG_CHECK(t.defined(), "DataLoader: the dataset returned an undefined tensor at entry {}", i);
    TG_CHECK(t.shape() == first.shape(),
             "DataLoader: stack expects each tensor to be equal size, but got {} at entry 0 and {} at entry {}",
             shape_list(first.shape()), shape_list(t.shape()), i);
    TG_CHECK(t.dtype() == first.dtype(), "DataLoader: expected every example of a batch to be {}, got {} at entry {}",
             dtype_name(first.dtype()), dtype_name(t.dtype()), i);
  }
  Shape shape = first.shape();
  shape.insert(shape.begin(), static_cast<int64_t>(examples.size()));
  Batch b;
  b.data = Tensor::empty(shape, {.dtype = first.dtype()});
  b.labels = Tensor::empty({static_cast<int64_t>(examples.size())}, {.dtype = DType::Int64});
  const size_t nbytes = static_cast<size_t>(first.numel()) * element_size(first.dtype());
  auto* out = static_cast<char*>(b.data.data());
  int64_t* labels = b.labels.data_ptr<int64_t>();
  for (size_t i = 0; i < examples.size(); ++i) {
    const Tensor c = examples[i].data.contiguous();
    if (nbytes) std::memcpy(out + i * nbytes, c.data(), nbytes);
    labels[i] = examples[i].label;
  }
  b.indices = std::move(indices);
  return b;
}

}  // namespace

namespace detail {

// One pass: the batches' indices, the workers, and the batches they have ready.
struct EpochState {
  std::shared_ptr<const Dataset> dataset;
  DataLoaderOptions options;
  int64_t epoch = 0;
  std::vector<std::vector<int64_t>> batches;

  std::mutex mu;
  std::condition_variable ready_cv;  // a batch became ready
  std::condition_variable room_cv;   // the consumer took a batch, or stop
  int64_t next_claim = 0;            // the next batch a worker may start
  int64_t next_yield = 0;            // the next batch the consumer gets
  bool stop = false;
  struct Result {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  std::map<int64_t, Result> ready;
  std::vector<std::thread> workers;

  Batch load(int64_t b) const {
    const std::vector<int64_t>& idx = batches[static_cast<size_t>(b)];
    std::vector<Example> examples;
    examples.reserve(idx.size());
    for (int64_t i : idx) {
      Generator gen(sample_seed(options.seed, epoch, i));
      examples.push_back(dataset->get(i, gen));
    }
    return collate(examples, idx);
  }

  void work() {
    // Batches may run ahead of the consumer by at most num_workers * prefetch.
    const int64_t ahead = options.num_workers * options.prefetch;
    const auto n = static_cast<int64_t>(batches.size());
    for (;;) {
      int64_t b;
      {
        std::unique_lock lock(mu);
        room_cv.wait(lock, [&] { return stop || next_claim >= n || next_claim < next_yield + ahead; });
        if (stop || next_claim >= n) return;
        b = next_claim++;
      }
      Result r;
      try {
        r.batch = load(b);
      } catch (...) {
        r.error = std::current_exception();
      }
      {
        std::lock_guard lock(mu);
        ready.emplace(b, std::move(r));
      }
      ready_cv.notify_all();
    }
  }

  void start() {
    for (int64_t w = 0; w < options.num_workers; ++w) workers.emplace_back([this] { work(); });
  }

  std::optional<Batch> next() {
    const auto n = static_cast<int64_t>(batches.size());
    if (options.num_workers == 0) {
      if (next_yield >= n) return std::nullopt;
      return load(next_yield++);
    }
    Result r;
    {
      std::unique_lock lock(mu);
      if (next_yield >= n) return std::nullopt;
      ready_cv.wait(lock, [&] { return ready.count(next_yield) > 0; });
      auto it = ready.find(next_yield);
      r = std::move(it->second);
      ready.erase(it);
      ++next_yield;
    }
    room_cv.notify_all();
    if (r.error) std::rethrow_exception(r.error);
    return std::move(r.batch);
  }

  ~EpochState() {
    {
      std::lock_guard lock(mu);
      stop = true;
    }
    room_cv.notify_all();
    for (std::thread& t : workers) t.join();
  }
};

}  // namespace detail

// ---- DataLoader ----

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options,
                       std::shared_ptr<const Sampler> sampler)
    : dataset_(std::move(dataset)), options_(options), sampler_(std::move(sampler)) {
  TG_CHECK(dataset_ != nullptr, "DataLoader: expected a dataset, got null");
  TG_CHECK(options_.batch_size >= 1, "DataLoader: batch_size should be a positive integer value, but got batch_size={}",
           options_.batch_size);
  TG_CHECK(options_.num_workers >= 0,
           "DataLoader: num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.");
  TG_CHECK(options_.prefetch >= 1, "DataLoader: prefetch should be a positive integer, got {}", options_.prefetch);
  TG_CHECK(!(sampler_ && options_.shuffle), "DataLoader: sampler option is mutually exclusive with shuffle");
  if (!sampler_) {
    const int64_t n = dataset_->size();
    if (options_.shuffle) {
      sampler_ = std::make_shared<RandomSampler>(n, options_.seed);
    } else {
      sampler_ = std::make_shared<SequentialSampler>(n);
    }
  }
}

int64_t DataLoader::size() const {
  const int64_t n = sampler_->size(), bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

DataLoader::Epoch DataLoader::epoch(int64_t e) const {
  auto s = std::make_shared<detail::EpochState>();
  s->dataset = dataset_;
  s->options = options_;
  s->epoch = e;
  const std::vector<int64_t> order = sampler_->indices(e);
  const int64_t n = dataset_->size(), bs = options_.batch_size;
  for (int64_t i : order)
    TG_CHECK(i >= 0 && i < n, "DataLoader: the sampler gave index {} for a dataset of size {}", i, n);
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(bs)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(bs));
    if (options_.drop_last && end - start < static_cast<size_t>(bs)) break;
    s->batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(start),
                            order.begin() + static_cast<std::ptrdiff_t>(end));
  }
  s->start();
  return Epoch(std::move(s));
}

DataLoader::Iterator DataLoader::begin() { return epoch(next_epoch_++).begin(); }

std::optional<Batch> DataLoader::Epoch::next() { return state_->next(); }

int64_t DataLoader::Epoch::size() const { return static_cast<int64_t>(state_->batches.size()); }

DataLoader::Iterator::Iterator(std::shared_ptr<detail::EpochState> state) : state_(std::move(state)) {
  current_ = state_->next();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  current_.reset();
  current_ = state_->next();
  return *this;
}

}  // namespace tapegrad::data
