// Seedable random numbers. Each thread has its own default generator (seed 0 until manual_seed).
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace tapegrad {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    engine_.seed(seed);
    has_spare_ = false;
  }
  uint64_t initial_seed() const { return seed_; }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Standard normal (Box-Muller; the second value of each pair is kept for the next call).
  double normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n);
  uint64_t next_u64() { return engine_(); }

  // The whole state (seed, engine, the spare normal) as text, like torch.Generator.get_state(): what a
  // checkpoint stores so that a resumed run draws the same numbers as an uninterrupted one.
  // set_state() restores it and throws "Generator::set_state: ..." for text get_state() did not write.
  std::string get_state() const;
  void set_state(const std::string& state);

 private:
  std::mt19937_64 engine_;
  uint64_t seed_ = 0;
  bool has_spare_ = false;
  double spare_ = 0;
};

// This thread's default generator.
Generator& default_generator();
// Seeds this thread's default generator.
void manual_seed(uint64_t seed);

}  // namespace tapegrad
