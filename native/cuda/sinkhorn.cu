// CUDA log-domain Sinkhorn passes for the shared driver (otlm.h semantics; the CPU backend is the reference).
//
// Internal form (same as native/cpu/sinkhorn.cpp): Y_ij = exp(a_i + α x_ij + h_j) with a = f/λ,
// h = g/λ, α = +1/λ for logits (the row log-sum-exp of -log_softmax is absorbed into f and added
// back on output) and -1/λ for a cost.
//
// One iteration = two kernels and no host synchronisation:
//  1. k_row_onepass<GT,V,R>: a group of GT threads owns one row at a time and holds the row in
//     registers (each thread V float4 = 16-byte loads, coalesced). The group computes the exact
//     row max of t_ij = α x_ij + h_j (double), e_ij = exp(t_ij - m) (one float exp per element),
//     s = Σ e (double), the new a_i = log r_i - m - log s, and in the
//     same pass folds Y_ij = e_ij·exp(a_i + m) (≤ r_i: no max needed) into per-thread column
//     accumulators (double) — threads own the same columns for every row, so these stay in
//     registers. A block holds R groups working on a contiguous chunk of rows; at the end the
//     groups are merged in a fixed order and written as one partial row per block.
//     So M is read exactly once per iteration.
//  2. k_merge: one thread per column sums the block partials in block order (deterministic),
//     writes S_j, |S_j - c_j|, the residual log c_j - log S_j and (plain steps) g_j ← (g_j/λ + residual)·λ
//     into the other g buffer, committed by a pointer swap. Columns whose sum
//     underflowed (S_j < 1e-30·c_j) are flagged; k_fb_partial/k_fb_merge then compute their exact
//     column log-sum-exp from a second, coalesced pass over only those columns (these kernels
//     exit at once when nothing is flagged, so the common case costs two empty launches).
//  The error (Σ|S - c| / Σr) is reduced on the device only when the driver asks for it (checks,
//  ε-scaling stages, accelerated steps), and read with one small copy.
//  For k > 8192 (beyond what a group keeps in registers) a two-pass path is used: k_row_twopass
//  (online (max, sum) log-sum-exp streaming the row) then k_col_partial (threads own columns).
//  The iteration itself (ε schedule, acceleration, checks) is the shared driver's
//  (native/core/src/driver.cpp, docs/architecture.md); CudaSinkhornPasses supplies its passes, with
//  Newton's Laplacian (k_hessian_*) and the semi-dual change (k_sum over r_i(a_old − a_new)).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <new>
#include <vector>

#include "cuda_internal.h"
#include "otlm/driver.h"

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
  double alpha, inv, lam;
  const double* g;       // g_in
  const double* r;       // or null
  const double* logr;    // or null
  const double* f_in;    // previous f (may alias f_out)
  double* f_out;
  double* da;            // n: r_i (a_old − a_new), the semi-dual's row change (Newton), or null
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
  const double a_new = logr - m - ls;
  if (writer) {
    if (!A.use_old) {
      ++nfb;
    } else {
      double lf = a_old + m + ls;
      if (!(lf >= kLogRowLo && lf <= kLogRowHi)) ++nfb;
    }
    if (!isfinite(a_new)) atomicMax(A.bad, 1);
    A.f_out[i] = a_new * A.lam;
    if (A.da) A.da[i] = r * (a_old - a_new);
  }
  return r / s;
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
  double lam, inv;
  double* resid;  // k: log c_j − log S_j, the plain update of h (exact LSE for flagged columns)
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
  // driver::kLogColumnFloor / kColumnCeil, in the log domain (a tiny c_j must not underflow the test).
  const double lS = S > 0 && S <= driver::kColumnCeil ? log(S) : -HUGE_VAL;
  const bool ok = lS - A.logc[j] >= driver::kLogColumnFloor;
  A.flags[j] = ok ? 0 : 1;
  if (!ok) {
    atomicAdd(&A.counters[0], 1ull);
    atomicAdd(&A.counters[1], 1ull);
  } else {
    const double r = A.logc[j] - lS;
    A.resid[j] = r;
    if (A.g_out) {
      const double gn = (A.g_in[j] * A.inv + r) * A.lam;
      if (!isfinite(gn)) atomicMax(A.bad, 2);
      A.g_out[j] = gn;
    }
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
  A.resid[j] = A.logc[j] - lse;
  if (A.g_out) {
    const double gn = (A.g_in[j] * A.inv + A.resid[j]) * A.lam;
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

// Σ_i v[i] in a fixed order (one block): the semi-dual's row change for Newton's line search.
__global__ void __launch_bounds__(1024) k_sum(const double* v, int64_t n, double* out) {
  __shared__ double red[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += 1024) s += v[i];
  const double t = block_sum(s, red, 32);
  if (threadIdx.x == 0) out[0] = t;
}

// Newton's Laplacian partials (k ≤ driver::kNewtonMaxK): per chunk of rows,
// W_jq = Σ_i Y_ij Y_iq / r_i for j < q, with Y_ij = exp(a_i + α x_ij + h_j) from the updated f.
constexpr int kHessThreads = 256;
constexpr int kHessMaxK = 64;
__global__ void __launch_bounds__(kHessThreads) k_hessian_partial(const float* x, int64_t ld, int64_t n, int64_t k,
                                                                  double alpha, double inv, const double* g,
                                                                  const double* f, const double* r,
                                                                  int64_t rows_per_chunk, double* partial) {
  __shared__ double y[kHessMaxK];
  constexpr int kSlots = kHessMaxK * kHessMaxK / kHessThreads;
  double acc[kSlots];
#pragma unroll
  for (int q = 0; q < kSlots; ++q) acc[q] = 0;
  const int64_t i0 = int64_t(blockIdx.x) * rows_per_chunk, i1 = min(n, i0 + rows_per_chunk);
  for (int64_t i = i0; i < i1; ++i) {
    if (threadIdx.x < k) y[threadIdx.x] = exp(f[i] * inv + fma(alpha, double(x[i * ld + threadIdx.x]), g[threadIdx.x] * inv));
    __syncthreads();
    const double ri = r ? 1.0 / r[i] : 1.0;
#pragma unroll
    for (int q = 0; q < kSlots; ++q) {
      const int p = int(threadIdx.x) + q * kHessThreads;
      const int j = p / kHessMaxK, c = p % kHessMaxK;
      if (j < c && c < k) acc[q] += y[j] * y[c] * ri;
    }
    __syncthreads();
  }
  double* out = partial + int64_t(blockIdx.x) * kHessMaxK * kHessMaxK;
#pragma unroll
  for (int q = 0; q < kSlots; ++q) out[int(threadIdx.x) + q * kHessThreads] = acc[q];
}

// Sums the chunk partials in chunk order into W (k×k, row-major).
__global__ void k_hessian_merge(const double* partial, int64_t chunks, int64_t k, double* W) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= k * k) return;
  const int64_t j = p / k, c = p % k;
  double s = 0;
  for (int64_t b = 0; b < chunks; ++b) s += partial[b * kHessMaxK * kHessMaxK + j * kHessMaxK + c];
  W[p] = s;
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
  DeviceBuffer<double> partial, colsum, colerr, fbm, fbs, scal;
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
  // the one-pass grid, or the column-pass chunks (two-pass path)
  const int64_t G = std::max<int64_t>(w->chunks, twopass ? 1 : w->grid);
  OTLM_TRY(w->partial.alloc(size_t(G * k), "sinkhorn column partials", err));
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

// ---------------------------------------------------------------------------- driver passes
otlm_status CudaSinkhornPasses::create(const SkProblem& pb, cudaStream_t s, std::unique_ptr<CudaSinkhornPasses>* out,
                                       otlm_error* err) {
  std::unique_ptr<CudaSinkhornPasses> p(new (std::nothrow) CudaSinkhornPasses());
  if (!p) return fail(err, OTLM_ENOMEM, "cuda sinkhorn: out of host memory");
  p->pb_ = pb;
  p->s_ = s;
  SkWork* w = nullptr;
  OTLM_TRY(sk_work_create(pb, false, &w, err));
  p->w_ = w;
  OTLM_TRY(p->f_.alloc(size_t(pb.n), "f", err));
  OTLM_TRY(p->ga_.alloc(size_t(pb.k), "g", err));
  OTLM_TRY(p->gb_.alloc(size_t(pb.k), "g (next)", err));
  OTLM_TRY(p->resid_.alloc(size_t(pb.k), "column residuals", err));
  OTLM_TRY(p->scal_.alloc(4, "sinkhorn pass scalars", err));
  p->gcur_ = p->ga_.ptr;
  p->gnext_ = p->gb_.ptr;
  *out = std::move(p);
  return OTLM_OK;
}

CudaSinkhornPasses::~CudaSinkhornPasses() { sk_work_destroy(w_); }

otlm_status CudaSinkhornPasses::cost_scale(double* scale, otlm_error* err) {
  const SkWork* w = w_;
  const int blocks =
      int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(pb_.n, 8), int64_t(w->dev.sm_count) * 4)));
  DeviceBuffer<double> part;
  OTLM_TRY(part.alloc(size_t(blocks), "row ranges", err));
  OTLM_KERNEL(blocks, 256, 0, s_, k_row_range)(pb_.x, pb_.ld, pb_.n, pb_.k, part.ptr);
  OTLM_LAUNCH("row range");
  std::vector<double> h(static_cast<size_t>(blocks));
  OTLM_CU(cudaMemcpyAsync(h.data(), part.ptr, size_t(blocks) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy");
  OTLM_CU(cudaStreamSynchronize(s_), "row range");
  double tot = 0;
  for (double v : h) tot += v;
  *scale = tot / double(pb_.n);
  return OTLM_OK;
}

// Column sums of the exact-row plan (from the partials), error terms, flags and residuals; the
// plain g update into g_out when given. Exact column LSE for the flagged columns.
otlm_status CudaSinkhornPasses::merge(double lambda, double* g_out, otlm_error* err) {
  SkWork* w = w_;
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  MergeArgs M;
  M.partial = w->partial.ptr;
  M.G = partial_rows_;
  M.k = pb_.k;
  M.col = pb_.col;
  M.logc = pb_.logc;
  M.g_in = gcur_;
  M.g_out = g_out;
  M.lam = lambda;
  M.inv = inv;
  M.resid = resid_.ptr;
  M.colsum = w->colsum.ptr;
  M.colerr = w->colerr.ptr;
  M.flags = w->flags.ptr;
  M.counters = w->counters.ptr;
  M.bad = w->bad.ptr;
  const unsigned mgrid = unsigned(ceil_div(pb_.k, 256));
  OTLM_CU(cudaMemsetAsync(w->counters.ptr, 0, sizeof(unsigned long long), s_), "cudaMemsetAsync");
  OTLM_KERNEL(mgrid, 256, 0, s_, k_merge)(M);
  OTLM_LAUNCH("sinkhorn column merge");
  dim3 fgrid{mgrid, unsigned(w->chunks)};
  OTLM_KERNEL(fgrid, 256, 0, s_, k_fb_partial)(pb_.x, pb_.ld, pb_.n, pb_.k, alpha, inv, gcur_, f_.ptr, w->flags.ptr,
                                                w->counters.ptr, w->rows_per_chunk, w->fbm.ptr, w->fbs.ptr);
  OTLM_LAUNCH("sinkhorn column fallback");
  OTLM_KERNEL(mgrid, 256, 0, s_, k_fb_merge)(M, w->fbm.ptr, w->fbs.ptr, w->chunks);
  OTLM_LAUNCH("sinkhorn column fallback merge");
  return OTLM_OK;
}

// Newton's Laplacian W (k×k) of the plan at the current f and g, onto the host.
otlm_status CudaSinkhornPasses::hessian(double lambda, double* W, otlm_error* err) {
  const int64_t k = pb_.k;
  if (k > kHessMaxK) return fail(err, OTLM_EINTERNAL, "cuda sinkhorn: Newton's Hessian needs k <= %d", kHessMaxK);
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  const int64_t chunks = std::min<int64_t>(256, std::max<int64_t>(1, ceil_div(pb_.n, 64)));
  const int64_t rpc = ceil_div(pb_.n, chunks), nch = ceil_div(pb_.n, rpc);
  if (hpart_.count < size_t(nch * kHessMaxK * kHessMaxK)) {
    OTLM_TRY(hpart_.alloc(size_t(nch * kHessMaxK * kHessMaxK), "Newton Hessian partials", err));
    OTLM_TRY(hess_.alloc(size_t(k * k), "Newton Hessian", err));
  }
  OTLM_KERNEL(unsigned(nch), kHessThreads, 0, s_, k_hessian_partial)(pb_.x, pb_.ld, pb_.n, k, alpha, inv, gcur_,
                                                                     f_.ptr, pb_.r, rpc, hpart_.ptr);
  OTLM_LAUNCH("Newton Hessian partials");
  OTLM_KERNEL(unsigned(ceil_div(k * k, 256)), 256, 0, s_, k_hessian_merge)(hpart_.ptr, nch, k, hess_.ptr);
  OTLM_LAUNCH("Newton Hessian merge");
  OTLM_CU(cudaMemcpyAsync(W, hess_.ptr, size_t(k * k) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (Hessian)");
  return OTLM_OK;
}

otlm_status CudaSinkhornPasses::row_pass(const driver::RowPass& rp, driver::RowStats* stats, otlm_error* err) {
  SkWork* w = w_;
  const double inv = 1.0 / rp.lambda, alpha = pb_.logits ? inv : -inv;
  if (rp.want_dlse && !da_.ptr) OTLM_TRY(da_.alloc(size_t(pb_.n), "semi-dual row changes", err));
  RowArgs A;
  A.x = pb_.x;
  A.ld = pb_.ld;
  A.n = pb_.n;
  A.k = pb_.k;
  A.alpha = alpha;
  A.inv = inv;
  A.lam = rp.lambda;
  A.g = gcur_;
  A.r = pb_.r;
  A.logr = pb_.logr;
  A.f_in = f_.ptr;
  A.f_out = f_.ptr;
  A.da = rp.want_dlse ? da_.ptr : nullptr;
  A.partial = w->partial.ptr;
  A.rows_per_block = w->rows_per_block;
  A.use_old = rp.fast ? 1 : 0;
  A.fallbacks = w->counters.ptr + 1;
  A.bad = w->bad.ptr;
  if (!w->twopass) {
    OTLM_KERNEL(w->grid, w->cfg->gt * w->cfg->r, w->smem, s_, w->cfg->fn)(A);
    OTLM_LAUNCH("sinkhorn row pass (one-pass)");
    partial_rows_ = w->grid;
  } else {
    OTLM_KERNEL(w->row_grid2, kTwoPassThreads, 0, s_, k_row_twopass)(A);
    OTLM_LAUNCH("sinkhorn row pass (two-pass)");
    dim3 cgrid{unsigned(ceil_div(pb_.ld / 4, 256)), unsigned(w->chunks)};
    OTLM_KERNEL(cgrid, 256, 0, s_, k_col_partial)(pb_.x, pb_.ld, pb_.n, pb_.k, alpha, inv, gcur_, f_.ptr,
                                                  w->rows_per_chunk, w->partial.ptr);
    OTLM_LAUNCH("sinkhorn column pass");
    partial_rows_ = w->chunks;
  }
  // The plain step is computed now (no extra launch later) and committed by plain_step().
  next_ready_ = rp.plain_next;
  OTLM_TRY(merge(rp.lambda, rp.plain_next ? gnext_ : nullptr, err));
  const bool sync = rp.want_error || rp.want_dlse || rp.colsum || rp.hessian;
  if (!sync) return OTLM_OK;
  if (rp.hessian) OTLM_TRY(hessian(rp.lambda, rp.hessian, err));
  if (rp.want_dlse) {
    OTLM_KERNEL(1, 1024, 0, s_, k_sum)(da_.ptr, pb_.n, scal_.ptr + 2);
    OTLM_LAUNCH("semi-dual row change");
  }
  OTLM_KERNEL(1, 1024, 0, s_, k_err_reduce)(w->colerr.ptr, pb_.k, pb_.rsum, w->bad.ptr, scal_.ptr);
  OTLM_LAUNCH("sinkhorn error reduction");
  double h[3] = {0, 0, 0};
  OTLM_CU(cudaMemcpyAsync(h, scal_.ptr, sizeof h, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (error)");
  if (rp.colsum)
    OTLM_CU(cudaMemcpyAsync(rp.colsum, w->colsum.ptr, size_t(pb_.k) * 8, cudaMemcpyDeviceToHost, s_),
            "cudaMemcpy (column sums)");
  OTLM_CU(cudaStreamSynchronize(s_), "sinkhorn iteration (stream synchronize)");
  OTLM_TRY(check_bad(int(h[1]), rp.iteration, rp.lambda, err));
  stats->error = h[0];
  stats->dlse = h[2];
  return OTLM_OK;
}

// The device's non-finite flag: 1 = a row potential, 2 = a column potential (of a plain step).
// iteration 0: found at the end of the solve.
otlm_status CudaSinkhornPasses::check_bad(int bad, int iteration, double lambda, otlm_error* err) {
  if (bad != 1 && bad != 2) return OTLM_OK;
  const char* what = bad == 1 ? "a row" : "a column";
  if (iteration > 0)
    return fail(err, OTLM_ENONFINITE, "sinkhorn: %s potential became non-finite by iteration %d (lambda %g)", what,
                iteration, lambda);
  return fail(err, OTLM_ENONFINITE, "sinkhorn: %s potential became non-finite during the solve (lambda %g)", what,
              lambda);
}

otlm_status CudaSinkhornPasses::residual(double, int, double* resid, otlm_error* err) {
  OTLM_CU(cudaMemcpyAsync(resid, resid_.ptr, size_t(pb_.k) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (residual)");
  OTLM_CU(cudaStreamSynchronize(s_), "sinkhorn residual (stream synchronize)");
  return OTLM_OK;
}

otlm_status CudaSinkhornPasses::plain_step(double lambda, int, otlm_error* err) {
  if (!next_ready_) OTLM_TRY(merge(lambda, gnext_, err));
  next_ready_ = false;
  std::swap(gcur_, gnext_);
  return OTLM_OK;
}

otlm_status CudaSinkhornPasses::get_g(double* g, otlm_error* err) {
  OTLM_CU(cudaMemcpyAsync(g, gcur_, size_t(pb_.k) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (g)");
  OTLM_CU(cudaStreamSynchronize(s_), "cudaStreamSynchronize");
  return OTLM_OK;
}

otlm_status CudaSinkhornPasses::set_g(const double* g, otlm_error* err) {
  next_ready_ = false;
  OTLM_CU(cudaMemcpyAsync(gcur_, g, size_t(pb_.k) * 8, cudaMemcpyHostToDevice, s_), "cudaMemcpy (g)");
  OTLM_CU(cudaStreamSynchronize(s_), "cudaStreamSynchronize");
  return OTLM_OK;
}

// Predictions (they read x), then the plan in place over pb.plan_out, then f (+ the row LSE of
// logits) and g to the host.
otlm_status CudaSinkhornPasses::finish(double lambda, const otlm_sinkhorn_buffers& io, otlm_error* err) {
  const int64_t n = pb_.n, k = pb_.k;
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  const int rgrid = grid_for_rows(n, 8, w_->dev.sm_count);
  DeviceBuffer<int32_t> pred;
  if (io.predictions) {
    OTLM_TRY(pred.alloc(size_t(n), "predictions", err));
    OTLM_KERNEL(rgrid, 256, 0, s_, k_predict)(pb_.x, pb_.ld, n, k, alpha, inv, gcur_, pred.ptr);
    OTLM_LAUNCH("predictions");
    OTLM_CU(cudaMemcpyAsync(io.predictions, pred.ptr, size_t(n) * 4, cudaMemcpyDeviceToHost, s_),
            "cudaMemcpy (predictions)");
  }
  if (io.plan) {
    if (!pb_.plan_out) return fail(err, OTLM_EINTERNAL, "cuda sinkhorn: no plan buffer");
    OTLM_KERNEL(rgrid, 256, 0, s_, k_plan)(pb_.plan_out, pb_.ld, n, k, alpha, inv, gcur_, f_.ptr);
    OTLM_LAUNCH("plan");
    OTLM_CU(cudaMemcpy2DAsync(io.plan, size_t(k) * 4, pb_.plan_out, size_t(pb_.ld) * 4, size_t(k) * 4, size_t(n),
                              cudaMemcpyDeviceToHost, s_),
            "cudaMemcpy2D (plan to the host)");
  }
  if (pb_.lse) {
    OTLM_KERNEL(unsigned(ceil_div(n, 256)), 256, 0, s_, k_sub_vec)(f_.ptr, pb_.lse, n, 1.0);
    OTLM_LAUNCH("potential shift");
  }
  OTLM_CU(cudaMemcpyAsync(io.f, f_.ptr, size_t(n) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (f)");
  OTLM_CU(cudaMemcpyAsync(io.g, gcur_, size_t(k) * 8, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (g)");
  int bad = 0;
  OTLM_CU(cudaMemcpyAsync(&bad, w_->bad.ptr, sizeof bad, cudaMemcpyDeviceToHost, s_), "cudaMemcpy (flag)");
  OTLM_CU(cudaStreamSynchronize(s_), "sinkhorn outputs (stream synchronize)");
  return check_bad(bad, 0, lambda, err);
}

otlm_status CudaSinkhornPasses::fallbacks(int64_t* count, otlm_error* err) {
  return sk_fallbacks(w_, s_, count, err);
}

// ---------------------------------------------------------------------------- the entry point
namespace {

// The problem on the device: x (padded rows), marginals and their logs, the row LSE of logits,
// and the warm-start potentials; then the shared driver runs over the CUDA passes.
otlm_status run_sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                         otlm_sinkhorn_report* rep, otlm_error* err) {
  const int64_t n = p->n, k = p->k, ld = pad4(k);
  const bool logits = p->input_kind == OTLM_INPUT_LOGITS;
  if (n > int64_t(INT32_MAX) * 64 || ld > int64_t(INT32_MAX))
    return fail(err, OTLM_EINVAL, "cuda sinkhorn: shape %lldx%lld is too large", (long long)n, (long long)k);
  Stream stream;
  OTLM_TRY(stream.create(err));
  cudaStream_t s = stream.s;

  DeviceBuffer<float> x;
  DeviceBuffer<double> r, logr, col, logc, lse;
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
  if (io->row_marginal) {
    std::vector<double> hl(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      rsum += io->row_marginal[i];
      hl[size_t(i)] = std::log(io->row_marginal[i]);
    }
    OTLM_TRY(r.alloc(size_t(n), "row marginal", err));
    OTLM_TRY(logr.alloc(size_t(n), "log row marginal", err));
    OTLM_CU(cudaMemcpyAsync(r.ptr, io->row_marginal, size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (r)");
    OTLM_CU(cudaMemcpyAsync(logr.ptr, hl.data(), size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (log r)");
    OTLM_CU(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  } else {
    for (int64_t i = 0; i < n; ++i) rsum += 1.0;
  }
  std::vector<double> hlc(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) hlc[size_t(j)] = std::log(io->col_marginal[j]);
  OTLM_TRY(col.alloc(size_t(k), "column marginal", err));
  OTLM_TRY(logc.alloc(size_t(k), "log column marginal", err));
  OTLM_CU(cudaMemcpyAsync(col.ptr, io->col_marginal, size_t(k) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (c)");
  OTLM_CU(cudaMemcpyAsync(logc.ptr, hlc.data(), size_t(k) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (log c)");
  if (logits) {
    OTLM_TRY(lse.alloc(size_t(n), "row log-sum-exp", err));
    OTLM_TRY(row_logsumexp(s, x.ptr, ld, n, k, lse.ptr, false, nullptr, 0, err));
  }

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
  pb.lse = lse.ptr;
  pb.plan_out = x.ptr;  // the plan is the last thing computed: it may overwrite x
  std::unique_ptr<CudaSinkhornPasses> passes;
  OTLM_TRY(CudaSinkhornPasses::create(pb, s, &passes, err));
  if (p->warm_start) {
    OTLM_CU(cudaMemcpyAsync(passes->f(), io->f, size_t(n) * 8, cudaMemcpyHostToDevice, s), "cudaMemcpy (warm f)");
    if (logits) {
      OTLM_KERNEL(unsigned(ceil_div(n, 256)), 256, 0, s, k_sub_vec)(passes->f(), lse.ptr, n, -1.0);
      OTLM_LAUNCH("warm start shift");
    }
    OTLM_TRY(passes->set_g(io->g, err));
  }
  return driver::solve(*p, *io, *passes, rep, err);
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
