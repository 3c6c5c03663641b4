// Image transforms with torchvision's semantics (torchvision.transforms, tensor code path).
//
// A pipeline passes a Sample: either a decoded uint8 Image (HWC, from data/image.h) or a float
// tensor in CHW layout. Where each transform works:
//
//   transform              Image (uint8 HWC)                   Tensor (float32/float64 (..., C, H, W))
//   Resize                 yes: computed in float32, rounded   yes: F.interpolate(mode="bilinear",
//                          half to even (torchvision's uint8   align_corners=False, antialias=False),
//                          tensor path)                        the same numbers bit for bit
//   CenterCrop             yes                                 yes
//   RandomCrop             yes                                 yes
//   RandomHorizontalFlip   yes                                 yes
//   Grayscale              yes (alpha dropped, as PIL does)    yes (C must be 1 or 3)
//   ToTensor               Image -> float32 (C, H, W) / 255    no (already a tensor: error)
//   Normalize              no (apply ToTensor first: error)    yes
//
// The usual order is geometry on the Image (cheap: one byte per value), then ToTensor, then
// Normalize. Resize is the exception when results must equal a float pipeline: the reference
// Fashion-MNIST training resizes x / 255 with F.interpolate, which is ToTensor() then Resize(32)
// here (Resize on the Image would round the interpolated values to whole levels first).
//
// Resize is bilinear without antialiasing. It reproduces PyTorch's CPU kernels to the last bit,
// including their choice of kernel: a one-channel image ((N, 1, H, W) is channels-last contiguous in
// PyTorch) sums four weighted corners in double, any other interpolates along W, then H. Upscaling
// gives the same numbers as torchvision with or without antialiasing; when downscaling, torchvision
// >= 0.17 antialiases by default (and PIL always does), this does not.
//
// Random transforms draw from the Generator they are given, so with the DataLoader (which seeds one per
// sample from (seed, epoch, index)) results depend only on the seed. The draws follow torchvision's
// (RandomCrop: row offset, then column offset, none when the crop is the whole image; flip: one
// uniform number per call), but the numbers are tapegrad's generator's, not torch's.
//
// Every transform is a small value type callable as Sample(Sample, Generator&) and so converts to
// Transform; deterministic ones can also be called on an Image or a Tensor directly.
#pragma once

#include "../core/random.h"
#include "../core/tensor.h"
#include "image.h"

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tapegrad::data {

using Sample = std::variant<Image, Tensor>;
using Transform = std::function<Sample(Sample, Generator&)>;

// Runs a pipeline on an image and requires a tensor at the end:
//   "apply_transform: the transform returned an Image; end the pipeline with ToTensor()"
// An empty transform means ToTensor().
Tensor apply_transform(const Transform& transform, Image image, Generator& gen);

// Output size (height, width) for `size`: one number resizes the smaller edge to it and keeps the
// aspect ratio (the longer edge is int(size * long / short)); two are (height, width).
struct ResizeSize {
  ResizeSize(int64_t smaller_edge) : height(smaller_edge), width(-1) {}  // NOLINT: implicit like torchvision's int
  ResizeSize(int64_t h, int64_t w) : height(h), width(w) {}
  int64_t height, width;  // width -1: smaller edge
};

// Bilinear resize, align_corners=False, no antialias (see above).
struct Resize {
  ResizeSize size;
  explicit Resize(ResizeSize s);
  Resize(int64_t height, int64_t width) : Resize(ResizeSize(height, width)) {}
  // (height, width) of the result for an input of (h, w).
  std::pair<int64_t, int64_t> output_size(int64_t h, int64_t w) const;
  Image operator()(const Image& image) const;
  Tensor operator()(const Tensor& image) const;
  Sample operator()(Sample s, Generator&) const;
};

// Crops the center; an image smaller than the crop is first padded with zeros (torchvision's
// center_crop). The top-left corner is round((H - h) / 2), round((W - w) / 2), rounding half to even.
struct CenterCrop {
  int64_t height, width;
  explicit CenterCrop(int64_t size) : CenterCrop(size, size) {}
  CenterCrop(int64_t height, int64_t width);
  Image operator()(const Image& image) const;
  Tensor operator()(const Tensor& image) const;
  Sample operator()(Sample s, Generator&) const;
};

// Zero padding on each side; one number pads all four.
struct Padding {
  Padding(int64_t all = 0) : left(all), top(all), right(all), bottom(all) {}  // NOLINT: implicit like torchvision's int
  Padding(int64_t l, int64_t t, int64_t r, int64_t b) : left(l), top(t), right(r), bottom(b) {}
  int64_t left, top, right, bottom;
};

struct RandomCropOptions {
  Padding padding = 0;         // zeros added around the image before cropping
  bool pad_if_needed = false;  // pad a too-small image (each side by the shortfall, as torchvision does)
};

// A random (height, width) window after optional zero padding. An image smaller than the crop (after
// padding) throws "RandomCrop: Required crop size (32, 32) is larger than input image size (28, 28)".
struct RandomCrop {
  int64_t height, width;
  RandomCropOptions options;
  explicit RandomCrop(int64_t size, RandomCropOptions o = {}) : RandomCrop(size, size, o) {}
  RandomCrop(int64_t height, int64_t width, RandomCropOptions o = {});
  Image operator()(const Image& image, Generator& gen) const;
  Tensor operator()(const Tensor& image, Generator& gen) const;
  Sample operator()(Sample s, Generator& gen) const;
};

// Mirrors left-right with probability p (one gen.uniform() < p draw per call).
struct RandomHorizontalFlip {
  double p = 0.5;
  explicit RandomHorizontalFlip(double p = 0.5);
  Image operator()(const Image& image, Generator& gen) const;
  Tensor operator()(const Tensor& image, Generator& gen) const;
  Sample operator()(Sample s, Generator& gen) const;
};

// ITU-R 601-2 luma with torchvision's weights: L = 0.2989 R + 0.587 G + 0.114 B (float32; an Image's
// result is truncated to uint8 as torchvision's .to(torch.uint8) does). num_output_channels 1, or 3 (L
// repeated). A 1-channel input is replicated; an Image's alpha channel is ignored.
struct Grayscale {
  int64_t num_output_channels = 1;
  explicit Grayscale(int64_t num_output_channels = 1);
  Image operator()(const Image& image) const;
  Tensor operator()(const Tensor& image) const;
  Sample operator()(Sample s, Generator&) const;
};

// Image (H, W, C) uint8 -> float32 tensor (C, H, W) with values x / 255 in [0, 1].
struct ToTensor {
  Tensor operator()(const Image& image) const;
  Sample operator()(Sample s, Generator&) const;
};

// (x - mean[c]) / std[c] per channel (dim -3), in the tensor's dtype; one value applies to every
// channel. A zero std throws torchvision's "Normalize: std evaluated to zero after conversion to
// torch.float32, leading to division by zero.". Returns a new tensor.
struct Normalize {
  std::vector<double> mean, std;
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor operator()(const Tensor& image) const;
  Sample operator()(Sample s, Generator&) const;
};

// Applies the transforms in order.
struct Compose {
  std::vector<Transform> transforms;
  explicit Compose(std::vector<Transform> t) : transforms(std::move(t)) {}
  Sample operator()(Sample s, Generator& gen) const;
};

}  // namespace tapegrad::data
