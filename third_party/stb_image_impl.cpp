// The only file that compiles stb_image and stb_image_write (see stb_image_impl.h).
#include "stb_image_impl.h"

#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <limits>

// Decoders for the formats tapegrad documents (PNG, JPEG, BMP, GIF, TGA, PNM); the others are left out.
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_NO_LINEAR
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION

#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION

namespace {
// PNG's deflate stream through zlib: smaller files and faster than stb_image_write's own compressor.
// Returns memory owned by malloc (stb_image_write frees it with STBIW_FREE = free).
unsigned char* zlib_compress(unsigned char* data, int data_len, int* out_len, int quality) {
  uLongf len = compressBound(static_cast<uLong>(data_len));
  auto* out = static_cast<unsigned char*>(std::malloc(len));
  if (!out) return nullptr;
  const int level = quality < 1 ? 1 : quality > 9 ? 9 : quality;
  if (compress2(out, &len, data, static_cast<uLong>(data_len), level) != Z_OK ||
      len > static_cast<uLongf>(std::numeric_limits<int>::max())) {
    std::free(out);
    return nullptr;
  }
  *out_len = static_cast<int>(len);
  return out;
}
}  // namespace
#define STBIW_ZLIB_COMPRESS zlib_compress

// stb's code is not written for -Wall -Wextra -Werror; its warnings are silenced for this file only.
// No pop: warnings found after inlining (-Wmaybe-uninitialized) point into stb but are emitted where
// its functions are inlined, in the wrappers below.
#pragma GCC diagnostic ignored "-Wall"
#ifndef __clang__  // a gcc-only warning; clang would warn about the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

namespace tapegrad::stb {

namespace {
const char* failure_reason() {
  const char* r = stbi_failure_reason();  // thread-local in stb >= 2.26
  return r ? r : "unknown error";
}

bool fits_int(size_t size) { return size <= static_cast<size_t>(std::numeric_limits<int>::max()); }

void append(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

bool info(const uint8_t* bytes, size_t size, int& width, int& height, int& channels, std::string& reason) {
  if (!fits_int(size)) {
    reason = "file too large";
    return false;
  }
  if (!stbi_info_from_memory(bytes, static_cast<int>(size), &width, &height, &channels)) {
    reason = failure_reason();
    return false;
  }
  return true;
}

uint8_t* load(const uint8_t* bytes, size_t size, int& width, int& height, int& channels, std::string& reason) {
  if (!fits_int(size)) {
    reason = "file too large";
    return nullptr;
  }
  uint8_t* p = stbi_load_from_memory(bytes, static_cast<int>(size), &width, &height, &channels, 0);
  if (!p) reason = failure_reason();
  return p;
}

void free_pixels(uint8_t* pixels) { stbi_image_free(pixels); }

bool write_png(std::string& out, int width, int height, int channels, const uint8_t* pixels) {
  return stbi_write_png_to_func(append, &out, width, height, channels, pixels, width * channels) != 0;
}

bool write_bmp(std::string& out, int width, int height, int channels, const uint8_t* pixels) {
  return stbi_write_bmp_to_func(append, &out, width, height, channels, pixels) != 0;
}

bool write_jpg(std::string& out, int width, int height, int channels, const uint8_t* pixels, int quality) {
  return stbi_write_jpg_to_func(append, &out, width, height, channels, pixels, quality) != 0;
}

}  // namespace tapegrad::stb
