// Element types and the dispatch helper that turns a runtime dtype into a template argument.
#pragma once

#include "error.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tapegrad {

// float32 and float64 carry gradients; int64 holds labels and indices; bool is what comparisons return.
enum class DType : uint8_t { Float32, Float64, Int64, Bool };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kBool = DType::Bool;

constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

// "float32", "float64", "int64", "bool": the names PyTorch prints after "torch.".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }

// The dtype of a binary op's result: bool < int64 < float32 < float64.
constexpr int promotion_rank(DType t) {
  switch (t) {
    case DType::Bool: return 0;
    case DType::Int64: return 1;
    case DType::Float32: return 2;
    case DType::Float64: return 3;
  }
  return 0;
}
constexpr DType promote_types(DType a, DType b) { return promotion_rank(a) >= promotion_rank(b) ? a : b; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

// Calls f.template operator()<T>() with T the C++ type of `t`, for floating dtypes only:
//   dispatch_floating(x.dtype(), "exp", [&]<typename T>() { ... });
// Any other dtype throws "exp: expected a floating point tensor (float32 or float64), got int64".
template <typename F>
decltype(auto) dispatch_floating(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: fail("{}: expected a floating point tensor (float32 or float64), got {}", op, dtype_name(t));
  }
}

// As dispatch_floating, plus int64 (arithmetic on labels and indices).
template <typename F>
decltype(auto) dispatch_numeric(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    default: fail("{}: expected a numeric tensor (float32, float64 or int64), got {}", op, dtype_name(t));
  }
}

// Every dtype, bool included (copies, comparisons, where).
template <typename F>
decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<int64_t>();
    case DType::Bool: break;
  }
  return f.template operator()<bool>();
}

}  // namespace tapegrad
