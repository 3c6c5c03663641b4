#include "serialize.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

namespace tapegrad {

namespace {

using json = nlohmann::ordered_json;

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

std::optional<DType> parse_safetensors_dtype(const std::string& s) {
  if (s == "F32") return DType::Float32;
  if (s == "F64") return DType::Float64;
  if (s == "I64") return DType::Int64;
  if (s == "BOOL") return DType::Bool;
  return std::nullopt;
}

// Checked multiplication of non-negative sizes.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) { return __builtin_mul_overflow(a, b, &out); }

}  // namespace

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [k, v] : tensors)
    if (k == name) return v;
  fail("safetensors: no tensor named '{}'", name);
}

bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& [k, v] : tensors)
    if (k == name) return true;
  return false;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("read_file: cannot open '{}': {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("read_file: error reading '{}'", path);
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::random_device rd;
  const std::string tmp = fmt::format("{}.tmp-{}-{:08x}", path, ::getpid(), rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("save: cannot create '{}': {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("save: cannot write '{}': {}", tmp, std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("save: cannot flush '{}': {}", tmp, std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("save: cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
}

// ---- safetensors ----
// Layout: u64 little-endian N, N bytes of JSON header, then the raw little-endian data. The header maps
// each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data section), plus
// an optional "__metadata__" object of strings.

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<Tensor> contiguous;
  for (const auto& [name, t] : tensors) {
    TG_CHECK(!header.contains(name), "save_safetensors: duplicate tensor name '{}'", name);
    TG_CHECK(name != "__metadata__", "save_safetensors: '__metadata__' is reserved");
    Tensor c = t.detach().contiguous();
    const uint64_t n = static_cast<uint64_t>(c.numel()) * element_size(c.dtype());
    header[name] = {{"dtype", safetensors_dtype(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    contiguous.push_back(std::move(c));
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string bytes(8, '\0');
  const uint64_t hn = h.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((hn >> (8 * i)) & 0xff);
  bytes += h;
  bytes.reserve(bytes.size() + offset);
  for (const Tensor& c : contiguous)
    bytes.append(static_cast<const char*>(c.data()), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
  write_file_atomic(path, bytes);
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& what) {
  TG_CHECK(bytes.size() >= 8, "load_safetensors: '{}' is too short to be a safetensors file ({} bytes)", what,
           bytes.size());
  uint64_t hn = 0;
  for (int i = 0; i < 8; ++i) hn |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  TG_CHECK(hn <= bytes.size() - 8, "load_safetensors: '{}' is truncated: header of {} bytes but only {} follow", what,
           hn, bytes.size() - 8);
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(hn));
  } catch (const json::exception& e) {
    fail("load_safetensors: '{}' has a corrupt header: {}", what, e.what());
  }
  TG_CHECK(header.is_object(), "load_safetensors: '{}' has a corrupt header: expected a JSON object", what);
  const char* data = bytes.data() + 8 + hn;
  const uint64_t data_size = bytes.size() - 8 - hn;
  SafetensorsFile out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      TG_CHECK(e.is_object(), "load_safetensors: '{}': __metadata__ must be an object of strings", what);
      for (auto m = e.begin(); m != e.end(); ++m) {
        TG_CHECK(m.value().is_string(), "load_safetensors: '{}': __metadata__ must be an object of strings", what);
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    TG_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets") &&
                 e["dtype"].is_string() && e["shape"].is_array() && e["data_offsets"].is_array() &&
                 e["data_offsets"].size() == 2,
             "load_safetensors: '{}': entry '{}' must have dtype, shape and data_offsets", what, name);
    auto dt = parse_safetensors_dtype(e["dtype"].get<std::string>());
    TG_CHECK(dt.has_value(), "load_safetensors: '{}': tensor '{}' has unsupported dtype {} (expected F32, F64, I64 or BOOL)",
             what, name, e["dtype"].get<std::string>());
    Shape shape;
    uint64_t count = 1;
    for (const json& d : e["shape"]) {
      TG_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
               "load_safetensors: '{}': tensor '{}' has an invalid shape", what, name);
      const uint64_t v = d.get<uint64_t>();
      TG_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) && !mul_overflows(count, v, count),
               "load_safetensors: '{}': tensor '{}' has an invalid shape", what, name);
      shape.push_back(static_cast<int64_t>(v));
    }
    const json& off = e["data_offsets"];
    TG_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(),
             "load_safetensors: '{}': tensor '{}' has invalid data_offsets", what, name);
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    uint64_t nbytes = 0;
    TG_CHECK(!mul_overflows(count, element_size(*dt), nbytes) && begin <= end && end - begin == nbytes,
             "load_safetensors: '{}': tensor '{}' of shape {} and dtype {} needs {} bytes, but its data_offsets [{}, {}] "
             "span {}",
             what, name, shape_str(shape), dtype_name(*dt), count * element_size(*dt), begin, end,
             end >= begin ? end - begin : 0);
    TG_CHECK(end <= data_size, "load_safetensors: '{}' is truncated: tensor '{}' ends at byte {} of a {}-byte data section",
             what, name, end, data_size);
    for (const auto& [k, v] : out.tensors) TG_CHECK(k != name, "load_safetensors: '{}': duplicate tensor '{}'", what, name);
    Tensor t = Tensor::empty(shape, {.dtype = *dt});
    if (nbytes) std::memcpy(t.data(), data + begin, nbytes);
    if (*dt == DType::Bool) {
      const uint8_t* p = static_cast<const uint8_t*>(t.data());
      for (uint64_t i = 0; i < count; ++i)
        TG_CHECK(p[i] <= 1, "load_safetensors: '{}': bool tensor '{}' holds a value other than 0 or 1", what, name);
    }
    out.tensors.emplace_back(name, std::move(t));
  }
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

// ---- npy ----
// Magic "\x93NUMPY", version (1.0, 2.0 or 3.0), header length (u16 or u32), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces, then the data.

namespace {
std::string npy_descr(DType t) {
  switch (t) {
    case DType::Float32: return "<f4";
    case DType::Float64: return "<f8";
    case DType::Int64: return "<i8";
    case DType::Bool: return "|b1";
  }
  return "?";
}
}  // namespace

void save_npy(const std::string& path, const Tensor& t) {
  Tensor c = t.detach().contiguous();
  std::string shape;
  for (int64_t d : c.shape()) shape += fmt::format("{}, ", d);
  if (c.dim() > 1) shape.resize(shape.size() - 2);
  else if (c.dim() == 1) shape.resize(shape.size() - 1);
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", npy_descr(c.dtype()), shape);
  const size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::string bytes = "\x93NUMPY\x01";
  bytes.push_back('\0');
  bytes.push_back(static_cast<char>(dict.size() & 0xff));
  bytes.push_back(static_cast<char>(dict.size() >> 8));
  bytes += dict;
  bytes.append(static_cast<const char*>(c.data()), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
  write_file_atomic(path, bytes);
}

Tensor parse_npy(const std::string& bytes, const std::string& what) {
  TG_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0,
           "load_npy: '{}' is not a .npy file (bad magic)", what);
  const int major = static_cast<unsigned char>(bytes[6]);
  TG_CHECK(major >= 1 && major <= 3, "load_npy: '{}': unsupported .npy version {}", what, major);
  size_t hlen = 0, pos = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    pos = 10;
  } else {
    TG_CHECK(bytes.size() >= 12, "load_npy: '{}' is truncated", what);
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    pos = 12;
  }
  TG_CHECK(hlen <= bytes.size() - pos, "load_npy: '{}' is truncated (header)", what);
  const std::string h = bytes.substr(pos, hlen);
  pos += hlen;
  auto field = [&](const std::string& key) -> std::string {
    const size_t k = h.find("'" + key + "'");
    TG_CHECK(k != std::string::npos, "load_npy: '{}': header has no '{}'", what, key);
    size_t v = h.find(':', k);
    TG_CHECK(v != std::string::npos, "load_npy: '{}': corrupt header", what);
    ++v;
    while (v < h.size() && h[v] == ' ') ++v;
    TG_CHECK(v < h.size(), "load_npy: '{}': corrupt header", what);
    const char open = h[v];
    if (open == '\'' || open == '(') {
      const char close = open == '(' ? ')' : '\'';
      const size_t e = h.find(close, v + 1);
      TG_CHECK(e != std::string::npos, "load_npy: '{}': corrupt header", what);
      return h.substr(v + 1, e - v - 1);
    }
    size_t e = v;
    while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
    return h.substr(v, e - v);
  };
  const std::string descr = field("descr");
  DType dt;
  if (descr == "<f4") dt = DType::Float32;
  else if (descr == "<f8") dt = DType::Float64;
  else if (descr == "<i8") dt = DType::Int64;
  else if (descr == "|b1") dt = DType::Bool;
  else fail("load_npy: '{}': unsupported dtype '{}' (expected <f4, <f8, <i8 or |b1)", what, descr);
  TG_CHECK(field("fortran_order") == "False", "load_npy: '{}': Fortran-ordered arrays are not supported", what);
  Shape shape;
  uint64_t count = 1;
  std::stringstream ss(field("shape"));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t b = item.find_first_not_of(' ');
    if (b == std::string::npos) continue;
    const std::string digits = item.substr(b, item.find_last_not_of(' ') - b + 1);
    TG_CHECK(!digits.empty() && digits.size() < 19 && digits.find_first_not_of("0123456789") == std::string::npos,
             "load_npy: '{}': invalid shape '{}'", what, field("shape"));
    const uint64_t d = std::stoull(digits);
    TG_CHECK(!mul_overflows(count, d, count), "load_npy: '{}': invalid shape '{}'", what, field("shape"));
    shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t nbytes = 0;
  TG_CHECK(!mul_overflows(count, element_size(dt), nbytes) && nbytes == bytes.size() - pos,
           "load_npy: '{}': expected {} bytes of data for shape {}, got {}", what, count * element_size(dt),
           shape_str(shape), bytes.size() - pos);
  Tensor t = Tensor::empty(shape, {.dtype = dt});
  if (nbytes) std::memcpy(t.data(), bytes.data() + pos, nbytes);
  return t;
}

Tensor load_npy(const std::string& path) { return parse_npy(read_file(path), path); }

}  // namespace tapegrad
