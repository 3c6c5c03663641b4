// Option checks for the example programs' command lines, with messages that say what was expected:
// CLI11's PositiveNumber answers "--epochs 0" with "Value 0 not in range 0.000000 to 17976931348623...
// (300 digits).000000", and a word where a number belongs with the same range.
#pragma once

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace tapegrad::examples {

namespace detail {

// The whole of `s` as a base-10 integer (no sign other than '-', no trailing text), or false.
inline bool parse_int(const std::string& s, long long& out) {
  if (s.empty() || s.find_first_not_of("-0123456789") != std::string::npos) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtoll(s.c_str(), &end, 10);
  return errno == 0 && end == s.c_str() + s.size();
}

// The whole of `s` as a finite number, or false.
inline bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size() && out - out == 0;
}

}  // namespace detail

// "--epochs: expected a positive integer, got '0'"
inline CLI::Validator positive_int() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        long long v = 0;
        return detail::parse_int(s, v) && v > 0 ? std::string() : "expected a positive integer, got '" + s + "'";
      },
      "INT > 0", "positive_int");
}

// "--workers: expected an integer >= 0, got '-1'"
inline CLI::Validator non_negative_int() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        long long v = 0;
        return detail::parse_int(s, v) && v >= 0 ? std::string() : "expected an integer >= 0, got '" + s + "'";
      },
      "INT >= 0", "non_negative_int");
}

// "--lr: expected a number >= 0, got 'fast'"
inline CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        double v = 0;
        return detail::parse_number(s, v) && v >= 0 ? std::string() : "expected a number >= 0, got '" + s + "'";
      },
      "NUMBER >= 0", "non_negative_number");
}

}  // namespace tapegrad::examples
