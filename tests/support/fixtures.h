// Test helpers: PyTorch fixtures, closeness checks, and error-message matching.
//
// Fixtures are safetensors files under tests/fixtures/, written by the generator scripts next to them
// (tests/fixtures/gen_*.py, run with Debian's python3-torch). Each file's metadata records the torch
// version that produced it. The tests only read them; no Python is needed to run the suite.
#pragma once

#include <catch2/catch.hpp>

#include <tapegrad/core/serialize.h>
#include <tapegrad/core/tensor.h>

#include <string>

namespace tapegrad::testing {

// A fixture file, loaded once per process and cached.
class Fixture {
 public:
  explicit Fixture(const std::string& file);  // relative to tests/fixtures
  const Tensor& operator[](const std::string& name) const { return data_->at(name); }
  bool has(const std::string& name) const { return data_->contains(name); }
  const std::map<std::string, std::string>& metadata() const { return data_->metadata; }

 private:
  const SafetensorsFile* data_;
};

// Element-wise |a - b| <= atol + rtol * |b|, same shape; on failure the message shows the worst element.
void require_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6);

// A random float64 tensor (seeded) for gradchecks.
Tensor randn64(const Shape& shape, uint64_t seed, bool requires_grad = true);

}  // namespace tapegrad::testing

namespace tapegrad::testing {
// Matches an exception whose message contains `part`.
class MessageContains : public Catch::MatcherBase<std::exception> {
 public:
  explicit MessageContains(std::string part) : part_(std::move(part)) {}
  bool match(const std::exception& e) const override { return std::string(e.what()).find(part_) != std::string::npos; }
  std::string describe() const override { return "message contains \"" + part_ + "\""; }

 private:
  std::string part_;
};
}  // namespace tapegrad::testing

// The expression (evaluated once) throws tapegrad::Error with exactly this message / a message containing `part`.
#define REQUIRE_ERROR(expr, message) \
  REQUIRE_THROWS_MATCHES(expr, ::tapegrad::Error, Catch::Matchers::Message(message))
#define REQUIRE_ERROR_CONTAINS(expr, part) \
  REQUIRE_THROWS_MATCHES(expr, ::tapegrad::Error, ::tapegrad::testing::MessageContains(part))
