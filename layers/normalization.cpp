#include "normalization.h"

#include "../core/autograd.h"
#include "../core/ops/norm.h"

#include <cmath>

namespace tapegrad::nn {

std::string python_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);  // shortest round-trip form, like Python's repr
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

namespace {
const char* py_bool(bool b) { return b ? "True" : "False"; }
}  // namespace

// ---- NormBase ----

NormBase::NormBase(std::string name, int64_t num_features, NormOptions o)
    : Module(std::move(name)), num_features(num_features), options(o) {
  TG_CHECK(num_features >= 0, "{}: num_features must be non-negative, got {}", type_name(), num_features);
  if (o.affine) {
    weight = register_parameter("weight", Tensor::empty({num_features}, {.dtype = o.dtype}));
    bias = register_parameter("bias", Tensor::empty({num_features}, {.dtype = o.dtype}));
  }
  if (o.track_running_stats) {
    running_mean = register_buffer("running_mean", Tensor::zeros({num_features}, {.dtype = o.dtype}));
    running_var = register_buffer("running_var", Tensor::ones({num_features}, {.dtype = o.dtype}));
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, {.dtype = kInt64}));
  }
  reset_parameters();
}

void NormBase::reset_running_stats() {
  if (!options.track_running_stats) return;
  autograd::NoGradGuard ng;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

void NormBase::reset_parameters() {
  reset_running_stats();
  if (!options.affine) return;
  autograd::NoGradGuard ng;
  weight.fill_(1);
  bias.zero_();
}

void NormBase::share_state_with(const NormBase& other) {
  auto adopt_param = [&](Tensor& mine, const Tensor& theirs, const char* name) {
    if (!theirs.defined()) return;
    set_parameter(name, theirs);
    mine = theirs;
  };
  auto adopt_buffer = [&](Tensor& mine, const Tensor& theirs, const char* name) {
    if (!theirs.defined()) return;
    set_buffer(name, theirs);
    mine = theirs;
  };
  adopt_param(weight, other.weight, "weight");
  adopt_param(bias, other.bias, "bias");
  adopt_buffer(running_mean, other.running_mean, "running_mean");
  adopt_buffer(running_var, other.running_var, "running_var");
  adopt_buffer(num_batches_tracked, other.num_batches_tracked, "num_batches_tracked");
}

std::string NormBase::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}", num_features,
                     python_float(options.eps), options.momentum ? python_float(*options.momentum) : "None",
                     py_bool(options.affine), py_bool(options.track_running_stats));
}

double NormBase::step_factor() {
  double factor = options.momentum.value_or(0.0);
  if (is_training() && options.track_running_stats && num_batches_tracked.defined()) {
    autograd::NoGradGuard ng;
    num_batches_tracked.add_(1.0);  // even for an empty batch, as PyTorch
    if (!options.momentum) factor = 1.0 / num_batches_tracked.item();
  }
  return factor;
}

// ---- BatchNorm ----

Tensor BatchNorm::forward(const Tensor& x) {
  check_input_dim(x);
  const double factor = step_factor();
  // Batch statistics in training, and in eval when no running statistics exist.
  const bool bn_training = is_training() || (!running_mean.defined() && !running_var.defined());
  const bool pass_stats = !is_training() || options.track_running_stats;
  return batch_norm(x, pass_stats ? running_mean : Tensor(), pass_stats ? running_var : Tensor(), weight, bias,
                    bn_training, factor, options.eps);
}

void BatchNorm1d::check_input_dim(const Tensor& x) const {
  TG_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d: expected 2D or 3D input (got {}D input)", x.dim());
}
void BatchNorm2d::check_input_dim(const Tensor& x) const {
  TG_CHECK(x.dim() == 4, "BatchNorm2d: expected 4D input (got {}D input)", x.dim());
}
void BatchNorm3d::check_input_dim(const Tensor& x) const {
  TG_CHECK(x.dim() == 5, "BatchNorm3d: expected 5D input (got {}D input)", x.dim());
}

// ---- InstanceNorm ----

InstanceNorm::InstanceNorm(std::string name, int64_t num_features, InstanceNormOptions o, int64_t spatial_dims)
    : NormBase(std::move(name), num_features,
               NormOptions{.eps = o.eps, .momentum = o.momentum, .affine = o.affine,
                           .track_running_stats = o.track_running_stats, .dtype = o.dtype}),
      spatial_dims_(spatial_dims) {}

Tensor InstanceNorm::forward(const Tensor& input) {
  const int64_t unbatched = spatial_dims_ + 1, batched = spatial_dims_ + 2;
  TG_CHECK(input.dim() == unbatched || input.dim() == batched, "{}: expected {}D or {}D input (got {}D input)",
           type_name(), unbatched, batched, input.dim());
  const int64_t feature_dim = input.dim() - batched + 1;
  if (input.size(feature_dim) != num_features && options.affine) {
    fail("{}: expected input's size at dim={} to match num_features ({}), but got: {}.", type_name(), feature_dim,
         num_features, input.size(feature_dim));
  }
  const Tensor x = input.dim() == unbatched ? input.unsqueeze(0) : input;
  // Running statistics are used only in eval, and only when tracked; InstanceNorm never counts batches.
  const bool use_input_stats = is_training() || !options.track_running_stats;
  Tensor y = instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, options.momentum.value_or(0.0),
                           options.eps);
  return input.dim() == unbatched ? y.squeeze(0) : y;
}

// ---- LayerNorm ----

LayerNorm::LayerNorm(Shape shape, LayerNormOptions o) : Module("LayerNorm"), normalized_shape(std::move(shape)), options(o) {
  if (o.elementwise_affine) {
    weight = register_parameter("weight", Tensor::ones(normalized_shape, {.dtype = o.dtype}));
    if (o.bias) bias = register_parameter("bias", Tensor::zeros(normalized_shape, {.dtype = o.dtype}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape, weight, bias, options.eps); }

std::string LayerNorm::extra_repr() const {
  std::string shape = normalized_shape.size() == 1 ? fmt::format("({},)", normalized_shape[0])
                                                   : fmt::format("({})", fmt::join(normalized_shape, ", "));
  return fmt::format("{}, eps={}, elementwise_affine={}", shape, python_float(options.eps),
                     py_bool(options.elementwise_affine));
}

// ---- GroupNorm ----

GroupNorm::GroupNorm(int64_t groups, int64_t channels, GroupNormOptions o)
    : Module("GroupNorm"), num_groups(groups), num_channels(channels), options(o) {
  TG_CHECK(groups > 0, "GroupNorm: num_groups must be positive, got {}", groups);
  TG_CHECK(channels % groups == 0, "GroupNorm: num_channels must be divisible by num_groups");
  if (o.affine) {
    weight = register_parameter("weight", Tensor::ones({channels}, {.dtype = o.dtype}));
    bias = register_parameter("bias", Tensor::zeros({channels}, {.dtype = o.dtype}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) { return group_norm(x, num_groups, weight, bias, options.eps); }

std::string GroupNorm::extra_repr() const {
  return fmt::format("{}, {}, eps={}, affine={}", num_groups, num_channels, python_float(options.eps),
                     py_bool(options.affine));
}

}  // namespace tapegrad::nn
