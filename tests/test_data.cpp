// The data pipeline: image decoding, transforms (against torch fixtures from gen_data.py), ImageFolder,
// TensorDataset, IDX files and their export, samplers and the DataLoader.
#include "support/fixtures.h"
#include "support/temp_dir.h"

#include <tapegrad/core/ops.h>
#include <tapegrad/data/dataloader.h>
#include <tapegrad/data/dataset.h>
#include <tapegrad/data/idx.h>
#include <tapegrad/data/image.h>
#include <tapegrad/data/transforms.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

using namespace tapegrad;
using tapegrad::testing::TempDir;
using namespace tapegrad::data;
namespace fs = std::filesystem;

namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// Deterministic pixels with some structure (so JPEG has something smooth to keep).
Image test_image(int64_t h, int64_t w, int64_t c, uint64_t seed = 1) {
  Image img(h, w, c);
  Generator g(seed);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) img.at(y, x, k) = static_cast<uint8_t>(g.below(256));
  return img;
}

Image smooth_image(int64_t h, int64_t w, int64_t c) {
  Image img(h, w, c);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) img.at(y, x, k) = static_cast<uint8_t>((y * 8 + x * 4 + k * 40) % 256);
  return img;
}

// An int64 fixture tensor of shape (H, W, C) or (H, W) as an Image.
Image image_from(const Tensor& t) {
  const int64_t c = t.dim() == 3 ? t.size(2) : 1;
  Image img(t.size(0), t.size(1), c);
  const auto v = t.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i) img.pixels[i] = static_cast<uint8_t>(v[i]);
  return img;
}

// An Image as an int64 tensor (H, W, C), to compare with fixtures.
Tensor tensor_from(const Image& img) {
  std::vector<int64_t> v(img.pixels.begin(), img.pixels.end());
  return Tensor::from_vector(v, {img.height, img.width, img.channels});
}

void require_equal(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  REQUIRE(std::memcmp(ca.data(), cb.data(), static_cast<size_t>(ca.numel()) * element_size(ca.dtype())) == 0);
}

void require_equal(const Batch& a, const Batch& b) {
  require_equal(a.data, b.data);
  require_equal(a.labels, b.labels);
  REQUIRE(a.indices == b.indices);
}

std::vector<Batch> all_batches(DataLoader::Epoch e) {
  std::vector<Batch> out;
  while (auto b = e.next()) out.push_back(std::move(*b));
  return out;
}

testing::Fixture& fx() {
  static testing::Fixture f("data.safetensors");
  return f;
}

// Minimal files of the formats stb_image_write does not write.
std::string pnm(const Image& img) {
  std::string s = fmt::format("{}\n{} {}\n255\n", img.channels == 1 ? "P5" : "P6", img.width, img.height);
  s.append(img.pixels.begin(), img.pixels.end());
  return s;
}

// Uncompressed true-color TGA, top-left origin, BGR(A).
std::string tga(const Image& img) {
  std::string s(18, '\0');
  s[2] = 2;
  s[12] = static_cast<char>(img.width & 0xff), s[13] = static_cast<char>(img.width >> 8);
  s[14] = static_cast<char>(img.height & 0xff), s[15] = static_cast<char>(img.height >> 8);
  s[16] = static_cast<char>(8 * img.channels);
  s[17] = 0x20;
  for (int64_t i = 0; i < img.height * img.width; ++i) {
    const uint8_t* p = &img.pixels[static_cast<size_t>(i * img.channels)];
    s += static_cast<char>(p[2]), s += static_cast<char>(p[1]), s += static_cast<char>(p[0]);
    if (img.channels == 4) s += static_cast<char>(p[3]);
  }
  return s;
}

// A 2x1 GIF87a with a two-color palette (red, blue): LZW codes clear, 0, 1, end at 3 bits.
std::string tiny_gif() {
  const unsigned char b[] = {'G', 'I', 'F', '8', '7', 'a', 2, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 0, 255,
                             0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0, 2, 2, 0x44, 0x0A, 0, 0x3B};
  return std::string(reinterpret_cast<const char*>(b), sizeof b);
}

// A baseline JPEG with one component whose blocks are all mid-gray (every DC difference 0, every block
// ended at once): Huffman tables with a single 1-bit code "0" for DC category 0 and for EOB.
std::string gray_jpeg(int h, int w) {
  std::string s = "\xff\xd8";
  s += std::string("\xff\xdb\x00\x43\x00", 5) + std::string(64, '\x01');                  // quantization table
  s += std::string("\xff\xc0\x00\x0b\x08", 5);                                            // baseline frame
  s += {static_cast<char>(h >> 8), static_cast<char>(h & 0xff), static_cast<char>(w >> 8), static_cast<char>(w & 0xff)};
  s += std::string("\x01\x01\x11\x00", 4);                                                 // one component
  for (char cls : {'\x00', '\x10'})                                                          // DC and AC tables
    s += std::string("\xff\xc4\x00\x14", 4) + cls + '\x01' + std::string(15, '\0') + '\0';
  s += std::string("\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", 10);                        // scan header
  const int bits = 2 * (h / 8) * (w / 8);                                                    // "0" "0" per block
  std::string data((bits + 7) / 8, '\0');
  if (bits % 8) data.back() = static_cast<char>((1 << (8 - bits % 8)) - 1);                  // pad with 1 bits
  return s + data + "\xff\xd9";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Images

TEST_CASE("PNG round-trips losslessly for 1 to 4 channels and odd sizes") {
  for (int64_t c = 1; c <= 4; ++c) {
    const Image img = test_image(7, 13, c, static_cast<uint64_t>(c));
    const Image back = decode_image(encode_png(img), "x.png");
    REQUIRE(back == img);
    const ImageInfo info = probe_image(encode_png(img));
    REQUIRE((info.height == 7 && info.width == 13 && info.channels == c));
  }
  REQUIRE(decode_image(encode_png(test_image(1, 1, 3))) == test_image(1, 1, 3));
}

TEST_CASE("BMP round-trips; stb writes gray as RGB") {
  const Image rgb = test_image(5, 6, 3), rgba = test_image(5, 6, 4), gray = test_image(5, 6, 1);
  REQUIRE(decode_image(encode_bmp(rgb)) == rgb);
  REQUIRE(decode_image(encode_bmp(rgba)) == rgba);
  REQUIRE(decode_image(encode_bmp(gray)) == convert_channels(gray, 3));
}

TEST_CASE("JPEG decodes to the right size and channels, close to the original") {
  // stb_image_write always writes three components (gray is replicated).
  for (int64_t c : {1, 3}) {
    const Image img = convert_channels(smooth_image(16, 24, c), 3);
    const Image back = decode_image(encode_jpg(img, 95), "x.jpg");
    REQUIRE((back.height == 16 && back.width == 24 && back.channels == 3));
    double err = 0;
    for (size_t i = 0; i < img.pixels.size(); ++i) err += std::abs(int(img.pixels[i]) - int(back.pixels[i]));
    REQUIRE(err / static_cast<double>(img.pixels.size()) < 4.0);
  }
  // A one-component (grayscale) JPEG decodes to one channel.
  const Image gray = decode_image(gray_jpeg(16, 24), "gray.jpg");
  REQUIRE((gray.height == 16 && gray.width == 24 && gray.channels == 1));
  REQUIRE(gray.pixels == std::vector<uint8_t>(16 * 24, 128));
}

TEST_CASE("PNM, TGA and GIF decode") {
  const Image rgb = test_image(3, 5, 3), gray = test_image(4, 2, 1), rgba = test_image(2, 3, 4);
  REQUIRE(decode_image(pnm(rgb), "x.ppm") == rgb);
  REQUIRE(decode_image(pnm(gray), "x.pgm") == gray);
  REQUIRE(decode_image(tga(rgb), "x.tga") == rgb);
  REQUIRE(decode_image(tga(rgba), "x.tga") == rgba);
  const Image gif = decode_image(tiny_gif(), "x.gif");
  REQUIRE((gif.height == 1 && gif.width == 2 && gif.channels == 4));
  REQUIRE(gif.pixels == std::vector<uint8_t>{255, 0, 0, 255, 0, 0, 255, 255});
}

TEST_CASE("corrupt, truncated, unknown and absurdly large files throw naming the file") {
  REQUIRE_ERROR_CONTAINS(decode_image("", "empty.png"), "decode_image: cannot decode 'empty.png': ");
  REQUIRE_ERROR(decode_image("this is not an image at all", "notes.png"),
                "decode_image: cannot decode 'notes.png': Image not of any known type, or corrupt");
  std::string png = encode_png(test_image(40, 40, 3));
  REQUIRE_ERROR_CONTAINS(decode_image(png.substr(0, png.size() / 2), "half.png"), "decode_image: cannot decode 'half.png': ");
  std::string bad = png;
  bad[24] = 7;  // IHDR bit depth
  REQUIRE_ERROR(decode_image(bad, "bad.png"), "decode_image: cannot decode 'bad.png': PNG not supported: 1/2/4/8/16-bit only");
  bad = png;
  bad[1] = 'Q';  // signature
  REQUIRE_ERROR(decode_image(bad, "sig.png"), "decode_image: cannot decode 'sig.png': Image not of any known type, or corrupt");
  // IHDR of 70000 x 70000: stb refuses it from the header.
  std::string big = png;
  const unsigned char dim[4] = {0x00, 0x01, 0x11, 0x70};  // 70000 big-endian
  std::memcpy(&big[16], dim, 4);
  std::memcpy(&big[20], dim, 4);
  REQUIRE_ERROR(decode_image(big, "big.png"), "decode_image: cannot decode 'big.png': Image too large to decode");
  // A PNM header stb would accept: refused by tapegrad's own limit before any pixel buffer exists.
  const std::string huge = "P5\n70000 70000\n255\n" + std::string(100, '\0');
  REQUIRE_ERROR(decode_image(huge, "huge.pgm"),
                "decode_image: cannot decode 'huge.pgm': 70000x70000 pixels is more than the limit of 268435456");
  REQUIRE(image_problem(huge) == "70000x70000 pixels is more than the limit of 268435456");
  // Headers within those limits that claim far more pixels than the file's bytes can encode: refused
  // before stb allocates them (16384 x 16384 x 4 would be a gigabyte).
  std::string claims = png;
  const unsigned char side[4] = {0x00, 0x00, 0x40, 0x00};  // 16384 big-endian
  std::memcpy(&claims[16], side, 4);
  std::memcpy(&claims[20], side, 4);
  REQUIRE_ERROR(decode_image(claims, "claims.png"),
                fmt::format("decode_image: cannot decode 'claims.png': 16384x16384x{} pixels from {} bytes is more than any "
                            "image file of that size can hold", probe_image(png).channels, claims.size()));
  // A GIF whose 1x1 frame sits on a 16384 x 16384 canvas.
  const std::string gif("GIF89a\x00\x40\x00\x40\x80\x00\x00\xff\xff\xff\x00\x00\x00"
                        ",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;", 35);
  REQUIRE_ERROR(decode_image(gif, "canvas.gif"), "decode_image: cannot decode 'canvas.gif': 16384x16384x4 pixels from 35 "
                                                 "bytes is more than any image file of that size can hold");
  // An uncompressed 16-bit TGA of 65496 x 224 pixels cut to 768 bytes: stb would spend seconds decoding
  // zeros past the end (found by fuzz_image); its formats hold at most 512 decoded bytes per file byte.
  const std::string tga = std::string("\0\0\x02\0\0\0\0\0\0\0\0\0\xd8\xff\xe0\0\x10\0", 18) + std::string(750, '\0');
  REQUIRE_ERROR(decode_image(tga, "cut.tga"), "decode_image: cannot decode 'cut.tga': 65496x224x3 pixels from 768 bytes "
                                              "is more than any image file of that size can hold");
  // Inputs that would make Debian's stb_image misbehave are refused before it sees them (found by
  // fuzz_image): a JPEG Huffman table of more than 256 codes (stb writes past its tables) and a PNG
  // IDAT chunk longer than the file (stb allocates the declared length first).
  Image rgb(9, 17, 3);
  std::string jpg = encode_jpg(rgb);
  const size_t dht = jpg.find("\xff\xc4");
  REQUIRE(dht != std::string::npos);
  REQUIRE_NOTHROW(decode_image(jpg));
  jpg[dht + 5] = '\xff';  // the first of the 16 code counts of the first table
  jpg[dht + 6] = '\xff';
  REQUIRE_ERROR(decode_image(jpg, "dht.jpg"), "decode_image: cannot decode 'dht.jpg': Corrupt JPEG");
  std::string idat = encode_png(rgb);
  const size_t chunk = idat.find("IDAT");
  REQUIRE(chunk != std::string::npos);
  idat.replace(chunk - 4, 4, std::string("\x7f\xff\xff\xff", 4));
  REQUIRE_ERROR(decode_image(idat, "idat.png"), "decode_image: cannot decode 'idat.png': Corrupt PNG");
  // An empty IDAT chunk before the pixel data is legal, and made stb memcpy into its unallocated buffer
  // (found by fuzz_image): the file decodes as it does without the chunk.
  Image pattern(9, 17, 3);
  for (size_t i = 0; i < pattern.pixels.size(); ++i) pattern.pixels[i] = static_cast<uint8_t>(i * 7);
  const std::string plain = encode_png(pattern);
  const std::string empty_idat("\0\0\0\0IDAT\x35\xaf\x06\x1e", 12);  // length 0, type, CRC
  std::string padded = plain;
  padded.insert(padded.find("IDAT") - 4, empty_idat + empty_idat);
  const Image unpadded = decode_image(plain), decoded = decode_image(padded, "padded.png");
  REQUIRE(decoded.height == 9);
  REQUIRE(decoded.width == 17);
  REQUIRE(decoded.pixels == unpadded.pixels);
  REQUIRE(decoded.pixels == pattern.pixels);
  // Empty IDAT chunks only: no pixel data at all.
  std::string hollow = plain.substr(0, plain.find("IDAT") - 4) + empty_idat + plain.substr(plain.find("IEND") - 4);
  REQUIRE_ERROR(decode_image(hollow, "hollow.png"), "decode_image: cannot decode 'hollow.png': Corrupt PNG");
  // A PNM header number past int overflowed in stb (found by fuzz_image).
  REQUIRE_ERROR(decode_image("P5\n3155555555 2\n255\n" + std::string(8, '\0'), "big.pgm"),
                "decode_image: cannot decode 'big.pgm': Corrupt PNM: a header number overflows");
  REQUIRE_ERROR(decode_image("P6 2 # comment\n 2147483648\n" + std::string(8, '\0'), "max.ppm"),
                "decode_image: cannot decode 'max.ppm': Corrupt PNM: a header number overflows");
  // A JPEG without Huffman tables is refused, the same way every time: stb would decode it with the
  // tables of whatever its state held (an earlier decode's heap, or zeros: a flat grey picture passing
  // for a good one; found by fuzz_image).
  const std::string good = encode_jpg(rgb);
  std::string no_dht = good.substr(0, 2);
  for (size_t i = 2; i + 4 <= good.size();) {  // header segments up to the scan, all but DHT
    const size_t len = static_cast<size_t>(static_cast<uint8_t>(good[i + 2]) << 8 | static_cast<uint8_t>(good[i + 3]));
    const bool scan = static_cast<uint8_t>(good[i + 1]) == 0xDA;
    if (static_cast<uint8_t>(good[i + 1]) != 0xC4) no_dht += good.substr(i, scan ? std::string::npos : len + 2);
    if (scan) break;
    i += len + 2;
  }
  const std::string first = image_problem(no_dht, true);
  REQUIRE(first == "Corrupt JPEG: a scan uses a Huffman table the file does not define");
  REQUIRE(image_problem(no_dht) == first);  // known from the headers alone
  for (int i = 0; i < 3; ++i) {
    REQUIRE_NOTHROW(decode_image(good));
    REQUIRE(image_problem(no_dht, true) == first);
  }
  // A GIF that ends before its first frame: stb fails without a reason, which once passed for success
  // and gave an empty Image (found by fuzz_image).
  const std::string frameless("GIF89a\x01\x00\x14\x2c\x80\xff\x00\x00\x02\x14,\x00\x00,\x00\x00\x00\x00\x01\x00"
                              "D\x01\x00;", 30);
  REQUIRE(probe_image(frameless).width == 1);
  REQUIRE_ERROR(decode_image(frameless, "empty.gif"), "decode_image: cannot decode 'empty.gif': no image in the file");
  REQUIRE(max_decoded_bytes_per_file_byte(png) == 65536);
  REQUIRE(max_decoded_bytes_per_file_byte(gif) == 16384);
  REQUIRE(max_decoded_bytes_per_file_byte(tga) == 512);
  REQUIRE(image_problem(png).empty());
  REQUIRE(image_problem(png.substr(0, 100)).empty());          // the header alone looks fine
  REQUIRE_FALSE(image_problem(png.substr(0, 100), true).empty());  // a full decode does not
  REQUIRE_ERROR(load_image("/nonexistent/x.png"), "read_file: cannot open '/nonexistent/x.png': No such file or directory");
}

TEST_CASE("save_png writes atomically and loads back") {
  TempDir dir("tapegrad-data");
  const Image img = test_image(9, 4, 2);
  save_png(dir / "a.png", img);
  REQUIRE(load_image(dir / "a.png") == img);
  save_png(dir / "a.png", test_image(2, 2, 1));  // replaces
  REQUIRE(load_image(dir / "a.png") == test_image(2, 2, 1));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.path().filename() == "a.png" ? 1 : 100;
  REQUIRE(files == 1);
  REQUIRE_ERROR_CONTAINS(save_png(dir / "missing/a.png", img), "save: cannot create");
  REQUIRE_ERROR(encode_png(Image()), "encode_png: expected an image with positive height and width and 1 to 4 channels, got 0x0 with 0 channels");
}

TEST_CASE("convert_channels follows PIL's convert") {
  const Image rgba = test_image(3, 4, 4);
  const Image rgb = convert_channels(rgba, 3);
  const Image gray = convert_channels(rgba, 1);
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 4; ++x) {
      for (int64_t k = 0; k < 3; ++k) REQUIRE(rgb.at(y, x, k) == rgba.at(y, x, k));
      const float l = 0.2989f * rgba.at(y, x, 0) + 0.587f * rgba.at(y, x, 1) + 0.114f * rgba.at(y, x, 2);
      REQUIRE(std::abs(float(gray.at(y, x, 0)) - std::floor(l)) <= 1);
    }
  const Image g = test_image(2, 3, 1);
  const Image g4 = convert_channels(g, 4);
  REQUIRE((g4.at(1, 2, 0) == g.at(1, 2, 0) && g4.at(1, 2, 2) == g.at(1, 2, 0) && g4.at(1, 2, 3) == 255));
  REQUIRE(convert_channels(convert_channels(g, 3), 1) != Image());  // gray -> RGB -> gray runs
  REQUIRE_ERROR(convert_channels(g, 2), "convert_channels: expected 1, 3 or 4 output channels, got 2");
}

// ---------------------------------------------------------------------------------------------------
// Transforms against torch

TEST_CASE("Resize gives F.interpolate(bilinear, align_corners=False)'s numbers bit for bit") {
  // The reference Fashion-MNIST case: (2, 1, 28, 28) -> 32x32 (PyTorch's channels-last kernel).
  require_equal(Resize(32)(fx()["resize.fm.x"]), fx()["resize.fm.y"]);
  require_equal(Resize(20, 40)(fx()["resize.c1.x"]), fx()["resize.c1.y"]);
  // Three channels: the generic kernel.
  const Tensor x = fx()["resize.odd.x"];
  require_equal(Resize(7, 11)(x), fx()["resize.odd.down"]);
  require_equal(Resize(20, 40)(x), fx()["resize.odd.up"]);
  require_equal(Resize(5, 30)(x), fx()["resize.odd.mixed"]);
  // One number: the smaller edge (13 -> 10) and int(10 * 17 / 13) = 13.
  require_equal(Resize(10)(x), fx()["resize.odd.short10"]);
  require_equal(Resize(14, 4)(fx()["resize.f64.x"]), fx()["resize.f64.y"]);
  require_equal(Resize(5, 33)(fx()["resize.f64c1.x"]), fx()["resize.f64c1.y"]);
  // Same size: a copy.
  require_equal(Resize(13, 17)(x), x);
}

TEST_CASE("Resize agrees with a plain bilinear reference on odd shapes") {
  // Textbook bilinear (align_corners=False) in double; the kernels differ from it only by rounding.
  const Tensor x = testing::randn64({2, 3, 5, 7}, 5, false).to(DType::Float32);
  for (auto [oh, ow] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 11}, {9, 2}, {5, 7}, {17, 13}}) {
    const Tensor y = Resize(oh, ow)(x);
    REQUIRE(y.shape() == Shape{2, 3, oh, ow});
    const auto xv = x.to_vector<float>();
    Tensor want = Tensor::empty({2, 3, oh, ow});
    float* w = want.data_ptr<float>();
    auto src = [](int64_t o, int64_t in, int64_t out) {
      return std::max((static_cast<double>(in) / static_cast<double>(out)) * (static_cast<double>(o) + 0.5) - 0.5, 0.0);
    };
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double sy = src(i, 5, oh), sx = src(j, 7, ow);
          const auto y0 = std::min<int64_t>(static_cast<int64_t>(sy), 4), x0 = std::min<int64_t>(static_cast<int64_t>(sx), 6);
          const int64_t y1 = std::min<int64_t>(y0 + 1, 4), x1 = std::min<int64_t>(x0 + 1, 6);
          const double ly = std::min(sy - static_cast<double>(y0), 1.0), lx = std::min(sx - static_cast<double>(x0), 1.0);
          auto at = [&](int64_t a, int64_t b) { return static_cast<double>(xv[static_cast<size_t>(p * 35 + a * 7 + b)]); };
          w[(p * oh + i) * ow + j] = static_cast<float>((1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) +
                                                        ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1)));
        }
    testing::require_close(y, want, 1e-5, 1e-5);
  }
}

TEST_CASE("Resize output size follows torchvision") {
  REQUIRE(Resize(10).output_size(13, 17) == std::pair<int64_t, int64_t>{10, 13});
  REQUIRE(Resize(10).output_size(17, 13) == std::pair<int64_t, int64_t>{13, 10});
  REQUIRE(Resize(32).output_size(28, 28) == std::pair<int64_t, int64_t>{32, 32});
  REQUIRE(Resize(3).output_size(10, 29) == std::pair<int64_t, int64_t>{3, 8});  // int(8.7)
  REQUIRE(Resize(5, 6).output_size(100, 1) == std::pair<int64_t, int64_t>{5, 6});
  REQUIRE_ERROR(Resize(0), "Resize: expected positive sizes, got (0, -1)");
}

TEST_CASE("Resize on uint8 images rounds like torchvision's uint8 path") {
  const Image img = image_from(fx()["resize_u8.x"]);
  require_equal(tensor_from(Resize(7, 11)(img)), fx()["resize_u8.down"]);
  require_equal(tensor_from(Resize(20, 40)(img)), fx()["resize_u8.up"]);
  require_equal(tensor_from(Resize(20, 40)(image_from(fx()["resize_u8.gray.x"]))), fx()["resize_u8.gray.y"]);
}

TEST_CASE("ToTensor, Resize, Normalize equals the reference Fashion-MNIST preprocessing") {
  const Image img = image_from(fx()["pipeline.x"]);
  Generator gen(0);
  const Compose pipeline({ToTensor(), Resize(32), Normalize({0.5}, {0.5})});
  const Tensor y = apply_transform(pipeline, img, gen);
  require_equal(y, fx()["pipeline.y"]);
}

TEST_CASE("ToTensor is HWC uint8 -> CHW float32 / 255") {
  const Tensor y = ToTensor()(image_from(fx()["to_tensor.x"]));
  require_equal(y, fx()["to_tensor.y"]);
  Generator gen(0);
  REQUIRE_ERROR(ToTensor()(Sample(y), gen), "ToTensor: expected an Image, got a Tensor (ToTensor was already applied)");
}

TEST_CASE("Grayscale uses torchvision's luma weights") {
  require_equal(Grayscale()(fx()["gray.f32.x"]), fx()["gray.f32.y"]);
  const Tensor three = Grayscale(3)(fx()["gray.f32.x"]);
  REQUIRE(three.shape() == Shape{3, 5, 7});
  for (int64_t k = 0; k < 3; ++k) require_equal(three.narrow(0, k, 1).contiguous(), fx()["gray.f32.y"]);
  // uint8: the fixture holds CHW planes; the Image is HWC.
  const Tensor chw = fx()["gray.u8.x"];
  Image img(6, 5, 3);
  const auto v = chw.to_vector<int64_t>();
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t i = 0; i < 30; ++i) img.pixels[static_cast<size_t>(i * 3 + k)] = static_cast<uint8_t>(v[static_cast<size_t>(k * 30 + i)]);
  const Image g = Grayscale()(img);
  REQUIRE(g.channels == 1);
  require_equal(Tensor::from_vector(std::vector<int64_t>(g.pixels.begin(), g.pixels.end()), {6, 5}), fx()["gray.u8.y"]);
  // Alpha is ignored; 1 channel is replicated.
  Image rgba = convert_channels(img, 4);
  REQUIRE(Grayscale()(rgba) == g);
  REQUIRE(Grayscale(3)(g) == convert_channels(g, 3));
  REQUIRE_ERROR(Grayscale()(Tensor::zeros({4, 2, 2})),
                "Grayscale: Input image tensor permitted channel values are [1, 3], but found 4");
  REQUIRE_ERROR(Grayscale(2), "Grayscale: num_output_channels should be either 1 or 3, got 2");
}

TEST_CASE("Normalize is (x - mean) / std per channel") {
  const Normalize n({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225});
  require_equal(n(fx()["normalize.x"]), fx()["normalize.y"]);
  // Batched (N, C, H, W) input normalizes each image.
  const Tensor batch = Tensor::empty({2, 3, 4, 5});
  for (int i = 0; i < 2; ++i) batch.narrow(0, i, 1).copy_(fx()["normalize.x"].unsqueeze(0));
  const Tensor nb = n(batch);
  for (int i = 0; i < 2; ++i) require_equal(nb.narrow(0, i, 1).contiguous(), fx()["normalize.y"].unsqueeze(0));
  REQUIRE_ERROR(Normalize({0.5}, {0.0}),
                "Normalize: std evaluated to zero after conversion to torch.float32, leading to division by zero.");
  REQUIRE_ERROR(n(Tensor::zeros({2, 4, 5})), "Normalize: expected 1 or 2 values of mean and std for 2 channels, got 3 and 3");
  REQUIRE_ERROR(n(Tensor::zeros({4, 5})),
                "Normalize: Expected tensor to be a tensor image of size (..., C, H, W). Got tensor.size() = [4, 5]");
  Generator gen(0);
  REQUIRE_ERROR(n(Sample(Image(2, 2, 3)), gen), "Normalize: expected a float tensor, got an Image (apply ToTensor() first)");
}

TEST_CASE("CenterCrop matches torchvision, padding when the crop is larger, on tensors and images") {
  const Tensor x = fx()["center.x"];
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {3, 4}, {10, 6}, {7, 12}, {1, 1}})
    require_equal(CenterCrop(h, w)(x), fx()[fmt::format("center.{}x{}", h, w)]);
  // The Image path takes the same window.
  const Image img = test_image(7, 9, 3);
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {10, 6}, {7, 12}}) {
    const Tensor via_tensor = CenterCrop(h, w)(ToTensor()(img));
    require_equal(ToTensor()(CenterCrop(h, w)(img)), via_tensor);
  }
}

TEST_CASE("RandomCrop draws the offsets torchvision draws, pads with zeros, and is seeded") {
  const Image img = test_image(6, 8, 3);
  const RandomCrop crop(4, 5);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator g1(seed), g2(seed);
    const Image out = crop(img, g1);
    const auto i = static_cast<int64_t>(g2.below(6 - 4 + 1)), j = static_cast<int64_t>(g2.below(8 - 5 + 1));
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t k = 0; k < 3; ++k) REQUIRE(out.at(y, x, k) == img.at(y + i, x + j, k));
    REQUIRE(g1.next_u64() == g2.next_u64());  // exactly two draws
  }
  // Padding: a crop of the padded image; outside the image it is zero.
  const RandomCrop padded(8, 10, {.padding = 2});
  std::set<std::pair<int64_t, int64_t>> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Generator g1(seed), g2(seed);
    const Image out = padded(img, g1);
    const auto i = static_cast<int64_t>(g2.below(10 - 8 + 1)), j = static_cast<int64_t>(g2.below(12 - 10 + 1));
    seen.insert({i, j});
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t x = 0; x < 10; ++x) {
        const int64_t sy = y + i - 2, sx = x + j - 2;
        const bool inside = sy >= 0 && sy < 6 && sx >= 0 && sx < 8;
        for (int64_t k = 0; k < 3; ++k) REQUIRE(out.at(y, x, k) == (inside ? img.at(sy, sx, k) : 0));
      }
    // The tensor path takes the same window.
    Generator g3(seed);
    require_equal(padded(ToTensor()(img), g3), ToTensor()(out));
  }
  REQUIRE(seen.size() == 9);  // every offset occurs
  // The whole image: no draw.
  Generator g(5), h(5);
  REQUIRE(RandomCrop(6, 8)(img, g) == img);
  REQUIRE(g.next_u64() == h.next_u64());
  // Too large, and pad_if_needed (torchvision pads the shortfall on both sides).
  REQUIRE_ERROR(RandomCrop(7, 8)(img, g), "RandomCrop: Required crop size (7, 8) is larger than input image size (6, 8)");
  const Image grown = RandomCrop(7, 8, {.pad_if_needed = true})(img, g);
  REQUIRE((grown.height == 7 && grown.width == 8));
}

TEST_CASE("RandomHorizontalFlip flips with probability p using one draw") {
  const Image img = test_image(3, 5, 2);
  Image mirrored(3, 5, 2);
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 5; ++x)
      for (int64_t k = 0; k < 2; ++k) mirrored.at(y, x, k) = img.at(y, 4 - x, k);
  Generator g(1);
  REQUIRE(RandomHorizontalFlip(1.0)(img, g) == mirrored);
  REQUIRE(RandomHorizontalFlip(0.0)(img, g) == img);
  int flips = 0;
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    Generator a(seed), b(seed);
    const bool flipped = RandomHorizontalFlip(0.3)(img, a) == mirrored;
    REQUIRE(flipped == (b.uniform() < 0.3));
    REQUIRE(a.next_u64() == b.next_u64());
    Generator c(seed);
    require_equal(RandomHorizontalFlip(0.3)(ToTensor()(img), c), ToTensor()(flipped ? mirrored : img));
    flips += flipped;
  }
  REQUIRE((flips > 250 && flips < 350));
  REQUIRE_ERROR(RandomHorizontalFlip(1.5), "RandomHorizontalFlip: p must be in [0, 1], got 1.5");
}

TEST_CASE("Compose applies in order and apply_transform needs a tensor at the end") {
  const Image img = test_image(10, 12, 3);
  Generator g1(3), g2(3);
  const Compose c({RandomCrop(8, {.padding = 1}), RandomHorizontalFlip(), ToTensor(), Normalize({0.5}, {0.25})});
  const Tensor a = apply_transform(c, img, g1);
  const Tensor b =
      Normalize({0.5}, {0.25})(ToTensor()(RandomHorizontalFlip()(RandomCrop(8, {.padding = 1})(img, g2), g2)));
  require_equal(a, b);
  Generator g(0);
  REQUIRE_ERROR(apply_transform(Compose({Resize(4)}), img, g),
                "apply_transform: the transform returned an Image; end the pipeline with ToTensor()");
  require_equal(apply_transform({}, img, g), ToTensor()(img));
}

// ---------------------------------------------------------------------------------------------------
// ImageFolder

namespace {

// root/bird/1.ppm
// root/cat/{a.PNG, b.png, notes.txt}, cat/sub/z.bmp, cat/sub-x/y.png, cat/sub/deeper/q.jpg, cat/sub/loop -> ..
// root/dog/{x.jpg, y.JPEG}
// root/readme.txt (not a class)
void build_folder(const TempDir& d) {
  write_bytes(d / "root/bird/1.ppm", pnm(test_image(4, 4, 3, 10)));
  write_bytes(d / "root/cat/b.png", encode_png(test_image(5, 5, 1, 11)));
  write_bytes(d / "root/cat/a.PNG", encode_png(test_image(4, 6, 4, 12)));
  write_bytes(d / "root/cat/notes.txt", "not an image");
  write_bytes(d / "root/cat/sub/z.bmp", encode_bmp(test_image(3, 3, 3, 13)));
  write_bytes(d / "root/cat/sub-x/y.png", encode_png(test_image(2, 2, 3, 14)));
  write_bytes(d / "root/cat/sub/deeper/q.jpg", encode_jpg(smooth_image(8, 8, 3)));
  fs::create_directory_symlink("..", d / "root/cat/sub/loop");
  write_bytes(d / "root/dog/x.jpg", encode_jpg(smooth_image(6, 7, 3)));
  write_bytes(d / "root/dog/y.JPEG", gray_jpeg(8, 16));
  write_bytes(d / "root/readme.txt", "hello");
}

}  // namespace

TEST_CASE("ImageFolder orders classes and files as torchvision does") {
  TempDir d("tapegrad-data");
  build_folder(d);
  const std::string root = d / "root";
  ImageFolder f(root);
  REQUIRE(f.classes() == std::vector<std::string>{"bird", "cat", "dog"});
  REQUIRE(f.class_to_idx() == std::map<std::string, int64_t>{{"bird", 0}, {"cat", 1}, {"dog", 2}});
  // sorted(os.walk(...)): directories by path, so "cat/sub-x" ('-' < '/') comes before "cat/sub/deeper".
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {root + "/bird/1.ppm", 0},         {root + "/cat/a.PNG", 1},       {root + "/cat/b.png", 1},
      {root + "/cat/sub/z.bmp", 1},      {root + "/cat/sub-x/y.png", 1}, {root + "/cat/sub/deeper/q.jpg", 1},
      {root + "/dog/x.jpg", 2},          {root + "/dog/y.JPEG", 2}};
  REQUIRE(f.samples() == expected);
  REQUIRE(f.targets() == std::vector<int64_t>{0, 1, 1, 1, 1, 1, 2, 2});
  REQUIRE(f.skipped().empty());
  // get: decoded, converted to RGB (torchvision's loader), ToTensor by default.
  const Example e = f.get(2);
  REQUIRE(e.label == 1);
  require_equal(e.data, ToTensor()(convert_channels(test_image(5, 5, 1, 11), 3)));
  REQUIRE(f.get(1).data.shape() == Shape{3, 4, 6});
  REQUIRE_ERROR(f.get(8), "ImageFolder: index 8 is out of range for a dataset of size 8");
  // channels = 0 keeps each file's own; a transform runs after.
  ImageFolder own(root, Compose({ToTensor(), Resize(2, 3)}), {.channels = 0});
  REQUIRE(own.get(1).data.shape() == Shape{4, 2, 3});
  REQUIRE(own.get(2).data.shape() == Shape{1, 2, 3});
  REQUIRE(own.load(7).channels == 1);
  // An explicit class list sets the labels.
  ImageFolder ordered(root, {}, {.classes = {"dog", "bird"}});
  REQUIRE(ordered.size() == 3);
  REQUIRE(ordered.targets() == std::vector<int64_t>{0, 0, 1});
  REQUIRE_ERROR(ImageFolder(root, {}, {.classes = {"cow"}}), fmt::format("ImageFolder: class folder 'cow' not found in {}", root));
  // Extensions are options too (case-insensitive).
  ImageFolder only_png(root, {}, {.extensions = {".PNG"}, .allow_empty = true});
  REQUIRE(only_png.size() == 3);
}

TEST_CASE("ImageFolder errors use torchvision's wording") {
  TempDir d("tapegrad-data");
  REQUIRE_ERROR(ImageFolder(d / "missing"),
                fmt::format("ImageFolder: cannot open root directory '{}': No such file or directory", d / "missing"));
  write_bytes(d / "file", "x");
  REQUIRE_ERROR(ImageFolder(d / "file"), fmt::format("ImageFolder: cannot open root directory '{}': Not a directory", d / "file"));
  fs::create_directories(d / "empty");
  REQUIRE_ERROR(ImageFolder(d / "empty"), fmt::format("ImageFolder: Couldn't find any class folder in {}.", d / "empty"));
  write_bytes(d / "flat/a.png", encode_png(test_image(2, 2, 3)));
  REQUIRE_ERROR(ImageFolder(d / "flat"), fmt::format("ImageFolder: Couldn't find any class folder in {}.", d / "flat"));
  write_bytes(d / "r/good/a.png", encode_png(test_image(2, 2, 3)));
  write_bytes(d / "r/zebra/a.txt", "x");
  fs::create_directories(d / "r/aardvark");
  REQUIRE_ERROR(ImageFolder(d / "r"),
                "ImageFolder: Found no valid file for the classes aardvark, zebra. Supported extensions are: .jpg, .jpeg, "
                ".png, .ppm, .bmp, .pgm, .pnm, .tga, .gif");
  ImageFolder allowed(d / "r", {}, {.allow_empty = true});
  REQUIRE(allowed.classes() == std::vector<std::string>{"aardvark", "good", "zebra"});
  REQUIRE(allowed.targets() == std::vector<int64_t>{1});
  REQUIRE_ERROR(ImageFolder(d / "r", {}, {.channels = 2}), "ImageFolder: channels must be 0 (as stored), 1, 3 or 4, got 2");
}

TEST_CASE("ImageFolder skips unreadable images with a warning, or fails in strict mode") {
  TempDir d("tapegrad-data");
  const std::string root = d / "root";
  write_bytes(root + "/a/1.png", encode_png(test_image(3, 3, 3)));
  write_bytes(root + "/a/2.png", "garbage, not a png");
  const std::string png = encode_png(test_image(30, 30, 3));
  write_bytes(root + "/b/3.png", png.substr(0, png.size() / 2));  // header fine, data truncated
  write_bytes(root + "/b/4.bmp", encode_bmp(test_image(3, 3, 3)));

  std::vector<std::string> warnings;
  ImageFolder f(root, {}, {.warn = [&](const std::string& m) { warnings.push_back(m); }});
  const std::string reason = "Image not of any known type, or corrupt";
  REQUIRE(warnings == std::vector<std::string>{fmt::format("ImageFolder: skipping '{}/a/2.png': {}", root, reason)});
  REQUIRE(f.skipped().size() == 1);
  REQUIRE((f.skipped()[0].path == root + "/a/2.png" && f.skipped()[0].reason == reason));
  REQUIRE(f.size() == 3);
  // The header check passed the truncated file; loading it fails, naming it.
  REQUIRE(f.samples()[1].first == root + "/b/3.png");
  REQUIRE_ERROR_CONTAINS(f.get(1), fmt::format("decode_image: cannot decode '{}/b/3.png': ", root));

  // A full decode check catches it at construction.
  warnings.clear();
  ImageFolder full(root, {}, {.check = ImageCheck::Decode, .warn = [&](const std::string& m) { warnings.push_back(m); }});
  REQUIRE(full.size() == 2);
  REQUIRE(warnings.size() == 2);
  REQUIRE(full.skipped()[1].path == root + "/b/3.png");

  // No check: torchvision's behaviour, everything with an image extension is a sample.
  ImageFolder none(root, {}, {.check = ImageCheck::None});
  REQUIRE(none.size() == 4);
  REQUIRE_ERROR(none.get(1), fmt::format("decode_image: cannot decode '{}/a/2.png': {}", root, reason));

  REQUIRE_ERROR(ImageFolder(root, {}, {.strict = true}),
                fmt::format("ImageFolder: '{}/a/2.png' is not a valid image: {}", root, reason));
}

TEST_CASE("ImageFolder checks many files in parallel and keeps their order") {
  TempDir d("tapegrad-data");
  for (int i = 0; i < 150; ++i)
    write_bytes(d / fmt::format("root/c{}/{:03}.png", i % 3, i), i % 37 == 5 ? "bad" : encode_png(test_image(2, 3, 1, i)));
  int warned = 0;
  ImageFolder f(d / "root", {}, {.channels = 1, .warn = [&](const std::string&) { ++warned; }});
  REQUIRE(warned == 4);  // 5, 42, 79, 116
  REQUIRE(f.size() == 146);
  for (int64_t i = 1; i < f.size(); ++i) {
    const auto& a = f.samples()[static_cast<size_t>(i - 1)];
    const auto& b = f.samples()[static_cast<size_t>(i)];
    REQUIRE((a.second < b.second || (a.second == b.second && a.first < b.first)));
  }
}

// ---------------------------------------------------------------------------------------------------
// TensorDataset

TEST_CASE("TensorDataset returns rows and labels") {
  const Tensor x = Tensor::arange(0, 24, 1, {.dtype = DType::Float32}).reshape({4, 1, 2, 3});
  const Tensor y = Tensor::from_vector(std::vector<int64_t>{7, 8, 9, 10}, {4});
  TensorDataset ds(x, y);
  REQUIRE(ds.size() == 4);
  const Example e = ds.get(2);
  REQUIRE(e.label == 9);
  require_equal(e.data, x.select(0, 2).contiguous());
  REQUIRE_ERROR(TensorDataset(x, Tensor::zeros({3}, {.dtype = DType::Int64})), "TensorDataset: Size mismatch between tensors");
  REQUIRE_ERROR(TensorDataset(x, Tensor::zeros({4})), "TensorDataset: expected int64 labels of shape (N), got float32 of shape (4,)");
  REQUIRE_ERROR(ds.get(-1), "TensorDataset: index -1 is out of range for a dataset of size 4");
  TensorDataset normalized(x, y, Normalize({1.0}, {2.0}));
  require_equal(normalized.get(1).data, (x.select(0, 1).contiguous() - 1.0) / 2.0);
}

// ---------------------------------------------------------------------------------------------------
// IDX

namespace {
IdxArray idx_u8(Shape shape, uint64_t seed, int64_t modulo = 256) {
  IdxArray a;
  a.type = IdxType::UInt8;
  a.shape = std::move(shape);
  Generator g(seed);
  for (int64_t i = 0; i < a.numel(); ++i) a.data.push_back(static_cast<uint8_t>(g.below(static_cast<uint64_t>(modulo))));
  return a;
}
}  // namespace

TEST_CASE("IDX files round-trip, gzip-compressed or not") {
  TempDir d("tapegrad-data");
  const IdxArray images = idx_u8({5, 3, 4}, 1), labels = idx_u8({5}, 2, 10);
  const std::string raw = encode_idx(images);
  REQUIRE(raw.size() == 4 + 12 + 60);
  REQUIRE(raw.substr(0, 4) == std::string("\0\0\x08\x03", 4));
  write_bytes(d / "images-idx3-ubyte.gz", gzip_compress(raw));
  write_bytes(d / "images-idx3-ubyte", raw);
  for (const char* name : {"images-idx3-ubyte.gz", "images-idx3-ubyte"}) {
    const IdxArray back = read_idx(d / name);
    REQUIRE(back.type == IdxType::UInt8);
    REQUIRE(back.shape == Shape{5, 3, 4});
    REQUIRE(back.data == images.data);
  }
  // Multi-byte types are big-endian in the file.
  const std::string i16 = std::string("\0\0\x0b\x01\0\0\0\x02\x01\x02\xff\xfe", 12);
  REQUIRE(parse_idx(i16).to_tensor(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{258, -2});
  const std::string f32 = std::string("\0\0\x0d\x01\0\0\0\x01\x3f\xc0\0\0", 12);  // 1.5f
  REQUIRE(parse_idx(f32).to_tensor(DType::Float32).item() == 1.5);
  IdxArray i32;
  i32.type = IdxType::Int32;
  i32.shape = {2, 1};
  const int32_t vals[2] = {-70000, 123456789};
  i32.data.assign(reinterpret_cast<const uint8_t*>(vals), reinterpret_cast<const uint8_t*>(vals) + 8);
  REQUIRE(parse_idx(gzip_compress(encode_idx(i32))).to_tensor(DType::Int64).to_vector<int64_t>() ==
          std::vector<int64_t>{-70000, 123456789});
  // Concatenated gzip members (gzip -c a b > c) decompress as one stream.
  REQUIRE(gzip_decompress(gzip_compress("abc") + gzip_compress("def")) == "abcdef");
  (void)labels;
}

TEST_CASE("truncated and corrupt IDX files give clear errors") {
  const std::string raw = encode_idx(idx_u8({5, 3, 4}, 1));
  REQUIRE_ERROR(parse_idx(raw.substr(0, 40), "a"),
                "read_idx: 'a' is truncated: shape (5, 3, 4) of uint8 needs 60 bytes of data, but only 24 follow the header");
  REQUIRE_ERROR(parse_idx(raw + "xy", "a"), "read_idx: 'a' has 2 unexpected bytes after the data of shape (5, 3, 4) of uint8");
  REQUIRE_ERROR(parse_idx(raw.substr(0, 10), "a"),
                "read_idx: 'a' is truncated: the header of 3 dimensions needs 16 bytes, got 10");
  REQUIRE_ERROR(parse_idx("", "a"), "read_idx: 'a' is too short to be an IDX file (0 bytes)");
  REQUIRE_ERROR(parse_idx(std::string("PK\x03\x04rest", 8), "a"), "read_idx: 'a' is not an IDX file (magic number 0x504b0304)");
  REQUIRE_ERROR(parse_idx(std::string("\0\0\x07\x01\0\0\0\0", 8), "a"), "read_idx: 'a' has an unknown IDX type code 0x07");
  REQUIRE_ERROR(parse_idx(std::string("\0\0\x08\0", 4), "a"), "read_idx: 'a' has no dimensions");
  REQUIRE_ERROR(parse_idx(std::string("\0\0\x0e\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16), "a"),
                "read_idx: 'a' has an impossible shape (4294967295, 4294967295, 4294967295)");
  // Empty, but with strides past int64 (found by fuzz_idx).
  REQUIRE_ERROR(parse_idx(std::string("\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0", 16), "a"),
                "read_idx: 'a' has an impossible shape (4294967295, 4294967295, 0)");
  // Strides that fit, but not once a float64 tensor multiplies them by 8 (found by fuzz_idx): every
  // array read converts to a tensor of any dtype.
  REQUIRE_ERROR(parse_idx(std::string("\0\0\x08\x04\0\x01\0\0\x02\0\0\0\0\x08\0\0\0\0\0\0", 20), "a"),
                "read_idx: 'a' has an impossible shape (65536, 33554432, 524288, 0)");
  REQUIRE(parse_idx(std::string("\0\0\x08\x04\0\x01\0\0\x02\0\0\0\0\x04\0\0\0\0\0\0", 20), "a")
              .to_tensor(DType::Float64)
              .numel() == 0);
  const std::string gz = gzip_compress(raw);
  REQUIRE_ERROR(parse_idx(gz.substr(0, gz.size() - 10), "a.gz"), "read_idx: 'a.gz': truncated gzip data");
  std::string corrupt = gz;
  for (size_t i = 10; i < corrupt.size() - 8; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0xa5);
  REQUIRE_ERROR_CONTAINS(parse_idx(corrupt, "a.gz"), "read_idx: 'a.gz': corrupt gzip data: ");
  REQUIRE_ERROR(parse_idx(gz + "junk", "a.gz"), "read_idx: 'a.gz': corrupt gzip data: 4 bytes of garbage after the compressed data");
  REQUIRE_ERROR(read_idx("/nonexistent.gz"), "read_file: cannot open '/nonexistent.gz': No such file or directory");
  REQUIRE_ERROR(gzip_decompress(gzip_compress(std::string(1000, 'a')), "z", 999), "z: gzip data expands to more than 999 bytes");
}

TEST_CASE("IdxImageDataset serves IDX images through transforms") {
  const IdxArray images = idx_u8({6, 4, 5}, 3), labels = idx_u8({6}, 4, 3);
  IdxImageDataset ds(images, labels, Compose({ToTensor(), Resize(8)}));
  REQUIRE(ds.size() == 6);
  const Example e = ds.get(4);
  REQUIRE(e.label == labels.data[4]);
  Image img(4, 5, 1);
  std::memcpy(img.pixels.data(), images.data.data() + 4 * 20, 20);
  REQUIRE(ds.image(4) == img);
  require_equal(e.data, Resize(8)(ToTensor()(img)));
  REQUIRE_ERROR(IdxImageDataset(images, idx_u8({5}, 4)), "IdxImageDataset: 6 images but 5 labels");
  REQUIRE_ERROR(IdxImageDataset(labels, labels),
                "IdxImageDataset: expected uint8 images of shape (N, H, W) or (N, H, W, C) with C in 1..4, got uint8 of shape (6,)");
}

TEST_CASE("Debian's Fashion-MNIST reads when installed") {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!fs::exists(dir + "t10k-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipped");
    return;
  }
  IdxImageDataset test(dir + "t10k-images-idx3-ubyte.gz", dir + "t10k-labels-idx1-ubyte.gz",
                       Compose({ToTensor(), Resize(32), Normalize({0.5}, {0.5})}));
  REQUIRE(test.size() == 10000);
  std::vector<int> counts(10);
  for (int64_t i = 0; i < test.size(); ++i) ++counts.at(static_cast<size_t>(test.label(i)));
  REQUIRE(counts == std::vector<int>(10, 1000));
  const Example e = test.get(0);
  REQUIRE(e.data.shape() == Shape{1, 32, 32});
  const auto v = e.data.to_vector<float>();
  REQUIRE(*std::min_element(v.begin(), v.end()) >= -1.0f);
  REQUIRE(*std::max_element(v.begin(), v.end()) <= 1.0f);
}

TEST_CASE("export_idx_image_folder writes an image folder once, atomically") {
  TempDir d("tapegrad-data");
  const IdxArray images = idx_u8({12, 3, 4}, 5), labels = idx_u8({12}, 6, 3);
  const std::vector<std::string> names = {"zero", "one", "two", "unused"};
  const std::string root = d / "export";
  REQUIRE(export_idx_image_folder(images, labels, root, names));
  // Nothing else was left beside it.
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(d.path())) entries.push_back(e.path().filename().string());
  REQUIRE(entries == std::vector<std::string>{"export"});
  // Zero-padded names; every class gets a folder.
  REQUIRE(fs::is_directory(root + "/unused"));
  REQUIRE(fs::is_empty(root + "/unused"));
  const std::string first = root + "/" + names[labels.data[0]] + "/00.png";
  REQUIRE(fs::exists(first));
  // Read back with the IDX label numbers.
  ImageFolder f(root, {}, {.channels = 0, .classes = names, .allow_empty = true});
  REQUIRE(f.size() == 12);
  IdxImageDataset ds(images, labels);
  std::set<int64_t> seen;
  for (int64_t i = 0; i < f.size(); ++i) {
    const auto& [path, label] = f.samples()[static_cast<size_t>(i)];
    const int64_t index = std::stoll(fs::path(path).stem().string());
    seen.insert(index);
    REQUIRE(label == ds.label(index));
    REQUIRE(f.load(i) == ds.image(index));
  }
  REQUIRE(seen.size() == 12);
  // Complete already: nothing to do.
  REQUIRE_FALSE(export_idx_image_folder(images, labels, root, names));
  // Damaged: an error, nothing removed.
  fs::remove(first);
  REQUIRE_ERROR_CONTAINS(export_idx_image_folder(images, labels, root, names),
                         fmt::format("export_idx_image_folder: '{}' exists but does not hold the expected export (class '{}'",
                                     root, names[labels.data[0]]));
  REQUIRE(fs::exists(root));
  REQUIRE_ERROR(export_idx_image_folder(images, labels, d / "x", {"a", "b"}),
                fmt::format("export_idx_image_folder: label 2 of sample {} is not a class index (2 classes)",
                            std::find(labels.data.begin(), labels.data.end(), 2) - labels.data.begin()));
  REQUIRE_FALSE(fs::exists(d / "x"));
  REQUIRE_ERROR(export_idx_image_folder(images, labels, d / "x", {"a", "a/b", "c"}),
                "export_idx_image_folder: 'a/b' cannot be a folder name");
  REQUIRE(fashion_mnist_classes().size() == 10);
  REQUIRE(fashion_mnist_classes()[0] == "T-shirt_top");
  REQUIRE(fashion_mnist_classes()[9] == "Ankle_boot");
}

TEST_CASE("export_idx_image_folder round-trips from gzip-compressed IDX files") {
  TempDir d("tapegrad-data");
  const IdxArray images = idx_u8({300, 5, 5}, 8), labels = idx_u8({300}, 9, 10);
  write_bytes(d / "img.gz", gzip_compress(encode_idx(images)));
  write_bytes(d / "lab.gz", gzip_compress(encode_idx(labels)));
  REQUIRE(export_idx_image_folder(d / "img.gz", d / "lab.gz", d / "fm", fashion_mnist_classes()));
  ImageFolder f(d / "fm", {}, {.channels = 1, .classes = fashion_mnist_classes()});
  REQUIRE(f.size() == 300);
  REQUIRE(f.samples()[0].first == d / "fm/T-shirt_top/" + fmt::format("{:03}.png", std::find(labels.data.begin(), labels.data.end(), 0) - labels.data.begin()));
  IdxImageDataset ds(images, labels);
  for (int64_t i = 0; i < f.size(); i += 7) {
    const int64_t index = std::stoll(fs::path(f.samples()[static_cast<size_t>(i)].first).stem().string());
    REQUIRE(f.load(i) == ds.image(index));
    REQUIRE(f.get(i).label == ds.label(index));
  }
}

// ---------------------------------------------------------------------------------------------------
// Samplers

TEST_CASE("DistributedSampler matches PyTorch's shards without shuffling") {
  struct Case {
    int64_t n, replicas;
    bool drop_last;
  };
  for (Case c : {Case{10, 3, false}, Case{10, 3, true}, Case{2, 5, false}, Case{12, 4, false}, Case{7, 2, true},
                 Case{1, 4, true}}) {
    for (int64_t r = 0; r < c.replicas; ++r) {
      DistributedSampler s(c.n, c.replicas, r, false, 0, c.drop_last);
      const Tensor want = fx()[fmt::format("dist.{}.{}.{}.{}", c.n, c.replicas, int(c.drop_last), r)];
      REQUIRE(s.indices() == want.to_vector<int64_t>());
      REQUIRE(s.size() == want.numel());
    }
  }
  REQUIRE_ERROR(DistributedSampler(10, 4, 4), "DistributedSampler: Invalid rank 4, rank should be in the interval [0, 3]");
  REQUIRE_ERROR(DistributedSampler(10, 4, -1), "DistributedSampler: Invalid rank -1, rank should be in the interval [0, 3]");
}

TEST_CASE("DistributedSampler shuffles the same way on every rank and anew each epoch") {
  const int64_t n = 23, replicas = 4;
  for (bool drop_last : {false, true}) {
    std::vector<std::vector<int64_t>> shards;
    for (int64_t r = 0; r < replicas; ++r) {
      DistributedSampler s(n, replicas, r, true, 7, drop_last);
      s.set_epoch(3);
      shards.push_back(s.indices());
      REQUIRE(s.indices(3) == shards.back());
      REQUIRE(static_cast<int64_t>(shards.back().size()) == s.size());
    }
    std::multiset<int64_t> all;
    for (const auto& sh : shards) all.insert(sh.begin(), sh.end());
    if (drop_last) {
      REQUIRE(all.size() == 20);
      REQUIRE(std::set<int64_t>(all.begin(), all.end()).size() == 20);  // no repeats
    } else {
      REQUIRE(all.size() == 24);
      REQUIRE(std::set<int64_t>(all.begin(), all.end()).size() == 23);  // every index, one repeated
    }
  }
  DistributedSampler s(n, replicas, 1, true, 7);
  REQUIRE(s.indices(0) != s.indices(1));
  REQUIRE(s.indices(1) == DistributedSampler(n, replicas, 1, true, 7).indices(1));
  REQUIRE(s.indices(1) != DistributedSampler(n, replicas, 1, true, 8).indices(1));
}

TEST_CASE("RandomSampler draws a new permutation per epoch from the seed") {
  RandomSampler a(50, 1), b(50, 1), c(50, 2);
  REQUIRE(a.indices(0) == b.indices(0));
  REQUIRE(a.indices(0) != a.indices(1));
  REQUIRE(a.indices(0) != c.indices(0));
  std::vector<int64_t> p = a.indices(4);
  std::sort(p.begin(), p.end());
  REQUIRE(p == SequentialSampler(50).indices(0));
}

// ---------------------------------------------------------------------------------------------------
// DataLoader

namespace {

std::shared_ptr<TensorDataset> numbers(int64_t n, Transform t = {}) {
  std::vector<float> v;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 12; ++k) v.push_back(static_cast<float>(i * 100 + k));
    labels.push_back(i % 7);
  }
  return std::make_shared<TensorDataset>(Tensor::from_vector(v, {n, 1, 3, 4}), Tensor::from_vector(labels, {n}),
                                         std::move(t));
}

// A dataset that records how many examples were requested, can be slow, and can fail at one index.
class Probe : public Dataset {
 public:
  explicit Probe(int64_t n, int64_t fail_at = -1, int sleep_ms = 0, bool std_error = false)
      : n_(n), fail_at_(fail_at), sleep_ms_(sleep_ms), std_error_(std_error) {}
  int64_t size() const override { return n_; }
  using Dataset::get;
  Example get(int64_t i, Generator& gen) const override {
    ++calls;
    if (sleep_ms_) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (i == fail_at_ && std_error_) throw std::runtime_error("not a tapegrad error");
    if (i == fail_at_) fail("Probe: sample {} is broken", i);
    return {Tensor::full({2}, static_cast<double>(gen.uniform())), i};
  }
  mutable std::atomic<int64_t> calls{0};

 private:
  int64_t n_, fail_at_;
  int sleep_ms_;
  bool std_error_;
};

}  // namespace

TEST_CASE("DataLoader batches in order, with drop_last") {
  auto ds = numbers(10);
  DataLoader loader(ds, {.batch_size = 3});
  REQUIRE(loader.size() == 4);
  const auto batches = all_batches(loader.epoch(0));
  REQUIRE(batches.size() == 4);
  REQUIRE(batches[0].indices == std::vector<int64_t>{0, 1, 2});
  REQUIRE(batches[3].indices == std::vector<int64_t>{9});
  REQUIRE(batches[0].data.shape() == Shape{3, 1, 3, 4});
  REQUIRE(batches[3].data.shape() == Shape{1, 1, 3, 4});
  REQUIRE(batches[1].labels.to_vector<int64_t>() == std::vector<int64_t>{3, 4, 5});
  REQUIRE(batches[1].labels.dtype() == DType::Int64);
  require_equal(batches[1].data.select(0, 2).contiguous(), ds->get(5).data);
  DataLoader dropping(ds, {.batch_size = 3, .drop_last = true});
  REQUIRE(dropping.size() == 3);
  const auto kept = all_batches(dropping.epoch(0));
  REQUIRE(kept.size() == 3);
  REQUIRE(kept[2].indices == std::vector<int64_t>{6, 7, 8});
  DataLoader exact(numbers(9), {.batch_size = 3, .drop_last = true});
  REQUIRE(all_batches(exact.epoch(0)).size() == 3);
  DataLoader empty(numbers(0), {.batch_size = 3});
  REQUIRE(all_batches(empty.epoch(0)).empty());
}

TEST_CASE("DataLoader batches depend only on the seed, never on the number of workers") {
  // Per-sample random transforms: crop with padding and flip, on tensors.
  auto ds = numbers(37, Compose({RandomCrop(3, 4, {.padding = 1}), RandomHorizontalFlip()}));
  std::vector<std::vector<Batch>> runs;
  for (int64_t workers : {0, 1, 3}) {
    for (int64_t prefetch : {1, 2}) {
      if (workers == 0 && prefetch == 2) continue;
      DataLoader loader(ds, {.batch_size = 5, .shuffle = true, .seed = 42, .num_workers = workers, .prefetch = prefetch});
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        auto b = all_batches(loader.epoch(epoch));
        REQUIRE(b.size() == 8);
        runs.push_back(std::move(b));
      }
    }
  }
  for (size_t r = 2; r < runs.size(); ++r)
    for (size_t i = 0; i < runs[r].size(); ++i) require_equal(runs[r][i], runs[r % 2][i]);
  // Epochs differ; every index appears once per epoch.
  REQUIRE(runs[0][0].indices != runs[1][0].indices);
  std::set<int64_t> seen;
  for (const Batch& b : runs[0]) seen.insert(b.indices.begin(), b.indices.end());
  REQUIRE(seen.size() == 37);
  // Another seed, another order.
  DataLoader other(ds, {.batch_size = 5, .shuffle = true, .seed = 43});
  REQUIRE(all_batches(other.epoch(0))[0].indices != runs[0][0].indices);
  // Range-for over the loader runs epochs 0, 1, ... in turn.
  DataLoader loader(ds, {.batch_size = 5, .shuffle = true, .seed = 42, .num_workers = 2});
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    size_t i = 0;
    for (Batch& b : loader) require_equal(b, runs[static_cast<size_t>(epoch)][i++]);
    REQUIRE(i == 8);
  }
}

TEST_CASE("DataLoader with an ImageFolder gives identical batches for 0, 1 and 3 workers") {
  TempDir d("tapegrad-data");
  for (int i = 0; i < 24; ++i) write_bytes(d / fmt::format("root/c{}/{:02}.png", i % 4, i), encode_png(test_image(9, 9, 3, i)));
  auto ds = std::make_shared<ImageFolder>(
      d / "root", Compose({RandomCrop(8, {.padding = 2}), RandomHorizontalFlip(), ToTensor(), Normalize({0.5}, {0.5})}));
  std::vector<Batch> first;
  for (int64_t workers : {0, 1, 3}) {
    DataLoader loader(ds, {.batch_size = 5, .shuffle = true, .seed = 9, .num_workers = workers});
    auto b = all_batches(loader.epoch(1));
    REQUIRE(b.size() == 5);
    if (first.empty()) {
      first = std::move(b);
      continue;
    }
    for (size_t i = 0; i < b.size(); ++i) require_equal(b[i], first[i]);
  }
  REQUIRE(first[0].data.shape() == Shape{5, 3, 8, 8});
}

TEST_CASE("DataLoader stops cleanly when the consumer stops early") {
  auto ds = std::make_shared<Probe>(400, -1, 2);
  {
    DataLoader loader(ds, {.batch_size = 4, .num_workers = 3, .prefetch = 2});
    const auto start = std::chrono::steady_clock::now();
    {
      auto epoch = loader.epoch(0);
      REQUIRE(epoch.next().has_value());
      REQUIRE(epoch.next().has_value());
    }  // destroyed: workers stop and are joined
    const auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(elapsed < std::chrono::seconds(2));
    // Bounded prefetch: at most 2 consumed + 3 * 2 ahead (+ up to 3 in flight) batches were loaded.
    REQUIRE(ds->calls.load() <= (2 + 6 + 3) * 4);
    const int64_t after = ds->calls.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(ds->calls.load() == after);  // nothing runs any more
    // break out of a range-for
    int n = 0;
    for (Batch& b : loader) {
      (void)b;
      if (++n == 3) break;
    }
    REQUIRE(n == 3);
  }
  REQUIRE(ds.use_count() == 1);  // no state or thread holds the dataset
}

TEST_CASE("DataLoader rethrows a worker's exception at that batch") {
  for (int64_t workers : {0, 1, 3}) {
    auto ds = std::make_shared<Probe>(20, 9);
    DataLoader loader(ds, {.batch_size = 4, .num_workers = workers});
    auto epoch = loader.epoch(0);
    REQUIRE(epoch.next()->indices == std::vector<int64_t>{0, 1, 2, 3});
    REQUIRE(epoch.next()->indices == std::vector<int64_t>{4, 5, 6, 7});
    REQUIRE_ERROR(epoch.next(), "Probe: sample 9 is broken");
    // The pass goes on after it.
    REQUIRE(epoch.next()->indices == std::vector<int64_t>{12, 13, 14, 15});
    REQUIRE(epoch.next()->indices == std::vector<int64_t>{16, 17, 18, 19});
    REQUIRE_FALSE(epoch.next().has_value());
  }
  // Other exception types arrive as they were thrown.
  auto ds = std::make_shared<Probe>(20, 5, 0, true);
  DataLoader loader(ds, {.batch_size = 4, .num_workers = 2});
  auto epoch = loader.epoch(0);
  REQUIRE(epoch.next().has_value());
  REQUIRE_THROWS_AS(epoch.next(), std::runtime_error);
  // A range-for sees it too; the loader is left in a clean state.
  auto bad = std::make_shared<Probe>(20, 2);
  DataLoader l2(bad, {.batch_size = 4, .num_workers = 2});
  REQUIRE_ERROR([&] { for (Batch& b : l2) (void)b; }(), "Probe: sample 2 is broken");
}

TEST_CASE("DataLoader reports mismatched examples and bad options") {
  class Ragged : public Dataset {
   public:
    int64_t size() const override { return 6; }
    using Dataset::get;
    Example get(int64_t i, Generator&) const override { return {Tensor::zeros({3, i == 4 ? 28 : 32, 32}), 0}; }
  };
  DataLoader loader(std::make_shared<Ragged>(), {.batch_size = 6});
  REQUIRE_ERROR(loader.epoch(0).next(),
                "DataLoader: stack expects each tensor to be equal size, but got [3, 32, 32] at entry 0 and [3, 28, 32] at entry 4");
  auto ds = numbers(10);
  REQUIRE_ERROR(DataLoader(ds, {.batch_size = 0}),
                "DataLoader: batch_size should be a positive integer value, but got batch_size=0");
  REQUIRE_ERROR(DataLoader(ds, {.shuffle = true}, std::make_shared<SequentialSampler>(10)),
                "DataLoader: sampler option is mutually exclusive with shuffle");
  DataLoader wrong(ds, {}, std::make_shared<SequentialSampler>(11));
  REQUIRE_ERROR(wrong.epoch(0), "DataLoader: the sampler gave index 10 for a dataset of size 10");
}

TEST_CASE("DataLoader with a DistributedSampler loads each rank's shard") {
  auto ds = numbers(10);
  std::multiset<int64_t> all;
  for (int64_t rank = 0; rank < 3; ++rank) {
    auto sampler = std::make_shared<DistributedSampler>(10, 3, rank, true, 5);
    DataLoader loader(ds, {.batch_size = 2, .seed = 5, .num_workers = 2}, sampler);
    REQUIRE(loader.size() == 2);
    const auto batches = all_batches(loader.epoch(4));
    std::vector<int64_t> got;
    for (const Batch& b : batches) got.insert(got.end(), b.indices.begin(), b.indices.end());
    REQUIRE(got == sampler->indices(4));
    all.insert(got.begin(), got.end());
  }
  REQUIRE(all.size() == 12);
  REQUIRE(std::set<int64_t>(all.begin(), all.end()).size() == 10);
}

TEST_CASE("a corrupt JPEG whose bit reader runs past its data decodes to garbage or fails, cleanly") {
  // fuzz_image's regression input: stb 2.27's JPEG bit counter goes negative (CMakeLists.txt says why
  // UBSan's shift check is off for stb). Under the sanitizers nothing else may go wrong.
  const std::string bytes =
      read_file(std::string(TAPEGRAD_FIXTURES_DIR) + "/../../fuzz/corpus/fuzz_image/regression_jpeg_negative_code_bits.jpg");
  try {
    const Image img = decode_image(bytes, "bits.jpg");
    REQUIRE(img.pixels.size() == static_cast<size_t>(img.height * img.width * img.channels));
  } catch (const Error& e) {
    REQUIRE(std::string(e.what()).rfind("decode_image: cannot decode 'bits.jpg': ", 0) == 0);
  }
}
