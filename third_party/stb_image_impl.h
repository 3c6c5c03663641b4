// The small interface tapegrad uses from stb_image / stb_image_write (Debian's libstb-dev headers).
//
// stb_image_impl.cpp is the one translation unit that includes the stb headers and compiles their
// implementation (as static functions, so they never clash with another copy of stb in a program).
// Everything else calls these wrappers; data/image.h is the public API built on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tapegrad::stb {

// Size and channel count from the file header, without decoding pixels. False (and `reason` set to
// stb's failure reason) when the bytes are not an image stb recognizes.
bool info(const uint8_t* bytes, size_t size, int& width, int& height, int& channels, std::string& reason);

// Decodes to 8 bits per channel with the file's own channel count (1 gray, 2 gray+alpha, 3 RGB,
// 4 RGBA); only the first frame of an animated GIF. Returns nullptr and sets `reason` on failure; the
// result must be released with free_pixels().
uint8_t* load(const uint8_t* bytes, size_t size, int& width, int& height, int& channels, std::string& reason);
void free_pixels(uint8_t* pixels);

// PNG / BMP / JPEG encodings of 8-bit HWC pixels, appended to `out`. False when stb refuses.
bool write_png(std::string& out, int width, int height, int channels, const uint8_t* pixels);
bool write_bmp(std::string& out, int width, int height, int channels, const uint8_t* pixels);
bool write_jpg(std::string& out, int width, int height, int channels, const uint8_t* pixels, int quality);

}  // namespace tapegrad::stb
