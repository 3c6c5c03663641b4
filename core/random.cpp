#include "random.h"

#include "inplace.h"
#include "iter.h"
#include "tensor.h"

#include <bit>
#include <cmath>
#include <sstream>

namespace tapegrad {

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform();
  while (u1 <= 0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * M_PI * u2);
  has_spare_ = true;
  return r * std::cos(2.0 * M_PI * u2);
}

uint64_t Generator::below(uint64_t n) {
  // Rejection sampling: no modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = engine_();
  while (x >= limit);
  return x % n;
}

// "tapegrad-generator-v1 <seed> <has_spare> <spare as bits> <engine>": the engine in the standard's
// textual form, the spare as its bit pattern so it comes back exactly.
std::string Generator::get_state() const {
  std::ostringstream out;
  out << "tapegrad-generator-v1 " << seed_ << ' ' << (has_spare_ ? 1 : 0) << ' ' << std::bit_cast<uint64_t>(spare_)
      << ' ' << engine_;
  return out.str();
}

void Generator::set_state(const std::string& state) {
  std::istringstream in(state);
  std::string tag;
  uint64_t seed = 0, spare_bits = 0;
  int has_spare = 0;
  std::mt19937_64 engine;
  in >> tag;
  TG_CHECK(in && tag == "tapegrad-generator-v1",
           "Generator::set_state: expected a state written by Generator::get_state(), got one starting with '{}'",
           state.substr(0, 32));
  in >> seed >> has_spare >> spare_bits >> engine;
  TG_CHECK(in && (has_spare == 0 || has_spare == 1),
           "Generator::set_state: the state is truncated or corrupt ({} characters)", state.size());
  in >> std::ws;
  TG_CHECK(in.eof(), "Generator::set_state: unexpected text after the state");
  seed_ = seed;
  has_spare_ = has_spare == 1;
  spare_ = std::bit_cast<double>(spare_bits);
  engine_ = engine;
}

Generator& default_generator() {
  thread_local Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
template <typename Fill>
Tensor make_random(const Shape& shape, TensorOptions o, std::string_view op, Fill fill) {
  Tensor t = Tensor::empty(shape, {.dtype = o.dtype});
  dispatch_floating(o.dtype, op, [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<T>(fill());
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}
}  // namespace

Tensor Tensor::rand(const Shape& shape, TensorOptions o, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return make_random(shape, o, "rand", [&] { return g.uniform(); });
}

Tensor Tensor::randn(const Shape& shape, TensorOptions o, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return make_random(shape, o, "randn", [&] { return g.normal(); });
}

Tensor Tensor::randint(int64_t low, int64_t high, const Shape& shape, Generator* gen) {
  TG_CHECK(low < high, "randint: expected low < high, got low={} and high={}", low, high);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, {.dtype = DType::Int64});
  int64_t* p = t.data_ptr<int64_t>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = low + static_cast<int64_t>(g.below(high - low));
  return t;
}

// ---- in-place sampling ----

namespace {

// Overwrites self with draws from sample(), in row-major order of its elements.
template <typename Sample>
Tensor& fill_random(Tensor& self, const char* op, Sample sample) {
  detail::overwrite_inplace(self, op, [&] {
    dispatch_floating(self.dtype(), op, [&]<typename T>() {
      const bool direct = self.is_contiguous();
      const Tensor dst = direct ? self : Tensor::empty(self.shape(), {.dtype = self.dtype()});
      T* p = static_cast<T*>(dst.data());
      for (int64_t i = 0, n = self.numel(); i < n; ++i) p[i] = sample.template operator()<T>();
      if (!direct) detail::apply_inplace<T, T>(self, dst, [](T, T v) { return v; });
    });
  });
  return self;
}

}  // namespace

Tensor& Tensor::uniform_(double low, double high, Generator* gen) {
  TG_CHECK(low <= high, "uniform_: uniform_ expects to return a [from, to) range, but found from={} > to={}", low, high);
  Generator& g = gen ? *gen : default_generator();
  return fill_random(*this, "uniform_", [&]<typename T>() {
    T v = static_cast<T>(low + (high - low) * g.uniform());
    // Rounding to T can land on `high`; keep the range half-open.
    if (v >= static_cast<T>(high) && high > low) v = std::nextafter(static_cast<T>(high), static_cast<T>(low));
    return v;
  });
}

Tensor& Tensor::normal_(double mean, double std, Generator* gen) {
  TG_CHECK(std >= 0.0, "normal_: normal expects std >= 0.0, but found std {}", std);
  Generator& g = gen ? *gen : default_generator();
  return fill_random(*this, "normal_", [&]<typename T>() { return static_cast<T>(mean + std * g.normal()); });
}

}  // namespace tapegrad
