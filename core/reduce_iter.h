// Reduction loops over a set of dims (internal to the library).
//
// plan_reduce() splits a tensor's dims into kept and reduced ones; for_each_output() visits every
// output element (in parallel when the work is large) with a pointer to its first input element, and
// for_each_reduced() walks the reduced elements behind it. Reduced dims that are contiguous are merged,
// so reducing the last dim of a contiguous tensor is a tight loop.
//
// reduce_kernel() is the engine the reductions in core/ops/reduce.cpp share: it picks a memory-friendly
// loop order (see its comment) and splits the work across OpenMP threads.
#pragma once

#include "tensor.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <vector>

namespace tapegrad::detail {

struct ReducePlan {
  Shape out_shape;      // result shape (with keepdim applied)
  Shape kept_shape;     // kept dims, in order
  Shape kept_strides;   // input strides of the kept dims (elements)
  Shape red_shape;      // reduced dims, merged where contiguous
  Shape red_strides;
  std::vector<bool> reduced;  // per input dim
  int64_t out_numel = 1;
  int64_t red_numel = 1;
};

// An empty `dims` reduces every dim. Dims may be negative; duplicates are an error.
ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, std::string_view op);

// Calls fn(p, k) for each reduced element behind `base`: p points at it, k counts 0..red_numel-1 in
// row-major order of the reduced dims.
template <typename T, typename Fn>
inline void for_each_reduced(const T* base, const ReducePlan& plan, Fn&& fn) {
  const int64_t nd = static_cast<int64_t>(plan.red_shape.size());
  if (nd == 0) {
    fn(base, 0);
    return;
  }
  const int64_t inner = plan.red_shape.back(), inner_stride = plan.red_strides.back();
  const int64_t outer = plan.red_numel / std::max<int64_t>(inner, 1);
  int64_t idx[16] = {0};
  const T* p = base;
  int64_t k = 0;
  for (int64_t o = 0; o < outer; ++o) {
    if (inner_stride == 1) {
      for (int64_t i = 0; i < inner; ++i) fn(p + i, k + i);
    } else {
      for (int64_t i = 0; i < inner; ++i) fn(p + i * inner_stride, k + i);
    }
    k += inner;
    for (int64_t d = nd - 2; d >= 0; --d) {
      p += plan.red_strides[d];
      if (++idx[d] < plan.red_shape[d]) break;
      p -= plan.red_strides[d] * plan.red_shape[d];
      idx[d] = 0;
    }
  }
}

// Calls fn(out_index, base) for every output element, base pointing at its first input element.
template <typename T, typename Fn>
inline void for_each_output(const T* data, const ReducePlan& plan, Fn&& fn) {
  const int64_t nk = static_cast<int64_t>(plan.kept_shape.size());
  auto base_of = [&](int64_t i) {
    const T* p = data;
    for (int64_t d = nk - 1; d >= 0; --d) {
      p += (i % plan.kept_shape[d]) * plan.kept_strides[d];
      i /= plan.kept_shape[d];
    }
    return p;
  };
  const int64_t work = plan.out_numel * plan.red_numel;
  if (work >= 32768 && plan.out_numel > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < plan.out_numel; ++i) fn(i, base_of(i));
  } else {
    for (int64_t i = 0; i < plan.out_numel; ++i) fn(i, base_of(i));
  }
}

// Calls fn(p, stride, n, k0) for the runs of reduced elements behind `base` whose row-major reduced
// index lies in [k_begin, k_end): p points at the run's first element, stride is the element stride
// along the run and k0 the reduced index of its first element.
template <typename T, typename Fn>
inline void for_each_reduced_run(const T* base, const ReducePlan& plan, int64_t k_begin, int64_t k_end, Fn&& fn) {
  if (k_begin >= k_end) return;
  const int64_t nd = static_cast<int64_t>(plan.red_shape.size());
  if (nd == 0) {  // every reduced dim has size 1: one element
    fn(base, int64_t{1}, int64_t{1}, int64_t{0});
    return;
  }
  const int64_t inner = plan.red_shape.back(), inner_stride = plan.red_strides.back();
  int64_t idx[16] = {0};
  int64_t r = k_begin / inner, i0 = k_begin % inner;
  const T* p = base;
  for (int64_t d = nd - 2; d >= 0; --d) {
    idx[d] = r % plan.red_shape[d];
    r /= plan.red_shape[d];
    p += idx[d] * plan.red_strides[d];
  }
  for (int64_t k = k_begin; k < k_end;) {
    const int64_t n = std::min(inner - i0, k_end - k);
    fn(p + i0 * inner_stride, inner_stride, n, k);
    k += n;
    i0 = 0;
    if (k >= k_end) break;
    for (int64_t d = nd - 2; d >= 0; --d) {
      p += plan.red_strides[d];
      if (++idx[d] < plan.red_shape[d]) break;
      p -= plan.red_strides[d] * plan.red_shape[d];
      idx[d] = 0;
    }
  }
}

// The operation a reduce_kernel() runs, for input elements of type T:
//   using Acc = ...;                                   // the accumulator
//   Acc init() const;
//   // a <- a combined with the run p[0], p[s], ..., p[(n-1) s]; k0: reduced index of p[0]; o: output index
//   void run(Acc& a, const T* p, int64_t s, int64_t n, int64_t k0, int64_t o) const;
//   // acc[j] <- acc[j] combined with p[j vs] for j < n: one reduced element (index k) of n outputs,
//   // output j being o0 + j os
//   void vec(Acc* acc, const T* p, int64_t vs, int64_t n, int64_t k, int64_t o0, int64_t os) const;
//   void merge(Acc& a, const Acc& later) const;        // `later` covers reduced indices after a's
//   void finish(int64_t o, const Acc& a) const;        // writes output o
inline constexpr int64_t kReduceGrain = 32768;

// The loop order reduce_kernel() takes: the kept dim (index into kept_shape) it vectorizes over when a
// kept dim is closer in memory than every reduced one ("outer"), else -1 ("inner").
inline int64_t outer_dim(const ReducePlan& plan) {
  int64_t v = -1;
  for (int64_t d = 0; d < static_cast<int64_t>(plan.kept_shape.size()); ++d)
    if (plan.kept_shape[d] > 1 && plan.kept_strides[d] >= 1 && (v < 0 || plan.kept_strides[d] < plan.kept_strides[v]))
      v = d;
  if (v < 0 || plan.red_shape.empty()) return -1;
  for (int64_t s : plan.red_strides)
    if (s <= plan.kept_strides[v]) return -1;
  return v;
}

// Runs `op` over every output of `plan`, with data pointing at the input's element [0, ..., 0].
//
// Two loop orders:
//  - inner: when a reduced dim is the one closest in memory (reducing the last dim of a contiguous
//    tensor), each output walks its own runs of input. Few outputs with long reductions split each
//    reduction into chunks that threads accumulate separately and merge in order.
//  - outer: when a kept dim is closest in memory (reducing dim 0 of a (4096, 1024) tensor), a tile of
//    outputs along that dim keeps a row of accumulators, and the input is read row by row into it,
//    so memory is read sequentially instead of striding once per output.
template <typename T, typename Op>
void reduce_kernel(const T* data, const ReducePlan& plan, const Op& op) {
  using Acc = typename Op::Acc;
  const int64_t out_n = plan.out_numel, red_n = plan.red_numel;
  if (out_n == 0) return;
  if (red_n == 0) {
    for (int64_t o = 0; o < out_n; ++o) op.finish(o, op.init());
    return;
  }
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool parallel = threads > 1 && out_n * red_n >= kReduceGrain;
  const int64_t nk = static_cast<int64_t>(plan.kept_shape.size());
  const int64_t v = outer_dim(plan);

  if (v < 0) {
    // ---- inner: one output at a time ----
    auto base_of = [&](int64_t i) {
      const T* p = data;
      for (int64_t d = nk - 1; d >= 0; --d) {
        p += (i % plan.kept_shape[d]) * plan.kept_strides[d];
        i /= plan.kept_shape[d];
      }
      return p;
    };
    auto reduce_range = [&](int64_t o, int64_t k0, int64_t k1, Acc& a) {
      for_each_reduced_run(base_of(o), plan, k0, k1, [&](const T* p, int64_t s, int64_t n, int64_t k) {
        op.run(a, p, s, n, k, o);
      });
    };
    if (!parallel || out_n >= 4 * static_cast<int64_t>(threads) || red_n < kReduceGrain) {
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t o = 0; o < out_n; ++o) {
        Acc a = op.init();
        reduce_range(o, 0, red_n, a);
        op.finish(o, a);
      }
      return;
    }
    const int64_t chunk = std::max<int64_t>(kReduceGrain / 4, (red_n + 4 * threads - 1) / (4 * threads));
    const int64_t nchunks = (red_n + chunk - 1) / chunk;
    std::vector<Acc> part(static_cast<size_t>(out_n * nchunks));
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < out_n * nchunks; ++u) {
      const int64_t o = u / nchunks, c = u % nchunks;
      Acc a = op.init();
      reduce_range(o, c * chunk, std::min(red_n, (c + 1) * chunk), a);
      part[static_cast<size_t>(u)] = a;
    }
    for (int64_t o = 0; o < out_n; ++o) {
      Acc a = part[static_cast<size_t>(o * nchunks)];
      for (int64_t c = 1; c < nchunks; ++c) op.merge(a, part[static_cast<size_t>(o * nchunks + c)]);
      op.finish(o, a);
    }
    return;
  }

  // ---- outer: a row of accumulators along kept dim v ----
  const int64_t V = plan.kept_shape[v], vs = plan.kept_strides[v];
  int64_t ovs = 1;  // output stride of dim v (the output is contiguous over the kept dims)
  for (int64_t d = v + 1; d < nk; ++d) ovs *= plan.kept_shape[d];
  const int64_t O = out_n / V;  // outputs per position along v
  auto bases_of = [&](int64_t i, const T*& in, int64_t& out) {
    // i enumerates the kept dims other than v, row-major.
    in = data;
    out = 0;
    int64_t ostride = 1;
    for (int64_t d = nk - 1; d >= 0; --d) {
      if (d == v) {
        ostride *= V;
        continue;
      }
      const int64_t x = i % plan.kept_shape[d];
      i /= plan.kept_shape[d];
      in += x * plan.kept_strides[d];
      out += x * ostride;
      ostride *= plan.kept_shape[d];
    }
  };
  int64_t TV = std::min<int64_t>(V, 1024);
  int64_t tiles = (V + TV - 1) / TV;
  if (parallel && O * tiles < threads) {
    const int64_t want = (threads + O - 1) / O;
    TV = std::max<int64_t>(std::min<int64_t>(V, 64), (V + want - 1) / want);
    tiles = (V + TV - 1) / TV;
  }
  const int64_t units = O * tiles;
  // Accumulates reduced indices [k0, k1) of unit u into acc[0, n); returns n and the first output.
  auto run_unit = [&](int64_t u, int64_t k0, int64_t k1, Acc* acc, int64_t& out0) {
    const int64_t t = u % tiles, j0 = t * TV, n = std::min(TV, V - j0);
    const T* in;
    bases_of(u / tiles, in, out0);
    in += j0 * vs;
    out0 += j0 * ovs;
    for (int64_t j = 0; j < n; ++j) acc[j] = op.init();
    for_each_reduced_run(in, plan, k0, k1, [&](const T* p, int64_t s, int64_t m, int64_t k) {
      for (int64_t i = 0; i < m; ++i) op.vec(acc, p + i * s, vs, n, k + i, out0, ovs);
    });
    return n;
  };
  const bool split = parallel && units < threads && red_n >= 8;
  if (!split) {
#pragma omp parallel if (parallel)
    {
      std::vector<Acc> acc(static_cast<size_t>(TV));
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; ++u) {
        int64_t out0 = 0;
        const int64_t n = run_unit(u, 0, red_n, acc.data(), out0);
        for (int64_t j = 0; j < n; ++j) op.finish(out0 + j * ovs, acc[static_cast<size_t>(j)]);
      }
    }
    return;
  }
  // Few, narrow tiles over a long reduction: threads take chunks of the reduced rows.
  const int64_t chunk =
      std::max<int64_t>((red_n + 4 * threads - 1) / (4 * threads), (kReduceGrain / 8 + TV - 1) / TV);
  const int64_t nchunks = (red_n + chunk - 1) / chunk;
  std::vector<Acc> part(static_cast<size_t>(units * nchunks * TV));
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < units * nchunks; ++w) {
    const int64_t u = w / nchunks, c = w % nchunks;
    int64_t out0 = 0;
    run_unit(u, c * chunk, std::min(red_n, (c + 1) * chunk), part.data() + w * TV, out0);
  }
  for (int64_t u = 0; u < units; ++u) {
    const int64_t t = u % tiles, n = std::min(TV, V - t * TV);
    const T* in;
    int64_t out0 = 0;
    bases_of(u / tiles, in, out0);
    out0 += t * TV * ovs;
    for (int64_t j = 0; j < n; ++j) {
      Acc a = part[static_cast<size_t>(u * nchunks * TV + j)];
      for (int64_t c = 1; c < nchunks; ++c) op.merge(a, part[static_cast<size_t>((u * nchunks + c) * TV + j)]);
      op.finish(out0 + j * ovs, a);
    }
  }
}

}  // namespace tapegrad::detail
