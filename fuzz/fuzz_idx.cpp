// tapegrad::data::parse_idx (IDX, optionally gzip-compressed) on arbitrary bytes, and what is built on
// a parsed array: its tensor, its re-encoding, and an IdxImageDataset over it when it has image shape.
#include "fuzz_common.h"

#include <tapegrad/core/random.h>
#include <tapegrad/data/idx.h>

using namespace tapegrad;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = fuzz::bytes_of(data, size);
  data::IdxArray a;
  std::string plain;  // the uncompressed IDX bytes
  try {
    a = data::parse_idx(bytes, "fuzz input");
    plain = data::is_gzip(bytes) ? data::gzip_decompress(bytes) : bytes;
  } catch (const Error&) {
    return 0;
  }
  FUZZ_CHECK(a.data.size() == static_cast<size_t>(a.numel()) * data::idx_type_size(a.type));
  // IDX is canonical: the parsed array encodes back to the very bytes it came from.
  FUZZ_CHECK(data::encode_idx(a) == plain);
  if (a.numel() <= (int64_t{1} << 20)) fuzz::touch(a.to_tensor(DType::Float64));

  // As images (N, H, W[, C]) with as many zero labels (not for (N, 0, ...) with a huge N: the labels
  // would be this harness's absurd allocation, not the library's).
  if (a.shape[0] > static_cast<int64_t>(std::max<size_t>(a.data.size(), 16))) return 0;
  data::IdxArray labels;
  labels.shape = {a.shape[0]};
  labels.data.assign(static_cast<size_t>(a.shape[0]), 0);
  try {
    const data::IdxImageDataset ds(a, labels);
    Generator gen(0);
    for (int64_t i = 0; i < std::min<int64_t>(ds.size(), 2); ++i) fuzz::touch(ds.get(i, gen).data);
  } catch (const Error&) {
  }
  return 0;
}
