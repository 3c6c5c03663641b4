// Internal pixel arithmetic shared by image.cpp and transforms.cpp (not part of the public API).
#pragma once

#include <cstdint>

namespace tapegrad::data {

// a * b rounded to float32 on its own: the empty asm keeps the compiler from fusing it with a
// following add into an FMA, so sums match PyTorch's separate mul and add kernels bit for bit.
template <typename T>
inline T mul_rounded(T a, T b) {
  T p = a * b;
  asm("" : "+m"(p));
  return p;
}

// torchvision's rgb_to_grayscale: 0.2989 * r + 0.587 * g + 0.114 * b in T (the weights are Python floats
// converted to the tensor's dtype), left to right.
template <typename T>
inline T luma(T r, T g, T b) {
  return (mul_rounded(T(0.2989), r) + mul_rounded(T(0.587), g)) + mul_rounded(T(0.114), b);
}

// The uint8 version converts back with .to(torch.uint8), which truncates toward zero.
inline uint8_t luma_u8(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>(luma<float>(static_cast<float>(r), static_cast<float>(g), static_cast<float>(b)));
}

}  // namespace tapegrad::data
