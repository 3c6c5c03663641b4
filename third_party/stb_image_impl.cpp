// The only file that compiles stb_image and stb_image_write (see stb_image_impl.h).
#include "stb_image_impl.h"

#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>
#include <limits>

// Decoders for the formats tapegrad documents (PNG, JPEG, BMP, GIF, TGA, PNM); the others are left out.
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_NO_LINEAR
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
// Every allocation zeroed: Debian's stb_image (2.27) does not clear its JPEG decoder state, so Huffman
// and quantization tables a file never defines are whatever the heap held before, and the same bytes
// decode differently from one call to the next (found by fuzz_image; cleared upstream since 2.28).
// calloc of a large pixel buffer costs nothing extra (fresh pages are zero).
#define STBI_MALLOC(size) calloc(1, size)
#define STBI_REALLOC(p, size) realloc(p, size)
#define STBI_FREE(p) free(p)
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
// stb's reason for the call just made. Some failures set none (a GIF that ends before its first frame
// just returns null), so the reason is cleared before each call: a stale one from an earlier failure
// on this thread, or none at all, must never pass for a reason (or for success).
void clear_failure_reason() { stbi__g_failure_reason = nullptr; }
const char* failure_reason() {
  const char* r = stbi_failure_reason();  // thread-local in stb >= 2.26
  return r && *r ? r : "no image in the file";
}

bool fits_int(size_t size) { return size <= static_cast<size_t>(std::numeric_limits<int>::max()); }

// Guards against bugs of Debian's stb_image (2.27, from 2022), found by fuzz_image: inputs that would
// make it write out of bounds are refused before it sees them, with the message it would give.
//
// JPEG: a DHT segment whose 16 code counts add up to more than 256 makes stbi__build_huffman write
// past its 257-entry size table and stbi__process_marker past the 256 symbol values (checked upstream
// since 2.28). Every DHT stb could read is checked: among the header segments, walked by their
// lengths as stb walks them, and from the first scan on every 0xFF (0xFF...) 0xC4, since stb resumes
// after a scan at the first 0xFF byte wherever its decoding stopped (entropy-coded data escapes its
// own 0xFF bytes, so a legitimate file has no such pair there that is not a marker).
//
// A scan that uses a Huffman table no DHT before it defined is refused too: stb decodes it with an
// empty table, every code reading as symbol 0, and returns a flat grey picture as if the file were
// fine (stb's own state is zeroed by STBI_MALLOC above, so this used to depend on the heap instead).
const char* jpeg_huffman_problem(const uint8_t* p, size_t n) {
  if (n < 2 || p[0] != 0xFF) return nullptr;  // not a JPEG (stb finds its SOI marker at byte 0)
  auto get = [&](size_t i) -> unsigned { return i < n ? p[i] : 0u; };  // stb reads zeros past the end
  bool defined[2][4] = {};  // [DC = 0, AC = 1][table id]
  bool progressive = false;
  // The tables of a DHT segment whose length field is at `i`, read as stbi__process_marker reads them.
  auto dht_ok = [&](size_t i) {
    long left = static_cast<long>(get(i) << 8 | get(i + 1)) - 2;
    i += 2;
    while (left > 0 && i < n) {
      const unsigned q = get(i++);
      if ((q >> 4) > 1 || (q & 15) > 3) return true;  // stb stops: "bad DHT header"
      unsigned count = 0;
      for (int k = 0; k < 16; ++k) count += get(i++);
      if (count > 256) return false;
      defined[q >> 4][q & 15] = true;
      left -= 17 + static_cast<long>(count);
      i += count;
    }
    return true;
  };
  // The scan header whose length field is at `i`: every table it decodes with must exist. Sequential
  // scans use a DC and an AC table per component; progressive ones the DC table in a first DC scan and
  // the AC table in AC scans (DC refinement reads raw bits).
  auto sos_ok = [&](size_t i) {
    const unsigned ns = get(i + 2);
    if (ns < 1 || ns > 4) return true;  // stb refuses it: "bad SOS component count"
    const size_t spectral = i + 3 + 2 * ns;
    const unsigned ss = get(spectral), ah = get(spectral + 2) >> 4;
    for (unsigned c = 0; c < ns; ++c) {
      const unsigned tables = get(i + 4 + 2 * c), dc = tables >> 4, ac = tables & 15;
      if (dc > 3 || ac > 3) return true;  // stb refuses it: "bad huffman table"
      const bool need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss != 0;
      if ((need_dc && !defined[0][dc]) || (need_ac && !defined[1][ac])) return false;
    }
    return true;
  };
  constexpr const char* kCorrupt = "Corrupt JPEG";
  constexpr const char* kUndefined = "Corrupt JPEG: a scan uses a Huffman table the file does not define";
  size_t i = 0;
  while (i < n) {  // header segments, up to the first scan
    if (p[i] != 0xFF) {
      ++i;
      continue;
    }
    while (i < n && p[i] == 0xFF) ++i;
    if (i >= n) return nullptr;
    const unsigned m = p[i++];
    if (m == 0xD8 || m == 0x01 || m == 0x00 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length follows
    if (m == 0xD9) return nullptr;                                                   // end of image
    if (m == 0xC2) progressive = true;
    if (m == 0xC4 && !dht_ok(i)) return kCorrupt;
    if (m == 0xDA) {
      if (!sos_ok(i)) return kUndefined;
      break;
    }
    i += get(i) << 8 | get(i + 1);
  }
  for (; i + 1 < n; ++i) {  // from the first scan on
    if (p[i] != 0xFF) continue;
    size_t j = i + 1;
    while (j < n && p[j] == 0xFF) ++j;
    if (j < n && p[j] == 0xC4 && !dht_ok(j + 1)) return kCorrupt;
    if (j < n && p[j] == 0xDA && !sos_ok(j + 1)) return kUndefined;
  }
  return nullptr;
}

// A PNG chunk's big-endian length or type.
uint32_t be32(const uint8_t* q) {
  return uint32_t{q[0]} << 24 | uint32_t{q[1]} << 16 | uint32_t{q[2]} << 8 | uint32_t{q[3]};
}

// PNG: stb grows its buffer for the compressed data to an IDAT chunk's declared length before reading
// the chunk, so a 100-byte file declaring a 2 GB chunk makes it allocate 2 GB. The chunks are walked as
// stb walks them (length, type, data, CRC) and an IDAT longer than what is left of the file is refused;
// stb would fail on it anyway, after the allocation.
bool png_chunk_lengths_ok(const uint8_t* p, size_t n) {
  if (n < 8 || std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) != 0) return true;
  constexpr uint32_t kIDAT = 0x49444154, kIEND = 0x49454e44;
  size_t i = 8;
  while (n - i >= 8) {
    const uint32_t length = be32(p + i), type = be32(p + i + 4);
    i += 8;
    if (length > n - i) return type != kIDAT;  // stb runs out of data here
    if (type == kIEND) return true;
    i += length;
    if (n - i < 4) return true;
    i += 4;  // CRC
  }
  return true;
}

// PNG: an IDAT chunk of length 0 that comes before any pixel data makes stb call memcpy(NULL, data, 0)
// (its buffer for the compressed data is not allocated yet; found by fuzz_image, input
// fuzz/corpus/fuzz_image/regression_png_empty_idat.png). That is undefined behaviour, which also lets
// the compiler assume the buffer non-null and drop stb's later "no IDAT" check. Empty IDAT chunks are
// legal and carry nothing: a copy of the file without them is what stb gets. Empty when there is
// nothing to take out.
std::string png_without_empty_idat(const uint8_t* p, size_t n) {
  if (n < 8 || std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) != 0) return {};
  constexpr uint32_t kIDAT = 0x49444154, kIEND = 0x49454e44;
  std::vector<std::pair<size_t, size_t>> empty;  // [begin, end) of each empty IDAT chunk
  size_t i = 8;
  while (n - i >= 12) {
    const uint32_t length = be32(p + i), type = be32(p + i + 4);
    if (type == kIDAT && length == 0) empty.emplace_back(i, i + 12);
    if (type == kIEND || length > n - i - 12) break;
    i += 12 + length;
  }
  if (empty.empty()) return {};
  std::string out;
  out.reserve(n);
  size_t from = 0;
  for (auto [begin, end] : empty) {
    out.append(reinterpret_cast<const char*>(p) + from, begin - from);
    from = end;
  }
  out.append(reinterpret_cast<const char*>(p) + from, n - from);
  return out;
}

// PNM: stbi__pnm_getinteger multiplies by 10 per digit without a check, so a header number of ten
// or more digits overflows int (undefined behaviour; checked upstream since 2.28). The three header
// numbers are read as stb reads them (whitespace and # comments between them) and must fit in int.
bool pnm_header_integers_ok(const uint8_t* p, size_t n) {
  if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return true;
  auto space = [](unsigned c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t i = 2;
  for (int field = 0; field < 3; ++field) {  // width, height, maximum value
    for (;;) {
      while (i < n && space(p[i])) ++i;
      if (i >= n || p[i] != '#') break;
      while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
    }
    uint64_t value = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; ++i) {
      value = value * 10 + (p[i] - '0');
      if (value > static_cast<uint64_t>(std::numeric_limits<int>::max())) return false;
    }
  }
  return true;
}

// Null when stb may be given these bytes, else the reason to refuse them (in stb's words where it has
// some). Reading the header alone (`decoding` false) never touches IDAT chunks, so a file cut short
// in its pixel data still probes as fine.
const char* known_stb_bug(const uint8_t* bytes, size_t size, bool decoding) {
  if (const char* jpeg = jpeg_huffman_problem(bytes, size)) return jpeg;
  if (decoding && !png_chunk_lengths_ok(bytes, size)) return "Corrupt PNG";
  if (!pnm_header_integers_ok(bytes, size)) return "Corrupt PNM: a header number overflows";
  return nullptr;
}

void append(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

bool info(const uint8_t* bytes, size_t size, int& width, int& height, int& channels, std::string& reason) {
  if (!fits_int(size)) {
    reason = "file too large";
    return false;
  }
  if (const char* bug = known_stb_bug(bytes, size, false)) {
    reason = bug;
    return false;
  }
  clear_failure_reason();
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
  const std::string without_empty_idat = png_without_empty_idat(bytes, size);
  if (!without_empty_idat.empty()) {
    bytes = reinterpret_cast<const uint8_t*>(without_empty_idat.data());
    size = without_empty_idat.size();
  }
  if (const char* bug = known_stb_bug(bytes, size, true)) {
    reason = bug;
    return nullptr;
  }
  clear_failure_reason();
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
