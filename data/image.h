// Decoded 8-bit images and their files: PNG, JPEG, BMP, GIF, TGA and binary PNM (P5/P6) through
// stb_image, PNG (and BMP/JPEG, for tests and tools) out through stb_image_write.
//
// An Image is height x width x channels bytes in HWC order (row-major, channels interleaved), the
// layout image files and PIL use; data/transforms.h turns it into a float CHW tensor (ToTensor).
// Channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. 16-bit PNGs are reduced to 8 bits; an animated GIF
// gives its first frame. JPEG decoding is stb's (its IDCT and chroma upsampling can differ from
// libjpeg's, which PIL uses, by a few levels).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tapegrad::data {

struct Image {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels bytes, HWC

  Image() = default;
  // Zero-filled (black, transparent) image; throws unless the sizes are positive and channels is 1..4.
  Image(int64_t height, int64_t width, int64_t channels);

  uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[static_cast<size_t>((y * width + x) * channels + c)]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const {
    return pixels[static_cast<size_t>((y * width + x) * channels + c)];
  }
  bool operator==(const Image&) const = default;
};

// Images with more pixels than this (height * width) are refused before any pixel buffer is allocated.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;
// Nor may a header claim more decoded bytes (height * width * channels) than a file of its size can
// encode. Per byte of the file, at most: PNG 65536 (1-bit paletted rows at deflate's 1032:1, expanded
// to RGBA, need 33024), GIF 16384 (LZW stays near 11000), JPEG 8192 (a complete file stays near 3000),
// BMP, TGA and PNM 512 (TGA's run-length packets: 256). A 100-byte file claiming 16384 x 16384 pixels
// is refused before stb allocates a gigabyte or spends seconds decoding zeros.
int64_t max_decoded_bytes_per_file_byte(const std::string& bytes);

// Size and channel count from the header only (cheap; nothing is decoded).
struct ImageInfo {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
};

// Decodes an image file held in memory. `what` names the source in errors:
//   "decode_image: cannot decode 'cat.png': <stb's reason, e.g. Corrupt PNG>"
//   "decode_image: cannot decode 'big.png': 100000x100000 pixels is more than the limit of 268435456"
//   "decode_image: cannot decode 'x.gif': 16384x16384x4 pixels from 35 bytes is more than any image
//    file of that size can hold"
Image decode_image(const std::string& bytes, const std::string& what = "<memory>");
// read_file + decode_image; errors name the path.
Image load_image(const std::string& path);
// Header probe with the same checks and messages as decode_image (format recognized, size sane).
ImageInfo probe_image(const std::string& bytes, const std::string& what = "<memory>");
// Why `bytes` cannot be decoded (the part of decode_image's message after the file name) from the
// header only, or from a full decode when `full`; empty when it can.
std::string image_problem(const std::string& bytes, bool full = false);

// Encodings of an image (1 to 4 channels). JPEG has no alpha: 2- and 4-channel images lose it.
std::string encode_png(const Image& image);
std::string encode_bmp(const Image& image);
std::string encode_jpg(const Image& image, int quality = 90);
// Writes a PNG atomically (temporary file in the same directory, then rename).
void save_png(const std::string& path, const Image& image);

// The same pixels with `channels` channels (1, 3 or 4), the way PIL's Image.convert does it for
// "L", "RGB" and "RGBA": alpha is dropped (not composited), gray is replicated to RGB, a missing alpha
// becomes 255, and RGB -> gray uses the ITU-R 601-2 luma weights of torchvision's rgb_to_grayscale
// (0.2989 R + 0.587 G + 0.114 B, computed in float32 and truncated, as torchvision does for uint8).
Image convert_channels(const Image& image, int64_t channels);

}  // namespace tapegrad::data
