// Matrix products on OpenBLAS: forward GEMMs and backward formulas side by side.
#include "linalg.h"

#include "../autograd.h"
#include "../iter.h"
#include "elementwise.h"
#include "reduce.h"

#include <cblas.h>
#include <omp.h>

#include <climits>
#include <cstring>
#include <optional>
#include <type_traits>

namespace tapegrad {

using autograd::Context;
using autograd::Grads;

namespace {

// PyTorch's name of a dtype in "expected scalar type Float but found Double".
std::string_view scalar_type_name(DType t) {
  switch (t) {
    case DType::Float32: return "Float";
    case DType::Float64: return "Double";
    case DType::Int64: return "Long";
    case DType::Bool: return "Bool";
  }
  return "?";
}

void check_same_dtype(std::string_view op, const Tensor& expected, const Tensor& got) {
  TG_CHECK(expected.dtype() == got.dtype(), "{}: expected scalar type {} but found {}", op,
           scalar_type_name(expected.dtype()), scalar_type_name(got.dtype()));
}

Tensor contiguous_no_grad(const Tensor& x) {
  autograd::NoGradGuard ng;
  return x.contiguous();
}

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t d = begin; d < end; ++d) n *= s[d];
  return n;
}

// How BLAS reads one operand (row-major): op(A) is rows x cols, stored as A (trans = NoTrans) or as
// its transpose (trans = Trans), with leading dimension ld.
struct BlasMat {
  CBLAS_TRANSPOSE trans = CblasNoTrans;
  int64_t ld = 1;
};

// The BLAS description of a rows x cols matrix with element strides (rs, cs), if it has one: a unit
// stride in one dim and, in the other, a stride that does not overlap rows (resp. columns).
std::optional<BlasMat> blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  // The stride of a dim of size 1 is never used: pick the one that suits BLAS.
  if (cols <= 1) cs = 1;
  if (rows <= 1) rs = cs == 1 ? std::max<int64_t>(cols, 1) : 1;
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) return BlasMat{CblasNoTrans, rs};
  if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) return BlasMat{CblasTrans, cs};
  return std::nullopt;
}

blasint blas_int(int64_t v, std::string_view op) {
  TG_CHECK(v <= INT_MAX, "{}: a matrix dimension or stride of {} is too large for BLAS", op, v);
  return static_cast<blasint>(v);
}

// C (m x n, row stride ldc) = op(A) (m x k) op(B) (k x n) + beta C. GEMV when m or n is 1.
template <typename T>
void gemm(const BlasMat& a, const BlasMat& b, int64_t m, int64_t n, int64_t k, const T* ap, const T* bp, T beta, T* c,
          int64_t ldc, std::string_view op) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta C
    if (beta == T(0))
      for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  const blasint M = blas_int(m, op), N = blas_int(n, op), K = blas_int(k, op);
  const blasint lda = blas_int(a.ld, op), ldb = blas_int(b.ld, op), LDC = blas_int(ldc, op);
  constexpr bool f32 = std::is_same_v<T, float>;
  if (n == 1) {
    // c (m) = op(A) b, b's elements k apart by incb (column 0 of op(B)).
    const blasint incb = b.trans == CblasNoTrans ? ldb : 1;
    const blasint rows = a.trans == CblasNoTrans ? M : K, cols = a.trans == CblasNoTrans ? K : M;
    if constexpr (f32)
      cblas_sgemv(CblasRowMajor, a.trans, rows, cols, 1.0f, ap, lda, bp, incb, beta, c, LDC);
    else
      cblas_dgemv(CblasRowMajor, a.trans, rows, cols, 1.0, ap, lda, bp, incb, beta, c, LDC);
    return;
  }
  if (m == 1) {
    // c (n) = op(B)^T a, a's elements by inca (row 0 of op(A)).
    const blasint inca = a.trans == CblasNoTrans ? 1 : lda;
    const CBLAS_TRANSPOSE tb = b.trans == CblasNoTrans ? CblasTrans : CblasNoTrans;
    const blasint rows = b.trans == CblasNoTrans ? K : N, cols = b.trans == CblasNoTrans ? N : K;
    if constexpr (f32)
      cblas_sgemv(CblasRowMajor, tb, rows, cols, 1.0f, bp, ldb, ap, inca, beta, c, 1);
    else
      cblas_dgemv(CblasRowMajor, tb, rows, cols, 1.0, bp, ldb, ap, inca, beta, c, 1);
    return;
  }
  if constexpr (f32)
    cblas_sgemm(CblasRowMajor, a.trans, b.trans, M, N, K, 1.0f, ap, lda, bp, ldb, beta, c, LDC);
  else
    cblas_dgemm(CblasRowMajor, a.trans, b.trans, M, N, K, 1.0, ap, lda, bp, ldb, beta, c, LDC);
}

// The stride between rows when all dims of x but the last collapse into one (rows of a 2-D view
// (rows, x.size(-1)) with no copy), or nothing when they do not collapse.
std::optional<int64_t> folded_row_stride(const Tensor& x) {
  std::optional<int64_t> stride;
  int64_t span = 0;  // stride * size of the innermost non-unit leading dim seen so far
  for (int64_t d = x.dim() - 2; d >= 0; --d) {
    if (x.shape()[d] == 1) continue;
    if (!stride)
      stride = x.strides()[d];
    else if (x.strides()[d] != span)
      return std::nullopt;
    span = x.strides()[d] * x.shape()[d];
  }
  return stride ? *stride : x.shape().back();  // at most one row: any stride will do
}

// x with a 1-D operand promoted to a matrix: (1, K) on the left, (K, 1) on the right.
struct MatrixView {
  Shape shape, strides;
};
MatrixView as_matrix(const Tensor& x, bool left) {
  MatrixView v{x.shape(), x.strides()};
  if (x.dim() == 1) {
    if (left) {
      v.shape.insert(v.shape.begin(), 1);
      v.strides.insert(v.strides.begin(), 0);
    } else {
      v.shape.push_back(1);
      v.strides.push_back(0);
    }
  }
  return v;
}

// One operand ready for BLAS: its data, its per-matrix description and its batch strides over the
// broadcast batch shape (0 where broadcast). A layout BLAS cannot describe is made contiguous.
struct Operand {
  Tensor data;  // keeps a copy alive when one was needed
  BlasMat blas;
  Shape batch_strides;
};

Operand prepare(const Tensor& x, bool left, const Shape& batch) {
  Operand o{x, {}, {}};
  MatrixView v = as_matrix(x, left);
  const size_t nd = v.shape.size();
  auto layout = blas_layout(v.shape[nd - 2], v.shape[nd - 1], v.strides[nd - 2], v.strides[nd - 1]);
  if (!layout) {
    o.data = contiguous_no_grad(x);
    v = as_matrix(o.data, left);
    layout = blas_layout(v.shape[nd - 2], v.shape[nd - 1], v.strides[nd - 2], v.strides[nd - 1]);
  }
  o.blas = *layout;
  o.batch_strides.assign(batch.size(), 0);
  const size_t lead = batch.size() - (nd - 2);
  for (size_t i = 0; i + 2 < nd; ++i)
    o.batch_strides[lead + i] = v.shape[i] == 1 ? 0 : v.strides[i];
  return o;
}

// out (batch..., M, N contiguous) = a @ b over the broadcast batch dims.
template <typename T>
void batched_gemm(const Operand& a, const Operand& b, const Shape& batch, int64_t m, int64_t n, int64_t k,
                  const Tensor& out) {
  const T* ap = static_cast<const T*>(a.data.data());
  const T* bp = static_cast<const T*>(b.data.data());
  T* cp = static_cast<T*>(out.data());
  const int64_t nbatch = numel_of(batch), ldc = std::max<int64_t>(n, 1);
  if (nbatch == 1) {
    gemm<T>(a.blas, b.blas, m, n, k, ap, bp, T(0), cp, ldc, "matmul");
    return;
  }
  // Checked here: nothing may throw inside the parallel loop.
  for (int64_t v : {m, n, k, a.blas.ld, b.blas.ld, ldc}) blas_int(v, "matmul");
  // Element offsets of every batch's matrices.
  std::vector<int64_t> aoff(static_cast<size_t>(nbatch)), boff(static_cast<size_t>(nbatch));
  std::vector<int64_t> idx(batch.size(), 0);
  int64_t ao = 0, bo = 0;
  for (int64_t i = 0; i < nbatch; ++i) {
    aoff[i] = ao;
    boff[i] = bo;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      ao += a.batch_strides[d];
      bo += b.batch_strides[d];
      if (++idx[d] < batch[d]) break;
      ao -= a.batch_strides[d] * batch[d];
      bo -= b.batch_strides[d] * batch[d];
      idx[d] = 0;
    }
  }
  // Many or small products: one thread per product (BLAS runs single-threaded inside a parallel
  // region). A few large ones: one after the other, each on every thread.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool per_batch = threads > 1 && (nbatch >= 4 * threads || m * n * k < (int64_t{1} << 21));
  auto one = [&](int64_t i) {
    gemm<T>(a.blas, b.blas, m, n, k, ap + aoff[i], bp + boff[i], T(0), cp + i * m * n, ldc, "matmul");
  };
  if (per_batch) {
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < nbatch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < nbatch; ++i) one(i);
  }
}

// matmul without the folding of an N-D left operand: 1-D operands promoted, batch dims broadcast.
Tensor matmul_core(const Tensor& a, const Tensor& b) {
  const int64_t da = a.dim(), db = b.dim();
  const MatrixView va = as_matrix(a, true), vb = as_matrix(b, false);
  const int64_t m = va.shape[va.shape.size() - 2], k = va.shape.back();
  const int64_t k2 = vb.shape[vb.shape.size() - 2], n = vb.shape.back();
  if (da == 1 && db == 1) {
    TG_CHECK(k == k2,
             "matmul: inconsistent tensor size, expected tensor [{}] and src [{}] to have the same number of elements, "
             "but got {} and {} elements respectively",
             k, k2, k, k2);
  } else if (db == 1 && da == 2) {
    TG_CHECK(k == k2, "matmul: size mismatch, got input ({}), mat ({}x{}), vec ({})", m, m, k, k2);
  } else if (db == 2 && da <= 2) {
    TG_CHECK(k == k2, "matmul: mat1 and mat2 shapes cannot be multiplied ({}x{} and {}x{})", m, k, k2, n);
  }
  // Broadcast the batch dims (all but the last two of the promoted operands).
  const Shape ab(va.shape.begin(), va.shape.end() - 2), bb(vb.shape.begin(), vb.shape.end() - 2);
  const size_t nb = std::max(ab.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    const int64_t x = i < nb - ab.size() ? 1 : ab[i - (nb - ab.size())];
    const int64_t y = i < nb - bb.size() ? 1 : bb[i - (nb - bb.size())];
    TG_CHECK(x == y || x == 1 || y == 1,
             "matmul: The size of tensor a ({}) must match the size of tensor b ({}) at non-singleton dimension {}", x,
             y, i);
    batch[i] = x == 1 ? y : x;
  }
  TG_CHECK(k == k2,
           "matmul: Expected size for first two dimensions of batch2 tensor to be: [{}, {}] but got: [{}, {}].",
           numel_of(batch), k, numel_of(batch), k2);

  Shape out_shape = batch;
  if (da >= 2) out_shape.push_back(m);
  if (db >= 2) out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, {.dtype = a.dtype()});
  dispatch_floating(a.dtype(), "matmul", [&]<typename T>() {
    batched_gemm<T>(prepare(a, true, batch), prepare(b, false, batch), batch, m, n, k, out);
  });

  // saved: self, other.  With 1-D operands promoted and g given back their unit dims:
  //   d/da = g b^T, d/db = a^T g; the engine sums broadcast batch dims.
  autograd::record(
      "matmul", {a, b}, {out}, {a, b},
      [da, db](Context& ctx) -> Grads {
        Tensor g = ctx.grad();
        if (db == 1) g = g.unsqueeze(-1);  // (..., M, 1)
        if (da == 1) g = g.unsqueeze(-2);  // (..., 1, N)
        Tensor ga, gb;
        if (ctx.needs_grad(0)) {
          const Tensor bt = db == 1 ? ctx.saved(1).unsqueeze(0) : ctx.saved(1).transpose(-1, -2);
          ga = matmul(g, bt);                 // (..., M, K)
          if (da == 1) ga = ga.squeeze(-2);  // (..., K)
        }
        if (ctx.needs_grad(1)) {
          const Tensor at = da == 1 ? ctx.saved(0).unsqueeze(-1) : ctx.saved(0).transpose(-1, -2);
          gb = matmul(at, g);                 // (..., K, N)
          if (db == 1) gb = gb.squeeze(-1);  // (..., K)
        }
        return {ga, gb};
      },
      {"self", "other"});
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  TG_CHECK(a.dim() >= 1 && b.dim() >= 1,
           "matmul: both arguments to matmul need to be at least 1D, but they are {}D and {}D", a.dim(), b.dim());
  check_same_dtype("matmul", a, b);
  if (a.dim() >= 3 && b.dim() <= 2) {
    // (..., M, K) @ (K, N) or (K,): a's leading dims are rows of one matrix, as PyTorch folds them.
    const int64_t k = a.shape().back(), rows = prod(a.shape(), 0, a.shape().size() - 1);
    const int64_t k2 = b.shape()[0];
    if (b.dim() == 2)
      TG_CHECK(k == k2, "matmul: mat1 and mat2 shapes cannot be multiplied ({}x{} and {}x{})", rows, k, k2,
               b.shape()[1]);
    else
      TG_CHECK(k == k2, "matmul: size mismatch, got input ({}), mat ({}x{}), vec ({})", rows, rows, k, k2);
    // Fold only when it needs no copy; otherwise the batched path reads a's matrices where they are.
    if (folded_row_stride(a)) {
      Shape out_shape(a.shape().begin(), a.shape().end() - 1);
      if (b.dim() == 2) out_shape.push_back(b.shape()[1]);
      return matmul_core(a.reshape({rows, k}), b).view(out_shape);
    }
  }
  return matmul_core(a, b);
}

Tensor Tensor::matmul(const Tensor& other) const { return tapegrad::matmul(*this, other); }

// ---- linear ----

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (w.dim() != 2) {
    // As F.linear: x @ w.t() + b, where t() keeps a 0-D or 1-D weight as it is.
    TG_CHECK(w.dim() < 2, "linear: t() expects a tensor with <= 2 dimensions, but self is {}D", w.dim());
    Tensor y = matmul(x, w);
    return bias.defined() ? y + bias : y;
  }
  TG_CHECK(x.dim() >= 1, "linear: both arguments to matmul need to be at least 1D, but they are {}D and {}D", x.dim(),
           w.dim());
  check_same_dtype("linear", x, w);
  if (bias.defined()) check_same_dtype("linear", x, bias);
  const int64_t in = w.shape()[1], out_features = w.shape()[0], k = x.shape().back();
  const int64_t rows = prod(x.shape(), 0, x.shape().size() - 1);
  TG_CHECK(k == in, "linear: mat1 and mat2 shapes cannot be multiplied ({}x{} and {}x{})", rows, k, in, out_features);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  if (bias.defined()) {
    // The bias must broadcast to the output without enlarging it (as PyTorch's expand).
    const int64_t lead = static_cast<int64_t>(out_shape.size()) - bias.dim();
    TG_CHECK(lead >= 0,
             "linear: the number of sizes provided ({}) must be greater or equal to the number of dimensions in the "
             "tensor ({})",
             out_shape.size(), bias.dim());
    for (int64_t d = 0; d < bias.dim(); ++d) {
      const int64_t have = bias.shape()[d], want = out_shape[lead + d];
      TG_CHECK(have == want || have == 1,
               "linear: The expanded size of the tensor ({}) must match the existing size ({}) at non-singleton "
               "dimension {}.  Target sizes: {}.  Tensor sizes: {}",
               want, have, lead + d, shape_list(out_shape), shape_list(bias.shape()));
    }
  }

  // y (rows, out) = x (rows, in) W^T (in, out) + bias, with x's leading dims as rows.
  Tensor out = Tensor::empty(out_shape, {.dtype = x.dtype()});
  dispatch_floating(x.dtype(), "linear", [&]<typename T>() {
    Tensor xd = x;
    const auto row_stride = folded_row_stride(x);
    auto lx = row_stride ? blas_layout(rows, k, *row_stride, x.strides().back()) : std::nullopt;
    if (!lx) {
      xd = contiguous_no_grad(x);
      lx = blas_layout(rows, k, k, 1);
    }
    Tensor wd = w;  // W^T: element (i, o) is w[o][i]
    auto lw = blas_layout(in, out_features, w.strides()[1], w.strides()[0]);
    if (!lw) {
      wd = contiguous_no_grad(w);
      lw = blas_layout(in, out_features, 1, in);
    }
    T beta = 0;
    if (bias.defined() && out.numel() > 0) {
      detail::apply_inplace<T, T>(out, bias, [](T, T v) { return v; });
      beta = 1;
    }
    gemm<T>(*lx, *lw, rows, out_features, k, static_cast<const T*>(xd.data()), static_cast<const T*>(wd.data()),
            beta, static_cast<T*>(out.data()), std::max<int64_t>(out_features, 1), "linear");
  });

  const Shape x_shape = x.shape();
  const bool bias_vector = bias.defined() && bias.dim() == 1 && bias.shape()[0] == out_features;
  // saved: input, weight.  Over the flattened leading dims (rows):
  //   dX = dY W ; dW = dY^T X ; db = sum of dY over rows (a bias of another shape: the engine sums dY)
  autograd::record(
      "linear", {x, w, bias}, {out}, {x, w},
      [rows, k, out_features, x_shape, bias_vector](Context& ctx) -> Grads {
        const Tensor g = ctx.grad().reshape({rows, out_features});  // (rows, out)
        Tensor gx, gw, gb;
        if (ctx.needs_grad(0)) gx = matmul(g, ctx.saved(1)).reshape(x_shape);          // (rows, in)
        if (ctx.needs_grad(1)) gw = matmul(g.t(), ctx.saved(0).reshape({rows, k}));   // (out, in)
        // db = dY^T 1: the column sums as one GEMV, reading dY row by row.
        if (ctx.needs_grad(2))
          gb = bias_vector ? matmul(g.t(), Tensor::ones({rows}, {.dtype = g.dtype()})) : ctx.grad();
        return {gx, gw, gb};
      },
      {"input", "weight"});
  return out;
}

}  // namespace tapegrad
