// Recurrent layers: forward through time and backward through time side by side.
//
// Shared by LSTM, GRU and RNN (the `Cell` policies below hold each cell's math):
//   forward:  XG = X W_ih^T + bias                      one GEMM for all L steps      (L·N, G·H)
//             for each step t (in processing order):
//               HG = h_{t-1} W_hh^T                      one small GEMM                (N, G·H)
//               cell forward on XG[t], HG -> gates, new state (fused, one pass)
//   backward: for each step t in reverse processing order:
//               cell backward -> dGx[t] (gate pre-activation grads), dGh[t] (the same as seen
//               from the recurrent side; they differ only for GRU's n gate), dc
//               dh_{t-1} = dGh[t] W_hh (+ the direct path) one small GEMM
//             dX = dGx W_ih, dW_ih = dGx^T X, dW_hh = dGh^T H_prev: one GEMM each for all steps.
// Padded steps (t >= length of a sequence) leave that sequence's state unchanged, output zeros and
// have zero gate gradients, so they change nothing.
#include "rnn.h"

#include "../autograd.h"
#include "../vec_math.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

namespace tapegrad {

namespace {

using autograd::Context;
using autograd::Grads;

// Row-major C (M x N) = alpha op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

using detail::vsigmoid;
using detail::vtanh;

// ---- the cells ----
// Each cell sees one row (one sequence) of one step. Buffers per step t, row n:
//   xg: input projection incl. bias_x (G·H); with kSumsInGemm the recurrent projection has been added
//       to it (the whole pre-activation), otherwise that is hg (G·H)
//   act: what backward needs (G·H)            c_prev/c_new: LSTM cell state (H)
//   h_prev: state before the step (P)         h_raw: the cell's hidden output before projection (H)

// The gate loops are written to vectorize (vsigmoid / vtanh are branch-free, the pointers do not alias).
struct LstmCell {
  static constexpr int G = 4;
  static constexpr bool kHasC = true;
  static constexpr bool kSumsInGemm = true;
  static constexpr const char* kName = "lstm_layer";
  // gates i, f, g, o = σ, σ, tanh, σ;  c' = f c + i g;  h' = o tanh(c')
  template <typename T>
  static void forward(int64_t H, const T* __restrict pre, const T*, const T*, const T* __restrict c_prev,
                      T* __restrict act, T* __restrict c_new, T* __restrict h_raw, T*) {
    for (int64_t j = 0; j < H; ++j) {
      const T i = vsigmoid(pre[j]);
      const T f = vsigmoid(pre[H + j]);
      const T g = vtanh(pre[2 * H + j]);
      const T o = vsigmoid(pre[3 * H + j]);
      act[j] = i, act[H + j] = f, act[2 * H + j] = g, act[3 * H + j] = o;
      const T c = f * c_prev[j] + i * g;
      c_new[j] = c;
      h_raw[j] = o * vtanh(c);
    }
  }
  // dh: gradient w.r.t. h_raw; dc: in = gradient w.r.t. c', out = gradient w.r.t. c. dgh is dgx.
  template <typename T>
  static void backward(int64_t H, const T* __restrict act, const T*, const T* __restrict c_prev,
                       const T* __restrict c_new, const T*, const T* __restrict dh, T* __restrict dc,
                       T* __restrict dgx, T*, T*) {
    for (int64_t j = 0; j < H; ++j) {
      const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
      const T tc = vtanh(c_new[j]);
      const T dct = dc[j] + dh[j] * o * (T(1) - tc * tc);  // term 1: through h' = o tanh(c')
      dgx[j] = dct * g * i * (T(1) - i);                    // d pre-i
      dgx[H + j] = dct * c_prev[j] * f * (T(1) - f);        // d pre-f
      dgx[2 * H + j] = dct * i * (T(1) - g * g);            // d pre-g
      dgx[3 * H + j] = dh[j] * tc * o * (T(1) - o);         // d pre-o
      dc[j] = dct * f;                                      // to c_{t-1}
    }
  }
};

struct GruCell {
  static constexpr int G = 3;
  static constexpr bool kHasC = false;
  static constexpr bool kSumsInGemm = false;
  static constexpr const char* kName = "gru_layer";
  // hg includes b_hh. r = σ(xr + hr), z = σ(xz + hz), n = tanh(xn + r hn), h' = (1 - z) n + z h.
  // act holds r, z, n; extra holds hn (= h W_hn^T + b_hn), needed by backward.
  template <typename T>
  static void forward(int64_t H, const T* xg, const T* hg, const T* h_prev, const T*, T* act, T*, T* h_raw, T* extra) {
    for (int64_t j = 0; j < H; ++j) {
      const T r = vsigmoid(xg[j] + hg[j]);
      const T z = vsigmoid(xg[H + j] + hg[H + j]);
      const T n = vtanh(xg[2 * H + j] + r * hg[2 * H + j]);
      act[j] = r, act[H + j] = z, act[2 * H + j] = n;
      extra[j] = hg[2 * H + j];
      h_raw[j] = (T(1) - z) * n + z * h_prev[j];
    }
  }
  // dh_direct receives the part of dh that flows to h_{t-1} without the GEMM (z h).
  template <typename T>
  static void backward(int64_t H, const T* act, const T* h_prev, const T*, const T*, const T* extra, const T* dh, T*,
                       T* dgx, T* dgh, T* dh_direct) {
    for (int64_t j = 0; j < H; ++j) {
      const T r = act[j], z = act[H + j], n = act[2 * H + j];
      const T dn = dh[j] * (T(1) - z) * (T(1) - n * n);  // d pre-n
      const T dz = dh[j] * (h_prev[j] - n) * z * (T(1) - z);
      const T dr = dn * extra[j] * r * (T(1) - r);
      dgx[j] = dr, dgx[H + j] = dz, dgx[2 * H + j] = dn;
      dgh[j] = dr, dgh[H + j] = dz, dgh[2 * H + j] = dn * r;  // hn enters scaled by r
      dh_direct[j] = dh[j] * z;
    }
  }
};

template <bool Relu>
struct ElmanCell {
  static constexpr int G = 1;
  static constexpr bool kHasC = false;
  static constexpr bool kSumsInGemm = true;
  static constexpr const char* kName = Relu ? "rnn_relu_layer" : "rnn_tanh_layer";
  template <typename T>
  static void forward(int64_t H, const T* xg, const T*, const T*, const T*, T* act, T*, T* h_raw, T*) {
    for (int64_t j = 0; j < H; ++j) {
      const T pre = xg[j];
      const T y = Relu ? (pre > 0 ? pre : T(0)) : vtanh(pre);
      act[j] = y;
      h_raw[j] = y;
    }
  }
  template <typename T>
  static void backward(int64_t H, const T* act, const T*, const T*, const T*, const T*, const T* dh, T*, T* dgx, T*,
                       T*) {
    for (int64_t j = 0; j < H; ++j) {
      const T y = act[j];
      dgx[j] = dh[j] * (Relu ? T(y > 0) : T(1) - y * y);
    }
  }
};

// ---- checks ----

void check_2d(const Tensor& t, int64_t rows, int64_t cols, const char* name, const char* op) {
  TG_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, "{}: expected {} of shape ({}, {}), got {}", op,
           name, rows, cols, shape_str(t.shape()));
}

// ---- the shared driver ----

template <typename Cell>
RnnLayerResult run_layer(const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_ih,
                         const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, const Tensor& w_hr, bool reverse,
                         const Tensor& lengths) {
  constexpr int G = Cell::G;
  const char* op = Cell::kName;
  TG_CHECK(x_in.dim() == 3, "{}: expected input of shape (L, N, input_size), got {}", op, shape_str(x_in.shape()));
  const int64_t L = x_in.size(0), N = x_in.size(1), I = x_in.size(2);
  TG_CHECK(w_ih.dim() == 2 && w_ih.size(0) % G == 0, "{}: expected weight_ih of shape ({}*hidden_size, {}), got {}", op,
           G, I, shape_str(w_ih.shape()));
  const int64_t H = w_ih.size(0) / G;
  const bool proj = w_hr.defined();
  const int64_t P = proj ? w_hr.size(0) : H;
  check_2d(w_ih, G * H, I, "weight_ih", op);
  check_2d(w_hh, G * H, P, "weight_hh", op);
  if (proj) check_2d(w_hr, P, H, "weight_hr", op);
  if (b_ih.defined()) TG_CHECK(b_ih.shape() == Shape{G * H}, "{}: expected bias_ih of shape ({},), got {}", op, G * H, shape_str(b_ih.shape()));
  if (b_hh.defined()) TG_CHECK(b_hh.shape() == Shape{G * H}, "{}: expected bias_hh of shape ({},), got {}", op, G * H, shape_str(b_hh.shape()));
  check_2d(h0_in, N, P, "h0", op);
  if (Cell::kHasC) check_2d(c0_in, N, H, "c0", op);
  const DType dt = x_in.dtype();
  for (const Tensor* t : {&h0_in, &c0_in, &w_ih, &w_hh, &b_ih, &b_hh, &w_hr})
    if (t->defined())
      TG_CHECK(t->dtype() == dt, "{}: expected every tensor to be {} like the input, got {}", op, dtype_name(dt),
               dtype_name(t->dtype()));
  std::vector<int64_t> len(static_cast<size_t>(N), L);
  if (lengths.defined()) {
    TG_CHECK(lengths.dtype() == kInt64 && lengths.shape() == Shape{N}, "{}: expected int64 lengths of shape ({},), got {} {}",
             op, N, dtype_name(lengths.dtype()), shape_str(lengths.shape()));
    len = lengths.to_vector<int64_t>();
    for (int64_t v : len) TG_CHECK(v >= 1 && v <= L, "{}: every length must be in [1, {}], got {}", op, L, v);
  }

  const Tensor x = x_in.contiguous(), h0 = h0_in.contiguous();
  const Tensor c0 = Cell::kHasC ? c0_in.contiguous() : Tensor();
  const Tensor wih = w_ih.contiguous(), whh = w_hh.contiguous(), whr = proj ? w_hr.contiguous() : Tensor();
  const int64_t GH = G * H;

  // Buffers, indexed by time t.
  Tensor xg = Tensor::empty({L, N, GH}, {.dtype = dt});
  Tensor act = Tensor::empty({L, N, GH}, {.dtype = dt});
  Tensor h_prev = Tensor::empty({L, N, P}, {.dtype = dt});
  Tensor h_raw = proj ? Tensor::empty({L, N, H}, {.dtype = dt}) : Tensor();
  Tensor c_prev = Cell::kHasC ? Tensor::empty({L, N, H}, {.dtype = dt}) : Tensor();
  Tensor c_new = Cell::kHasC ? Tensor::empty({L, N, H}, {.dtype = dt}) : Tensor();
  Tensor extra = G == 3 ? Tensor::empty({L, N, H}, {.dtype = dt}) : Tensor();
  Tensor out = Tensor::zeros({L, N, P}, {.dtype = dt});
  Tensor h_n = h0.clone().detach(), c_n = Cell::kHasC ? c0.clone().detach() : Tensor();

  dispatch_floating(dt, op, [&]<typename T>() {
    // Bias folded into the input projection (GRU keeps b_hh on the recurrent side: r scales it).
    std::vector<T> bias(static_cast<size_t>(GH), T(0)), bias_h(static_cast<size_t>(GH), T(0));
    for (int64_t j = 0; j < GH; ++j) {
      if (b_ih.defined()) bias[j] = b_ih.data_ptr<T>()[j * b_ih.stride(0)];
      if (b_hh.defined()) bias_h[j] = b_hh.data_ptr<T>()[j * b_hh.stride(0)];
      if (G != 3) bias[j] += bias_h[j];
    }
    T* XG = xg.data_ptr<T>();
    for (int64_t r = 0; r < L * N; ++r) std::memcpy(XG + r * GH, bias.data(), sizeof(T) * GH);
    gemm(false, true, L * N, GH, I, T(1), x.data_ptr<T>(), I, wih.data_ptr<T>(), I, T(1), XG, GH);

    std::vector<T> hg(static_cast<size_t>(Cell::kSumsInGemm ? 0 : N * GH)), raw(static_cast<size_t>(N * H)), projected(static_cast<size_t>(N * P));
    T* h = h_n.data_ptr<T>();
    T* c = Cell::kHasC ? c_n.data_ptr<T>() : nullptr;
    for (int64_t s = 0; s < L; ++s) {
      const int64_t t = reverse ? L - 1 - s : s;
      std::memcpy(h_prev.data_ptr<T>() + t * N * P, h, sizeof(T) * N * P);
      if (Cell::kHasC) std::memcpy(c_prev.data_ptr<T>() + t * N * H, c, sizeof(T) * N * H);
      // XG[t] += h W_hh^T, or HG = h W_hh^T + b_hh for GRU
      if constexpr (Cell::kSumsInGemm) {
        gemm(false, true, N, GH, P, T(1), h, P, whh.data_ptr<T>(), P, T(1), XG + t * N * GH, GH);
      } else {
        for (int64_t n = 0; n < N; ++n) std::memcpy(hg.data() + n * GH, bias_h.data(), sizeof(T) * GH);
        gemm(false, true, N, GH, P, T(1), h, P, whh.data_ptr<T>(), P, T(1), hg.data(), GH);
      }
      T* A = act.data_ptr<T>() + t * N * GH;
      T* CN = Cell::kHasC ? c_new.data_ptr<T>() + t * N * H : nullptr;
      T* EX = G == 3 ? extra.data_ptr<T>() + t * N * H : nullptr;
      T* HR = proj ? h_raw.data_ptr<T>() + t * N * H : raw.data();
      for (int64_t n = 0; n < N; ++n) {
        if (t >= len[n]) {  // padding: state unchanged, gates zero
          std::memset(A + n * GH, 0, sizeof(T) * GH);
          if (Cell::kHasC) std::memcpy(CN + n * H, c + n * H, sizeof(T) * H);
          if (G == 3) std::memset(EX + n * H, 0, sizeof(T) * H);
          if (proj) std::memset(HR + n * H, 0, sizeof(T) * H);
          continue;
        }
        Cell::forward(H, XG + (t * N + n) * GH, Cell::kSumsInGemm ? nullptr : hg.data() + n * GH, h + n * P, Cell::kHasC ? c + n * H : nullptr,
                      A + n * GH, Cell::kHasC ? CN + n * H : nullptr, HR + n * H, G == 3 ? EX + n * H : nullptr);
      }
      // New state: h_raw (or its projection) where valid.
      const T* hnew = HR;
      if (proj) {
        gemm(false, true, N, P, H, T(1), HR, H, whr.data_ptr<T>(), H, T(0), projected.data(), P);
        hnew = projected.data();
      }
      T* O = out.data_ptr<T>() + t * N * P;
      for (int64_t n = 0; n < N; ++n) {
        if (t >= len[n]) continue;
        std::memcpy(h + n * P, hnew + n * P, sizeof(T) * P);
        std::memcpy(O + n * P, hnew + n * P, sizeof(T) * P);
        if (Cell::kHasC) std::memcpy(c + n * H, CN + n * H, sizeof(T) * H);
      }
    }
  });

  RnnLayerResult result{out, h_n, c_n};
  std::vector<Tensor> outputs{out, h_n};
  if (Cell::kHasC) outputs.push_back(c_n);
  // saved: x, weights, and the per-step buffers (h_prev, c_prev, c_new, gate activations, h_raw, extra).
  autograd::record(
      op, {x_in, h0_in, c0_in, w_ih, w_hh, b_ih, b_hh, w_hr}, outputs,
      {x, wih, whh, whr, h_prev, c_prev, c_new, act, h_raw, extra},
      [=](Context& ctx) -> Grads {
        TG_CHECK(!autograd::grad_enabled(), "{}: double backward (create_graph) is not supported by the fused kernel",
                 op);
        const Tensor X = ctx.saved(0), WIH = ctx.saved(1), WHH = ctx.saved(2), WHR = ctx.saved(3);
        const Tensor HP = ctx.saved(4), CP = ctx.saved(5), CNW = ctx.saved(6), ACT = ctx.saved(7), HRAW = ctx.saved(8),
                     EXTRA = ctx.saved(9);
        const Tensor dout = ctx.grad(0).contiguous(), dhn = ctx.grad(1).contiguous();
        Tensor dH = dhn.clone(), dC = Cell::kHasC ? ctx.grad(2).contiguous().clone() : Tensor();
        Tensor dgx = Tensor::empty({L, N, GH}, {.dtype = dt});
        Tensor dgh = G == 3 ? Tensor::empty({L, N, GH}, {.dtype = dt}) : dgx;
        Tensor dhtot = proj ? Tensor::zeros({L, N, P}, {.dtype = dt}) : Tensor();
        Tensor dx, dwih, dwhh, dwhr, dbih, dbhh;
        dispatch_floating(dt, op, [&]<typename T>() {
          std::vector<T> dht(static_cast<size_t>(N * P)), dhraw(static_cast<size_t>(N * H)),
              direct(static_cast<size_t>(N * H)), dgx_row(static_cast<size_t>(GH)), dgh_row(static_cast<size_t>(GH));
          T* dh = dH.data_ptr<T>();
          T* dc = Cell::kHasC ? dC.data_ptr<T>() : nullptr;
          for (int64_t s = L - 1; s >= 0; --s) {
            const int64_t t = reverse ? L - 1 - s : s;
            const T* dO = dout.data_ptr<T>() + t * N * P;
            for (int64_t n = 0; n < N; ++n)
              for (int64_t j = 0; j < P; ++j) dht[n * P + j] = dh[n * P + j] + (t < len[n] ? dO[n * P + j] : T(0));
            // Through the projection: dh_raw = dh W_hr.
            const T* dhr = dht.data();
            if (proj) {
              T* DT = dhtot.data_ptr<T>() + t * N * P;
              for (int64_t n = 0; n < N; ++n)
                if (t < len[n]) std::memcpy(DT + n * P, dht.data() + n * P, sizeof(T) * P);
              gemm(false, false, N, H, P, T(1), dht.data(), P, WHR.data_ptr<T>(), H, T(0), dhraw.data(), H);
              dhr = dhraw.data();
            }
            T* DGX = dgx.data_ptr<T>() + t * N * GH;
            T* DGH = dgh.data_ptr<T>() + t * N * GH;
            const T* A = ACT.data_ptr<T>() + t * N * GH;
            for (int64_t n = 0; n < N; ++n) {
              if (t >= len[n]) {  // padding: nothing flows through the gates
                std::memset(DGX + n * GH, 0, sizeof(T) * GH);
                if (G == 3) std::memset(DGH + n * GH, 0, sizeof(T) * GH);
                continue;
              }
              Cell::backward(H, A + n * GH, HP.data_ptr<T>() + (t * N + n) * P,
                             Cell::kHasC ? CP.data_ptr<T>() + (t * N + n) * H : nullptr,
                             Cell::kHasC ? CNW.data_ptr<T>() + (t * N + n) * H : nullptr,
                             G == 3 ? EXTRA.data_ptr<T>() + (t * N + n) * H : nullptr, dhr + n * H,
                             Cell::kHasC ? dc + n * H : nullptr, DGX + n * GH, DGH + n * GH, direct.data() + n * H);
            }
            // dh_{t-1} = dGh W_hh (+ GRU's direct path); padded rows keep dh.
            gemm(false, false, N, P, GH, T(1), DGH, GH, WHH.data_ptr<T>(), P, T(0), dh, P);
            for (int64_t n = 0; n < N; ++n) {
              if (t >= len[n]) {  // dht holds the incoming dh there (no output gradient at padding)
                std::memcpy(dh + n * P, dht.data() + n * P, sizeof(T) * P);
              } else if (G == 3) {
                for (int64_t j = 0; j < P; ++j) dh[n * P + j] += direct[n * H + j];
              }
            }
          }
          // Weight gradients of all steps at once.
          if (ctx.needs_grad(0)) {
            dx = Tensor::empty({L, N, I}, {.dtype = dt});
            gemm(false, false, L * N, I, GH, T(1), dgx.data_ptr<T>(), GH, WIH.data_ptr<T>(), I, T(0), dx.data_ptr<T>(), I);
          }
          if (ctx.needs_grad(3)) {
            dwih = Tensor::empty({GH, I}, {.dtype = dt});
            gemm(true, false, GH, I, L * N, T(1), dgx.data_ptr<T>(), GH, X.data_ptr<T>(), I, T(0), dwih.data_ptr<T>(), I);
          }
          if (ctx.needs_grad(4)) {
            dwhh = Tensor::empty({GH, P}, {.dtype = dt});
            gemm(true, false, GH, P, L * N, T(1), dgh.data_ptr<T>(), GH, HP.data_ptr<T>(), P, T(0), dwhh.data_ptr<T>(), P);
          }
          if (proj && ctx.needs_grad(7)) {
            dwhr = Tensor::empty({P, H}, {.dtype = dt});
            gemm(true, false, P, H, L * N, T(1), dhtot.data_ptr<T>(), P, HRAW.data_ptr<T>(), H, T(0), dwhr.data_ptr<T>(), H);
          }
          auto column_sums = [&](const Tensor& g) {
            Tensor s = Tensor::empty({GH}, {.dtype = dt});
            std::vector<double> acc(static_cast<size_t>(GH), 0.0);
            const T* p = g.data_ptr<T>();
            for (int64_t r = 0; r < L * N; ++r)
              for (int64_t j = 0; j < GH; ++j) acc[j] += p[r * GH + j];
            for (int64_t j = 0; j < GH; ++j) s.data_ptr<T>()[j] = static_cast<T>(acc[j]);
            return s;
          };
          if (ctx.needs_grad(5)) dbih = column_sums(dgx);
          // LSTM and RNN: both biases see the same gate gradients.
          if (ctx.needs_grad(6)) dbhh = G != 3 && dbih.defined() ? dbih.clone() : column_sums(dgh);
        });
        return {dx, dH, dC, dwih, dwhh, dbih, dbhh, dwhr};
      },
      {"input", "weight_ih", "weight_hh", "weight_hr", "h_prev", "c_prev", "c_new", "gates", "h_raw", "gru_hn"});
  return result;
}

}  // namespace

RnnLayerResult lstm_layer(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                          const Tensor& b_ih, const Tensor& b_hh, const Tensor& w_hr, bool reverse,
                          const Tensor& lengths) {
  return run_layer<LstmCell>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, lengths);
}

RnnLayerResult gru_layer(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                         const Tensor& b_hh, bool reverse, const Tensor& lengths) {
  return run_layer<GruCell>(x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh, Tensor(), reverse, lengths);
}

RnnLayerResult rnn_layer(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                         const Tensor& b_hh, bool relu, bool reverse, const Tensor& lengths) {
  if (relu) return run_layer<ElmanCell<true>>(x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh, Tensor(), reverse, lengths);
  return run_layer<ElmanCell<false>>(x, h0, Tensor(), w_ih, w_hh, b_ih, b_hh, Tensor(), reverse, lengths);
}

}  // namespace tapegrad
