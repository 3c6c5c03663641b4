// Tensor: shape + strides + offset over shared storage, plus the autograd metadata the tape needs.
//
// A Tensor is a cheap handle (a shared pointer). Copying a Tensor aliases it; clone() copies data.
// Views (view, permute, narrow, select, expand, ...) share the storage and its version counter, so an
// in-place write through any alias is seen by the autograd check of every saved tensor.
//
// The ops themselves live in core/ops/*.h, one file per family with forward and backward side by side;
// the member functions declared here are thin sugar over them.
#pragma once

#include "dtype.h"
#include "error.h"

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tapegrad {

using Shape = std::vector<int64_t>;

// "(2, 3)" — the way error messages show a shape.
std::string shape_str(const Shape& s);
// "[2, 3]" — PyTorch's size list in some of its messages.
std::string shape_list(const Shape& s);
int64_t numel_of(const Shape& s);
// Row-major strides of a shape.
Shape contiguous_strides(const Shape& s);
// Wraps a possibly negative dim into [0, ndim); throws "op: Dimension out of range ..." otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim, std::string_view op);

// A 64-byte aligned buffer. The version counter is bumped by every in-place write to any tensor that
// views this storage; autograd compares it with the version recorded when a tensor was saved.
class Storage {
 public:
  explicit Storage(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  uint64_t version_ = 0;
};

namespace autograd {
class Node;
}

class Tensor;
using TensorHook = std::function<Tensor(const Tensor&)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  bool is_view = false;  // made by a view op from another tensor (detach() is not a view)

  // Autograd. A leaf is a tensor without grad_fn; only leaves that require grad get .grad.
  bool requires_grad = false;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;                // which output of grad_fn this tensor is
  std::shared_ptr<TensorImpl> grad;      // accumulated gradient (leaves, or retain_grad())
  std::vector<TensorHook> hooks;         // leaf gradient hooks (non-leaf hooks live on the node)
  std::string name;                      // optional, shown by the tape printer and the DOT export
};

// Nested initializer lists for small literal tensors: Tensor::of({{1, 2}, {3, 4}}).
struct NestedList {
  NestedList(double v) : value(v), is_scalar(true) {}  // NOLINT: implicit on purpose
  NestedList(std::initializer_list<NestedList> l) : children(l) {}
  double value = 0;
  bool is_scalar = false;
  std::vector<NestedList> children;
};

struct TensorOptions {
  DType dtype = DType::Float32;
  bool requires_grad = false;
};

class Generator;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation (core/tensor.cpp, core/random.cpp) ----
  static Tensor empty(const Shape& shape, TensorOptions o = {});
  static Tensor zeros(const Shape& shape, TensorOptions o = {});
  static Tensor ones(const Shape& shape, TensorOptions o = {});
  static Tensor full(const Shape& shape, double value, TensorOptions o = {});
  static Tensor scalar(double value, DType dtype = DType::Float32);  // 0-dim
  // [start, end) in steps of `step`; dtype int64 by default like torch.arange with integer arguments.
  static Tensor arange(double start, double end, double step = 1, TensorOptions o = {.dtype = DType::Int64});
  static Tensor arange(int64_t end, TensorOptions o = {.dtype = DType::Int64});
  static Tensor linspace(double start, double end, int64_t steps, TensorOptions o = {});
  static Tensor rand(const Shape& shape, TensorOptions o = {}, Generator* gen = nullptr);   // U[0, 1)
  static Tensor randn(const Shape& shape, TensorOptions o = {}, Generator* gen = nullptr);  // N(0, 1)
  // Integers uniform in [low, high), int64.
  static Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* gen = nullptr);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape);
  // Tensor::of({{1, 2}, {3, 4}}) is a float32 (2, 2) tensor; pass a dtype for others.
  static Tensor of(const NestedList& values, TensorOptions o = {});
  static Tensor empty_like(const Tensor& t);
  static Tensor zeros_like(const Tensor& t);
  static Tensor ones_like(const Tensor& t);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  int64_t size(int64_t dim) const;
  const Shape& strides() const { return impl().strides; }
  int64_t stride(int64_t dim) const;
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  uint64_t version() const { return impl().storage->version(); }
  // Raw pointer to element [0, ..., 0] (offset applied).
  void* data() const;
  // Typed pointer; throws when T does not match dtype().
  template <typename T>
  T* data_ptr() const {
    TG_CHECK(dtype_of<T>() == dtype(), "data_ptr: expected a {} tensor, got {}", dtype_name(dtype_of<T>()),
             dtype_name(dtype()));
    return static_cast<T*>(data());
  }
  // The single value of a one-element tensor.
  double item() const;
  template <typename T>
  T item() const { return static_cast<T>(item()); }
  // All elements in row-major order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- views: no copy; they share storage and version counter (core/ops/shape.cpp) ----
  Tensor view(const Shape& shape) const;        // needs compatible strides; one dim may be -1
  Tensor reshape(const Shape& shape) const;     // a view when possible, else a copy
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;                              // 2-D transpose
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;       // -1 keeps a dim; size-1 dims broadcast with stride 0
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;                     // itself if already contiguous
  Tensor clone() const;
  Tensor to(DType dtype) const;                  // itself if dtype matches
  Tensor detach() const;                         // shares storage and version, no history

  // ---- autograd (core/autograd.cpp) ----
  bool requires_grad() const { return impl().requires_grad; }
  // Only leaves of a floating dtype may change the flag.
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  uint32_t output_nr() const { return impl().output_nr; }
  // The accumulated gradient: undefined until a backward reaches this leaf.
  Tensor grad() const;
  void set_grad(const Tensor& g);
  // Sets .grad to zero in place (keeps the tensor object) when it exists.
  void zero_grad();
  // Replays the tape from this tensor. A non-scalar root needs an explicit gradient.
  void backward(const Tensor& gradient = {}, bool retain_graph = false, bool create_graph = false) const;
  // Keep .grad on a non-leaf too.
  void retain_grad() const;
  // hook(grad) runs when the gradient for this tensor is computed; a defined result replaces it.
  void register_hook(TensorHook hook) const;
  Tensor& set_name(std::string name);
  const std::string& name() const { return impl().name; }

  // ---- in-place (core/ops/elementwise.cpp); each bumps the version counter ----
  Tensor& add_(const Tensor& other, double alpha = 1);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other, double alpha = 1);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value);
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // src broadcasts to this shape; dtype converts
  Tensor& clamp_(std::optional<double> min, std::optional<double> max);
  Tensor& uniform_(double low, double high, Generator* gen = nullptr);
  Tensor& normal_(double mean, double std, Generator* gen = nullptr);

  // ---- op sugar: see the free functions in core/ops/*.h ----
  Tensor operator-() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor abs() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor pow(double exponent) const;
  Tensor clamp(std::optional<double> min, std::optional<double> max) const;
  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;
  Tensor var(const Shape& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor std(const Shape& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor amax(const Shape& dims, bool keepdim = false) const;
  Tensor amin(const Shape& dims, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;

  // ---- printing (core/print.cpp), in PyTorch's format ----
  std::string str() const;

  // The implementation object; throws for an undefined tensor.
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// A new tensor viewing `base`'s storage with the given geometry (no autograd history).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

}  // namespace tapegrad
