#include "image.h"

#include "../core/error.h"
#include "../core/serialize.h"
#include "../third_party/stb_image_impl.h"
#include "pixel.h"

#include <memory>

namespace tapegrad::data {

Image::Image(int64_t h, int64_t w, int64_t c) : height(h), width(w), channels(c) {
  TG_CHECK(h > 0 && w > 0 && c >= 1 && c <= 4,
           "Image: expected positive height and width and 1 to 4 channels, got {}x{} with {} channels", h, w, c);
  TG_CHECK(h <= kMaxImagePixels / w, "Image: {}x{} pixels is more than the limit of {}", h, w, kMaxImagePixels);
  pixels.assign(static_cast<size_t>(h * w * c), 0);
}

namespace {

const uint8_t* as_bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// Size problems of a w x h x c image read from `file`; empty when fine.
std::string dims_problem(int64_t w, int64_t h, int64_t c, const std::string& file) {
  if (w <= 0 || h <= 0) return fmt::format("invalid size {}x{}", w, h);
  if (h > kMaxImagePixels / w) return fmt::format("{}x{} pixels is more than the limit of {}", w, h, kMaxImagePixels);
  if (c < 1 || c > 4) return fmt::format("{} channels, expected 1 to 4", c);
  // w * h * c <= 2^30 here, and the file's size fits in int (stb refuses larger input first).
  if (w * h * c > static_cast<int64_t>(file.size()) * max_decoded_bytes_per_file_byte(file))
    return fmt::format("{}x{}x{} pixels from {} bytes is more than any image file of that size can hold", w, h, c,
                       file.size());
  return {};
}

// Header probe: stb's reason or a size problem, empty when fine.
std::string probe_problem(const std::string& bytes, ImageInfo& info) {
  int w = 0, h = 0, c = 0;
  std::string reason;
  if (!stb::info(as_bytes(bytes), bytes.size(), w, h, c, reason)) {
    // stb_image's probe tries every format and keeps the last one's complaint; a decode attempt names
    // the real problem (it stops at the same header, before allocating pixels).
    std::string detail;
    uint8_t* p = stb::load(as_bytes(bytes), bytes.size(), w, h, c, detail);
    if (p) stb::free_pixels(p);
    return p || detail.empty() ? reason : detail;
  }
  info = {h, w, c};
  return dims_problem(w, h, c, bytes);
}

// Full decode into `img`; the header is checked first, so an absurd size is refused before stb
// allocates anything.
std::string decode_problem(const std::string& bytes, Image* img) {
  ImageInfo info;
  if (std::string p = probe_problem(bytes, info); !p.empty()) return p;
  int w = 0, h = 0, c = 0;
  std::string reason;
  std::unique_ptr<uint8_t, void (*)(uint8_t*)> p(stb::load(as_bytes(bytes), bytes.size(), w, h, c, reason),
                                                 stb::free_pixels);
  if (!p) return reason.empty() ? "no image in the file" : reason;  // never an empty reason: that means success
  if (std::string d = dims_problem(w, h, c, bytes); !d.empty()) return d;
  if (img) {
    img->height = h;
    img->width = w;
    img->channels = c;
    img->pixels.assign(p.get(), p.get() + static_cast<size_t>(h) * w * c);
  }
  return {};
}

void check_encodable(const Image& image, const char* op) {
  TG_CHECK(image.height > 0 && image.width > 0 && image.channels >= 1 && image.channels <= 4,
           "{}: expected an image with positive height and width and 1 to 4 channels, got {}x{} with {} channels", op,
           image.height, image.width, image.channels);
  TG_CHECK(image.height <= kMaxImagePixels / image.width &&
               image.pixels.size() == static_cast<size_t>(image.height * image.width * image.channels),
           "{}: image of {}x{}x{} holds {} bytes", op, image.height, image.width, image.channels, image.pixels.size());
}

}  // namespace

int64_t max_decoded_bytes_per_file_byte(const std::string& b) {
  if (b.compare(0, 4, "\x89PNG") == 0) return int64_t{1} << 16;
  if (b.compare(0, 4, "GIF8") == 0) return int64_t{1} << 14;
  if (!b.empty() && static_cast<uint8_t>(b[0]) == 0xFF) return int64_t{1} << 13;  // JPEG, as stb tells it
  return int64_t{1} << 9;  // BMP, TGA, PNM
}

std::string image_problem(const std::string& bytes, bool full) {
  ImageInfo info;
  return full ? decode_problem(bytes, nullptr) : probe_problem(bytes, info);
}

ImageInfo probe_image(const std::string& bytes, const std::string& what) {
  ImageInfo info;
  if (std::string p = probe_problem(bytes, info); !p.empty()) fail("decode_image: cannot decode '{}': {}", what, p);
  return info;
}

Image decode_image(const std::string& bytes, const std::string& what) {
  Image img;
  if (std::string p = decode_problem(bytes, &img); !p.empty()) fail("decode_image: cannot decode '{}': {}", what, p);
  return img;
}

Image load_image(const std::string& path) { return decode_image(read_file(path), path); }

std::string encode_png(const Image& image) {
  check_encodable(image, "encode_png");
  std::string out;
  TG_CHECK(stb::write_png(out, static_cast<int>(image.width), static_cast<int>(image.height),
                          static_cast<int>(image.channels), image.pixels.data()),
           "encode_png: stb_image_write failed for a {}x{}x{} image", image.height, image.width, image.channels);
  return out;
}

std::string encode_bmp(const Image& image) {
  check_encodable(image, "encode_bmp");
  std::string out;
  TG_CHECK(stb::write_bmp(out, static_cast<int>(image.width), static_cast<int>(image.height),
                          static_cast<int>(image.channels), image.pixels.data()),
           "encode_bmp: stb_image_write failed for a {}x{}x{} image", image.height, image.width, image.channels);
  return out;
}

std::string encode_jpg(const Image& image, int quality) {
  check_encodable(image, "encode_jpg");
  TG_CHECK(quality >= 1 && quality <= 100, "encode_jpg: quality must be in [1, 100], got {}", quality);
  std::string out;
  TG_CHECK(stb::write_jpg(out, static_cast<int>(image.width), static_cast<int>(image.height),
                          static_cast<int>(image.channels), image.pixels.data(), quality),
           "encode_jpg: stb_image_write failed for a {}x{}x{} image", image.height, image.width, image.channels);
  return out;
}

void save_png(const std::string& path, const Image& image) { write_file_atomic(path, encode_png(image)); }

Image convert_channels(const Image& image, int64_t channels) {
  TG_CHECK(channels == 1 || channels == 3 || channels == 4,
           "convert_channels: expected 1, 3 or 4 output channels, got {}", channels);
  check_encodable(image, "convert_channels");
  if (image.channels == channels) return image;
  Image out(image.height, image.width, channels);
  const int64_t n = image.height * image.width, ci = image.channels;
  const uint8_t* src = image.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (int64_t i = 0; i < n; ++i, src += ci, dst += channels) {
    // The source's gray or RGB part (alpha, at index 1 or 3, is ignored).
    uint8_t rgb[3];
    if (ci <= 2) {
      rgb[0] = rgb[1] = rgb[2] = src[0];
    } else {
      rgb[0] = src[0], rgb[1] = src[1], rgb[2] = src[2];
    }
    if (channels == 1) {
      dst[0] = ci <= 2 ? src[0] : luma_u8(rgb[0], rgb[1], rgb[2]);
    } else {
      dst[0] = rgb[0], dst[1] = rgb[1], dst[2] = rgb[2];
      if (channels == 4) dst[3] = ci == 2 ? src[1] : ci == 4 ? src[3] : 255;
    }
  }
  return out;
}

}  // namespace tapegrad::data
