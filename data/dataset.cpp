#include "dataset.h"

#include "../core/serialize.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iostream>
#include <set>

namespace tapegrad::data {

void check_index(int64_t index, int64_t size, const char* op) {
  TG_CHECK(index >= 0 && index < size, "{}: index {} is out of range for a dataset of size {}", op, index, size);
}

namespace {

// One directory's entries (names, unsorted) split into directories and the rest, following symlinks
// the way os.walk(followlinks=True) does (entry.is_dir() follows them). Returns errno on failure.
int list_dir(const std::string& dir, std::vector<std::string>& dirs, std::vector<std::string>& files) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    const bool is_dir = ::stat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    (is_dir ? dirs : files).push_back(name);
  }
  ::closedir(d);
  return 0;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

bool has_extension(const std::string& name, const std::vector<std::string>& extensions) {
  const std::string l = lower(name);
  return std::any_of(extensions.begin(), extensions.end(),
                     [&](const std::string& e) { return l.size() >= e.size() && l.compare(l.size() - e.size(), e.size(), e) == 0; });
}

// Every file under `top` with an accepted extension, in sorted(os.walk(top, followlinks=True)) order:
// directories sorted by path, each directory's files by name. Each directory is visited once (by
// device and inode), so symlink cycles end.
std::vector<std::string> walk(const std::string& top, const std::vector<std::string>& extensions) {
  std::vector<std::pair<std::string, std::vector<std::string>>> dirs;  // (path, file names)
  std::set<std::pair<dev_t, ino_t>> seen;
  std::vector<std::string> stack = {top};
  while (!stack.empty()) {
    std::string dir = std::move(stack.back());
    stack.pop_back();
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !seen.insert({st.st_dev, st.st_ino}).second) continue;
    std::vector<std::string> sub, files;
    if (list_dir(dir, sub, files) != 0) continue;  // os.walk ignores unreadable directories
    // Sorted, so which of two paths to the same directory is kept does not depend on readdir's order.
    std::sort(sub.rbegin(), sub.rend());
    for (const std::string& s : sub) stack.push_back(dir + "/" + s);
    dirs.emplace_back(std::move(dir), std::move(files));
  }
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& [dir, files] : dirs) {
    std::sort(files.begin(), files.end());
    for (const std::string& f : files)
      if (has_extension(f, extensions)) out.push_back(dir + "/" + f);
  }
  return out;
}

// Up to `n` bytes from the start of a file (all of it when n is SIZE_MAX); sets `error` when it cannot
// be read.
std::string read_prefix(const std::string& path, size_t n, std::string& error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    error = std::strerror(errno);
    return {};
  }
  std::string buf;
  char chunk[65536];
  while (buf.size() < n && f) {
    f.read(chunk, static_cast<std::streamsize>(std::min(sizeof chunk, n - buf.size())));
    buf.append(chunk, static_cast<size_t>(f.gcount()));
  }
  if (f.bad()) error = "read error";
  return buf;
}

// Why the file at `path` fails `check`, empty when it passes.
std::string file_problem(const std::string& path, ImageCheck check) {
  if (check == ImageCheck::None) return {};
  std::string error;
  if (check == ImageCheck::Header) {
    // The header is within the first bytes for every format but JPEG with large metadata before its
    // frame header; then the whole file is read.
    constexpr size_t kPrefix = 256 * 1024;
    std::string head = read_prefix(path, kPrefix, error);
    if (!error.empty()) return error;
    std::string p = image_problem(head);
    if (p.empty() || head.size() < kPrefix) return p;
  }
  const std::string bytes = read_prefix(path, SIZE_MAX, error);
  if (!error.empty()) return error;
  return image_problem(bytes, check == ImageCheck::Decode);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

ImageFolder::ImageFolder(std::string root, Transform transform, ImageFolderOptions options)
    : root_(std::move(root)), transform_(std::move(transform)), options_(std::move(options)) {
  TG_CHECK(options_.channels == 0 || options_.channels == 1 || options_.channels == 3 || options_.channels == 4,
           "ImageFolder: channels must be 0 (as stored), 1, 3 or 4, got {}", options_.channels);
  if (options_.extensions.empty()) options_.extensions = image_extensions();
  for (std::string& e : options_.extensions) e = lower(e);

  std::vector<std::string> dirs, files;
  if (int err = list_dir(root_, dirs, files); err != 0)
    fail("ImageFolder: cannot open root directory '{}': {}", root_, std::strerror(err));

  // Classes: root's subfolders sorted by name (torchvision's find_classes), or the given list.
  if (options_.classes.empty()) {
    std::sort(dirs.begin(), dirs.end());
    classes_ = dirs;
  } else {
    classes_ = options_.classes;
    for (const std::string& c : classes_) {
      TG_CHECK(std::find(dirs.begin(), dirs.end(), c) != dirs.end(), "ImageFolder: class folder '{}' not found in {}", c,
               root_);
    }
  }
  TG_CHECK(!classes_.empty(), "ImageFolder: Couldn't find any class folder in {}.", root_);
  for (size_t i = 0; i < classes_.size(); ++i) {
    const bool inserted = class_to_idx_.emplace(classes_[i], static_cast<int64_t>(i)).second;
    TG_CHECK(inserted, "ImageFolder: class '{}' is listed twice", classes_[i]);
  }

  // Files, class by class in label order (torchvision's make_dataset).
  std::vector<std::pair<std::string, int64_t>> found;
  std::vector<std::string> empty_classes;
  for (size_t i = 0; i < classes_.size(); ++i) {
    std::vector<std::string> paths = walk(root_ + "/" + classes_[i], options_.extensions);
    if (paths.empty()) empty_classes.push_back(classes_[i]);
    for (std::string& p : paths) found.emplace_back(std::move(p), static_cast<int64_t>(i));
  }
  if (!empty_classes.empty() && !options_.allow_empty) {
    std::sort(empty_classes.begin(), empty_classes.end());
    fail("ImageFolder: Found no valid file for the classes {}. Supported extensions are: {}", join(empty_classes, ", "),
         join(options_.extensions, ", "));
  }

  // Checks run in parallel; the samples keep their order.
  std::vector<std::string> problems(found.size());
  const auto n = static_cast<int64_t>(found.size());
#pragma omp parallel for schedule(dynamic, 16) if (n > 64 && options_.check != ImageCheck::None)
  for (int64_t i = 0; i < n; ++i) {
    std::string& p = problems[static_cast<size_t>(i)];
    try {
      p = file_problem(found[static_cast<size_t>(i)].first, options_.check);
    } catch (const std::exception& e) {  // nothing may leave an OpenMP region
      p = e.what();
    }
  }
  for (size_t i = 0; i < found.size(); ++i) {
    if (problems[i].empty()) {
      samples_.push_back(std::move(found[i]));
      continue;
    }
    TG_CHECK(!options_.strict, "ImageFolder: '{}' is not a valid image: {}", found[i].first, problems[i]);
    const std::string message = fmt::format("ImageFolder: skipping '{}': {}", found[i].first, problems[i]);
    if (options_.warn) {
      options_.warn(message);
    } else {
      std::cerr << "warning: " << message << '\n';
    }
    skipped_.push_back({found[i].first, problems[i]});
  }
}

Image ImageFolder::load(int64_t index) const {
  check_index(index, size(), "ImageFolder");
  Image img = load_image(samples_[static_cast<size_t>(index)].first);
  return options_.channels == 0 ? img : convert_channels(img, options_.channels);
}

Example ImageFolder::get(int64_t index, Generator& gen) const {
  Image img = load(index);
  return {apply_transform(transform_, std::move(img), gen), samples_[static_cast<size_t>(index)].second};
}

std::vector<int64_t> ImageFolder::targets() const {
  std::vector<int64_t> t;
  t.reserve(samples_.size());
  for (const auto& s : samples_) t.push_back(s.second);
  return t;
}

// ---- TensorDataset ----

TensorDataset::TensorDataset(Tensor data, Tensor labels, Transform transform) : transform_(std::move(transform)) {
  TG_CHECK(data.defined() && labels.defined(), "TensorDataset: expected defined data and labels tensors");
  TG_CHECK(data.dim() >= 1, "TensorDataset: expected data of shape (N, ...), got a 0-dim tensor");
  TG_CHECK(labels.dim() == 1 && labels.dtype() == DType::Int64,
           "TensorDataset: expected int64 labels of shape (N), got {} of shape {}", dtype_name(labels.dtype()),
           shape_str(labels.shape()));
  TG_CHECK(data.size(0) == labels.size(0), "TensorDataset: Size mismatch between tensors");
  data_ = data.detach().contiguous();
  labels_ = labels.detach().contiguous();
  n_ = data_.size(0);
}

Example TensorDataset::get(int64_t index, Generator& gen) const {
  check_index(index, n_, "TensorDataset");
  Shape s(data_.shape().begin() + 1, data_.shape().end());
  Tensor row = Tensor::empty(s, {.dtype = data_.dtype()});
  const size_t nbytes = static_cast<size_t>(row.numel()) * element_size(data_.dtype());
  std::memcpy(row.data(), static_cast<const char*>(data_.data()) + static_cast<size_t>(index) * nbytes, nbytes);
  const int64_t label = labels_.data_ptr<int64_t>()[index];
  if (!transform_) return {row, label};
  Sample out = transform_(Sample(row), gen);
  TG_CHECK(std::holds_alternative<Tensor>(out), "TensorDataset: the transform returned an Image; expected a Tensor");
  return {std::get<Tensor>(std::move(out)), label};
}

}  // namespace tapegrad::data
