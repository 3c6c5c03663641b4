// The storage allocator: large buffers are reused, never while alive, and zeros() clears them.
#include "support/fixtures.h"

#include <tapegrad/core/ops.h>

#include <cstdint>

using namespace tapegrad;

namespace {
constexpr int64_t kBig = int64_t{3} << 20;  // 12 MB of float32: well above the 1 MB from which buffers are cached
}

TEST_CASE("storage: large buffers are 2 MB aligned and reused once their tensor dies") {
  const void* first = nullptr;
  {
    Tensor t = Tensor::empty({kBig});
    first = t.data();
    REQUIRE(reinterpret_cast<uintptr_t>(first) % (uintptr_t{2} << 20) == 0);
  }
#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer builds free every buffer at once
  Tensor again = Tensor::empty({kBig});
  REQUIRE(again.data() == first);
#endif
}

TEST_CASE("storage: live tensors never share a reused buffer; zeros() and ones() clear it") {
  { Tensor dirty = Tensor::full({kBig}, 7.0); }
  Tensor a = Tensor::zeros({kBig});
  Tensor b = Tensor::ones({kBig});
  REQUIRE(a.data() != b.data());
  REQUIRE(a.sum().item() == 0.0);
  REQUIRE(b.sum().item() == static_cast<double>(kBig));
  // Small buffers and odd sizes still work, and are 64-byte aligned.
  for (int64_t n : std::initializer_list<int64_t>{0, 1, 3, 1000, (int64_t{1} << 18) + 5}) {
    Tensor t = Tensor::zeros({n}, {.dtype = kFloat64});
    REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
    REQUIRE(t.sum().item() == 0.0);
  }
}
