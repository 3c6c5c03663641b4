// Datasets: indexed collections of (data tensor, int64 label) examples.
//
// ImageFolder follows torchvision.datasets.ImageFolder: root/<class>/**/<image>, one class per
// subfolder. TensorDataset wraps tensors already in memory. data/idx.h reads IDX files (MNIST,
// Fashion-MNIST) into a dataset or exports them as an image folder.
#pragma once

#include "../core/random.h"
#include "../core/tensor.h"
#include "transforms.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tapegrad::data {

struct Example {
  Tensor data;
  int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Example `index` in [0, size()); random transforms draw from `gen`. Implementations must be safe to
  // call from several threads at once (the DataLoader's workers do).
  virtual Example get(int64_t index, Generator& gen) const = 0;
  // The same with this thread's default generator.
  Example get(int64_t index) const { return get(index, default_generator()); }
};

// ---- ImageFolder ----

// What ImageFolder checks for each file while scanning (files that fail are skipped, or an error in
// strict mode). Only Decode finds corruption inside the pixel data; with the others such a file is
// an error when it is loaded.
enum class ImageCheck {
  None,    // extension only (torchvision's behaviour)
  Header,  // the file opens and its header is an image stb can decode, of a sane size (cheap)
  Decode,  // the whole file decodes (reads and decodes every image once, in parallel)
};

// The extensions ImageFolder accepts by default (matched case-insensitively): the formats stb_image
// decodes. torchvision's list also has .tif, .tiff and .webp, which stb cannot read.
inline const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> ext = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".pnm", ".tga", ".gif"};
  return ext;
}

// A file left out of an ImageFolder, and why.
struct SkippedFile {
  std::string path;
  std::string reason;
};

struct ImageFolderOptions {
  // Every image is converted to this many channels after decoding (convert_channels): 3 is
  // torchvision's default loader (PIL's .convert("RGB")), 1 gray, 4 RGBA, 0 keeps each file's own.
  int64_t channels = 3;
  // Accepted extensions, lower case with the dot; empty means image_extensions().
  std::vector<std::string> extensions = {};
  // The classes, in label order, instead of every subfolder sorted by name (torchvision: overriding
  // find_classes). Each must be a subfolder of root.
  std::vector<std::string> classes = {};
  ImageCheck check = ImageCheck::Header;
  // A file that fails the check is an error instead of a skipped sample.
  bool strict = false;
  // torchvision's allow_empty: a class folder without any file of an accepted extension is accepted.
  bool allow_empty = false;
  // Receives one message per skipped file ("ImageFolder: skipping '<path>': <reason>"); the default
  // prints "warning: <message>" to stderr.
  std::function<void(const std::string&)> warn = {};
};

// root/<class>/<...>/<file>: the classes are root's subfolders (symlinks followed) sorted by name,
// labelled 0, 1, ...; each class's files are found recursively (symlinks followed, each directory
// once), in the order of torchvision's sorted(os.walk(...)): directories by path, files by name,
// comparing bytes. Hidden files and folders count like any other, as in torchvision.
//
// get(i) reads and decodes samples()[i], converts it to options.channels, then applies `transform`
// (an empty transform is ToTensor()); the result must be a Tensor.
//
// Errors (the part after "ImageFolder: " is torchvision's wording where it has one):
//   "ImageFolder: cannot open root directory '<root>': No such file or directory"
//   "ImageFolder: Couldn't find any class folder in <root>."
//   "ImageFolder: Found no valid file for the classes a, b. Supported extensions are: .jpg, .jpeg, ..."
//   strict mode: "ImageFolder: '<path>' is not a valid image: <reason>"
// Files that fail the check are skipped with a warning and listed in skipped().
class ImageFolder : public Dataset {
 public:
  explicit ImageFolder(std::string root, Transform transform = {}, ImageFolderOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  using Dataset::get;
  Example get(int64_t index, Generator& gen) const override;
  // Decoded and channel-converted, before the transform.
  Image load(int64_t index) const;

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::map<std::string, int64_t>& class_to_idx() const { return class_to_idx_; }
  // (path, label) for every sample, in index order (torchvision's .samples).
  const std::vector<std::pair<std::string, int64_t>>& samples() const { return samples_; }
  std::vector<int64_t> targets() const;
  const std::vector<SkippedFile>& skipped() const { return skipped_; }

 private:
  std::string root_;
  Transform transform_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::map<std::string, int64_t> class_to_idx_;
  std::vector<std::pair<std::string, int64_t>> samples_;
  std::vector<SkippedFile> skipped_;
};

// ---- TensorDataset ----

// Example i is (data[i], labels[i]): data of shape (N, ...) of any dtype, labels int64 of shape (N).
// An optional transform is applied to each data[i] (a Tensor sample). get(i) returns a copy.
// Mismatched lengths throw PyTorch's "TensorDataset: Size mismatch between tensors".
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor labels, Transform transform = {});

  int64_t size() const override { return n_; }
  using Dataset::get;
  Example get(int64_t index, Generator& gen) const override;
  const Tensor& data() const { return data_; }
  const Tensor& labels() const { return labels_; }

 private:
  Tensor data_, labels_;  // contiguous, detached
  Transform transform_;
  int64_t n_ = 0;
};

// "<op>: index 7 is out of range for a dataset of size 5" unless 0 <= index < size.
void check_index(int64_t index, int64_t size, const char* op);

}  // namespace tapegrad::data
