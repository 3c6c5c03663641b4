// safetensors and .npy: round trips, files written by other tools, every corruption path, atomic writes.
#include "support/fixtures.h"
#include "support/temp_dir.h"

#include <tapegrad/core/ops.h>

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

using namespace tapegrad;
using tapegrad::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string fixture_path(const std::string& name) { return std::string(TAPEGRAD_FIXTURES_DIR) + "/" + name; }

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// Same dtype, shape and bytes (NaN payloads and -0.0 included); the loaded tensor is contiguous.
void require_identical(const Tensor& actual, const Tensor& expected) {
  INFO("actual " << actual.str() << "\nexpected " << expected.str());
  REQUIRE(actual.dtype() == expected.dtype());
  REQUIRE(actual.shape() == expected.shape());
  const Tensor a = actual.contiguous(), b = expected.contiguous();
  REQUIRE(std::memcmp(a.data(), b.data(), static_cast<size_t>(a.numel()) * element_size(a.dtype())) == 0);
}

// A safetensors file from a header text and the data section.
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(float));
}

// A .npy v1.0 file from a header dict text and data.
std::string npy_bytes(const std::string& dict, const std::string& data = "") {
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  return out + dict + data;
}

// Every tensor kind the formats must carry.
NamedTensors sample_tensors() {
  Tensor nan_and_zero = Tensor::of({NAN, -0.0, INFINITY, -1.5e-40});
  return {{"f32", Tensor::of({{1.5, -2.0, 3.25}, {0.0, 1e-3, -7.0}})},
          {"f64", Tensor::of({0.1, -1e300, 5e-324}, {.dtype = kFloat64})},
          {"i64", Tensor::from_vector(std::vector<int64_t>{1, -2, int64_t{1} << 40, INT64_MIN, INT64_MAX}, {5})},
          {"bool", Tensor::of({{1, 0}, {0, 1}}, {.dtype = kBool})},
          {"scalar_f32", Tensor::scalar(2.5)},
          {"scalar_i64", Tensor::scalar(-7, kInt64)},
          {"scalar_bool", Tensor::scalar(1, kBool)},
          {"empty_f32", Tensor::zeros({0, 3})},
          {"empty_i64", Tensor::zeros({2, 0}, {.dtype = kInt64})},
          {"empty_bool", Tensor::zeros({0}, {.dtype = kBool})},
          {"special", nan_and_zero}};
}

}  // namespace

// ---- safetensors ----

TEST_CASE("safetensors round trip of every dtype, 0-dim and empty tensors, with metadata") {
  TempDir dir("tapegrad-serialize");
  const NamedTensors tensors = sample_tensors();
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quotes \" and \\ and \xc3\xa9"}, {"", ""}};
  save_safetensors(dir / "a.safetensors", tensors, meta);
  const SafetensorsFile f = load_safetensors(dir / "a.safetensors");
  REQUIRE(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    REQUIRE(f.tensors[i].first == tensors[i].first);  // order kept
    require_identical(f.tensors[i].second, tensors[i].second);
    REQUIRE(f.tensors[i].second.is_contiguous());
    REQUIRE_FALSE(f.tensors[i].second.requires_grad());
  }
  REQUIRE(f.contains("bool"));
  REQUIRE_FALSE(f.contains("nope"));
  require_identical(f.at("i64"), tensors[2].second);
  REQUIRE_ERROR(f.at("nope"), "safetensors: no tensor named 'nope'");
  // No metadata, no tensors.
  save_safetensors(dir / "empty.safetensors", {});
  const SafetensorsFile e = load_safetensors(dir / "empty.safetensors");
  REQUIRE(e.tensors.empty());
  REQUIRE(e.metadata.empty());
}

TEST_CASE("safetensors files follow the format: u64 header size, 8-aligned JSON, packed data") {
  TempDir dir("tapegrad-serialize");
  save_safetensors(dir / "a.safetensors", {{"w", Tensor::of({{1, 2}, {3, 4}})}, {"b", Tensor::of({1, 0}, {.dtype = kBool})}},
                   {{"k", "v"}});
  const std::string bytes = read_file(dir / "a.safetensors");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  REQUIRE(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 16 + 2);
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  REQUIRE(h["__metadata__"] == nlohmann::json({{"k", "v"}}));
  REQUIRE(h["w"] == nlohmann::json({{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}));
  REQUIRE(h["b"] == nlohmann::json({{"dtype", "BOOL"}, {"shape", {2}}, {"data_offsets", {16, 18}}}));
  REQUIRE(bytes.substr(8 + n) == floats({1, 2, 3, 4}) + std::string("\x01\x00", 2));
}

TEST_CASE("safetensors saves the values of non-contiguous tensors") {
  TempDir dir("tapegrad-serialize");
  Tensor base = Tensor::arange(0, 24, 1, {.dtype = kFloat32}).view({2, 3, 4});
  Tensor leaf = Tensor::of({{1.0, 2.0}, {3.0, 4.0}}, {.requires_grad = true});
  const NamedTensors views = {
      {"transposed", base.transpose(0, 2)},
      {"stepped", base.slice(2, 1, 4, 2)},
      {"selected", base.select(1, 2)},  // a contiguous view at offset 8
      {"column", base.select(2, 3)},
      {"expanded", Tensor::of({1.0, 2.0}).unsqueeze(0).expand({3, 2})},
      {"int_transposed", Tensor::arange(6).view({2, 3}).t()},
      {"requires_grad", leaf.t()},
  };
  save_safetensors(dir / "v.safetensors", views);
  const SafetensorsFile f = load_safetensors(dir / "v.safetensors");
  for (const auto& [name, t] : views) {
    INFO(name);
    REQUIRE(f.at(name).to_vector<double>() == t.to_vector<double>());
    REQUIRE(f.at(name).shape() == t.shape());
    REQUIRE(f.at(name).dtype() == t.dtype());
  }
  REQUIRE(f.at("selected").to_vector<float>() == std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23});
  REQUIRE_FALSE(f.at("requires_grad").requires_grad());
  // Saving records nothing and leaves the sources alone.
  REQUIRE(leaf.grad_fn() == nullptr);
  REQUIRE(base.to_vector<float>()[23] == 23);
}

TEST_CASE("save_safetensors rejects duplicate, reserved and undefined entries") {
  TempDir dir("tapegrad-serialize");
  Tensor t = Tensor::zeros({2});
  REQUIRE_ERROR(save_safetensors(dir / "a", {{"x", t}, {"x", t}}), "save_safetensors: duplicate tensor name 'x'");
  REQUIRE_ERROR(save_safetensors(dir / "a", {{"__metadata__", t}}), "save_safetensors: '__metadata__' is reserved");
  REQUIRE_ERROR(save_safetensors(dir / "a", {{"u", Tensor()}}), "save_safetensors: tensor 'u' is undefined");
  REQUIRE(dir.entries().empty());
}

TEST_CASE("safetensors files written by fixture_writer.py load with their values and metadata") {
  const SafetensorsFile f = load_safetensors(fixture_path("serialize.safetensors"));
  REQUIRE(f.metadata.at("generator") == "serialize.safetensors");
  REQUIRE(f.metadata.count("torch") == 1);
  std::vector<std::string> names;
  for (const auto& [name, t] : f.tensors) names.push_back(name);
  REQUIRE(names == std::vector<std::string>{"f32", "f64", "i64", "bool", "empty", "transposed"});
  require_identical(f.at("f32"), Tensor::of({{1.5, -2.0, 3.25}, {0.0, 1e-3, -7.0}}));
  require_identical(f.at("f64"), Tensor::scalar(0.1, kFloat64));
  require_identical(f.at("i64"), Tensor::from_vector(std::vector<int64_t>{1, -2, int64_t{1} << 40}, {3}));
  require_identical(f.at("bool"), Tensor::of({{1, 0}, {0, 1}}, {.dtype = kBool}));
  require_identical(f.at("empty"), Tensor::zeros({0, 3}));
  require_identical(f.at("transposed"), Tensor::of({{0, 3}, {1, 4}, {2, 5}}));
  // And a large committed fixture of another area.
  const SafetensorsFile p = load_safetensors(fixture_path("print.safetensors"));
  REQUIRE(p.tensors.size() > 90);
  REQUIRE(p.at("summary_i64").to_vector<int64_t>()[1199] == 1199);
}

TEST_CASE("a safetensors file cut at any byte gives an error, never a crash") {
  TempDir dir("tapegrad-serialize");
  save_safetensors(dir / "s", {{"a", Tensor::of({1.0, 2.0})}, {"b", Tensor::of({1, 0, 1}, {.dtype = kBool})},
                               {"c", Tensor::scalar(3, kInt64)}}, {{"m", "x"}});
  const std::string bytes = read_file(dir / "s");
  REQUIRE(parse_safetensors(bytes).tensors.size() == 3);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  for (size_t len = 0; len < bytes.size(); ++len) {
    INFO("prefix of " << len << " bytes");
    REQUIRE_THROWS_AS(parse_safetensors(bytes.substr(0, len), "cut"), Error);
  }
  REQUIRE_ERROR(parse_safetensors(bytes.substr(0, 5), "cut"),
                "load_safetensors: 'cut' is too short to be a safetensors file (5 bytes)");
  REQUIRE_ERROR(parse_safetensors(bytes.substr(0, 20), "cut"),
                fmt::format("load_safetensors: 'cut' is truncated: header of {} bytes but only 12 follow", n));
  REQUIRE_ERROR(parse_safetensors(bytes.substr(0, bytes.size() - 1), "cut"),
                "load_safetensors: 'cut' is truncated: tensor 'c' ends at byte 19 of a 18-byte data section");
}

TEST_CASE("corrupting any byte of a safetensors file gives a value or an error, never a crash") {
  TempDir dir("tapegrad-serialize");
  save_safetensors(dir / "s", {{"a", Tensor::of({1.0, 2.0})}, {"b", Tensor::of({1, 0}, {.dtype = kBool})}});
  const std::string bytes = read_file(dir / "s");
  int errors = 0, loaded = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (char c : {'\0', '\x01', '\xff', '"', '{', '}', '[', ',', '9', '-', 'e', ' '}) {
      std::string b = bytes;
      b[i] = c;
      try {
        const SafetensorsFile f = parse_safetensors(b);
        for (const auto& [name, t] : f.tensors) (void)t.to_vector<double>();
        ++loaded;
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  REQUIRE(errors > 0);
  REQUIRE(loaded > 0);
}

TEST_CASE("every kind of corrupt safetensors header gives a clear error") {
  const std::string d8 = floats({1, 2});
  auto parse = [](const std::string& header, const std::string& data = "") {
    return parse_safetensors(safetensors_bytes(header, data), "f");
  };
  REQUIRE(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8).tensors.size() == 1);

  REQUIRE_ERROR(parse_safetensors(safetensors_bytes("{}").substr(0, 8) + "{", "f"),
                "load_safetensors: 'f' is truncated: header of 2 bytes but only 1 follow");
  std::string huge(8, '\xff');
  REQUIRE_ERROR(parse_safetensors(huge + "{}", "f"),
                "load_safetensors: 'f' is truncated: header of 18446744073709551615 bytes but only 2 follow");
  REQUIRE_ERROR_CONTAINS(parse(R"({"a":)"), "load_safetensors: 'f' has a corrupt header: ");
  REQUIRE_ERROR_CONTAINS(parse("not json"), "load_safetensors: 'f' has a corrupt header: ");
  REQUIRE_ERROR_CONTAINS(parse(""), "load_safetensors: 'f' has a corrupt header: ");
  REQUIRE_ERROR_CONTAINS(parse(std::string("{\"a\"\0:1}", 8)), "load_safetensors: 'f' has a corrupt header: ");
  REQUIRE_ERROR(parse("[1, 2]"), "load_safetensors: 'f' has a corrupt header: expected a JSON object");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8),
                "load_safetensors: 'f' has a corrupt header: duplicate key 'a'");
  REQUIRE_ERROR(parse(R"({"__metadata__":{"k":"1","k":"2"}})"),
                "load_safetensors: 'f' has a corrupt header: duplicate key 'k'");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", d8),
                "load_safetensors: 'f': tensor 'a' has unsupported dtype F16 (expected F32, F64, I64 or BOOL)");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", d8),
                "load_safetensors: 'f': tensor 'a' has unsupported dtype f32 (expected F32, F64, I64 or BOOL)");
  const std::string entry_error = "load_safetensors: 'f': entry 'a' must have dtype, shape and data_offsets";
  REQUIRE_ERROR(parse(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", d8), entry_error);
  REQUIRE_ERROR(parse(R"({"a":[1]})", d8), entry_error);
  const std::string shape_error = "load_safetensors: 'f': tensor 'a' has an invalid shape";
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8), shape_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8), shape_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", d8), shape_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", d8), shape_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8), shape_error);
  // No elements, but strides that would overflow.
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"), shape_error);
  const std::string offsets_error = "load_safetensors: 'f': tensor 'a' has invalid data_offsets";
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", d8), offsets_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", d8), offsets_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", d8), offsets_error);
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", d8),
                "load_safetensors: 'f': tensor 'a' of shape (2, 2) and dtype float32 needs 16 bytes, but its "
                "data_offsets [0, 8] span 8");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8),
                "load_safetensors: 'f': tensor 'a' of shape (2,) and dtype float32 needs 8 bytes, but its "
                "data_offsets [8, 0] span 0");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d8),
                "load_safetensors: 'f' is truncated: tensor 'a' ends at byte 12 of a 8-byte data section");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,0]}})", d8),
                "load_safetensors: 'f': tensor 'a' of shape (2,) and dtype float32 needs 8 bytes, but its "
                "data_offsets [18446744073709551608, 0] span 0");
  REQUIRE_ERROR(parse(R"({"a":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x02\x00", 3)),
                "load_safetensors: 'f': bool tensor 'a' holds a value other than 0 or 1");
  REQUIRE_ERROR(parse(R"({"__metadata__":{"k":1}})"), "load_safetensors: 'f': __metadata__ must be an object of strings");
  REQUIRE_ERROR(parse(R"({"__metadata__":"x"})"), "load_safetensors: 'f': __metadata__ must be an object of strings");
}

TEST_CASE("load_safetensors names the file in its errors") {
  TempDir dir("tapegrad-serialize");
  write_raw(dir / "bad.safetensors", "abc");
  REQUIRE_ERROR(load_safetensors(dir / "bad.safetensors"),
                fmt::format("load_safetensors: '{}' is too short to be a safetensors file (3 bytes)", dir / "bad.safetensors"));
  REQUIRE_ERROR(load_safetensors(dir / "missing"),
                fmt::format("read_file: cannot open '{}': No such file or directory", dir / "missing"));
  REQUIRE_ERROR(load_safetensors(dir.path().string()),
                fmt::format("read_file: cannot open '{}': Is a directory", dir.path().string()));
}

// ---- npy ----

TEST_CASE("npy round trip of every dtype, 0-dim, empty and non-contiguous tensors") {
  TempDir dir("tapegrad-serialize");
  NamedTensors tensors = sample_tensors();
  Tensor base = Tensor::arange(0, 24, 1, {.dtype = kFloat64}).view({2, 3, 4});
  tensors.emplace_back("transposed", base.transpose(0, 2));
  tensors.emplace_back("stepped", base.slice(2, 1, 4, 2));
  tensors.emplace_back("expanded", Tensor::of({1.0, 2.0}).unsqueeze(0).expand({3, 2}));
  tensors.emplace_back("ints", Tensor::arange(6).view({2, 3}).t());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    save_npy(dir / (name + ".npy"), t);
    require_identical(load_npy(dir / (name + ".npy")), t);
  }
  REQUIRE(dir.entries().size() == tensors.size());
  REQUIRE_ERROR(save_npy(dir / "u.npy", Tensor()), "save_npy: the tensor is undefined");
}

TEST_CASE("save_npy writes the same bytes as numpy.save") {
  TempDir dir("tapegrad-serialize");
  const std::vector<std::pair<std::string, Tensor>> same = {
      {"f32_2x3", Tensor::of({{1.5, -2.0, 3.25}, {0.0, 1e-3, -7.0}})},
      {"f64_scalar", Tensor::scalar(0.1, kFloat64)},
      {"i64_1d", Tensor::from_vector(std::vector<int64_t>{1, -2, int64_t{1} << 40}, {3})},
      {"bool_2x2", Tensor::of({{1, 0}, {0, 1}}, {.dtype = kBool})},
      {"f32_empty", Tensor::zeros({0, 3})},
      {"f32_1d_long", Tensor::arange(0, 100, 1, {.dtype = kFloat32}) / 8.0},
  };
  for (const auto& [name, t] : same) {
    INFO(name);
    save_npy(dir / name, t);
    REQUIRE(read_file(dir / name) == read_file(fixture_path("npy/" + name + ".npy")));
  }
}

TEST_CASE("npy files written by numpy load, versions 1, 2 and 3") {
  auto load = [](const std::string& name) { return load_npy(fixture_path("npy/" + name + ".npy")); };
  require_identical(load("f32_2x3"), Tensor::of({{1.5, -2.0, 3.25}, {0.0, 1e-3, -7.0}}));
  require_identical(load("f64_scalar"), Tensor::scalar(0.1, kFloat64));
  require_identical(load("i64_1d"), Tensor::from_vector(std::vector<int64_t>{1, -2, int64_t{1} << 40}, {3}));
  require_identical(load("bool_2x2"), Tensor::of({{1, 0}, {0, 1}}, {.dtype = kBool}));
  require_identical(load("f32_empty"), Tensor::zeros({0, 3}));
  require_identical(load("f32_1d_long"), Tensor::arange(0, 100, 1, {.dtype = kFloat32}) / 8.0);
  require_identical(load("f64_v2"), Tensor::of({{1.0, 2.0}}, {.dtype = kFloat64}));
  require_identical(load("f32_v3"), Tensor::of({4.0}));
}

TEST_CASE("npy files tapegrad cannot represent give clear errors") {
  const std::string dir = fixture_path("npy/");
  REQUIRE_ERROR(load_npy(dir + "fortran.npy"), fmt::format("load_npy: '{}fortran.npy': Fortran-ordered arrays are not supported", dir));
  REQUIRE_ERROR(load_npy(dir + "uint8.npy"),
                fmt::format("load_npy: '{}uint8.npy': unsupported dtype '|u1' (expected <f4, <f8, <i8 or |b1)", dir));
  REQUIRE_ERROR(load_npy(dir + "big_endian.npy"),
                fmt::format("load_npy: '{}big_endian.npy': unsupported dtype '>f4' (expected <f4, <f8, <i8 or |b1)", dir));
}

TEST_CASE("every kind of corrupt npy file gives a clear error") {
  const std::string good = read_file(fixture_path("npy/f32_2x3.npy"));
  REQUIRE(parse_npy(good).shape() == Shape{2, 3});
  for (size_t len = 0; len < good.size(); ++len) {
    INFO("prefix of " << len << " bytes");
    REQUIRE_THROWS_AS(parse_npy(good.substr(0, len), "cut"), Error);
  }
  REQUIRE_ERROR(parse_npy(good.substr(0, good.size() - 1), "f"), "load_npy: 'f': expected 24 bytes of data for shape (2, 3), got 23");
  REQUIRE_ERROR(parse_npy(good + "x", "f"), "load_npy: 'f': expected 24 bytes of data for shape (2, 3), got 25");
  REQUIRE_ERROR(parse_npy(good.substr(0, 9), "f"), "load_npy: 'f' is not a .npy file (bad magic)");
  REQUIRE_ERROR(parse_npy(good.substr(0, 50), "f"), "load_npy: 'f' is truncated (header)");
  std::string bad_magic = good;
  bad_magic[1] = 'n';
  REQUIRE_ERROR(parse_npy(bad_magic, "f"), "load_npy: 'f' is not a .npy file (bad magic)");
  REQUIRE_ERROR(parse_npy("PK\x03\x04 this is a zip", "f"), "load_npy: 'f' is not a .npy file (bad magic)");
  std::string v4 = good;
  v4[6] = 4;
  REQUIRE_ERROR(parse_npy(v4, "f"), "load_npy: 'f': unsupported .npy version 4");
  REQUIRE_ERROR(parse_npy(std::string("\x93NUMPY\x02\x00\x05\x00", 10), "f"), "load_npy: 'f' is truncated");

  const std::string f8 = floats({1, 2});
  auto parse = [](const std::string& dict, const std::string& data = "") { return parse_npy(npy_bytes(dict, data), "f"); };
  require_identical(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", f8), Tensor::of({1.0, 2.0}));
  // Keys in any order, no spaces.
  require_identical(parse("{'shape':(2,),'fortran_order':False,'descr':'<f4'}", f8), Tensor::of({1.0, 2.0}));
  REQUIRE_ERROR(parse("{'fortran_order': False, 'shape': (2,), }", f8), "load_npy: 'f': header has no 'descr'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'shape': (2,), }", f8), "load_npy: 'f': header has no 'fortran_order'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, }", f8), "load_npy: 'f': header has no 'shape'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f8),
                "load_npy: 'f': Fortran-ordered arrays are not supported");
  REQUIRE_ERROR(parse("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", f8),
                "load_npy: 'f': unsupported dtype '<f2' (expected <f4, <f8, <i8 or |b1)");
  REQUIRE_ERROR(parse("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,), }", f8),
                "load_npy: 'f': unsupported dtype '[('x'' (expected <f4, <f8, <i8 or |b1)");
  REQUIRE_ERROR(parse("{'descr': '<f4", f8), "load_npy: 'f': corrupt header");
  REQUIRE_ERROR(parse("{'descr'", f8), "load_npy: 'f': corrupt header");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", f8),
                "load_npy: 'f': invalid shape '2, -1'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", f8),
                "load_npy: 'f': invalid shape '2, x'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f8),
                "load_npy: 'f': invalid shape '4294967296, 4294967296'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }"),
                "load_npy: 'f': invalid shape '0, 4294967296, 4294967296'");
  REQUIRE_ERROR(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"),
                "load_npy: 'f': invalid shape '99999999999999999999,'");
  REQUIRE_ERROR(parse("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", std::string("\x01\x05", 2)),
                "load_npy: 'f': bool array holds a value other than 0 or 1");
  REQUIRE(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", floats({7})).item() == 7);
}

TEST_CASE("corrupting any byte of a npy file gives a value or an error, never a crash") {
  const std::string good = read_file(fixture_path("npy/bool_2x2.npy"));
  int errors = 0, loaded = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (char c : {'\0', '\x02', '\xff', '\'', '(', ')', ',', ':', '9', ' ', '}'}) {
      std::string b = good;
      b[i] = c;
      try {
        (void)parse_npy(b).to_vector<double>();
        ++loaded;
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  REQUIRE(errors > 0);
  REQUIRE(loaded > 0);
}

// ---- atomic writes ----

TEST_CASE("saving over an existing file replaces it and leaves no temporary file") {
  TempDir dir("tapegrad-serialize");
  const std::string path = dir / "model.safetensors";
  save_safetensors(path, {{"w", Tensor::ones({1000})}});
  save_safetensors(path, {{"v", Tensor::of({1.0, 2.0})}});
  const SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 1);
  REQUIRE(f.at("v").to_vector<float>() == std::vector<float>{1, 2});
  save_npy(dir / "x.npy", Tensor::zeros({50}));
  save_npy(dir / "x.npy", Tensor::scalar(3));
  REQUIRE(load_npy(dir / "x.npy").item() == 3);
  write_file_atomic(dir / "raw", "abc");
  write_file_atomic(dir / "raw", "");
  REQUIRE(read_file(dir / "raw").empty());
  REQUIRE(dir.entries() == std::vector<std::string>{"model.safetensors", "raw", "x.npy"});
}

TEST_CASE("a save that cannot replace the target leaves it intact and no temporary file") {
  TempDir dir("tapegrad-serialize");
  // The target is a directory: the rename fails.
  fs::create_directory(dir.path() / "target");
  write_raw(dir / "target/inside", "keep");
  REQUIRE_ERROR(save_safetensors(dir / "target", {{"a", Tensor::zeros({2})}}),
                fmt::format("save: cannot replace '{}': Is a directory", dir / "target"));
  REQUIRE(read_file(dir / "target/inside") == "keep");
  REQUIRE(dir.entries() == std::vector<std::string>{"target"});
  REQUIRE_ERROR(save_npy(dir / "target", Tensor::zeros({2})),
                fmt::format("save: cannot replace '{}': Is a directory", dir / "target"));
  REQUIRE(dir.entries() == std::vector<std::string>{"target"});
  // The directory does not exist.
  REQUIRE_ERROR(save_safetensors(dir / "nope/a.safetensors", {}),
                fmt::format("save: cannot create a temporary file next to '{}': No such file or directory",
                            dir / "nope/a.safetensors"));
}

TEST_CASE("a save that fails while writing leaves the previous file intact and no temporary file") {
  TempDir dir("tapegrad-serialize");
  const std::string path = dir / "model.safetensors";
  save_safetensors(path, {{"old", Tensor::of({1.0, 2.0, 3.0})}});
  const std::string before = read_file(path);
  // A file size limit makes write() fail with EFBIG part way through (as a full disk would).
  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  std::string message;
  try {
    save_safetensors(path, {{"new", Tensor::ones({10000})}});
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  REQUIRE(message == fmt::format("save: cannot write '{}': File too large", path));
  REQUIRE(read_file(path) == before);
  REQUIRE(load_safetensors(path).at("old").to_vector<float>() == std::vector<float>{1, 2, 3});
  REQUIRE(dir.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("a save into a read-only directory leaves the previous file intact") {
  TempDir dir("tapegrad-serialize");
  const std::string path = dir / "a.npy";
  save_npy(path, Tensor::of({1.0}));
  fs::permissions(dir.path(), fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  const std::string expected =
      fmt::format("save: cannot create a temporary file next to '{}': Permission denied", path);
  if (::geteuid() != 0) {
    REQUIRE_ERROR(save_npy(path, Tensor::of({2.0})), expected);
  } else {
    // root writes into read-only directories: try the save as an unprivileged user in a child process.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int code = 3;
      if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
        try {
          save_npy(path, Tensor::of({2.0}));
          code = 1;
        } catch (const Error& e) {
          code = e.what() == expected ? 0 : 2;
        }
      }
      ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);  // 1: the save went through; 2: another message; 3: could not drop root
  }
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::add);
  REQUIRE(load_npy(path).item() == 1.0);
  REQUIRE(dir.entries() == std::vector<std::string>{"a.npy"});
}

TEST_CASE("read_file reads whole files and names the path in errors") {
  TempDir dir("tapegrad-serialize");
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
  write_raw(dir / "big", big);
  REQUIRE(read_file(dir / "big") == big);
  write_raw(dir / "empty", "");
  REQUIRE(read_file(dir / "empty").empty());
  REQUIRE_ERROR(read_file(dir / "missing"), fmt::format("read_file: cannot open '{}': No such file or directory", dir / "missing"));
  REQUIRE_ERROR(read_file(dir.path().string()), fmt::format("read_file: cannot open '{}': Is a directory", dir.path().string()));
}
