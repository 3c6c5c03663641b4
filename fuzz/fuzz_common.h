// What every fuzz target shares: the input as a string, a read of every byte a parsed tensor holds (so
// AddressSanitizer checks the whole buffer) and a check that aborts, which libFuzzer reports as a crash.
//
// A target may only see tapegrad::Error from the library: any other exception escapes
// LLVMFuzzerTestOneInput and libFuzzer reports it as a crash (an uncaught exception aborts).
#pragma once

#include <tapegrad/core/tensor.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace fuzz {

inline std::string bytes_of(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// Fails the run (an abort is a crash to libFuzzer) with a message when an invariant does not hold.
#define FUZZ_CHECK(cond)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                           \
    }                                                                         \
  } while (0)

// Reads every byte of a parsed tensor and checks its size agrees with its shape and dtype.
inline void touch(const tapegrad::Tensor& t) {
  FUZZ_CHECK(t.defined() && t.is_contiguous());
  const size_t n = static_cast<size_t>(t.numel()) * tapegrad::element_size(t.dtype());
  const auto* p = static_cast<const volatile uint8_t*>(t.data());
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) acc ^= p[i];
  (void)acc;
}

}  // namespace fuzz
