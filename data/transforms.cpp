#include "transforms.h"

#include "pixel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tapegrad::data {

namespace {

// A tensor image as (planes, H, W) contiguous: every dim before the last two is folded into planes.
struct Planes {
  Tensor t;  // contiguous
  int64_t planes, h, w;
};

Planes as_planes(const Tensor& image, const char* op) {
  TG_CHECK(image.dim() >= 2, "{}: expected a tensor image of shape (..., H, W), got {}", op, shape_str(image.shape()));
  TG_CHECK(is_floating(image.dtype()), "{}: expected a float32 or float64 tensor image, got {}", op,
           dtype_name(image.dtype()));
  Tensor c = image.detach().contiguous();
  const int64_t h = c.size(-2), w = c.size(-1);
  const int64_t n = c.numel();
  return {c, h * w == 0 ? 0 : n / (h * w), h, w};
}

// The shape of `image` with its last two dims replaced.
Shape with_hw(const Tensor& image, int64_t h, int64_t w) {
  Shape s = image.shape();
  s[s.size() - 2] = h;
  s[s.size() - 1] = w;
  return s;
}

// out[y][x] = in[y + top][x + left], zero outside the input: crops and zero padding in one pass.
// `px` is the number of interleaved values per pixel (an Image's channels, 1 for tensor planes).
template <typename T>
void window(const T* in, int64_t h, int64_t w, int64_t px, T* out, int64_t top, int64_t left, int64_t oh,
            int64_t ow) {
  for (int64_t y = 0; y < oh; ++y) {
    T* row = out + y * ow * px;
    const int64_t sy = y + top;
    if (sy < 0 || sy >= h) {
      std::fill(row, row + ow * px, T(0));
      continue;
    }
    // Columns [x0, x1) of the output come from the input; the rest are padding.
    const int64_t x0 = std::clamp<int64_t>(-left, 0, ow), x1 = std::clamp<int64_t>(w - left, x0, ow);
    std::fill(row, row + x0 * px, T(0));
    if (x1 > x0) std::memcpy(row + x0 * px, in + (sy * w + x0 + left) * px, static_cast<size_t>((x1 - x0) * px) * sizeof(T));
    std::fill(row + x1 * px, row + ow * px, T(0));
  }
}

Image window(const Image& img, int64_t top, int64_t left, int64_t oh, int64_t ow) {
  Image out(oh, ow, img.channels);
  window(img.pixels.data(), img.height, img.width, img.channels, out.pixels.data(), top, left, oh, ow);
  return out;
}

Tensor window(const Tensor& image, int64_t top, int64_t left, int64_t oh, int64_t ow, const char* op) {
  Planes p = as_planes(image, op);
  Tensor out = Tensor::empty(with_hw(image, oh, ow), {.dtype = image.dtype()});
  dispatch_floating(image.dtype(), op, [&]<typename T>() {
    const T* in = p.t.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t i = 0; i < p.planes; ++i) window(in + i * p.h * p.w, p.h, p.w, 1, o + i * oh * ow, top, left, oh, ow);
  });
  return out;
}

void check_image(const Image& img, const char* op) {
  TG_CHECK(img.height > 0 && img.width > 0 && img.channels >= 1 && img.channels <= 4 &&
               img.pixels.size() == static_cast<size_t>(img.height * img.width * img.channels),
           "{}: expected a non-empty image with 1 to 4 channels, got {}x{}x{} holding {} bytes", op, img.height,
           img.width, img.channels, img.pixels.size());
}

// ---- bilinear interpolation (PyTorch's upsample_bilinear2d, align_corners=False, CPU kernels) ----
//
// Written to give PyTorch's numbers bit for bit (checked against Debian's 1.13 build, whose AVX2 kernels
// the compiler contracted into FMAs; the fused steps are spelled out with std::fma here).

// One output coordinate's two source indices and weights.
template <typename T>
struct Tap {
  int64_t i0, i1;
  T l0, l1;
};

// compute_source_index_and_lambda: ratio = in / out in T; the source index ratio * (o + 0.5) - 0.5 is
// kept in double; lambda1 = (T)(index - i0) and lambda0 = 1 - lambda1 in T.
template <typename T>
std::vector<Tap<T>> taps(int64_t in, int64_t out) {
  std::vector<Tap<T>> t(static_cast<size_t>(out));
  const T ratio = static_cast<T>(in) / static_cast<T>(out);
  for (int64_t o = 0; o < out; ++o) {
    Tap<T>& k = t[static_cast<size_t>(o)];
    if (in == out) {
      k = {o, o, T(1), T(0)};
      continue;
    }
    const double real = std::max(std::fma(static_cast<double>(ratio), static_cast<double>(o) + 0.5, -0.5), 0.0);
    k.i0 = std::min(static_cast<int64_t>(real), in - 1);
    k.l1 = static_cast<T>(std::min(std::max(real - static_cast<double>(k.i0), 0.0), 1.0));
    k.i1 = k.i0 + (k.i0 < in - 1 ? 1 : 0);
    k.l0 = T(1) - k.l1;
  }
  return t;
}

// PyTorch picks its kernel by memory format: a single-channel image, (N, 1, H, W), is also
// channels-last contiguous and takes that kernel, which sums four weighted corners; any other takes the
// generic one, which interpolates along W, then along H.
enum class Kernel { Generic, ChannelsLast };

Kernel kernel_for(int64_t channels, int64_t h, int64_t w) {
  return channels == 1 || h * w == 1 ? Kernel::ChannelsLast : Kernel::Generic;
}

// `at(y, x)` reads the source as T; `store(y, x, v)` writes a result.
template <typename T, typename At, typename Store>
void bilinear(Kernel kernel, int64_t oh, int64_t ow, const std::vector<Tap<T>>& ty, const std::vector<Tap<T>>& tx,
              At at, Store store) {
  for (int64_t y = 0; y < oh; ++y) {
    const Tap<T>& a = ty[static_cast<size_t>(y)];
    for (int64_t x = 0; x < ow; ++x) {
      const Tap<T>& b = tx[static_cast<size_t>(x)];
      const T x00 = at(a.i0, b.i0), x01 = at(a.i0, b.i1), x10 = at(a.i1, b.i0), x11 = at(a.i1, b.i1);
      if (kernel == Kernel::Generic) {
        // t0 = x00 * w0 + x01 * w1, t1 likewise, out = t0 * h0 + t1 * h1 (first product fused).
        const T t0 = std::fma(x00, b.l0, mul_rounded(x01, b.l1));
        const T t1 = std::fma(x10, b.l0, mul_rounded(x11, b.l1));
        store(y, x, std::fma(t0, a.l0, mul_rounded(t1, a.l1)));
      } else {
        // Weights h * w rounded to T; the four products summed in double.
        const T w00 = mul_rounded(a.l0, b.l0), w01 = mul_rounded(a.l0, b.l1);
        const T w10 = mul_rounded(a.l1, b.l0), w11 = mul_rounded(a.l1, b.l1);
        double acc = static_cast<double>(x01) * static_cast<double>(w01);
        acc = std::fma(static_cast<double>(x00), static_cast<double>(w00), acc);
        acc = std::fma(static_cast<double>(x10), static_cast<double>(w10), acc);
        acc = std::fma(static_cast<double>(x11), static_cast<double>(w11), acc);
        store(y, x, static_cast<T>(acc));
      }
    }
  }
}

}  // namespace

Tensor apply_transform(const Transform& transform, Image image, Generator& gen) {
  if (!transform) return ToTensor()(image);
  Sample s = transform(Sample(std::move(image)), gen);
  TG_CHECK(std::holds_alternative<Tensor>(s), "apply_transform: the transform returned an Image; end the pipeline with ToTensor()");
  return std::get<Tensor>(std::move(s));
}

// ---- Resize ----

Resize::Resize(ResizeSize s) : size(s) {
  TG_CHECK(s.height > 0 && (s.width > 0 || s.width == -1), "Resize: expected positive sizes, got ({}, {})", s.height,
           s.width);
}

std::pair<int64_t, int64_t> Resize::output_size(int64_t h, int64_t w) const {
  if (size.width != -1) return {size.height, size.width};
  // torchvision's _compute_resized_output_size: int(requested_short * long / short).
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const int64_t new_short = size.height;
  const auto new_long = static_cast<int64_t>(static_cast<double>(new_short * longer) / static_cast<double>(shorter));
  return w <= h ? std::pair{new_long, new_short} : std::pair{new_short, new_long};
}

Image Resize::operator()(const Image& img) const {
  check_image(img, "Resize");
  // Named copies, not a structured binding: clang before 16 cannot capture those in the lambdas below.
  const auto size = output_size(img.height, img.width);
  const int64_t oh = size.first, ow = size.second;
  Image out(oh, ow, img.channels);
  const auto ty = taps<float>(img.height, oh), tx = taps<float>(img.width, ow);
  const int64_t c = img.channels;
  for (int64_t ch = 0; ch < c; ++ch) {
    const uint8_t* in = img.pixels.data() + ch;
    uint8_t* o = out.pixels.data() + ch;
    const int64_t w = img.width;
    // torchvision: float, interpolate, torch.round (half to even), back to uint8.
    bilinear<float>(
        kernel_for(c, img.height, img.width), oh, ow, ty, tx, [&](int64_t y, int64_t x) { return static_cast<float>(in[(y * w + x) * c]); },
        [&](int64_t y, int64_t x, float v) {
          o[(y * ow + x) * c] = static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.0f, 255.0f));
        });
  }
  return out;
}

Tensor Resize::operator()(const Tensor& image) const {
  Planes p = as_planes(image, "Resize");
  TG_CHECK(p.h > 0 && p.w > 0, "Resize: expected a non-empty image, got {}", shape_str(image.shape()));
  const auto size = output_size(p.h, p.w);  // named copies: clang before 16 cannot capture bindings
  const int64_t oh = size.first, ow = size.second;
  Tensor out = Tensor::empty(with_hw(image, oh, ow), {.dtype = image.dtype()});
  const Kernel kernel = kernel_for(image.dim() >= 3 ? image.size(-3) : 1, p.h, p.w);
  dispatch_floating(image.dtype(), "Resize", [&]<typename T>() {
    const auto ty = taps<T>(p.h, oh), tx = taps<T>(p.w, ow);
    const T* in = p.t.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const int64_t w = p.w;
    for (int64_t i = 0; i < p.planes; ++i) {
      const T* src = in + i * p.h * p.w;
      T* dst = o + i * oh * ow;
      bilinear<T>(
          kernel, oh, ow, ty, tx, [&](int64_t y, int64_t x) { return src[y * w + x]; },
          [&](int64_t y, int64_t x, T v) { dst[y * ow + x] = v; });
    }
  });
  return out;
}

Sample Resize::operator()(Sample s, Generator&) const {
  if (auto* img = std::get_if<Image>(&s)) return (*this)(*img);
  return (*this)(std::get<Tensor>(s));
}

// ---- CenterCrop ----

namespace {
// The crop's first row (or column) in input coordinates; negative when the crop is larger and
// torchvision pads (crop - size) // 2 zeros before.
int64_t center_start(int64_t size, int64_t crop) {
  if (crop > size) return -((crop - size) / 2);
  return static_cast<int64_t>(std::nearbyint(static_cast<double>(size - crop) / 2.0));  // Python's round()
}
}  // namespace

CenterCrop::CenterCrop(int64_t h, int64_t w) : height(h), width(w) {
  TG_CHECK(h > 0 && w > 0, "CenterCrop: expected positive sizes, got ({}, {})", h, w);
}

Image CenterCrop::operator()(const Image& img) const {
  check_image(img, "CenterCrop");
  return window(img, center_start(img.height, height), center_start(img.width, width), height, width);
}

Tensor CenterCrop::operator()(const Tensor& image) const {
  Planes p = as_planes(image, "CenterCrop");
  return window(image, center_start(p.h, height), center_start(p.w, width), height, width, "CenterCrop");
}

Sample CenterCrop::operator()(Sample s, Generator&) const {
  if (auto* img = std::get_if<Image>(&s)) return (*this)(*img);
  return (*this)(std::get<Tensor>(s));
}

// ---- RandomCrop ----

RandomCrop::RandomCrop(int64_t h, int64_t w, RandomCropOptions o) : height(h), width(w), options(o) {
  TG_CHECK(h > 0 && w > 0, "RandomCrop: expected positive sizes, got ({}, {})", h, w);
  const Padding& p = o.padding;
  TG_CHECK(p.left >= 0 && p.top >= 0 && p.right >= 0 && p.bottom >= 0,
           "RandomCrop: padding must be non-negative, got ({}, {}, {}, {})", p.left, p.top, p.right, p.bottom);
}

namespace {
// The window (top, left) in input coordinates for an input of h x w, drawing from gen as torchvision's
// RandomCrop.get_params does (after its padding steps).
std::pair<int64_t, int64_t> random_crop_origin(const RandomCrop& rc, int64_t h, int64_t w, Generator& gen) {
  int64_t top = rc.options.padding.top, left = rc.options.padding.left;
  h += rc.options.padding.top + rc.options.padding.bottom;
  w += rc.options.padding.left + rc.options.padding.right;
  // pad_if_needed pads (size - w) on both the left and the right (torchvision's padding = [size - w, 0]).
  if (rc.options.pad_if_needed && w < rc.width) {
    left += rc.width - w;
    w += 2 * (rc.width - w);
  }
  if (rc.options.pad_if_needed && h < rc.height) {
    top += rc.height - h;
    h += 2 * (rc.height - h);
  }
  TG_CHECK(h >= rc.height && w >= rc.width,
           "RandomCrop: Required crop size ({}, {}) is larger than input image size ({}, {})", rc.height, rc.width, h, w);
  if (h == rc.height && w == rc.width) return {-top, -left};
  const auto i = static_cast<int64_t>(gen.below(static_cast<uint64_t>(h - rc.height + 1)));
  const auto j = static_cast<int64_t>(gen.below(static_cast<uint64_t>(w - rc.width + 1)));
  return {i - top, j - left};
}
}  // namespace

Image RandomCrop::operator()(const Image& img, Generator& gen) const {
  check_image(img, "RandomCrop");
  const auto [top, left] = random_crop_origin(*this, img.height, img.width, gen);
  return window(img, top, left, height, width);
}

Tensor RandomCrop::operator()(const Tensor& image, Generator& gen) const {
  Planes p = as_planes(image, "RandomCrop");
  const auto [top, left] = random_crop_origin(*this, p.h, p.w, gen);
  return window(image, top, left, height, width, "RandomCrop");
}

Sample RandomCrop::operator()(Sample s, Generator& gen) const {
  if (auto* img = std::get_if<Image>(&s)) return (*this)(*img, gen);
  return (*this)(std::get<Tensor>(s), gen);
}

// ---- RandomHorizontalFlip ----

RandomHorizontalFlip::RandomHorizontalFlip(double prob) : p(prob) {
  TG_CHECK(prob >= 0 && prob <= 1, "RandomHorizontalFlip: p must be in [0, 1], got {}", prob);
}

Image RandomHorizontalFlip::operator()(const Image& img, Generator& gen) const {
  check_image(img, "RandomHorizontalFlip");
  if (!(gen.uniform() < p)) return img;
  Image out(img.height, img.width, img.channels);
  const int64_t c = img.channels, w = img.width;
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < w; ++x)
      std::memcpy(&out.pixels[static_cast<size_t>((y * w + x) * c)],
                  &img.pixels[static_cast<size_t>((y * w + (w - 1 - x)) * c)], static_cast<size_t>(c));
  return out;
}

Tensor RandomHorizontalFlip::operator()(const Tensor& image, Generator& gen) const {
  Planes p = as_planes(image, "RandomHorizontalFlip");
  if (!(gen.uniform() < this->p)) return image;
  Tensor out = Tensor::empty(image.shape(), {.dtype = image.dtype()});
  dispatch_floating(image.dtype(), "RandomHorizontalFlip", [&]<typename T>() {
    const T* in = p.t.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t r = 0, rows = p.planes * p.h; r < rows; ++r)
      std::reverse_copy(in + r * p.w, in + (r + 1) * p.w, o + r * p.w);
  });
  return out;
}

Sample RandomHorizontalFlip::operator()(Sample s, Generator& gen) const {
  if (auto* img = std::get_if<Image>(&s)) return (*this)(*img, gen);
  return (*this)(std::get<Tensor>(s), gen);
}

// ---- Grayscale ----

Grayscale::Grayscale(int64_t n) : num_output_channels(n) {
  TG_CHECK(n == 1 || n == 3, "Grayscale: num_output_channels should be either 1 or 3, got {}", n);
}

Image Grayscale::operator()(const Image& img) const {
  check_image(img, "Grayscale");
  Image gray = convert_channels(img, 1);
  return num_output_channels == 1 ? gray : convert_channels(gray, 3);
}

Tensor Grayscale::operator()(const Tensor& image) const {
  TG_CHECK(image.dim() >= 3, "Grayscale: expected a tensor image of shape (..., C, H, W), got {}",
           shape_str(image.shape()));
  const int64_t c = image.size(-3);
  TG_CHECK(c == 1 || c == 3, "Grayscale: Input image tensor permitted channel values are [1, 3], but found {}", c);
  Planes p = as_planes(image, "Grayscale");
  Shape s = image.shape();
  s[s.size() - 3] = num_output_channels;
  Tensor out = Tensor::empty(s, {.dtype = image.dtype()});
  const int64_t hw = p.h * p.w, images = p.planes / c, oc = num_output_channels;
  dispatch_floating(image.dtype(), "Grayscale", [&]<typename T>() {
    const T* in = p.t.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t n = 0; n < images; ++n) {
      const T* src = in + n * c * hw;
      T* dst = o + n * oc * hw;
      for (int64_t i = 0; i < hw; ++i) {
        T l = src[i];
        if (c == 3) l = luma<T>(src[i], src[hw + i], src[2 * hw + i]);
        for (int64_t k = 0; k < oc; ++k) dst[k * hw + i] = l;
      }
    }
  });
  return out;
}

Sample Grayscale::operator()(Sample s, Generator&) const {
  if (auto* img = std::get_if<Image>(&s)) return (*this)(*img);
  return (*this)(std::get<Tensor>(s));
}

// ---- ToTensor ----

Tensor ToTensor::operator()(const Image& img) const {
  check_image(img, "ToTensor");
  const int64_t c = img.channels, hw = img.height * img.width;
  Tensor out = Tensor::empty({c, img.height, img.width});
  float* o = out.data_ptr<float>();
  const uint8_t* in = img.pixels.data();
  // HWC -> CHW, then torchvision's .div(255) (a true division, not a multiply by 1/255).
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t k = 0; k < c; ++k) o[k * hw + i] = static_cast<float>(in[i * c + k]) / 255.0f;
  return out;
}

Sample ToTensor::operator()(Sample s, Generator&) const {
  TG_CHECK(std::holds_alternative<Image>(s), "ToTensor: expected an Image, got a Tensor (ToTensor was already applied)");
  return (*this)(std::get<Image>(s));
}

// ---- Normalize ----

Normalize::Normalize(std::vector<double> m, std::vector<double> s) : mean(std::move(m)), std(std::move(s)) {
  TG_CHECK(!mean.empty() && !this->std.empty(), "Normalize: mean and std must not be empty");
  for (double v : this->std)
    TG_CHECK(static_cast<float>(v) != 0.0f,
             "Normalize: std evaluated to zero after conversion to torch.float32, leading to division by zero.");
}

Tensor Normalize::operator()(const Tensor& image) const {
  TG_CHECK(image.dim() >= 3, "Normalize: Expected tensor to be a tensor image of size (..., C, H, W). Got tensor.size() = {}",
           shape_list(image.shape()));
  TG_CHECK(is_floating(image.dtype()), "Normalize: Input tensor should be a float tensor. Got {}.",
           dtype_name(image.dtype()));
  const int64_t c = image.size(-3);
  auto fits = [c](size_t n) { return n == 1 || static_cast<int64_t>(n) == c; };
  TG_CHECK(fits(mean.size()) && fits(std.size()),
           "Normalize: expected 1 or {} values of mean and std for {} channels, got {} and {}", c, c, mean.size(),
           std.size());
  Planes p = as_planes(image, "Normalize");
  Tensor out = Tensor::empty(image.shape(), {.dtype = image.dtype()});
  const int64_t hw = p.h * p.w;
  dispatch_floating(image.dtype(), "Normalize", [&]<typename T>() {
    const T* in = p.t.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t plane = 0; plane < p.planes; ++plane) {
      const auto k = static_cast<size_t>(plane % c);
      // torchvision: tensor.sub_(mean).div_(std) with mean and std converted to the tensor's dtype.
      const T m = static_cast<T>(mean[mean.size() == 1 ? 0 : k]), s = static_cast<T>(std[std.size() == 1 ? 0 : k]);
      for (int64_t i = plane * hw; i < (plane + 1) * hw; ++i) o[i] = (in[i] - m) / s;
    }
  });
  return out;
}

Sample Normalize::operator()(Sample s, Generator&) const {
  TG_CHECK(std::holds_alternative<Tensor>(s), "Normalize: expected a float tensor, got an Image (apply ToTensor() first)");
  return (*this)(std::get<Tensor>(s));
}

// ---- Compose ----

Sample Compose::operator()(Sample s, Generator& gen) const {
  for (const Transform& t : transforms) {
    if (t) s = t(std::move(s), gen);
  }
  return s;
}

}  // namespace tapegrad::data
