// Tensor printing in PyTorch's format: a port of torch/_tensor_str.py (repr of a dense CPU tensor)
// with the default print options, plus the names PyTorch gives the backward nodes.
#include "print.h"

#include "tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace tapegrad {

namespace {

// PyTorch's default print options (torch.set_printoptions(profile="default")).
constexpr int kPrecision = 4;
constexpr int64_t kThreshold = 1000;  // more elements than this are summarized
constexpr int64_t kEdgeItems = 3;     // entries kept at each end of a summarized dim
constexpr int64_t kLineWidth = 80;

// ---- one element as Python formats it ----

// Python's "{:.Nf}" / "{:.Ne}": fmt rounds exactly like Python (correctly rounded, half to even on the
// exact binary value); only the non-finite spellings differ (Python never prints "-nan").
std::string py_float(double v, bool sci, int precision) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return sci ? fmt::format("{:.{}e}", v, precision) : fmt::format("{:.{}f}", v, precision);
}

// Reads the element at `p` of a tensor of dtype `dt` (float32 widens to double exactly).
double read_float(const char* p, DType dt) {
  if (dt == DType::Float32) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  double d;
  std::memcpy(&d, p, sizeof d);
  return d;
}

// torch._tensor_str._Formatter: decides the mode and the common column width from the elements that
// will be printed (the summarized ones when summarizing).
class Formatter {
 public:
  Formatter(DType dtype, const std::vector<const char*>& elements) : dtype_(dtype) {
    if (!is_floating(dtype)) {
      for (const char* p : elements) max_width_ = std::max(max_width_, format_plain(p).size());
      return;
    }
    std::vector<double> vals;  // the non-zero finite values
    for (const char* p : elements) {
      const double v = read_float(p, dtype);
      if (std::isfinite(v) && v != 0) vals.push_back(v);
    }
    if (vals.empty()) return;  // nothing decides: integer mode, width 1
    double lo = std::abs(vals[0]), hi = lo;
    for (double v : vals) {
      lo = std::min(lo, std::abs(v));
      hi = std::max(hi, std::abs(v));
      if (v != std::ceil(v)) int_mode_ = false;
    }
    if (int_mode_) {
      // Integral values: scientific only for a wide range or huge values; the "." counts in the width.
      sci_mode_ = hi / lo > 1000.0 || hi > 1.0e8;
      for (double v : vals)
        max_width_ = std::max(max_width_, sci_mode_ ? py_float(v, true, kPrecision).size()
                                                   : py_float(v, false, 0).size() + 1);
    } else {
      sci_mode_ = hi / lo > 1000.0 || hi > 1.0e8 || lo < 1.0e-4;
      for (double v : vals) max_width_ = std::max(max_width_, py_float(v, sci_mode_, kPrecision).size());
    }
  }

  size_t width() const { return max_width_; }

  // The element right-aligned to the common width (wider ones, e.g. "nan" among "1.", stick out).
  std::string format(const char* p) const {
    std::string s;
    if (!is_floating(dtype_)) {
      s = format_plain(p);
    } else {
      const double v = read_float(p, dtype_);
      if (sci_mode_) {
        s = py_float(v, true, kPrecision);
      } else if (int_mode_) {
        s = py_float(v, false, 0);
        if (std::isfinite(v)) s += '.';
      } else {
        s = py_float(v, false, kPrecision);
      }
    }
    if (s.size() < max_width_) s.insert(0, max_width_ - s.size(), ' ');
    return s;
  }

 private:
  // int64 and bool as Python's str() of the element.
  std::string format_plain(const char* p) const {
    if (dtype_ == DType::Bool) return *reinterpret_cast<const uint8_t*>(p) ? "True" : "False";
    int64_t v;
    std::memcpy(&v, p, sizeof v);
    return fmt::format("{}", v);
  }

  DType dtype_;
  bool int_mode_ = true;
  bool sci_mode_ = false;
  size_t max_width_ = 1;
};

// Walks the tensor the way _tensor_str does: `base` points at element [0, ..., 0]; strides in bytes.
class Printer {
 public:
  explicit Printer(const Tensor& t)
      : shape_(t.shape()), base_(static_cast<const char*>(t.data())), summarize_(t.numel() > kThreshold) {
    const auto esize = static_cast<int64_t>(element_size(t.dtype()));
    for (int64_t s : t.strides()) byte_strides_.push_back(s * esize);
  }

  // The elements that will be shown, in order (get_summarized_data).
  void collect(const char* p, size_t d, std::vector<const char*>& out) const {
    if (d == shape_.size()) {
      out.push_back(p);
      return;
    }
    for (int64_t i : indices(d)) collect(p + i * byte_strides_[d], d + 1, out);
  }

  // _tensor_str_with_formatter for the sub-tensor at `p` holding dims d.. of the shape.
  std::string str(const char* p, size_t d, int64_t indent, const Formatter& f) const {
    const size_t dims_left = shape_.size() - d;
    if (dims_left == 0) return f.format(p);
    if (dims_left == 1) return vector_str(p, d, indent, f);
    std::vector<std::string> slices;
    int64_t prev = -1;
    for (int64_t i : indices(d)) {
      if (prev >= 0 && i != prev + 1) slices.emplace_back("...");
      slices.push_back(str(p + i * byte_strides_[d], d + 1, indent + 1, f));
      prev = i;
    }
    std::string sep(1, ',');
    sep.append(dims_left - 1, '\n').append(static_cast<size_t>(indent) + 1, ' ');
    std::string out(1, '[');
    for (size_t i = 0; i < slices.size(); ++i) out.append(i > 0 ? sep : "").append(slices[i]);
    return out + "]";
  }

  const char* base() const { return base_; }

 private:
  // The indices of dim d that are shown: all, or the first and last kEdgeItems when summarizing.
  std::vector<int64_t> indices(size_t d) const {
    const int64_t n = shape_[d];
    std::vector<int64_t> idx;
    if (summarize_ && n > 2 * kEdgeItems) {
      for (int64_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
      for (int64_t i = n - kEdgeItems; i < n; ++i) idx.push_back(i);
    } else {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    }
    return idx;
  }

  // _vector_str: elements joined by ", ", wrapped so each line holds as many whole columns as fit in
  // the line width after the indent; a summarized vector has " ..." as one more column.
  std::string vector_str(const char* p, size_t d, int64_t indent, const Formatter& f) const {
    const auto element_length = static_cast<int64_t>(f.width()) + 2;
    const int64_t per_line = std::max<int64_t>(1, (kLineWidth - indent) / element_length);
    std::vector<std::string> data;
    int64_t prev = -1;
    for (int64_t i : indices(d)) {
      if (prev >= 0 && i != prev + 1) data.emplace_back(" ...");
      data.push_back(f.format(p + i * byte_strides_[d]));
      prev = i;
    }
    std::string out(1, '[');
    for (size_t i = 0; i < data.size(); ++i) {
      if (i > 0 && i % static_cast<size_t>(per_line) == 0) {
        out.append(",\n").append(static_cast<size_t>(indent) + 1, ' ');
      } else if (i > 0) {
        out.append(", ");
      }
      out.append(data[i]);
    }
    return out + "]";
  }

  Shape shape_;
  Shape byte_strides_;
  const char* base_;
  bool summarize_;
};

// _add_suffixes: ", suffix" on the last line while it fits in the line width, else on a new line
// indented like the contents.
std::string add_suffixes(std::string s, const std::vector<std::string>& suffixes, int64_t indent) {
  const size_t nl = s.rfind('\n');
  // Python: len(s) - s.rfind("\n") + 1, with rfind = -1 when there is no newline.
  int64_t last_line_len = static_cast<int64_t>(s.size()) - (nl == std::string::npos ? -1 : static_cast<int64_t>(nl)) + 1;
  for (const std::string& suffix : suffixes) {
    const auto len = static_cast<int64_t>(suffix.size());
    if (last_line_len + len + 2 > kLineWidth) {
      s.append(",\n").append(static_cast<size_t>(indent), ' ').append(suffix);
      last_line_len = indent + len;
    } else {
      s.append(", ").append(suffix);
      last_line_len += len + 2;
    }
  }
  return s + ")";
}

// ---- backward node names ----

// Ops whose PyTorch node does not depend on how they were called (PyTorch 1.13 names).
constexpr std::pair<std::string_view, std::string_view> kBackwardNames[] = {
    // elementwise
    {"add", "AddBackward0"}, {"sub", "SubBackward0"}, {"mul", "MulBackward0"}, {"div", "DivBackward0"},
    {"neg", "NegBackward0"}, {"exp", "ExpBackward0"}, {"log", "LogBackward0"}, {"log1p", "Log1PBackward0"},
    {"sqrt", "SqrtBackward0"}, {"rsqrt", "RsqrtBackward0"}, {"abs", "AbsBackward0"}, {"tanh", "TanhBackward0"},
    {"sigmoid", "SigmoidBackward0"}, {"relu", "ReluBackward0"}, {"clamp", "ClampBackward1"},
    {"maximum", "MaximumBackward0"}, {"minimum", "MinimumBackward0"}, {"where", "WhereBackward0"},
    {"sin", "SinBackward0"}, {"cos", "CosBackward0"}, {"erf", "ErfBackward0"}, {"reciprocal", "ReciprocalBackward0"},
    {"masked_fill", "MaskedFillBackward0"},
    // activations
    {"gelu", "GeluBackward0"}, {"silu", "SiluBackward0"}, {"leaky_relu", "LeakyReluBackward0"}, {"elu", "EluBackward0"},
    {"softplus", "SoftplusBackward0"}, {"log_sigmoid", "LogSigmoidBackward0"}, {"hardtanh", "HardtanhBackward0"},
    {"mish", "MishBackward0"}, {"hardswish", "HardswishBackward0"}, {"dropout", "MulBackward0"},
    // views and copies
    {"view", "ViewBackward0"}, {"reshape", "UnsafeViewBackward0"}, {"flatten", "ViewBackward0"},
    {"permute", "PermuteBackward0"}, {"transpose", "TransposeBackward0"}, {"t", "TBackward0"},
    {"slice", "SliceBackward0"}, {"narrow", "SliceBackward0"}, {"select", "SelectBackward0"},
    {"expand", "ExpandBackward0"}, {"unsqueeze", "UnsqueezeBackward0"}, {"clone", "CloneBackward0"},
    {"contiguous", "CloneBackward0"}, {"to", "ToCopyBackward0"}, {"cat", "CatBackward0"}, {"stack", "StackBackward0"},
    {"split", "SplitBackward0"}, {"chunk", "SplitBackward0"}, {"unbind", "UnbindBackward0"}, {"flip", "FlipBackward0"},
    {"repeat", "RepeatBackward0"}, {"pad", "ConstantPadNdBackward0"},
    {"index_select", "IndexSelectBackward0"}, {"gather", "GatherBackward0"}, {"scatter_add", "ScatterAddBackward0"},
    {"embedding", "EmbeddingBackward0"},
    // reductions
    {"var", "VarBackward0"}, {"std", "StdBackward0"}, {"amax", "AmaxBackward0"}, {"amin", "AminBackward0"},
    {"logsumexp", "LogsumexpBackward0"}, {"prod", "ProdBackward0"}, {"cumsum", "CumsumBackward0"},
    {"softmax", "SoftmaxBackward0"}, {"log_softmax", "LogSoftmaxBackward0"},
    // linear algebra
    {"mm", "MmBackward0"}, {"bmm", "BmmBackward0"}, {"dot", "DotBackward0"}, {"mv", "MvBackward0"},
    {"addmm", "AddmmBackward0"},
    // layers
    {"conv1d", "ConvolutionBackward0"}, {"conv2d", "ConvolutionBackward0"}, {"conv_transpose2d", "ConvolutionBackward0"},
    {"max_pool2d", "MaxPool2DWithIndicesBackward0"}, {"avg_pool2d", "AvgPool2DBackward0"},
    {"batch_norm", "NativeBatchNormBackward0"}, {"layer_norm", "NativeLayerNormBackward0"},
    {"group_norm", "NativeGroupNormBackward0"}, {"instance_norm", "ViewBackward0"},
    // losses
    {"mse_loss", "MseLossBackward0"}, {"binary_cross_entropy", "BinaryCrossEntropyBackward0"},
    {"binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsBackward0"},
    {"smooth_l1_loss", "SmoothL1LossBackward0"}, {"huber_loss", "HuberLossBackward0"},
};

// "max_pool2d" -> "MaxPool2d".
std::string camel_case(std::string_view name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return out;
}

}  // namespace

std::string pytorch_backward_name(const autograd::Node& node) {
  const std::string& n = node.name;
  const auto in_dim = [&](size_t i) {
    return i < node.input_shapes.size() ? static_cast<int64_t>(node.input_shapes[i].size()) : int64_t{-1};
  };
  const bool scalar_out = !node.outputs.empty() && node.outputs[0].shape.empty();
  // Reductions: PyTorch's overload without dims (x.sum()) has a different node from the one with dims;
  // the 0-dim result is what tells them apart here (x.sum(0) of a 1-D tensor reads as x.sum()).
  if (n == "sum") return scalar_out ? "SumBackward0" : "SumBackward1";
  if (n == "mean") return scalar_out ? "MeanBackward0" : "MeanBackward1";
  if (n == "max") return scalar_out ? "MaxBackward1" : "MaxBackward0";
  if (n == "min") return scalar_out ? "MinBackward1" : "MinBackward0";
  if (n == "pow") return node.input_shapes.size() >= 2 ? "PowBackward1" : "PowBackward0";  // tensor exponent
  if (n == "squeeze") {
    // squeeze() drops every size-1 dim (SqueezeBackward0), squeeze(dim) at most one (SqueezeBackward1).
    const int64_t removed = in_dim(0) - (node.outputs.empty() ? 0 : static_cast<int64_t>(node.outputs[0].shape.size()));
    return removed >= 2 ? "SqueezeBackward0" : "SqueezeBackward1";
  }
  if (n == "matmul") {
    const int64_t a = in_dim(0), b = in_dim(1);
    if (a == 1 && b == 1) return "DotBackward0";
    if (a == 2 && b == 1) return "MvBackward0";
    if (a == 1 && b == 2) return "SqueezeBackward3";
    if (a == 2 && b == 2) return "MmBackward0";
    if (a == 2 && b >= 3) return "CloneBackward0";
    return "UnsafeViewBackward0";
  }
  if (n == "linear") {
    // inputs: x, weight, bias (absent: missing or undefined, recorded with an empty shape)
    const bool bias = node.input_shapes.size() >= 3 && !node.input_shapes[2].empty();
    const int64_t x = in_dim(0);
    if (x == 1) return bias ? "AddBackward0" : "SqueezeBackward3";
    if (x == 2) return bias ? "AddmmBackward0" : "MmBackward0";
    if (x == 3) return bias ? "ViewBackward0" : "UnsafeViewBackward0";
    return bias ? "AddBackward0" : "UnsafeViewBackward0";
  }
  if (n == "adaptive_avg_pool2d") {
    // An output of 1x1 is computed as a mean over the spatial dims.
    const bool one = !node.outputs.empty() && node.outputs[0].shape.size() >= 2 && node.outputs[0].shape.end()[-1] == 1 &&
                     node.outputs[0].shape.end()[-2] == 1;
    return one ? "MeanBackward1" : "AdaptiveAvgPool2DBackward0";
  }
  if (n == "cross_entropy" || n == "nll_loss") return in_dim(0) >= 3 ? "NllLoss2DBackward0" : "NllLossBackward0";
  for (const auto& [op, torch_name] : kBackwardNames)
    if (op == n) return std::string(torch_name);
  return camel_case(n) + "Backward0";
}

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  const std::string prefix = "tensor(";
  const auto indent = static_cast<int64_t>(prefix.size());
  std::vector<std::string> suffixes;
  std::string body;
  if (numel() == 0) {
    // No element shows the dtype or the shape, so both are spelled out (the size unless it is (0,)).
    if (dim() != 1) suffixes.push_back("size=" + shape_str(shape()));
    if (dtype() != DType::Float32) suffixes.push_back(fmt::format("dtype=torch.{}", dtype_name(dtype())));
    body = "[]";
  } else {
    if (dtype() == DType::Float64) suffixes.push_back("dtype=torch.float64");
    const Printer printer(*this);
    std::vector<const char*> shown;
    printer.collect(printer.base(), 0, shown);
    const Formatter formatter(dtype(), shown);
    body = printer.str(printer.base(), 0, indent, formatter);
  }
  if (grad_fn()) {
    suffixes.push_back("grad_fn=<" + pytorch_backward_name(*grad_fn()) + ">");
  } else if (requires_grad()) {
    suffixes.push_back("requires_grad=True");
  }
  return add_suffixes(prefix + body, suffixes, indent);
}

}  // namespace tapegrad
