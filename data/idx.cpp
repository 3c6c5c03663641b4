#include "idx.h"

#include "../core/serialize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <random>
#include <set>

namespace tapegrad::data {

// ---- gzip ----

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f && static_cast<uint8_t>(bytes[1]) == 0x8b;
}

std::string gzip_decompress(const std::string& bytes, const std::string& what, size_t max_bytes) {
  TG_CHECK(is_gzip(bytes), "{}: not gzip data (no gzip magic bytes)", what);
  z_stream zs{};
  TG_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "{}: cannot initialize zlib", what);
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};

  size_t in_pos = 0;  // bytes handed to zlib so far (it takes at most UINT_MAX at a time)
  auto feed = [&] {
    if (zs.avail_in == 0 && in_pos < bytes.size()) {
      const size_t n = std::min<size_t>(bytes.size() - in_pos, UINT_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + in_pos));
      zs.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
  };
  std::string out(std::min(std::max<size_t>(bytes.size() * 4, 1 << 16), max_bytes + 1), '\0');
  size_t produced = 0;
  for (;;) {
    feed();
    if (produced == out.size()) {
      TG_CHECK(out.size() <= max_bytes, "{}: gzip data expands to more than {} bytes", what, max_bytes);
      out.resize(std::min(out.size() * 2, max_bytes + 1));
    }
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, UINT_MAX));
    const uInt room = zs.avail_out;
    const int ret = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    TG_CHECK(produced <= max_bytes, "{}: gzip data expands to more than {} bytes", what, max_bytes);
    if (ret == Z_STREAM_END) {
      feed();
      if (zs.avail_in == 0) break;
      // Another gzip member may follow (gzip -c a b); anything else is garbage.
      const size_t pos = in_pos - zs.avail_in;
      TG_CHECK(pos + 1 < bytes.size() && static_cast<uint8_t>(bytes[pos]) == 0x1f &&
                   static_cast<uint8_t>(bytes[pos + 1]) == 0x8b,
               "{}: corrupt gzip data: {} bytes of garbage after the compressed data", what, bytes.size() - pos);
      inflateReset(&zs);
      continue;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR) {
      // No progress possible: out of output space (grown above) or out of input.
      TG_CHECK(!(zs.avail_in == 0 && in_pos == bytes.size()), "{}: truncated gzip data", what);
      continue;
    }
    fail("{}: corrupt gzip data: {}", what, zs.msg ? zs.msg : "zlib error " + std::to_string(ret));
  }
  out.resize(produced);
  return out;
}

std::string gzip_compress(const std::string& bytes, int level) {
  TG_CHECK(level >= 0 && level <= 9, "gzip_compress: level must be in [0, 9], got {}", level);
  z_stream zs{};
  TG_CHECK(deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK,
           "gzip_compress: cannot initialize zlib");
  struct End {
    z_stream* z;
    ~End() { deflateEnd(z); }
  } end{&zs};
  std::string out;
  size_t in_pos = 0;
  char buf[1 << 16];
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    if (zs.avail_in == 0 && in_pos < bytes.size()) {
      const size_t n = std::min<size_t>(bytes.size() - in_pos, UINT_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + in_pos));
      zs.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    ret = deflate(&zs, in_pos == bytes.size() ? Z_FINISH : Z_NO_FLUSH);
    TG_CHECK(ret == Z_OK || ret == Z_STREAM_END || ret == Z_BUF_ERROR, "gzip_compress: zlib error {}", ret);
    out.append(buf, sizeof buf - zs.avail_out);
  }
  return out;
}

// ---- IDX ----

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::UInt8: return "uint8";
    case IdxType::Int8: return "int8";
    case IdxType::Int16: return "int16";
    case IdxType::Int32: return "int32";
    case IdxType::Float32: return "float32";
    case IdxType::Float64: return "float64";
  }
  return "?";
}

size_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::UInt8:
    case IdxType::Int8: return 1;
    case IdxType::Int16: return 2;
    case IdxType::Int32:
    case IdxType::Float32: return 4;
    case IdxType::Float64: return 8;
  }
  return 0;
}

namespace {

bool valid_type(uint8_t code) {
  return code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D || code == 0x0E;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Calls f(value) for every element, converted from its IDX type.
template <typename F>
void for_each_value(const IdxArray& a, F&& f) {
  const uint8_t* p = a.data.data();
  const int64_t n = a.numel();
  auto each = [&]<typename T>() {
    for (int64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + static_cast<size_t>(i) * sizeof(T), sizeof(T));
      f(v);
    }
  };
  switch (a.type) {
    case IdxType::UInt8: each.template operator()<uint8_t>(); break;
    case IdxType::Int8: each.template operator()<int8_t>(); break;
    case IdxType::Int16: each.template operator()<int16_t>(); break;
    case IdxType::Int32: each.template operator()<int32_t>(); break;
    case IdxType::Float32: each.template operator()<float>(); break;
    case IdxType::Float64: each.template operator()<double>(); break;
  }
}

bool is_integer_type(IdxType t) { return t != IdxType::Float32 && t != IdxType::Float64; }

}  // namespace

IdxArray parse_idx(const std::string& raw, const std::string& what) {
  std::string decompressed;
  if (is_gzip(raw)) decompressed = gzip_decompress(raw, fmt::format("read_idx: '{}'", what));
  const std::string& bytes = is_gzip(raw) ? decompressed : raw;
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();

  TG_CHECK(size >= 4, "read_idx: '{}' is too short to be an IDX file ({} bytes)", what, size);
  TG_CHECK(b[0] == 0 && b[1] == 0, "read_idx: '{}' is not an IDX file (magic number 0x{:08x})", what, be32(b));
  TG_CHECK(valid_type(b[2]), "read_idx: '{}' has an unknown IDX type code 0x{:02x}", what, b[2]);
  const int ndim = b[3];
  TG_CHECK(ndim >= 1, "read_idx: '{}' has no dimensions", what);
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  TG_CHECK(size >= header, "read_idx: '{}' is truncated: the header of {} dimensions needs {} bytes, got {}", what, ndim,
           header, size);

  IdxArray a;
  a.type = static_cast<IdxType>(b[2]);
  const size_t es = idx_type_size(a.type);
  // count: the elements; extent: the product with zero dims counted as 1, what a tensor's strides
  // multiply up to. A zero dim makes the array empty, but (4294967295, 4294967295, 0) still has no
  // strides that fit in int64. Both stay below 2^60, so that to_tensor can make a tensor of any
  // dtype (8 bytes at most) of every array read.
  uint64_t count = 1, extent = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; ++d) {
    const uint32_t v = be32(b + 4 + 4 * d);
    a.shape.push_back(v);
    overflow = overflow || __builtin_mul_overflow(count, uint64_t{v}, &count) ||
               __builtin_mul_overflow(extent, uint64_t{std::max<uint32_t>(v, 1)}, &extent);
  }
  uint64_t need = 0;
  overflow = overflow || extent >= (uint64_t{1} << 60) || __builtin_mul_overflow(count, uint64_t{es}, &need) ||
             need > (uint64_t{1} << 62);
  TG_CHECK(!overflow, "read_idx: '{}' has an impossible shape {}", what, shape_str(a.shape));
  const size_t have = size - header;
  TG_CHECK(have >= need, "read_idx: '{}' is truncated: shape {} of {} needs {} bytes of data, but only {} follow the header",
           what, shape_str(a.shape), idx_type_name(a.type), need, have);
  TG_CHECK(have == need, "read_idx: '{}' has {} unexpected bytes after the data of shape {} of {}", what, have - need,
           shape_str(a.shape), idx_type_name(a.type));

  a.data.assign(b + header, b + header + need);
  // Big-endian values to host order.
  if (es > 1) {
    for (size_t i = 0; i < need; i += es) std::reverse(a.data.begin() + static_cast<std::ptrdiff_t>(i),
                                                       a.data.begin() + static_cast<std::ptrdiff_t>(i + es));
  }
  return a;
}

IdxArray read_idx(const std::string& path) { return parse_idx(read_file(path), path); }

std::string encode_idx(const IdxArray& a) {
  TG_CHECK(valid_type(static_cast<uint8_t>(a.type)), "encode_idx: unknown IDX type code 0x{:02x}",
           static_cast<uint8_t>(a.type));
  TG_CHECK(!a.shape.empty() && a.shape.size() <= 255, "encode_idx: expected 1 to 255 dimensions, got {}", a.shape.size());
  const size_t es = idx_type_size(a.type);
  for (int64_t d : a.shape)
    TG_CHECK(d >= 0 && d <= UINT32_MAX, "encode_idx: dimension {} does not fit in 32 bits", d);
  TG_CHECK(a.data.size() == static_cast<size_t>(a.numel()) * es, "encode_idx: shape {} of {} needs {} bytes, got {}",
           shape_str(a.shape), idx_type_name(a.type), static_cast<size_t>(a.numel()) * es, a.data.size());
  std::string out = {0, 0, static_cast<char>(a.type), static_cast<char>(a.shape.size())};
  for (int64_t d : a.shape)
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((static_cast<uint64_t>(d) >> s) & 0xff));
  const size_t header = out.size();
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  if (es > 1)
    for (size_t i = header; i < out.size(); i += es) std::reverse(out.begin() + static_cast<std::ptrdiff_t>(i),
                                                                   out.begin() + static_cast<std::ptrdiff_t>(i + es));
  return out;
}

Tensor IdxArray::to_tensor(DType dtype) const {
  Tensor t = Tensor::empty(shape, {.dtype = dtype});
  dispatch_numeric(dtype, "IdxArray::to_tensor", [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for_each_value(*this, [&](auto v) { *p++ = static_cast<T>(v); });
  });
  return t;
}

// ---- IdxImageDataset ----

IdxImageDataset::IdxImageDataset(const std::string& images_path, const std::string& labels_path, Transform transform)
    : IdxImageDataset(read_idx(images_path), read_idx(labels_path), std::move(transform),
                      fmt::format("IdxImageDataset: '{}' and '{}'", images_path, labels_path)) {}

IdxImageDataset::IdxImageDataset(IdxArray images, IdxArray labels, Transform transform, const std::string& what)
    : images_(std::move(images)), transform_(std::move(transform)) {
  const Shape& s = images_.shape;
  TG_CHECK(images_.type == IdxType::UInt8 && (s.size() == 3 || (s.size() == 4 && s[3] >= 1 && s[3] <= 4)),
           "{}: expected uint8 images of shape (N, H, W) or (N, H, W, C) with C in 1..4, got {} of shape {}", what,
           idx_type_name(images_.type), shape_str(s));
  TG_CHECK(is_integer_type(labels.type) && labels.shape.size() == 1,
           "{}: expected integer labels of shape (N), got {} of shape {}", what, idx_type_name(labels.type),
           shape_str(labels.shape));
  TG_CHECK(s[0] == labels.shape[0], "{}: {} images but {} labels", what, s[0], labels.shape[0]);
  n_ = s[0];
  height_ = s[1];
  width_ = s[2];
  channels_ = s.size() == 4 ? s[3] : 1;
  TG_CHECK(n_ == 0 || (height_ > 0 && width_ > 0 && height_ <= kMaxImagePixels / width_),
           "{}: invalid image size {}x{}", what, height_, width_);
  labels_.reserve(static_cast<size_t>(n_));
  for_each_value(labels, [&](auto v) { labels_.push_back(static_cast<int64_t>(v)); });
}

Image IdxImageDataset::image(int64_t index) const {
  check_index(index, n_, "IdxImageDataset");
  Image img(height_, width_, channels_);
  const size_t n = img.pixels.size();
  std::memcpy(img.pixels.data(), images_.data.data() + static_cast<size_t>(index) * n, n);
  return img;
}

Example IdxImageDataset::get(int64_t index, Generator& gen) const {
  return {apply_transform(transform_, image(index), gen), label(index)};
}

// ---- export as an image folder ----

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
  return names;
}

namespace {

constexpr const char* kExport = "export_idx_image_folder";

// File names per class: "<index>.png" zero-padded to the width of the largest index.
std::vector<std::vector<std::pair<int64_t, std::string>>> export_plan(const IdxImageDataset& ds, size_t classes) {
  const int64_t n = ds.size();
  const int width = static_cast<int>(std::to_string(std::max<int64_t>(n - 1, 0)).size());
  std::vector<std::vector<std::pair<int64_t, std::string>>> plan(classes);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = ds.label(i);
    TG_CHECK(l >= 0 && static_cast<size_t>(l) < classes, "{}: label {} of sample {} is not a class index ({} classes)",
             kExport, l, i, classes);
    plan[static_cast<size_t>(l)].emplace_back(i, fmt::format("{:0{}}.png", i, width));
  }
  return plan;
}

// Empty when `root` holds every planned file and nothing else in the class folders, else what differs.
std::string export_mismatch(const std::string& root, const std::vector<std::string>& names,
                            const std::vector<std::vector<std::pair<int64_t, std::string>>>& plan) {
  for (size_t c = 0; c < names.size(); ++c) {
    const std::string dir = root + "/" + names[c];
    DIR* d = ::opendir(dir.c_str());
    if (!d) return fmt::format("class folder '{}' is missing", names[c]);
    std::set<std::string> present;
    while (const dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) present.insert(e->d_name);
    ::closedir(d);
    size_t found = 0;
    for (const auto& [i, name] : plan[c]) found += present.count(name);
    if (found != plan[c].size() || present.size() != plan[c].size())
      return fmt::format("class '{}' holds {} entries, {} of the {} expected images", names[c], present.size(), found,
                         plan[c].size());
  }
  return {};
}

std::string fs_parent(const std::string& path) {
  const std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

void write_plain(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create '{}': {}", kExport, path, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot write '{}': {}", kExport, path, std::strerror(err));
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0) fail("{}: cannot write '{}': {}", kExport, path, std::strerror(errno));
}

}  // namespace

bool export_idx_image_folder(const std::string& images_path, const std::string& labels_path, const std::string& root,
                             const std::vector<std::string>& class_names) {
  return export_idx_image_folder(read_idx(images_path), read_idx(labels_path), root, class_names);
}

bool export_idx_image_folder(const IdxArray& images, const IdxArray& labels, const std::string& root,
                             const std::vector<std::string>& class_names) {
  TG_CHECK(!root.empty(), "{}: empty root path", kExport);
  TG_CHECK(!class_names.empty(), "{}: no class names", kExport);
  for (size_t i = 0; i < class_names.size(); ++i) {
    const std::string& c = class_names[i];
    TG_CHECK(!c.empty() && c != "." && c != ".." && c.find('/') == std::string::npos && c.find('\0') == std::string::npos,
             "{}: '{}' cannot be a folder name", kExport, c);
    for (size_t j = 0; j < i; ++j) TG_CHECK(class_names[j] != c, "{}: class '{}' is listed twice", kExport, c);
  }
  const IdxImageDataset ds(images, labels, {}, kExport);
  const auto plan = export_plan(ds, class_names.size());

  struct stat st {};
  if (::stat(root.c_str(), &st) == 0) {
    const std::string m = export_mismatch(root, class_names, plan);
    TG_CHECK(m.empty(), "{}: '{}' exists but does not hold the expected export ({}); remove it to export again", kExport,
             root, m);
    return false;
  }

  std::random_device rd;
  const std::string tmp = fmt::format("{}.tmp-{}-{:08x}", root, ::getpid(), rd());
  if (::mkdir(tmp.c_str(), 0755) != 0) fail("{}: cannot create '{}': {}", kExport, tmp, std::strerror(errno));
  try {
    for (const std::string& c : class_names) {
      const std::string dir = tmp + "/" + c;
      if (::mkdir(dir.c_str(), 0755) != 0) fail("{}: cannot create '{}': {}", kExport, dir, std::strerror(errno));
    }
    // (class, position in the class) pairs, encoded and written in parallel.
    std::vector<std::pair<size_t, size_t>> jobs;
    for (size_t c = 0; c < plan.size(); ++c)
      for (size_t k = 0; k < plan[c].size(); ++k) jobs.emplace_back(c, k);
    std::string error;
    const auto n = static_cast<int64_t>(jobs.size());
#pragma omp parallel for schedule(dynamic, 64) if (n > 256)
    for (int64_t j = 0; j < n; ++j) {
      const auto [c, k] = jobs[static_cast<size_t>(j)];
      const auto& [index, name] = plan[c][k];
      try {
        write_plain(tmp + "/" + class_names[c] + "/" + name, encode_png(ds.image(index)));
      } catch (const std::exception& e) {
#pragma omp critical(export_error)
        if (error.empty()) error = e.what();
      }
    }
    if (!error.empty()) throw Error(error);
    // Everything on disk before the folder appears under its final name.
    const int fd = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::syncfs(fd) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      fail("{}: cannot flush '{}': {}", kExport, tmp, std::strerror(err));
    }
    ::close(fd);
    if (::rename(tmp.c_str(), root.c_str()) != 0) {
      const int err = errno;
      // Another process may have finished the same export first.
      if ((err == ENOTEMPTY || err == EEXIST) && export_mismatch(root, class_names, plan).empty()) {
        std::error_code ec;
        std::filesystem::remove_all(tmp, ec);
        return false;
      }
      fail("{}: cannot rename '{}' to '{}': {}", kExport, tmp, root, std::strerror(err));
    }
    // The rename itself survives a crash once the parent directory is flushed.
    const std::string parent = fs_parent(root);
    if (const int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); pfd >= 0) {
      ::fsync(pfd);
      ::close(pfd);
    }
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    throw;
  }
  return true;
}

}  // namespace tapegrad::data
