// Reading and writing tensors: safetensors files (named tensors, what checkpoints use, readable by
// PyTorch's ecosystem) and NumPy .npy files (one tensor).
//
// Writes are atomic: the data goes to a temporary file in the same directory, is flushed to disk and
// then renamed over the target, so a crash during a save never destroys the previous file. Reads
// validate everything (header size, JSON, dtypes, shapes, offsets) and throw tapegrad::Error naming the
// file and the problem; they never crash on a corrupt or truncated file.
#pragma once

#include "tensor.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tapegrad {

// Named tensors in a fixed order (the order they were written or read in).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" entry

  // The tensor called `name`; throws if absent.
  const Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
};

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);
// The same, from bytes in memory (what the fuzzer drives). `what` names the source in errors.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& what = "<memory>");

void save_npy(const std::string& path, const Tensor& t);
Tensor load_npy(const std::string& path);
Tensor parse_npy(const std::string& bytes, const std::string& what = "<memory>");

// Writes `bytes` to `path` atomically (temporary file "<path>.tmp-<pid>-<random>" in the same directory,
// fsync, rename over `path`, fsync of the directory). On failure it throws "save: cannot ... '<path>':
// <reason>", removes the temporary file and leaves whatever was at `path` untouched. A process killed
// mid-save cannot remove its temporary file: a later successful save to the same path removes those
// left by processes that no longer exist, once they are an hour old.
void write_file_atomic(const std::string& path, const std::string& bytes);
// The whole file; throws "read_file: cannot open '<path>': <reason>" when it cannot.
std::string read_file(const std::string& path);

}  // namespace tapegrad
