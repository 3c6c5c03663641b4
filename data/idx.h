// The IDX format (MNIST, Fashion-MNIST; Debian's dataset-fashion-mnist ships it gzip-compressed under
// /usr/share/datasets/fashion-mnist/), gzip through zlib, a dataset over IDX images, and the export of
// an IDX image/label pair as an image folder of PNGs.
//
// IDX layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D
// float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the
// values big-endian in row-major order. Reading validates all of it; a truncated or corrupt file
// throws tapegrad::Error naming the file and the problem, e.g.
//   "read_idx: 'train-images-idx3-ubyte.gz' is truncated: shape (60000, 28, 28) of uint8 needs 47040000
//    bytes of data, but only 1000 follow the header"
#pragma once

#include "dataset.h"
#include "image.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tapegrad::data {

enum class IdxType : uint8_t { UInt8 = 0x08, Int8 = 0x09, Int16 = 0x0B, Int32 = 0x0C, Float32 = 0x0D, Float64 = 0x0E };

// "uint8", "int8", "int16", "int32", "float32", "float64".
const char* idx_type_name(IdxType t);
size_t idx_type_size(IdxType t);

struct IdxArray {
  IdxType type = IdxType::UInt8;
  Shape shape;
  std::vector<uint8_t> data;  // numel * idx_type_size(type) bytes, host byte order

  int64_t numel() const { return numel_of(shape); }
  // The values converted to a tensor of `dtype` (float32, float64 or int64), same shape.
  Tensor to_tensor(DType dtype) const;
};

// gzip (one or more members, as gzip -c a b writes) through zlib. Corrupt or truncated input throws
// "<what>: corrupt gzip data: <zlib's message>" / "<what>: truncated gzip data". Output larger than
// max_bytes throws instead of exhausting memory.
std::string gzip_decompress(const std::string& bytes, const std::string& what = "<memory>",
                            size_t max_bytes = size_t{1} << 34);
std::string gzip_compress(const std::string& bytes, int level = 6);
bool is_gzip(const std::string& bytes);

// Parses IDX bytes; gzip-compressed input (recognized by its magic bytes, not the name) is
// decompressed first. `what` names the source in errors.
IdxArray parse_idx(const std::string& bytes, const std::string& what = "<memory>");
IdxArray read_idx(const std::string& path);
// The IDX encoding of an array (uncompressed; gzip_compress it for a .gz file).
std::string encode_idx(const IdxArray& array);

// Images (N, H, W) (gray) or (N, H, W, C) with C in 1..4, uint8, and labels (N) of an integer type,
// as a dataset: example i is transform(image i) (an empty transform is ToTensor()) and label i.
class IdxImageDataset : public Dataset {
 public:
  IdxImageDataset(const std::string& images_path, const std::string& labels_path, Transform transform = {});
  IdxImageDataset(IdxArray images, IdxArray labels, Transform transform = {}, const std::string& what = "IdxImageDataset");

  int64_t size() const override { return n_; }
  using Dataset::get;
  Example get(int64_t index, Generator& gen) const override;
  Image image(int64_t index) const;
  int64_t label(int64_t index) const { return labels_[static_cast<size_t>(index)]; }

 private:
  IdxArray images_;
  std::vector<int64_t> labels_;
  Transform transform_;
  int64_t n_ = 0, height_ = 0, width_ = 0, channels_ = 0;
};

// Fashion-MNIST's classes in label order, as folder names (T-shirt/top becomes T-shirt_top).
const std::vector<std::string>& fashion_mnist_classes();

// Writes the IDX image/label pair as root/<class name>/<index>.png, <index> being the sample's position
// in the IDX file, zero-padded to one width so names sort in index order ("00042.png" of 60000). The
// folder appears whole or not at all: it is written as root.tmp-<pid>-<random> beside root, flushed,
// then renamed to root. When root already exists and holds exactly the expected files, nothing is
// written and false is returned; when it exists and does not, that is an error (nothing is removed).
// Returns true when it exported. Every class gets a folder, even one without samples.
//
// Note that ImageFolder labels classes by sorted name; pass {.classes = class_names} in its options to
// keep the IDX label numbers.
bool export_idx_image_folder(const std::string& images_path, const std::string& labels_path, const std::string& root,
                             const std::vector<std::string>& class_names);
bool export_idx_image_folder(const IdxArray& images, const IdxArray& labels, const std::string& root,
                             const std::vector<std::string>& class_names);

}  // namespace tapegrad::data
