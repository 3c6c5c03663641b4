#include "tensor.h"

#include "autograd.h"
#include "inplace.h"
#include "iter.h"
#include "random.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace tapegrad {

// ---- shapes ----

std::string shape_str(const Shape& s) {
  if (s.size() == 1) return fmt::format("({},)", s[0]);
  return fmt::format("({})", fmt::join(s, ", "));
}

std::string shape_list(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= std::max<int64_t>(s[d], 1);
  }
  return st;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, std::string_view op) {
  const int64_t n = std::max<int64_t>(ndim, 1);  // a 0-dim tensor accepts dim 0 and -1, like PyTorch
  TG_CHECK(dim >= -n && dim < n, "{}: Dimension out of range (expected to be in range of [{}, {}], but got {})", op,
           -n, n - 1, dim);
  return dim < 0 ? dim + n : dim;
}

// ---- storage ----

namespace {

// AddressSanitizer builds (gcc defines __SANITIZE_ADDRESS__, clang answers __has_feature) keep no cache,
// so every use after free is seen, and give each storage exactly its bytes, so an overflow past the end
// is seen too instead of landing in the rounding slack.
#if defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAPEGRAD_ASAN 1
#endif
#endif

// Large buffers are kept when their storage dies and handed to the next storage of the same rounded
// size. Fresh memory from the OS costs a page fault per 4 KB page on first touch: for an elementwise
// op over a 64 MB tensor that is 16384 faults, several times the cost of the op itself, and a
// training loop allocates the same sizes every step. Such buffers are also 2 MB aligned and marked
// for transparent huge pages, so the first touch of a new one faults once per 2 MB.
// Small buffers come straight from malloc, whose own free lists already reuse them.
class BlockCache {
 public:
  static constexpr size_t kLarge = size_t{1} << 20;  // cached from this size up
  static constexpr size_t kHuge = size_t{2} << 20;   // huge page size and the rounding of large sizes

  static BlockCache& instance() {
    static BlockCache* cache = new BlockCache();  // never destroyed: storages may outlive statics
    return *cache;
  }

  static size_t rounded(size_t nbytes) {
    const size_t n = std::max<size_t>(nbytes, 1);
#ifdef TAPEGRAD_ASAN
    return n;
#endif
    return n >= kLarge ? (n + kHuge - 1) / kHuge * kHuge : (n + 63) / 64 * 64;
  }

  void* allocate(size_t size) {
    if (size >= kLarge && limit_ > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= size;
        return p;
      }
    }
    // posix_memalign, unlike aligned_alloc, also takes a size that is no multiple of the alignment.
    void* p = nullptr;
    if (posix_memalign(&p, size >= kLarge ? kHuge : 64, size) != 0) return nullptr;
#ifdef MADV_HUGEPAGE
    if (p && size >= kLarge) madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
  }

  void release(void* p, size_t size) {
    if (size >= kLarge && limit_ > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + size <= limit_) {
        free_.emplace(size, p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

 private:
  BlockCache() {
    // TAPEGRAD_CACHE_MB bounds the memory kept while unused (0 turns the cache off).
    if (const char* env = std::getenv("TAPEGRAD_CACHE_MB")) limit_ = std::strtoull(env, nullptr, 10) << 20;
  }

  std::mutex mu_;
  std::unordered_multimap<size_t, void*> free_;
  size_t cached_ = 0;
#ifdef TAPEGRAD_ASAN
  size_t limit_ = 0;  // let AddressSanitizer see every use after free
#else
  size_t limit_ = size_t{1} << 30;
#endif
};

}  // namespace

Storage::Storage(size_t nbytes) : nbytes_(nbytes) {
  data_ = BlockCache::instance().allocate(BlockCache::rounded(nbytes));
  if (!data_) fail("Tensor: out of memory allocating {} bytes", nbytes);
}

Storage::~Storage() { BlockCache::instance().release(data_, BlockCache::rounded(nbytes_)); }

// ---- creation ----

namespace {
// Non-negative dims whose strides (zero dims counted as 1) and byte size fit in int64: anything larger
// would overflow numel and stride arithmetic before any allocation could fail cleanly.
void check_shape(const Shape& shape, std::string_view op, DType dtype) {
  for (int64_t d : shape)
    TG_CHECK(d >= 0, "{}: Trying to create tensor with negative dimension {}: {}", op, d, shape_list(shape));
  int64_t extent = static_cast<int64_t>(element_size(dtype));
  for (int64_t d : shape)
    TG_CHECK(!__builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent),
             "{}: Storage size calculation overflowed with sizes={}", op, shape_list(shape));
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, TensorOptions o) {
  check_shape(shape, "empty", o.dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * element_size(o.dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = o.dtype;
  Tensor t(std::move(impl));
  // A bool has two valid bytes; kernels that read their destination (apply_inplace) must not meet others.
  if (o.dtype == DType::Bool) std::memset(t.data(), 0, t.storage()->nbytes());
  if (o.requires_grad) t.requires_grad_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, TensorOptions o) {
  Tensor t = empty(shape, {.dtype = o.dtype});
  // Filled directly rather than with fill_, so that a new tensor is at version 0 like PyTorch's.
  dispatch_all(o.dtype, [&]<typename T>() {
    T* p = static_cast<T*>(t.data());
    std::fill(p, p + t.numel(), static_cast<T>(value));
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

Tensor Tensor::zeros(const Shape& shape, TensorOptions o) {
  Tensor t = empty(shape, {.dtype = o.dtype});
  std::memset(t.data(), 0, t.storage()->nbytes());
  if (o.requires_grad) t.requires_grad_();
  return t;
}

Tensor Tensor::ones(const Shape& shape, TensorOptions o) { return full(shape, 1.0, o); }
Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, {.dtype = dtype}); }
Tensor Tensor::empty_like(const Tensor& t) { return empty(t.shape(), {.dtype = t.dtype()}); }
Tensor Tensor::zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype()}); }
Tensor Tensor::ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype()}); }

Tensor Tensor::arange(double start, double end, double step, TensorOptions o) {
  TG_CHECK(step != 0, "arange: step must be nonzero");
  TG_CHECK((step > 0 && end >= start) || (step < 0 && end <= start),
           "arange: upper bound and larger bound inconsistent with step sign");
  const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor t = empty({n}, {.dtype = o.dtype});
  dispatch_numeric(o.dtype, "arange", [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

Tensor Tensor::arange(int64_t end, TensorOptions o) { return arange(0, static_cast<double>(end), 1, o); }

Tensor Tensor::linspace(double start, double end, int64_t steps, TensorOptions o) {
  TG_CHECK(steps >= 0, "linspace: number of steps must be non-negative");
  Tensor t = empty({steps}, {.dtype = o.dtype});
  dispatch_floating(o.dtype, "linspace", [&]<typename T>() {
    T* p = t.data_ptr<T>();
    const double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
    // Like PyTorch: the second half counts back from `end`, so both ends are exact.
    // One step gives `start`, like PyTorch (the formula below would give `end`).
    const int64_t half = steps == 1 ? 1 : steps / 2;
    for (int64_t i = 0; i < steps; ++i)
      p[i] = static_cast<T>(i < half ? start + step * static_cast<double>(i)
                                     : end - step * static_cast<double>(steps - i - 1));
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

namespace {
template <typename T>
Tensor from_values(const std::vector<T>& v, const Shape& shape) {
  check_shape(shape, "from_vector", dtype_of<T>());
  TG_CHECK(static_cast<int64_t>(v.size()) == numel_of(shape),
           "from_vector: shape {} needs {} values, got {}", shape_str(shape), numel_of(shape), v.size());
  Tensor t = Tensor::empty(shape, {.dtype = dtype_of<T>()});
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(T));
  return t;
}

void flatten_nested(const NestedList& l, Shape& shape, std::vector<double>& out, size_t depth) {
  if (l.is_scalar) {
    TG_CHECK(depth == shape.size(), "Tensor::of: expected a sequence of length {} at depth {}, got a number",
             depth < shape.size() ? shape[depth] : 0, depth);
    out.push_back(l.value);
    return;
  }
  const auto n = static_cast<int64_t>(l.children.size());
  if (depth == shape.size()) {
    TG_CHECK(out.empty(), "Tensor::of: expected a number at depth {}, got a sequence", depth);
    shape.push_back(n);
  } else {
    TG_CHECK(shape[depth] == n, "Tensor::of: expected sequence of length {} at dim {} (got {})", shape[depth], depth,
             n);
  }
  for (const auto& c : l.children) flatten_nested(c, shape, out, depth + 1);
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape) { return from_values(v, shape); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& shape) { return from_values(v, shape); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& shape) { return from_values(v, shape); }

Tensor Tensor::of(const NestedList& values, TensorOptions o) {
  Shape shape;
  std::vector<double> flat;
  flatten_nested(values, shape, flat, 0);
  Tensor t = empty(shape, {.dtype = o.dtype});
  dispatch_all(o.dtype, [&]<typename T>() {
    T* p = t.data_ptr<T>();
    for (size_t i = 0; i < flat.size(); ++i) p[i] = static_cast<T>(flat[i]);
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

// ---- metadata ----

TensorImpl& Tensor::impl() const {
  if (!impl_) fail("Tensor: the tensor is undefined (default-constructed or an absent gradient)");
  return *impl_;
}

int64_t Tensor::size(int64_t dim) const { return shape()[wrap_dim(dim, this->dim(), "size")]; }
int64_t Tensor::stride(int64_t dim) const { return strides()[wrap_dim(dim, this->dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // like PyTorch: no element is out of place
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void* Tensor::data() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * static_cast<int64_t>(element_size(dtype()));
}

double Tensor::item() const {
  TG_CHECK(numel() == 1, "item: a Tensor with {} elements cannot be converted to Scalar", numel());
  return dispatch_all(dtype(), [&]<typename T>() { return static_cast<double>(*static_cast<const T*>(data())); });
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = contiguous();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  dispatch_all(c.dtype(), [&]<typename S>() {
    const S* p = static_cast<const S*>(c.data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(p[i]);
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  impl->is_view = true;
  return Tensor(std::move(impl));
}

// ---- copies ----

void detail::fill(const Tensor& t, double value) {
  dispatch_all(t.dtype(), [&]<typename T>() {
    const T v = static_cast<T>(value);
    auto g = detail::make_geometry<1>(t.shape(), {static_cast<char*>(t.data())}, {t.strides()}, {sizeof(T)});
    detail::for_each_run<1>(g, [v](const std::array<char*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
    });
  });
}

namespace {
// dst <- src (broadcast), converting dtype. dst may be a strided view.
void copy_kernel(const Tensor& dst, const Tensor& src) {
  dispatch_all(dst.dtype(), [&]<typename D>() {
    dispatch_all(src.dtype(), [&]<typename S>() {
      detail::assign<D, S>(dst, src, [](S s) { return static_cast<D>(s); });
    });
  });
}
}  // namespace

Tensor Tensor::detach() const {
  Tensor v = make_view(*this, shape(), strides(), offset());
  v.impl().is_view = false;
  v.impl().name = name();
  return v;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), {.dtype = dtype()});
  copy_kernel(out, *this);
  autograd::record("clone", {*this}, {out}, {}, [](autograd::Context& ctx) -> autograd::Grads { return {ctx.grad()}; });
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), {.dtype = dt});
  copy_kernel(out, *this);
  if (is_floating(dt) && is_floating(dtype())) {
    // The engine casts the gradient back to the input's dtype.
    autograd::record("to", {*this}, {out}, {}, [](autograd::Context& ctx) -> autograd::Grads { return {ctx.grad()}; });
  }
  return out;
}

Tensor& Tensor::copy_(const Tensor& src) {
  detail::broadcast_shapes(shape(), src.shape(), "copy_");
  TG_CHECK(detail::broadcast_shapes(shape(), src.shape(), "copy_") == shape(),
           "copy_: expected a source that broadcasts to {}, got {}", shape_str(shape()), shape_str(src.shape()));
  TG_CHECK(!(requires_grad() && is_leaf() && autograd::grad_enabled()),
           "copy_: a leaf Variable that requires grad is being used in an in-place operation.");
  TG_CHECK(!src.requires_grad() || !autograd::grad_enabled(),
           "copy_: copying from a tensor that requires grad is not recorded; detach() the source or use a NoGradGuard");
  detail::overwrite_inplace(*this, "copy_", [&] {
    if (storage() == src.storage() && numel() > 0) {
      copy_kernel(*this, src.clone());  // overlapping source and destination
    } else {
      copy_kernel(*this, src);
    }
  });
  return *this;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace tapegrad
