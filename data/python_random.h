// Python's `random.Random(seed)` (Mersenne Twister, CPython's seeding and shuffle), so that a split made
// here is the very split a Python reference script makes with the same seed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tapegrad::data {

class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed = 0);
  uint32_t next_u32();
  // random.getrandbits(k) for k <= 32.
  uint32_t getrandbits(int k) { return next_u32() >> (32 - k); }
  // random._randbelow(n): uniform in [0, n) by rejection.
  uint64_t randbelow(uint64_t n);
  // random.shuffle(x).
  template <typename T>
  void shuffle(std::vector<T>& x) {
    for (size_t i = x.size(); i-- > 1;) std::swap(x[i], x[randbelow(i + 1)]);
  }

 private:
  std::array<uint32_t, 624> mt_{};
  int index_ = 624;
};

}  // namespace tapegrad::data
