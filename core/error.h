// tapegrad::Error: the one exception type every misuse throws.
//
// Messages name the operation, what it expected and what it got, e.g.
//   "matmul: mat1 and mat2 shapes cannot be multiplied (2x4 and 3x5)"
// Tests pin these messages, so they are part of the API.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace tapegrad {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws tapegrad::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tapegrad

// TG_CHECK(cond, "op: expected {}, got {}", a, b): throws tapegrad::Error unless cond holds.
#define TG_CHECK(cond, ...)                 \
  do {                                      \
    if (!(cond)) ::tapegrad::fail(__VA_ARGS__); \
  } while (0)
