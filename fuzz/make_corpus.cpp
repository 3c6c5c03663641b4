// Writes the seed corpora of the fuzz targets: valid files made by the library's own writers, a few
// tiny hand-made ones for formats it does not write, and broken variants (truncated, corrupt headers,
// absurd sizes). Usage: fuzz_make_corpus <corpus root> (fuzz/corpus); it rewrites the seeds it owns and
// leaves other files (regression inputs) alone.
#include <tapegrad/core/random.h>
#include <tapegrad/core/serialize.h>
#include <tapegrad/data/idx.h>
#include <tapegrad/data/image.h>

#include <filesystem>
#include <iostream>

using namespace tapegrad;

namespace {

std::string root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(root + "/" + target);
  write_file_atomic(root + "/" + target + "/" + name, bytes);
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file with this JSON header and data section, written by hand.
std::string raw_safetensors(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// The bytes save_safetensors writes for these tensors.
std::string safetensors_bytes(const NamedTensors& tensors, const std::map<std::string, std::string>& meta = {}) {
  const std::string tmp = root + "/.tmp.safetensors";
  save_safetensors(tmp, tensors, meta);
  std::string b = read_file(tmp);
  std::filesystem::remove(tmp);
  return b;
}

std::string npy_bytes(const Tensor& t) {
  const std::string tmp = root + "/.tmp.npy";
  save_npy(tmp, t);
  std::string b = read_file(tmp);
  std::filesystem::remove(tmp);
  return b;
}

void safetensors_corpus() {
  const std::string t = "fuzz_safetensors";
  Generator gen(1);
  const NamedTensors mixed = {{"f32", Tensor::randn({2, 3}, {}, &gen)},
                              {"f64", Tensor::randn({3}, {.dtype = DType::Float64}, &gen)},
                              {"i64", Tensor::arange(5)},
                              {"bool", Tensor::ones({2, 2}, {.dtype = DType::Bool})},
                              {"scalar", Tensor::scalar(2.5)},
                              {"empty", Tensor::zeros({0, 3})}};
  const std::string valid = safetensors_bytes(mixed, {{"format", "pt"}});
  put(t, "valid_mixed.safetensors", valid);
  put(t, "valid_empty.safetensors", safetensors_bytes({}));
  put(t, "valid_one.safetensors", safetensors_bytes({{"w", Tensor::ones({4})}}));
  put(t, "broken_truncated_data.safetensors", valid.substr(0, valid.size() - 5));
  put(t, "broken_truncated_header.safetensors", valid.substr(0, 40));
  put(t, "broken_header_too_long.safetensors", le64(uint64_t{1} << 62) + "{}");
  put(t, "broken_not_json.safetensors", raw_safetensors("{\"a\": [1, 2"));
  put(t, "broken_duplicate.safetensors",
      raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                      std::string(4, '\0')));
  put(t, "broken_offsets.safetensors",
      raw_safetensors(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[4,8]}})", std::string(8, '\0')));
  put(t, "broken_huge_shape.safetensors",
      raw_safetensors(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"));
  put(t, "broken_negative_dim.safetensors",
      raw_safetensors(R"({"a":{"dtype":"I64","shape":[-1],"data_offsets":[0,8]}})", std::string(8, '\0')));
  put(t, "broken_dtype.safetensors",
      raw_safetensors(R"({"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"__metadata__":{"k":"v"}})", "xx"));
  put(t, "broken_bool.safetensors",
      raw_safetensors(R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x07", 3)));
  put(t, "broken_metadata.safetensors", raw_safetensors(R"({"__metadata__":{"k":1}})"));
}

// Checkpoints for the fuzz_state_dict model: "fc_weight" (3, 4), "fc_bias" (3), and "head" holding a
// "weight" (2, 3) and a buffer "scale" (2).
void state_dict_corpus() {
  const std::string t = "fuzz_state_dict";
  Generator gen(2);
  auto r = [&](const Shape& s) { return Tensor::randn(s, {}, &gen); };
  NamedTensors full = {{"fc_weight", r({3, 4})}, {"fc_bias", r({3})}, {"head.weight", r({2, 3})},
                       {"head.scale", Tensor::ones({2})}};
  put(t, "valid_full.safetensors", safetensors_bytes(full));
  NamedTensors f64;
  for (const auto& [k, v] : full) f64.emplace_back(k, v.to(DType::Float64));
  put(t, "valid_float64.safetensors", safetensors_bytes(f64));
  NamedTensors partial(full.begin(), full.begin() + 2);
  put(t, "missing_keys.safetensors", safetensors_bytes(partial));
  NamedTensors extra = full;
  extra.emplace_back("head.bias", r({2}));
  put(t, "unexpected_key.safetensors", safetensors_bytes(extra));
  NamedTensors wrong = full;
  wrong[0].second = r({4, 3});
  put(t, "wrong_shape.safetensors", safetensors_bytes(wrong));
  NamedTensors ints = full;
  ints[1].second = Tensor::arange(3);
  put(t, "int_bias.safetensors", safetensors_bytes(ints));
  const std::string v = safetensors_bytes(full);
  put(t, "broken_truncated.safetensors", v.substr(0, v.size() - 16));
}

void npy_corpus() {
  const std::string t = "fuzz_npy";
  Generator gen(3);
  put(t, "valid_f32.npy", npy_bytes(Tensor::randn({2, 3}, {}, &gen)));
  put(t, "valid_f64_scalar.npy", npy_bytes(Tensor::scalar(1.5, DType::Float64)));
  put(t, "valid_i64.npy", npy_bytes(Tensor::arange(7)));
  put(t, "valid_bool.npy", npy_bytes(Tensor::ones({3}, {.dtype = DType::Bool})));
  put(t, "valid_empty.npy", npy_bytes(Tensor::zeros({0, 4})));
  const std::string v = npy_bytes(Tensor::ones({2, 2}));
  put(t, "broken_truncated.npy", v.substr(0, v.size() - 3));
  put(t, "broken_header.npy", v.substr(0, 20));
  // Version 2.0: a 4-byte header length.
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  dict.append((64 - (12 + dict.size() + 1) % 64) % 64, ' ');
  dict.push_back('\n');
  std::string v2 = std::string("\x93NUMPY\x02\x00", 8) + static_cast<char>(dict.size()) + std::string(3, '\0') + dict;
  put(t, "valid_v2.npy", v2 + std::string(4, '\0'));
  auto hand = [](const std::string& d, const std::string& data) {
    return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(d.size()) + '\0' + d + data;
  };
  put(t, "broken_fortran.npy", hand("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n", std::string(4, '\0')));
  put(t, "broken_descr.npy", hand("{'descr': '>i2', 'fortran_order': False, 'shape': (1,), }\n", "ab"));
  put(t, "broken_shape.npy", hand("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }\n", ""));
  put(t, "broken_huge_shape.npy",
      hand("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n", ""));
  put(t, "broken_no_shape.npy", hand("{'descr': '<f8', 'fortran_order': False}\n", ""));
  put(t, "broken_bool.npy", hand("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }\n", "\x01\x05"));
}

void idx_corpus() {
  const std::string t = "fuzz_idx";
  data::IdxArray images{.type = data::IdxType::UInt8, .shape = {2, 3, 3}, .data = {}};
  for (int i = 0; i < 18; ++i) images.data.push_back(static_cast<uint8_t>(i * 13));
  const std::string img = data::encode_idx(images);
  put(t, "valid_images.idx", img);
  put(t, "valid_images.idx.gz", data::gzip_compress(img));
  put(t, "valid_images_two_members.idx.gz", data::gzip_compress(img.substr(0, 7)) + data::gzip_compress(img.substr(7)));
  data::IdxArray rgb{.type = data::IdxType::UInt8, .shape = {1, 2, 2, 3}, .data = std::vector<uint8_t>(12, 200)};
  put(t, "valid_rgb.idx", data::encode_idx(rgb));
  data::IdxArray labels{.type = data::IdxType::UInt8, .shape = {4}, .data = {0, 1, 2, 9}};
  put(t, "valid_labels.idx", data::encode_idx(labels));
  for (auto [type, name] : {std::pair{data::IdxType::Int8, "int8"}, {data::IdxType::Int16, "int16"},
                            {data::IdxType::Int32, "int32"}, {data::IdxType::Float32, "float32"},
                            {data::IdxType::Float64, "float64"}}) {
    data::IdxArray a{.type = type, .shape = {2, 2}, .data = {}};
    for (size_t i = 0; i < 4 * data::idx_type_size(type); ++i) a.data.push_back(static_cast<uint8_t>(i * 37 + 1));
    put(t, std::string("valid_") + name + ".idx", data::encode_idx(a));
  }
  put(t, "broken_truncated.idx", img.substr(0, img.size() - 4));
  put(t, "broken_extra.idx", img + "xy");
  put(t, "broken_type.idx", std::string("\0\0\x07\x01\0\0\0\x01z", 9));
  put(t, "broken_huge.idx", std::string("\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16));
  const std::string gz = data::gzip_compress(img);
  put(t, "broken_truncated.idx.gz", gz.substr(0, gz.size() - 6));
  std::string flipped = gz;
  flipped[gz.size() / 2] = static_cast<char>(flipped[gz.size() / 2] ^ 0x55);
  put(t, "broken_corrupt.idx.gz", flipped);
  put(t, "broken_garbage_after.idx.gz", gz + "garbage");
}

void image_corpus() {
  const std::string t = "fuzz_image";
  auto make = [](int64_t h, int64_t w, int64_t c) {
    data::Image im(h, w, c);
    for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i * 29 + 7);
    return im;
  };
  for (int64_t c = 1; c <= 4; ++c) put(t, "valid_" + std::to_string(c) + "ch.png", data::encode_png(make(3, 5, c)));
  put(t, "valid_rgb.bmp", data::encode_bmp(make(4, 3, 3)));
  put(t, "valid_rgba.bmp", data::encode_bmp(make(2, 2, 4)));
  put(t, "valid_rgb.jpg", data::encode_jpg(make(9, 17, 3), 80));
  put(t, "valid_gray.jpg", data::encode_jpg(make(8, 8, 1), 50));
  put(t, "valid.pgm", std::string("P5\n3 2\n255\n") + std::string("\x01\x02\x03\x04\x05\x06", 6));
  put(t, "valid.ppm", std::string("P6 1 2 255\n") + std::string("\xff\x00\x00\x00\xff\x00", 6));
  // 1x1 GIF89a with a 2-color palette.
  put(t, "valid.gif", std::string("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00"
                                  ",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;", 35));
  // 2x1 uncompressed 24-bit TGA, and the same run-length encoded.
  const std::string tga_header("\0\0\x02\0\0\0\0\0\0\0\0\0\x02\0\x01\0\x18\0", 18);
  put(t, "valid.tga", tga_header + std::string("\x01\x02\x03\x04\x05\x06", 6));
  std::string rle = tga_header;
  rle[2] = 10;
  put(t, "valid_rle.tga", rle + std::string("\x81\x01\x02\x03", 4));
  const std::string png = data::encode_png(make(3, 5, 3));
  put(t, "broken_truncated.png", png.substr(0, png.size() / 2));
  // IHDR claiming 65535 x 65535 pixels (stb checks no CRC).
  std::string huge = png;
  for (int i = 16; i < 24; ++i) huge[i] = (i == 16 || i == 20) ? 0 : '\xff';
  put(t, "broken_huge.png", huge);
  const std::string jpg = data::encode_jpg(make(9, 17, 3), 80);
  put(t, "broken_truncated.jpg", jpg.substr(0, jpg.size() * 2 / 3));
  put(t, "broken_header.bmp", data::encode_bmp(make(4, 3, 3)).substr(0, 30));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_corpus <corpus root>\n";
    return 2;
  }
  root = argv[1];
  std::filesystem::create_directories(root);
  safetensors_corpus();
  state_dict_corpus();
  npy_corpus();
  idx_corpus();
  image_corpus();
  return 0;
}
