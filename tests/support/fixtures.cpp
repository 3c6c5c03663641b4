#include "fixtures.h"

#include <tapegrad/core/ops.h>
#include <tapegrad/core/random.h>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>

namespace tapegrad::testing {

Fixture::Fixture(const std::string& file) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<SafetensorsFile>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(load_safetensors(std::string(TAPEGRAD_FIXTURES_DIR) + "/" + file));
  data_ = slot.get();
}

void require_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  INFO("actual shape " << shape_str(actual.shape()) << ", expected shape " << shape_str(expected.shape()));
  REQUIRE(actual.shape() == expected.shape());
  const auto a = actual.to_vector<double>();
  const auto b = expected.to_vector<double>();
  size_t worst = 0;
  double worst_excess = 0;
  bool ok = true;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::isinf(b[i]) && a[i] == b[i]) continue;
    const double excess = std::abs(a[i] - b[i]) - (atol + rtol * std::abs(b[i]));
    if (!(excess <= 0)) {
      if (ok || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
      ok = false;
    }
  }
  INFO("worst element " << worst << ": actual " << (a.empty() ? 0 : a[worst]) << ", expected "
                        << (b.empty() ? 0 : b[worst]) << " (rtol " << rtol << ", atol " << atol << ")");
  REQUIRE(ok);
}

Tensor randn64(const Shape& shape, uint64_t seed, bool requires_grad) {
  Generator gen(seed);
  Tensor t = Tensor::randn(shape, {.dtype = kFloat64}, &gen);
  if (requires_grad) t.requires_grad_();
  return t;
}

}  // namespace tapegrad::testing
