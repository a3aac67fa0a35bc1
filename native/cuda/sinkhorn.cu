// CUDA log-domain Sinkhorn (otlm.h semantics, the CPU backend is the reference).
//
// Internal form (same as native/cpu/sinkhorn.cpp): Y_ij = exp(a_i + α x_ij + h_j) with a = f/λ,
// h = g/λ, α = +1/λ for logits (the row log-sum-exp of -log_softmax is absorbed into f and added
// back on output) and -1/λ for a cost.
//
// One iteration = two kernels and no host synchronisation:
//  1. k_row_onepass<GT,V,R>: a group of GT threads owns one row at a time and holds the row in
//     registers (each thread V float4 = 16-byte loads, coalesced). The group computes the exact
//     row max of t_ij = α x_ij + h_j (double), e_ij = exp(t_ij - m) (one float exp per element),
//     s = Σ e (double), the new a_i = log r_i - m - log s (over-relaxed when ω > 1), and in the
//     same pass folds Y_ij = e_ij·exp(a_i + m) (≤ r_i: no max needed) into per-thread column
//     accumulators (double) — threads own the same columns for every row, so these stay in
//     registers. A block holds R groups working on a contiguous chunk of rows; at the end the
//     groups are merged in a fixed order and written as one partial row per block.
//     So M is read exactly once per iteration.
//  2. k_merge: one thread per column sums the block partials in block order (deterministic),
//     writes S_j, |S_j - c_j| and g_j ← (g_j/λ + ω(log c_j - log S_j))·λ. Columns whose sum
//     underflowed (S_j < floor) are flagged; k_fb_partial/k_fb_merge then compute their exact
//     column log-sum-exp from a second, coalesced pass over only those columns (these kernels
//     exit at once when nothing is flagged, so the common case costs two empty launches).
//  The error (Σ|S - c| / Σr) is reduced on the device at convergence checks only, and read with
//  one 16-byte copy.
//  For k > 8192 (beyond what a group keeps in registers) and for over-relaxed check iterations
//  (which need the plain and the relaxed plan) a two-pass path is used: k_row_twopass (online
//  (max, sum) log-sum-exp streaming the row) then k_col_partial (threads own columns, coalesced).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "cuda_internal.h"

namespace otlm::cuda {

namespace {

constexpr double kLogRowLo = -46.051701859880914;  // log(1e-20): CPU "fast path" statistic
constexpr double kLogRowHi = 46.051701859880914;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------- group reductions
template <int GT, int R>
struct Group {
  static constexpr int W = GT / 32;
  __device__ __forceinline__ static void sync(int g) {
    if constexpr (GT == 32) {
      __syncwarp();
    } else if constexpr (R == 1) {
      __syncthreads();
    } else {
      otlm_named_barrier(unsigned(g + 1), unsigned(GT));
    }
  }
  // red: this group's W slots. Every thread returns the same value (fixed order).
  __device__ __forceinline__ static double max(double v, double* red, int wig, int lane, int g) {
    v = warp_max(v);
    if constexpr (W == 1) {
      return v;
    } else {
      if (lane == 0) red[wig] = v;
      sync(g);
      double r = red[0];
#pragma unroll
      for (int w = 1; w < W; ++w) r = fmax(r, red[w]);
      return r;
    }
  }
  __device__ __forceinline__ static double sum(double v, double* red, int wig, int lane, int g) {
    v = warp_sum(v);
    if constexpr (W == 1) {
      return v;
    } else {
      if (lane == 0) red[wig] = v;
      sync(g);
      double r = red[0];
#pragma unroll
      for (int w = 1; w < W; ++w) r += red[w];
      return r;
    }
  }
};

__device__ __forceinline__ float4 load4(const float* row, int64_t q) {
  return __ldg(reinterpret_cast<const float4*>(row) + q);
}
__device__ __forceinline__ float comp(const float4& v, int c) {
  return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

struct RowArgs {
  const float* x;
  int64_t ld, n, k;
  double alpha, inv, lam, omega;
  const double* g;       // g_in
  const double* r;       // or null
  const double* logr;    // or null
  const double* f_in;    // previous f (may alias f_out)
  double* f_out;
  double* f_plain;       // or null (two-pass only)
  double* partial;       // G × k
  int64_t rows_per_block;
  int use_old;
  unsigned long long* fallbacks;
  int* bad;
};

// Shared per-row epilogue: returns the scale exp(a_new + m) that turns e_ij = exp(t_ij - m) into Y_ij.
__device__ __forceinline__ double row_update(const RowArgs& A, int64_t i, double m, double s, bool writer,
                                             unsigned& nfb) {
  const double logr = A.logr ? A.logr[i] : 0.0;
  const double r = A.r ? A.r[i] : 1.0;
  const double a_old = A.f_in[i] * A.inv;
  const double ls = log(s);
  const double a_plain = logr - m - ls;
  const double a_new = A.omega > 1 ? a_old + A.omega * (a_plain - a_old) : a_plain;
  if (writer) {
    if (!A.use_old) {
      ++nfb;
    } else {
      double lf = a_old + m + ls;
      if (!(lf >= kLogRowLo && lf <= kLogRowHi)) ++nfb;
    }
    if (!isfinite(a_new)) atomicMax(A.bad, 1);
    A.f_out[i] = a_new * A.lam;
    if (A.f_plain) A.f_plain[i] = a_plain * A.lam;
  }
  return A.omega > 1 ? exp(a_new + m) : r / s;
}

// ---------------------------------------------------------------------------- one-pass row kernel
template <int GT, int V, int R>
__global__ void __launch_bounds__(GT* R) k_row_onepass(RowArgs A) {
  constexpr int NC = V * 4;
  __shared__ double red[2][R][GT / 32];
  __shared__ double comb[R > 1 ? GT * NC : 1];
  const int tid = threadIdx.x;
  const int g = tid / GT, lt = tid % GT, lane = tid & 31, wig = lt / 32;
  const int64_t ld4 = A.ld / 4;
  const int64_t i0 = int64_t(blockIdx.x) * A.rows_per_block;
  const int64_t i1 = min(A.n, i0 + A.rows_per_block);

  // h_j = g_j/λ of this thread's columns, in (dynamic) shared memory: slot q of thread lt at
  // hs[q*GT + lt] (conflict-free); the R groups share the same columns.
  OTLM_DYNAMIC_SHARED(double, hs);
  if (g == 0)
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t col = (int64_t(lt) + int64_t(v) * GT) * 4 + c;
        hs[(v * 4 + c) * GT + lt] = col < A.k ? A.g[col] * A.inv : -INFINITY;
      }
  __syncthreads();
  double acc[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) acc[q] = 0.0;
  unsigned nfb = 0;
  float4 cur[V], nxt[V];
  int64_t i = i0 + g;
  auto load_row = [&](float4* dst, int64_t row) {
    const float* p = A.x + row * A.ld;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int64_t q = int64_t(lt) + int64_t(v) * GT;
      dst[v] = q < ld4 ? load4(p, q) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  if (i < i1) load_row(cur, i);
  for (; i < i1; i += R) {
    if (i + R < i1) load_row(nxt, i + R);
    double mloc = -INFINITY;
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int c = 0; c < 4; ++c) mloc = fmax(mloc, fma(A.alpha, double(comp(cur[v], c)), hs[(v * 4 + c) * GT + lt]));
    const double m = Group<GT, R>::max(mloc, red[0][g], wig, lane, g);
    float e[NC];
    double sloc = 0;
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const double t = fma(A.alpha, double(comp(cur[v], c)), hs[(v * 4 + c) * GT + lt]);
        e[v * 4 + c] = __expf(float(t - m));
        sloc += double(e[v * 4 + c]);
      }
    const double s = Group<GT, R>::sum(sloc, red[1][g], wig, lane, g);
    const double sc = row_update(A, i, m, s, lt == 0, nfb);
#pragma unroll
    for (int q = 0; q < NC; ++q) acc[q] += double(e[q]) * sc;
#pragma unroll
    for (int v = 0; v < V; ++v) cur[v] = nxt[v];
  }
  if (nfb) atomicAdd(A.fallbacks, (unsigned long long)nfb);
  // merge the R groups' column accumulators in group order, then one partial row per block
  if constexpr (R > 1) {
    for (int gg = 1; gg < R; ++gg) {
      __syncthreads();
      if (g == gg)
#pragma unroll
        for (int q = 0; q < NC; ++q) comb[lt * NC + q] = acc[q];
      __syncthreads();
      if (g == 0)
#pragma unroll
        for (int q = 0; q < NC; ++q) acc[q] += comb[lt * NC + q];
    }
  }
  if (g == 0) {
    double* out = A.partial + int64_t(blockIdx.x) * A.k;
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t col = (int64_t(lt) + int64_t(v) * GT) * 4 + c;
        if (col < A.k) out[col] = acc[v * 4 + c];
      }
  }
}

// ---------------------------------------------------------------------------- two-pass kernels
constexpr int kTwoPassThreads = 256;

// One block per row (grid-stride): online (max, sum) log-sum-exp over the row, f update only.
__global__ void __launch_bounds__(kTwoPassThreads) k_row_twopass(RowArgs A) {
  __shared__ double sm[kTwoPassThreads / 32], ss[kTwoPassThreads / 32];
  const int tid = threadIdx.x, lane = tid & 31, w = tid / 32;
  const int64_t ld4 = A.ld / 4;
  unsigned nfb = 0;
  for (int64_t i = blockIdx.x; i < A.n; i += gridDim.x) {
    const float* p = A.x + i * A.ld;
    double m = -INFINITY, s = 0;
    for (int64_t q = tid; q < ld4; q += kTwoPassThreads) {
      const float4 xv = load4(p, q);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t col = q * 4 + c;
        if (col < A.k) {
          const double t = fma(A.alpha, double(comp(xv, c)), A.g[col] * A.inv);
          if (t > m) {
            s = s * double(__expf(float(m - t))) + 1.0;
            m = t;
          } else {
            s += double(__expf(float(t - m)));
          }
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      double m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
      lse_merge(m, s, m2, s2);
    }
    if (lane == 0) {
      sm[w] = m;
      ss[w] = s;
    }
    __syncthreads();
    double M = sm[0], S = ss[0];
    for (int q = 1; q < kTwoPassThreads / 32; ++q) lse_merge(M, S, sm[q], ss[q]);
    __syncthreads();
    (void)row_update(A, i, M, S, tid == 0, nfb);
  }
  if (nfb) atomicAdd(A.fallbacks, (unsigned long long)nfb);
}

// Column partial sums of Y_ij = exp(a_i + α x_ij + h_j) over a chunk of rows (blockIdx.y);
// thread = 4 consecutive columns (one float4 per row): coalesced.
__global__ void __launch_bounds__(256) k_col_partial(const float* x, int64_t ld, int64_t n, int64_t k,
                                                     double alpha, double inv, const double* g,
                                                     const double* f, int64_t rows_per_chunk,
                                                     double* partial) {
  const int64_t q = int64_t(blockIdx.x) * 256 + threadIdx.x;
  const int64_t ld4 = ld / 4;
  if (q >= ld4) return;
  double h[4], acc[4] = {0, 0, 0, 0};
#pragma unroll
  for (int c = 0; c < 4; ++c) h[c] = q * 4 + c < k ? g[q * 4 + c] * inv : -INFINITY;
  const int64_t i0 = int64_t(blockIdx.y) * rows_per_chunk, i1 = min(n, i0 + rows_per_chunk);
  for (int64_t i = i0; i < i1; ++i) {
    const double a = f[i] * inv;
    const float4 xv = load4(x + i * ld, q);
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[c] += double(__expf(float(a + fma(alpha, double(comp(xv, c)), h[c]))));
  }
  double* out = partial + int64_t(blockIdx.y) * k;
#pragma unroll
  for (int c = 0; c < 4; ++c)
    if (q * 4 + c < k) out[q * 4 + c] = acc[c];
}

// ---------------------------------------------------------------------------- column merge
struct MergeArgs {
  const double* partial;
  int64_t G, k;
  const double* col;
  const double* logc;
  const double* g_in;
  double* g_out;  // null: no update
  double lam, inv, omega;
  double floor_rel, floor_abs;
  double* colsum;
  double* colerr;
  int* flags;
  unsigned long long* counters;  // [0] flagged this iteration, [1] total fallbacks
  int* bad;
};

__global__ void k_merge(MergeArgs A) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= A.k) return;
  double S = 0;
  for (int64_t b = 0; b < A.G; ++b) S += A.partial[b * A.k + j];
  const double c = A.col[j];
  A.colsum[j] = S;
  A.colerr[j] = fabs(S - c);
  const bool ok = S >= A.floor_rel * c + A.floor_abs && S <= 1e300;
  A.flags[j] = ok ? 0 : 1;
  if (!ok) {
    atomicAdd(&A.counters[0], 1ull);
    atomicAdd(&A.counters[1], 1ull);
  } else if (A.g_out) {
    const double gn = (A.g_in[j] * A.inv + A.omega * (A.logc[j] - log(S))) * A.lam;
    if (!isfinite(gn)) atomicMax(A.bad, 2);
    A.g_out[j] = gn;
  }
}

// Exact column log-sum-exp of a_i + α x_ij + h_j for flagged columns, per chunk of rows.
__global__ void __launch_bounds__(256) k_fb_partial(const float* x, int64_t ld, int64_t n, int64_t k,
                                                    double alpha, double inv, const double* g,
                                                    const double* f, const int* flags,
                                                    const unsigned long long* counters,
                                                    int64_t rows_per_chunk, double* pm, double* ps) {
  if (counters[0] == 0) return;
  const int64_t j = int64_t(blockIdx.x) * 256 + threadIdx.x;
  if (j >= k || !flags[j]) return;
  const double h = g[j] * inv;
  const int64_t i0 = int64_t(blockIdx.y) * rows_per_chunk, i1 = min(n, i0 + rows_per_chunk);
  double m = -INFINITY, s = 0;
  for (int64_t i = i0; i < i1; ++i) {
    const double v = f[i] * inv + fma(alpha, double(x[i * ld + j]), h);
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  pm[int64_t(blockIdx.y) * k + j] = m;
  ps[int64_t(blockIdx.y) * k + j] = s;
}

__global__ void k_fb_merge(MergeArgs A, const double* pm, const double* ps, int64_t chunks) {
  if (A.counters[0] == 0) return;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= A.k || !A.flags[j]) return;
  double M = -INFINITY, S = 0;
  for (int64_t c = 0; c < chunks; ++c) lse_merge(M, S, pm[c * A.k + j], ps[c * A.k + j]);
  const double lse = M + log(S);  // log of the exact column sum
  const double cs = exp(lse);
  A.colsum[j] = cs;
  A.colerr[j] = fabs(cs - A.col[j]);
  if (A.g_out) {
    const double gn = (A.g_in[j] * A.inv + A.omega * (A.logc[j] - lse)) * A.lam;
    if (!isfinite(gn)) atomicMax(A.bad, 2);
    A.g_out[j] = gn;
  }
}

// Σ_j colerr[j] / rsum with a fixed reduction tree; out[0] = error, out[1] = bad flag.
__global__ void __launch_bounds__(1024) k_err_reduce(const double* colerr, int64_t k, double rsum,
                                                     const int* bad, double* out) {
  __shared__ double red[32];
  double s = 0;
  for (int64_t j = threadIdx.x; j < k; j += 1024) s += colerr[j];
  const double t = block_sum(s, red, 32);
  if (threadIdx.x == 0) {
    out[0] = t / rsum;
    out[1] = double(*bad);
  }
}

// ---------------------------------------------------------------------------- row utilities
// Warp per row: lse (double) of x, optionally x ← x - lse; tile partials (max, Σexp) merged when given.
__global__ void k_row_lse(float* x, int64_t ld, int64_t n, int64_t k, double* lse, int normalise,
                          const float2* tiles, int ntiles) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n; i += warps) {
    float* p = x + i * ld;
    double M = -INFINITY, S = 0;
    if (tiles) {
      const float2* t = tiles + i * ntiles;
      for (int q = 0; q < ntiles; ++q) lse_merge(M, S, double(t[q].x), double(t[q].y));
    } else {
      double m = -INFINITY;
      for (int64_t j = lane; j < k; j += 32) m = fmax(m, double(p[j]));
      m = warp_max(m);
      double s = 0;
      for (int64_t j = lane; j < k; j += 32) s += double(__expf(float(double(p[j]) - m)));
      s = warp_sum(s);
      M = m;
      S = s;
    }
    const double l = M + log(S);
    if (lane == 0 && lse) lse[i] = l;
    if (normalise)
      for (int64_t j = lane; j < k; j += 32) p[j] = float(double(p[j]) - l);
  }
}

__global__ void k_find_nonfinite(const float* x, int64_t ld, int64_t n, int64_t k, unsigned long long* first) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x & 31;
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n; i += warps) {
    const float* p = x + i * ld;
    for (int64_t j = lane; j < k; j += 32)
      if (!isfinite(p[j])) {
        atomicMin(first, (unsigned long long)(i * k + j));
        break;
      }
  }
}

// Row range max_j x - min_j x, summed per block (fixed order) into part[block].
__global__ void k_row_range(const float* x, int64_t ld, int64_t n, int64_t k, double* part) {
  __shared__ double red[8];
  const int lane = threadIdx.x & 31, w = threadIdx.x / 32;
  double acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * 8 + w; i < n; i += int64_t(gridDim.x) * 8) {
    const float* p = x + i * ld;
    double mx = -INFINITY, mn = INFINITY;
    for (int64_t j = lane; j < k; j += 32) {
      mx = fmax(mx, double(p[j]));
      mn = fmin(mn, double(p[j]));
    }
    mx = warp_max(mx);
    mn = -warp_max(-mn);
    acc += mx - mn;
  }
  if (lane == 0) red[w] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int q = 0; q < 8; ++q) t += red[q];
    part[blockIdx.x] = t;
  }
}

__global__ void k_sub_vec(double* f, const double* lse, int64_t n, double sign) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f[i] += sign * lse[i];
}

// argmax_j (α x_ij + h_j), first max on ties, with the CPU's exact arithmetic (no FMA contraction).
__global__ void k_predict(const float* x, int64_t ld, int64_t n, int64_t k, double alpha, double inv,
                          const double* g, int32_t* pred) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n; i += warps) {
    const float* p = x + i * ld;
    double best = -INFINITY;
    long long bj = -1;
    for (int64_t j = lane; j < k; j += 32) {
      const double v = __dadd_rn(__dmul_rn(alpha, double(p[j])), __dmul_rn(g[j], inv));
      if (bj < 0 || v > best) {
        best = v;
        bj = j;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const double v2 = __shfl_xor_sync(0xffffffffu, best, o);
      const long long j2 = __shfl_xor_sync(0xffffffffu, bj, o);
      if (j2 >= 0 && (bj < 0 || v2 > best || (v2 == best && j2 < bj))) {
        best = v2;
        bj = j2;
      }
    }
    if (lane == 0) pred[i] = int32_t(bj < 0 ? 0 : bj);
  }
}

// plan (in place over x): Y_ij = exp(a_i + α x_ij + h_j), exp in double.
__global__ void k_plan(float* x, int64_t ld, int64_t n, int64_t k, double alpha, double inv, const double* g,
                       const double* f) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n; i += warps) {
    float* p = x + i * ld;
    const double a = f[i] * inv;
    for (int64_t j = lane; j < k; j += 32) p[j] = float(exp(a + alpha * double(p[j]) + g[j] * inv));
  }
}

inline int grid_for_rows(int64_t n, int warps_per_block, int sm_count) {
  int64_t need = ceil_div(n, warps_per_block);
  return int(std::max<int64_t>(1, std::min<int64_t>(need, int64_t(sm_count) * 16)));
}

// ---------------------------------------------------------------------------- configurations
using RowKernel = void (*)(RowArgs);
struct OnePassCfg {
  int gt, v, r;
  RowKernel fn;
};
const OnePassCfg kCfgs[] = {
    {32, 1, 8, k_row_onepass<32, 1, 8>},     {32, 2, 8, k_row_onepass<32, 2, 8>},
    {32, 4, 8, k_row_onepass<32, 4, 8>},     {128, 2, 2, k_row_onepass<128, 2, 2>},
    {128, 4, 2, k_row_onepass<128, 4, 2>},   {256, 4, 1, k_row_onepass<256, 4, 1>},
    {512, 4, 1, k_row_onepass<512, 4, 1>},
};

}  // namespace

// ---------------------------------------------------------------------------- engine
struct SkWork {
  SkProblem pb;
  DeviceInfo dev;
  bool twopass = false;
  const OnePassCfg* cfg = nullptr;
  int grid = 1;               // one-pass: blocks (= partial rows)
  size_t smem = 0;            // one-pass: dynamic shared memory (h) per block
  int64_t rows_per_block = 1;
  int row_grid2 = 1;          // two-pass row kernel blocks
  int64_t chunks = 1;         // column-pass / fallback row chunks
  int64_t rows_per_chunk = 1;
  DeviceBuffer<double> partial, partial2, colsum, colerr, fbm, fbs, scal;
  DeviceBuffer<int> flags, bad;
  DeviceBuffer<unsigned long long> counters;
  char path[48] = {0};
};

otlm_status current_device_info(DeviceInfo* out, otlm_error* err) {
  int d = 0;
  OTLM_CU(cudaGetDevice(&d), "cudaGetDevice");
  out->device = d;
  OTLM_CU(cudaDeviceGetAttribute(&out->sm_count, cudaDevAttrMultiProcessorCount, d), "cudaDeviceGetAttribute");
  OTLM_CU(cudaDeviceGetAttribute(&out->max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, d),
          "cudaDeviceGetAttribute");
  return OTLM_OK;
}

otlm_status sk_work_create(const SkProblem& pb, bool twopass, SkWork** out, otlm_error* err) {
  *out = nullptr;
  SkWork* w = new (std::nothrow) SkWork();
  if (!w) return fail(err, OTLM_ENOMEM, "cuda sinkhorn: out of host memory");
  struct Guard {
    SkWork*& w;
    ~Guard() { delete w; }
  } guard{w};
  w->pb = pb;
  OTLM_TRY(current_device_info(&w->dev, err));
  const int64_t n = pb.n, k = pb.k;
  if (env_int("OTLM_CUDA_SINKHORN_TWOPASS", 0)) twopass = true;
  if (!twopass) {
    for (const OnePassCfg& c : kCfgs)
      if (int64_t(c.gt) * c.v * 4 >= pb.ld) {
        w->cfg = &c;
        break;
      }
    if (!w->cfg) twopass = true;
  }
  w->twopass = twopass;
  if (!twopass) {
    w->smem = size_t(w->cfg->gt) * w->cfg->v * 4 * sizeof(double);
    if (w->smem > 48 * 1024)
      OTLM_CU(cudaFuncSetAttribute(w->cfg->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(w->smem)),
              "cudaFuncSetAttribute (one-pass Sinkhorn shared memory)");
    int occ = 0;
    OTLM_CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, w->cfg->fn, w->cfg->gt * w->cfg->r, w->smem),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    occ = std::max(occ, 1);
    // enough blocks to fill the device, but at least ~4 rows per group so partials stay small
    int64_t max_blocks = std::max<int64_t>(1, ceil_div(n, int64_t(w->cfg->r) * 4));
    int64_t G = std::min<int64_t>(int64_t(occ) * w->dev.sm_count, max_blocks);
    w->rows_per_block = ceil_div(n, G);
    w->grid = int(ceil_div(n, w->rows_per_block));
    std::snprintf(w->path, sizeof w->path, "onepass-%dx%dx%d", w->cfg->gt, w->cfg->v, w->cfg->r);
  } else {
    w->row_grid2 = int(std::min<int64_t>(n, int64_t(w->dev.sm_count) * 8));
    std::snprintf(w->path, sizeof w->path, "twopass");
  }
  // column-pass chunks: ~4 waves of 256-thread blocks
  {
    int64_t colblocks = ceil_div(pb.ld / 4, 256);
    int64_t want = std::max<int64_t>(1, int64_t(w->dev.sm_count) * 8 / colblocks);
    int64_t chunks = std::min<int64_t>(want, ceil_div(n, 16));
    chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, 65535));
    w->rows_per_chunk = ceil_div(n, chunks);
    w->chunks = ceil_div(n, w->rows_per_chunk);
  }
  // the one-pass grid, or the column-pass chunks (two-pass path and over-relaxed check iterations)
  const int64_t G = std::max<int64_t>(w->chunks, twopass ? 1 : w->grid);
  OTLM_TRY(w->partial.alloc(size_t(G * k), "sinkhorn column partials", err));
  OTLM_TRY(w->partial2.alloc(size_t(w->chunks * k), "sinkhorn plain-plan column partials", err));
  OTLM_TRY(w->colsum.alloc(size_t(k), "sinkhorn column sums", err));
  OTLM_TRY(w->colerr.alloc(size_t(k), "sinkhorn column errors", err));
  OTLM_TRY(w->fbm.alloc(size_t(w->chunks * k), "sinkhorn column fallback maxima", err));
  OTLM_TRY(w->fbs.alloc(size_t(w->chunks * k), "sinkhorn column fallback sums", err));
  OTLM_TRY(w->scal.alloc(4, "sinkhorn scalars", err));
  OTLM_TRY(w->flags.alloc(size_t(k), "sinkhorn column flags", err));
  OTLM_TRY(w->bad.alloc(1, "sinkhorn flag", err));
  OTLM_TRY(w->counters.alloc(2, "sinkhorn counters", err));
  *out = w;
  w = nullptr;  // released from the guard
  return OTLM_OK;
}

void sk_work_destroy(SkWork* w) { delete w; }
const char* sk_work_path(const SkWork* w) { return w->path; }
const double* sk_colsum(const SkWork* w) { return w->colsum.ptr; }

otlm_status sk_iterate(SkWork* w, cudaStream_t s, const SkStep& st, otlm_error* err) {
  const SkProblem& pb = w->pb;
  const double inv = 1.0 / st.lam, alpha = pb.logits ? inv : -inv;
  RowArgs A;
  A.x = pb.x;
  A.ld = pb.ld;
  A.n = pb.n;
  A.k = pb.k;
  A.alpha = alpha;
  A.inv = inv;
  A.lam = st.lam;
  A.omega = st.omega;
  A.g = st.g_in;
  A.r = pb.r;
  A.logr = pb.logr;
  A.f_in = st.f_in ? st.f_in : st.f_out;
  A.f_out = st.f_out;
  A.f_plain = st.f_plain_out;
  A.partial = w->partial.ptr;
  A.rows_per_block = w->rows_per_block;
  A.use_old = st.use_old ? 1 : 0;
  A.fallbacks = w->counters.ptr + 1;
  A.bad = w->bad.ptr;

  const bool twopass = w->twopass || st.f_plain_out != nullptr;
  int64_t G;
  if (!twopass) {
    OTLM_KERNEL(w->grid, w->cfg->gt * w->cfg->r, w->smem, s, w->cfg->fn)(A);
    OTLM_LAUNCH("sinkhorn row pass (one-pass)");
    G = w->grid;
  } else {
    int grid2 = w->twopass ? w->row_grid2 : int(std::min<int64_t>(pb.n, int64_t(w->dev.sm_count) * 8));
    OTLM_KERNEL(grid2, kTwoPassThreads, 0, s, k_row_twopass)(A);
    OTLM_LAUNCH("sinkhorn row pass (two-pass)");
    G = w->chunks;
  }
  dim3 cgrid{unsigned(ceil_div(pb.ld / 4, 256)), unsigned(w->chunks)};
  double* relaxed_partial = w->partial.ptr;
  if (twopass) {
    OTLM_KERNEL(cgrid, 256, 0, s, k_col_partial)(pb.x, pb.ld, pb.n, pb.k, alpha, inv, st.g_in, st.f_out,
                                                 w->rows_per_chunk, w->partial.ptr);
    OTLM_LAUNCH("sinkhorn column pass");
  }
  MergeArgs M;
  M.G = G;
  M.k = pb.k;
  M.col = pb.col;
  M.logc = pb.logc;
  M.g_in = st.g_in;
  M.lam = st.lam;
  M.inv = inv;
  M.omega = st.omega;
  M.floor_rel = pb.floor_rel;
  M.floor_abs = pb.floor_abs;
  M.colsum = w->colsum.ptr;
  M.colerr = w->colerr.ptr;
  M.flags = w->flags.ptr;
  M.counters = w->counters.ptr;
  M.bad = w->bad.ptr;
  const unsigned mgrid = unsigned(ceil_div(pb.k, 256));
  // Plain-plan statistics first (over-relaxed check iterations), then the relaxed g update.
  auto run_merge = [&](const double* partial, int64_t Gp, const double* f, double* g_out) -> otlm_status {
    OTLM_CU(cudaMemsetAsync(w->counters.ptr, 0, sizeof(unsigned long long), s), "cudaMemsetAsync");
    M.partial = partial;
    M.G = Gp;
    M.g_out = g_out;
    OTLM_KERNEL(mgrid, 256, 0, s, k_merge)(M);
    OTLM_LAUNCH("sinkhorn column merge");
    dim3 fgrid{mgrid, unsigned(w->chunks)};
    OTLM_KERNEL(fgrid, 256, 0, s, k_fb_partial)(pb.x, pb.ld, pb.n, pb.k, alpha, inv, st.g_in, f, w->flags.ptr,
                                                w->counters.ptr, w->rows_per_chunk, w->fbm.ptr, w->fbs.ptr);
    OTLM_LAUNCH("sinkhorn column fallback");
    OTLM_KERNEL(mgrid, 256, 0, s, k_fb_merge)(M, w->fbm.ptr, w->fbs.ptr, w->chunks);
    OTLM_LAUNCH("sinkhorn column fallback merge");
    return OTLM_OK;
  };
  if (st.f_plain_out) {
    // relaxed g update from the relaxed plan, then the reported statistics from the plain plan
    if (st.update_g) OTLM_TRY(run_merge(relaxed_partial, G, st.f_out, st.g_out));
    OTLM_KERNEL(cgrid, 256, 0, s, k_col_partial)(pb.x, pb.ld, pb.n, pb.k, alpha, inv, st.g_in, st.f_plain_out,
                                                 w->rows_per_chunk, w->partial2.ptr);
    OTLM_LAUNCH("sinkhorn column pass (plain plan)");
    OTLM_TRY(run_merge(w->partial2.ptr, w->chunks, st.f_plain_out, nullptr));
  } else {
    OTLM_TRY(run_merge(relaxed_partial, G, st.f_out, st.update_g ? st.g_out : nullptr));
  }
  return OTLM_OK;
}

otlm_status sk_fetch_error(SkWork* w, cudaStream_t s, double* error, int* bad, otlm_error* err) {
  OTLM_KERNEL(1, 1024, 0, s, k_err_reduce)(w->colerr.ptr, w->pb.k, w->pb.rsum, w->bad.ptr, w->scal.ptr);
  OTLM_LAUNCH("sinkhorn error reduction");
  double h[2];
  OTLM_CU(cudaMemcpyAsync(h, w->scal.ptr, sizeof h, cudaMemcpyDeviceToHost, s), "cudaMemcpy (error)");
  OTLM_CU(cudaStreamSynchronize(s), "sinkhorn iteration (stream synchronize)");
  *error = h[0];
  *bad = int(h[1]);
  return OTLM_OK;
}

otlm_status sk_fallbacks(SkWork* w, cudaStream_t s, int64_t* out, otlm_error* err) {
  unsigned long long c[2] = {0, 0};
  OTLM_CU(cudaMemcpyAsync(c, w->counters.ptr, sizeof c, cudaMemcpyDeviceToHost, s), "cudaMemcpy (counters)");
  OTLM_CU(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  *out = int64_t(c[1]);
  return OTLM_OK;
}

otlm_status row_logsumexp(cudaStream_t s, float* x, int64_t ld, int64_t n, int64_t k, double* lse,
                          bool normalise, const float2* tile_partials, int ntiles, otlm_error* err) {
  DeviceInfo d;
  OTLM_TRY(current_device_info(&d, err));
  OTLM_KERNEL(grid_for_rows(n, 8, d.sm_count), 256, 0, s, k_row_lse)(x, ld, n, k, lse, normalise ? 1 : 0,
                                                                     tile_partials, ntiles);
  OTLM_LAUNCH("row log-sum-exp");
  return OTLM_OK;
}

otlm_status find_nonfinite(cudaStream_t s, const float* x, int64_t ld, int64_t n, int64_t k, int64_t* first,
                           otlm_error* err) {
  DeviceInfo d;
  OTLM_TRY(current_device_info(&d, err));
  DeviceBuffer<unsigned long long> b;
  OTLM_TRY(b.alloc(1, "scan flag", err));
  OTLM_CU(cudaMemsetAsync(b.ptr, 0xff, sizeof(unsigned long long), s), "cudaMemsetAsync");
  OTLM_KERNEL(grid_for_rows(n, 8, d.sm_count), 256, 0, s, k_find_nonfinite)(x, ld, n, k, b.ptr);
  OTLM_LAUNCH("non-finite scan");
  unsigned long long h = 0;
  OTLM_CU(cudaMemcpyAsync(&h, b.ptr, sizeof h, cudaMemcpyDeviceToHost, s), "cudaMemcpy (scan)");
  OTLM_CU(cudaStreamSynchronize(s), "non-finite scan");
  *first = h == ~0ull ? -1 : int64_t(h);
  return OTLM_OK;
}

// ---------------------------------------------------------------------------- the entry point
namespace {

// The CPU backend's adaptive over-relaxation rule (native/cpu/sinkhorn.cpp, struct Relax),
// re-stated here so both backends take the same decisions from the same errors.
struct Relax {
  double omega_max, omega = 1;
  bool active = false, settled = false;
  std::vector<double> hist;
  double ref_err = 0;
  int64_t ref_it = 0;
  int window;
  Relax(double wmax, int check_every) : omega_max(wmax), window(std::max(check_every, 10)) {}
  void on_plain_error(double err, int64_t it) {
    if (omega_max <= 1 || settled) return;
    hist.push_back(err);
    const size_t w = 5;
    if (hist.size() < 3 * w + 1) return;
    size_t t = hist.size() - 1;
    double e0 = hist[t - 2 * w], e1 = hist[t - w], e2 = hist[t];
    if (!(e0 > 0 && e1 > 0 && e2 > 0)) return;
    double r1 = std::pow(e1 / e0, 1.0 / w), r2 = std::pow(e2 / e1, 1.0 / w);
    if (!(r1 < 1 && r2 < 1)) {
      if (hist.size() > 200) settled = true;
      return;
    }
    if (std::fabs(r2 - r1) > 0.02 * (1 - std::min(r1, r2)) + 1e-3 && hist.size() < 60) return;
    double rho = std::max(r1, r2);
    double w_opt = 2.0 / (1.0 + std::sqrt(1.0 - rho));
    settled = true;
    omega = std::min(omega_max, w_opt);
    if (omega <= 1.02) {
      omega = 1;
      return;
    }
    active = true;
    ref_err = err;
    ref_it = it;
  }
  void on_check(double err, int64_t it) {
    if (!active) return;
    if (it - ref_it < window) return;
    if (!(err < ref_err)) {
      omega = 1 + (omega - 1) / 2;
      if (omega <= 1.02) {
        omega = 1;
        active = false;
      }
    }
    ref_err = err;
    ref_it = it;
  }
};

otlm_status run_sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                         otlm_sinkhorn_report* rep, otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = p->n, k = p->k, ld = pad4(k);
  const bool logits = p->input_kind == OTLM_INPUT_LOGITS;
  if (n > int64_t(INT32_MAX) * 64 || ld > int64_t(INT32_MAX))
    return fail(err, OTLM_EINVAL, "cuda sinkhorn: shape %lldx%lld is too large", (long long)n, (long long)k);
  Stream stream;
  OTLM_TRY(stream.create(err));
  cudaStream_t s = stream.s;

  DeviceBuffer<float> x;
  DeviceBuffer<double> r, logr, col, logc, f, g0, g1, fplain, lse, tmp;
  OTLM_TRY(x.alloc(size_t(n) * size_t(ld), "the input matrix", err));
  OTLM_CU(cudaMemcpy2DAsync(x.ptr, size_t(ld) * 4, io->x, size_t(k) * 4, size_t(k) * 4, size_t(n),
                            cudaMemcpyHostToDevice, s),
          "cudaMemcpy2D (input matrix to the device)");
  {
    int64_t bad = -1;
    OTLM_TRY(find_nonfinite(s, x.ptr, ld, n, k, &bad, err));
    if (bad >= 0)
      return fail(err, OTLM_EINVAL, "sinkhorn: input x[%lld] (row %lld, column %lld) is not finite", (long long)bad,
                  (long long)(bad / k), (long long)(bad % k));
  }
  double rsum = 0;
  std::vector<double> hr;
  if (io->row_marginal) {
    hr.assign(io->row_marginal, io->row_marginal + n);
    for (double v : hr) rsum += v;
    OTLM_TRY(r.alloc(size_t(n), "row marginal", err));
    OTLM_TRY(logr.alloc(size_t(n), "log row marginal", err));
    std::vector<double> hl(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) hl[size_t(i)] = std::log(hr[size_t(i)]);
    OTLM_CU(cudaMemcpyAsync(r.ptr, hr.data(), size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (r)");
    OTLM_CU(cudaMemcpyAsync(logr.ptr, hl.data(), size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (log r)");
    OTLM_CU(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  } else {
    for (int64_t i = 0; i < n; ++i) rsum += 1.0;
  }
  std::vector<double> hc(io->col_marginal, io->col_marginal + k), hlc(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) hlc[size_t(j)] = std::log(hc[size_t(j)]);
  OTLM_TRY(col.alloc(size_t(k), "column marginal", err));
  OTLM_TRY(logc.alloc(size_t(k), "log column marginal", err));
  OTLM_CU(cudaMemcpyAsync(col.ptr, hc.data(), size_t(k) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (c)");
  OTLM_CU(cudaMemcpyAsync(logc.ptr, hlc.data(), size_t(k) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (log c)");
  OTLM_TRY(f.alloc(size_t(n), "f", err));
  OTLM_TRY(g0.alloc(size_t(k), "g", err));
  OTLM_TRY(g1.alloc(size_t(k), "g (next)", err));
  if (logits) {
    OTLM_TRY(lse.alloc(size_t(n), "row log-sum-exp", err));
    OTLM_TRY(row_logsumexp(s, x.ptr, ld, n, k, lse.ptr, false, nullptr, 0, err));
  }
  if (p->warm_start) {
    OTLM_CU(cudaMemcpyAsync(f.ptr, io->f, size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (warm f)");
    OTLM_CU(cudaMemcpyAsync(g0.ptr, io->g, size_t(k) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (warm g)");
    if (logits) {
      OTLM_KERNEL(unsigned(ceil_div(n, 256)), 256, 0, s, k_sub_vec)(f.ptr, lse.ptr, n, -1.0);
      OTLM_LAUNCH("warm start shift");
    }
  }
  if (p->overrelax > 1) OTLM_TRY(fplain.alloc(size_t(n), "f (plain)", err));

  SkProblem pb;
  pb.x = x.ptr;
  pb.ld = ld;
  pb.n = n;
  pb.k = k;
  pb.logits = logits;
  pb.r = r.ptr;
  pb.logr = logr.ptr;
  pb.rsum = rsum;
  pb.col = col.ptr;
  pb.logc = logc.ptr;
  pb.floor_rel = 1e-30;
  pb.floor_abs = 0;
  SkWork* wraw = nullptr;
  OTLM_TRY(sk_work_create(pb, false, &wraw, err));
  struct WG {
    SkWork* w;
    ~WG() { sk_work_destroy(w); }
  } wguard{wraw};
  SkWork* w = wraw;

  // ε-scaling start: λ0 = mean row range of x (as the CPU backend).
  const double lambda = p->lambda;
  double lambda0 = lambda;
  if (p->eps_scaling > 0) {
    DeviceInfo d;
    OTLM_TRY(current_device_info(&d, err));
    int blocks = int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, 8), int64_t(d.sm_count) * 4)));
    OTLM_TRY(tmp.alloc(size_t(blocks), "row ranges", err));
    OTLM_KERNEL(blocks, 256, 0, s, k_row_range)(x.ptr, ld, n, k, tmp.ptr);
    OTLM_LAUNCH("row range");
    std::vector<double> parts(static_cast<size_t>(blocks));
    OTLM_CU(cudaMemcpyAsync(parts.data(), tmp.ptr, size_t(blocks) * 8, cudaMemcpyDeviceToHost, s), "cudaMemcpy");
    OTLM_CU(cudaStreamSynchronize(s), "row range");
    double tot = 0;
    for (double v : parts) tot += v;
    double scale = tot / double(n);
    if (std::isfinite(scale) && scale > lambda) lambda0 = scale;
  }

  Relax relax(p->overrelax, p->check_every);
  int32_t trace_len = 0, it = 0;
  double error = HUGE_VAL, lam_t = lambda;
  bool converged = false, scaled_any = false, aborted = false;
  double* gcur = g0.ptr;
  double* gnext = g1.ptr;
  for (it = 1; it <= p->max_iter; ++it) {
    const bool first = it == 1;
    lam_t = lambda0 > lambda ? std::max(lambda, lambda0 * std::pow(p->eps_scaling, double(it - 1))) : lambda;
    const bool at_target = lam_t == lambda;
    const double omega = (relax.active && at_target && !first) ? relax.omega : 1.0;
    const bool last = it == p->max_iter;
    const bool check = (it % p->check_every == 0) || last;
    const bool need_plain = check && omega > 1;
    const bool want_plain_err = p->overrelax > 1 && !relax.settled && at_target && omega == 1 && !first;
    SkStep st;
    st.lam = lam_t;
    st.omega = omega;
    st.g_in = gcur;
    st.f_in = f.ptr;
    st.f_out = f.ptr;
    st.g_out = gnext;
    st.f_plain_out = need_plain ? fplain.ptr : nullptr;
    st.use_old = !first || p->warm_start;
    st.update_g = !last;
    st.iteration = it;
    OTLM_TRY(sk_iterate(w, s, st, err));
    if (!first || p->warm_start) scaled_any = true;
    if (check || want_plain_err) {
      int bad = 0;
      OTLM_TRY(sk_fetch_error(w, s, &error, &bad, err));
      if (bad == 1)
        return fail(err, OTLM_ENONFINITE,
                    "sinkhorn: a row potential became non-finite by iteration %d (lambda %g)", it, lam_t);
      if (bad == 2)
        return fail(err, OTLM_ENONFINITE,
                    "sinkhorn: a column potential became non-finite by iteration %d (lambda %g)", it, lam_t);
      if (std::isnan(error))
        return fail(err, OTLM_ENONFINITE, "sinkhorn: column sums became NaN at iteration %d", it);
      if (want_plain_err) relax.on_plain_error(error, it);
    }
    if (check) {
      if (io->error_trace && trace_len < io->error_trace_cap) io->error_trace[trace_len++] = error;
      if (need_plain) relax.on_check(error, it);
      if (at_target && error < p->tol) converged = true;
      if (io->cancel && *io->cancel) aborted = true;
    }
    if (converged || last || aborted) {
      if (need_plain)
        OTLM_CU(cudaMemcpyAsync(f.ptr, fplain.ptr, size_t(n) * 8, cudaMemcpyDeviceToDevice, s), "cudaMemcpy (f)");
      break;
    }
    std::swap(gcur, gnext);
  }
  if (it > p->max_iter) it = p->max_iter;

  // outputs: predictions (needs x), then the plan in place over x
  const double inv = 1.0 / lam_t, alpha = logits ? inv : -inv;
  DeviceInfo d;
  OTLM_TRY(current_device_info(&d, err));
  const int rgrid = grid_for_rows(n, 8, d.sm_count);
  DeviceBuffer<int32_t> pred;
  if (io->predictions) {
    OTLM_TRY(pred.alloc(size_t(n), "predictions", err));
    OTLM_KERNEL(rgrid, 256, 0, s, k_predict)(x.ptr, ld, n, k, alpha, inv, gcur, pred.ptr);
    OTLM_LAUNCH("predictions");
    OTLM_CU(cudaMemcpyAsync(io->predictions, pred.ptr, size_t(n) * 4, cudaMemcpyDeviceToHost, s),
            "cudaMemcpy (predictions)");
  }
  if (io->plan) {
    OTLM_KERNEL(rgrid, 256, 0, s, k_plan)(x.ptr, ld, n, k, alpha, inv, gcur, f.ptr);
    OTLM_LAUNCH("plan");
    OTLM_CU(cudaMemcpy2DAsync(io->plan, size_t(k) * 4, x.ptr, size_t(ld) * 4, size_t(k) * 4, size_t(n),
                              cudaMemcpyDeviceToHost, s),
            "cudaMemcpy2D (plan to the host)");
  }
  if (logits) {
    OTLM_KERNEL(unsigned(ceil_div(n, 256)), 256, 0, s, k_sub_vec)(f.ptr, lse.ptr, n, 1.0);
    OTLM_LAUNCH("potential shift");
  }
  OTLM_CU(cudaMemcpyAsync(io->f, f.ptr, size_t(n) * 8, cudaMemcpyDeviceToHost, s), "cudaMemcpy (f)");
  OTLM_CU(cudaMemcpyAsync(io->g, gcur, size_t(k) * 8, cudaMemcpyDeviceToHost, s), "cudaMemcpy (g)");
  int64_t fallbacks = 0;
  OTLM_TRY(sk_fallbacks(w, s, &fallbacks, err));  // synchronises the stream

  if (rep) {
    rep->iterations = it;
    rep->error = error;
    rep->converged = converged ? 1 : 0;
    rep->mode = (scaled_any ? OTLM_MODE_SCALING : 0) | (fallbacks > 0 ? OTLM_MODE_LOG : 0);
    rep->log_fallbacks = fallbacks;
    rep->trace_len = trace_len;
    rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (aborted) return fail(err, OTLM_EABORTED, "sinkhorn: cancelled after %d iterations", it);
  return OTLM_OK;
}

}  // namespace

otlm_status sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                     otlm_sinkhorn_report* rep, otlm_error* err) {
  if (otlm_status st = validate_sinkhorn(p, io, err)) return st;
  OTLM_TRY(select_device(err));
  try {
    return annotate(run_sinkhorn(p, io, rep, err), err, "sinkhorn", (long long)p->n, (long long)p->k);
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "cuda sinkhorn: unexpected internal error (n=%lld, k=%lld)",
                (long long)p->n, (long long)p->k);
  }
}

}  // namespace otlm::cuda
