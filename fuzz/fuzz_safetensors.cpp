// tapegrad::parse_safetensors on arbitrary bytes: it either returns tensors whose buffers match their
// shapes and dtypes, or throws tapegrad::Error.
#include "fuzz_common.h"

#include <tapegrad/core/serialize.h>

#include <set>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  tapegrad::SafetensorsFile file;
  try {
    file = tapegrad::parse_safetensors(bytes, "fuzz input");
  } catch (const tapegrad::Error&) {
    return 0;
  }
  std::set<std::string> names;
  size_t total = 0;
  for (const auto& [name, t] : file.tensors) {
    FUZZ_CHECK(names.insert(name).second);  // names are unique
    FUZZ_CHECK(file.contains(name) && &file.at(name) == &t);
    fuzz::touch(t);
    total += static_cast<size_t>(t.numel()) * tapegrad::element_size(t.dtype());
  }
  FUZZ_CHECK(total <= size);  // what was read came from the input's data section
  return 0;
}
