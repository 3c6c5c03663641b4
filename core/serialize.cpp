#include "serialize.h"

#include <nlohmann/json.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <random>
#include <set>
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

// Whether a tensor of this shape can exist: the product of the dims, each counted as at least 1 (what
// the strides multiply up to), fits in int64. A zero dim makes the element count 0 but not the strides.
bool shape_fits(const Shape& shape) {
  uint64_t acc = 1;
  for (int64_t d : shape)
    if (d < 0 || mul_overflows(acc, static_cast<uint64_t>(std::max<int64_t>(d, 1)), acc) ||
        acc > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return false;
  return true;
}

// Parses JSON, rejecting duplicate keys in any object (a plain parse would keep one of them silently).
json parse_json_unique_keys(const char* begin, const char* end, const std::string& what) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  json::parser_callback_t check = [&](int, json::parse_event_t event, json& value) {
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      keys.pop_back();
    } else if (event == json::parse_event_t::key) {
      TG_CHECK(keys.back().insert(value.get<std::string>()).second,
               "load_safetensors: '{}' has a corrupt header: duplicate key '{}'", what, value.get<std::string>());
    }
    return true;
  };
  try {
    return json::parse(begin, end, check);
  } catch (const json::exception& e) {
    fail("load_safetensors: '{}' has a corrupt header: {}", what, e.what());
  }
}

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
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("read_file: cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    const int err = S_ISDIR(st.st_mode) ? EISDIR : errno;
    ::close(fd);
    fail("read_file: cannot open '{}': {}", path, std::strerror(err));
  }
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail("read_file: error reading '{}': {}", path, std::strerror(err));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace {

// Leftovers of saves to `path` that were killed before their rename: "<name>.tmp-<pid>-<8 hex digits>"
// in the same directory, written by a process that no longer exists here, last modified more than
// kStaleTemporary ago (so that neither a save still running, nor one on another machine sharing the
// directory, loses its file). Removed after each successful save; best effort, errors are ignored.
constexpr auto kStaleTemporary = std::chrono::hours(1);

void remove_stale_temporaries(const std::string& dir, const std::string& name) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  const std::string prefix = name + ".tmp-";
  const auto now = std::chrono::system_clock::now();
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>-<8 hex digits>", nothing else.
    const std::string rest = entry.substr(prefix.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || rest.size() - dash - 1 != 8) continue;
    if (rest.find_first_not_of("0123456789") != dash) continue;
    if (rest.find_first_not_of("0123456789abcdef", dash + 1) != std::string::npos) continue;
    if (dash > 9) continue;  // not a pid
    const long pid = std::stol(rest.substr(0, dash));
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    const std::string full = dir + "/" + entry;
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const auto modified = std::chrono::system_clock::from_time_t(st.st_mtime);
    if (now - modified < kStaleTemporary) continue;
    (void)::unlink(full.c_str());
  }
  ::closedir(d);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::random_device rd;
  const std::string tmp = fmt::format("{}.tmp-{}-{:08x}", path, ::getpid(), rd());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("save: cannot create a temporary file next to '{}': {}", path, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("save: cannot write '{}': {}", path, std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  // Close even when fsync fails, so the descriptor never leaks.
  const int sync_err = ::fsync(fd) != 0 ? errno : 0;
  const int close_err = ::close(fd) != 0 ? errno : 0;
  if (sync_err || close_err) {
    ::unlink(tmp.c_str());
    fail("save: cannot flush '{}': {}", path, std::strerror(sync_err ? sync_err : close_err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("save: cannot replace '{}': {}", path, std::strerror(err));
  }
  // Make the rename itself durable (best effort: the data is already safe under one of the two names).
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  remove_stale_temporaries(dir, slash == std::string::npos ? path : path.substr(slash + 1));
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
    TG_CHECK(t.defined(), "save_safetensors: tensor '{}' is undefined", name);
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
  const json header = parse_json_unique_keys(bytes.data() + 8, bytes.data() + 8 + hn, what);
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
    TG_CHECK(shape_fits(shape), "load_safetensors: '{}': tensor '{}' has an invalid shape", what, name);
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
    // Names are unique: parse_json_unique_keys refused duplicate keys (a check against every earlier
    // tensor here would take quadratic time on a header of many small tensors).
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
  TG_CHECK(t.defined(), "save_npy: the tensor is undefined");
  Tensor c = t.detach().contiguous();
  std::string shape;
  for (int64_t d : c.shape()) shape += fmt::format("{}, ", d);
  if (c.dim() > 1) shape.resize(shape.size() - 2);
  else if (c.dim() == 1) shape.resize(shape.size() - 1);
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", npy_descr(c.dtype()), shape);
  // Like numpy.save: room for the first dim to grow to 21 digits in place, then spaces and a newline up
  // to a multiple of 64 bytes; the same array gives the same bytes as numpy.
  if (c.dim() > 0) dict.append(21 - fmt::format("{}", c.size(0)).size(), ' ');
  TG_CHECK(dict.size() < 65000, "save_npy: a tensor of {} dims does not fit a .npy header", c.dim());
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
  TG_CHECK(shape_fits(shape), "load_npy: '{}': invalid shape '{}'", what, field("shape"));
  uint64_t nbytes = 0;
  TG_CHECK(!mul_overflows(count, element_size(dt), nbytes) && nbytes == bytes.size() - pos,
           "load_npy: '{}': expected {} bytes of data for shape {}, got {}", what, count * element_size(dt),
           shape_str(shape), bytes.size() - pos);
  Tensor t = Tensor::empty(shape, {.dtype = dt});
  if (nbytes) std::memcpy(t.data(), bytes.data() + pos, nbytes);
  if (dt == DType::Bool) {
    const uint8_t* p = static_cast<const uint8_t*>(t.data());
    for (uint64_t i = 0; i < count; ++i)
      TG_CHECK(p[i] <= 1, "load_npy: '{}': bool array holds a value other than 0 or 1", what);
  }
  return t;
}

Tensor load_npy(const std::string& path) { return parse_npy(read_file(path), path); }

}  // namespace tapegrad
