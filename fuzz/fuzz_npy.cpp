// tapegrad::parse_npy on arbitrary bytes: a tensor holding exactly the input's data section, or
// tapegrad::Error.
#include "fuzz_common.h"

#include <tapegrad/core/serialize.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  tapegrad::Tensor t;
  try {
    t = tapegrad::parse_npy(bytes, "fuzz input");
  } catch (const tapegrad::Error&) {
    return 0;
  }
  fuzz::touch(t);
  const size_t n = static_cast<size_t>(t.numel()) * tapegrad::element_size(t.dtype());
  FUZZ_CHECK(n <= size);
  // The data is the input's tail, byte for byte.
  FUZZ_CHECK(n == 0 || std::memcmp(t.data(), data + size - n, n) == 0);
  return 0;
}
