// Our own GEMM kernels (no cuBLAS at build time): C = op(A)·B (+ bias), row-major FP32.
//
// FP32 path (default): 128×128 block tile, k-step 8, 256 threads, each thread an 8×8 register
// block (two 4-row × two 4-column sub-blocks 64 apart, so shared-memory float4 reads are
// conflict-free), shared memory double-buffered with a register prefetch of the next k-tile
// (one __syncthreads per k-step), float4 global loads. op(A) = A or Aᵀ (A stored kk × m: the
// Φ_Bᵀ·dA product of the OTLM backward). The epilogue adds the bias and, on request, the
// row-wise (max, Σ exp) pair of its 128-column tile, so that log_softmax(Φ_B W + b) needs no
// extra pass over B×K to find the row max/sum (k_row_lse merges the tile pairs).
//
// TF32 path (opt-in, OTLM_CUDA_TF32=1, used on compute capability ≥ 8.0 only): tensor cores via
// wmma m16n16k8 (TF32 inputs, FP32 accumulation), 128×128 tile, k-step 16, 8 warps of 64×32.
// Error: each input is rounded to a 10-bit mantissa (relative 2^-11 ≈ 4.9e-4), so
// |C_tf32 - C| ≲ 1e-3 · Σ_k |a_ik b_kj| in the worst case and ~5e-4·sqrt(kk)-scaled random error
// typically — about 1e-4..1e-3 relative on the OTLM shapes, versus ~1e-6 for the FP32 path. The
// OTLM gradient tolerates it; the CUDA-vs-CPU tests run the FP32 path.
#include <mma.h>

#include <algorithm>
#include <vector>

#include "cuda_internal.h"

namespace otlm::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 8, APAD = 4;

__device__ __forceinline__ float4 ldg4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

template <bool TA>
__global__ void __launch_bounds__(256, 2) k_sgemm(int64_t M, int64_t N, int64_t K, const float* __restrict__ A,
                                               int64_t lda, const float* __restrict__ B, int64_t ldb,
                                               float* __restrict__ C, int64_t ldc, const float* __restrict__ bias,
                                               float2* __restrict__ lsep, int ntiles, int64_t kchunk) {
  __shared__ __align__(16) float As[2][BK][BM + APAD];
  __shared__ __align__(16) float Bs[2][BK][BN];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  // split-K: this block reduces k in [kbeg, kend) and writes its own slice of C (see gemm_launch)
  const int64_t kbeg = int64_t(blockIdx.z) * kchunk, kend = min(K, kbeg + kchunk);
  C += int64_t(blockIdx.z) * M * ldc;

  // global → register mapping of one k-tile
  const int a_r = TA ? tid / 32 : tid / 2;        // NN: row of A; TN: k row
  const int a_c = TA ? (tid % 32) * 4 : (tid % 2) * 4;  // NN: k column; TN: m column
  const int b_r = tid / 32, b_c = (tid % 32) * 4;
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  auto load_a = [&](int64_t k0) -> float4 {
    if (TA) {
      const int64_t kr = k0 + a_r, mc = m0 + a_c;
      return (kr < kend && mc < lda) ? ldg4(A + kr * lda + mc) : zero;
    } else {
      const int64_t mr = m0 + a_r, kc = k0 + a_c;
      return (mr < M && kc < lda) ? ldg4(A + mr * lda + kc) : zero;
    }
  };
  auto load_b = [&](int64_t k0) -> float4 {
    const int64_t kr = k0 + b_r, nc = n0 + b_c;  // rows ≥ kend read as zero: A's columns there don't matter
    return (kr < kend && nc < ldb) ? ldg4(B + kr * ldb + nc) : zero;
  };
  auto store = [&](int buf, const float4& av, const float4& bv) {
    if (TA) {
      *reinterpret_cast<float4*>(&As[buf][a_r][a_c]) = av;
    } else {
      As[buf][a_c + 0][a_r] = av.x;
      As[buf][a_c + 1][a_r] = av.y;
      As[buf][a_c + 2][a_r] = av.z;
      As[buf][a_c + 3][a_r] = av.w;
    }
    *reinterpret_cast<float4*>(&Bs[buf][b_r][b_c]) = bv;
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  const int64_t ntk = (kend - kbeg + BK - 1) / BK;
  float4 pa = load_a(kbeg), pb = load_b(kbeg);
  store(0, pa, pb);
  __syncthreads();
  int cur = 0;
  for (int64_t kt = 0; kt < ntk; ++kt) {
    const bool more = kt + 1 < ntk;
    if (more) {
      pa = load_a(kbeg + (kt + 1) * BK);
      pb = load_b(kbeg + (kt + 1) * BK);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][kk][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][kk][64 + tx * 4]);
      const float ra[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float rb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    if (more) {
      store(cur ^ 1, pa, pb);
      __syncthreads();
      cur ^= 1;
    }
  }

  // epilogue: bias, store, optional per-tile (max, Σexp) of each row
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t r = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    float v[8];
    float lm = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t c = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
      v[j] = acc[i][j] + ((bias && c < N) ? __ldg(bias + c) : 0.f);
      if (c < N) lm = fmaxf(lm, v[j]);
    }
    if (r < M) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t c = n0 + h * 64 + tx * 4;
        float* dst = C + r * ldc + c;
        if (c + 3 < N) {
          *reinterpret_cast<float4*>(dst) = make_float4(v[h * 4], v[h * 4 + 1], v[h * 4 + 2], v[h * 4 + 3]);
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if (c + j < N) dst[j] = v[h * 4 + j];
        }
      }
    }
    if (lsep) {
      float ls = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t c = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
        if (c < N) ls += __expf(v[j] - lm);
      }
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, lm, o), s2 = __shfl_xor_sync(0xffffffffu, ls, o);
        lse_merge(lm, ls, m2, s2);
      }
      if (tx == 0 && r < M) lsep[r * ntiles + blockIdx.x] = make_float2(lm, ls);
    }
  }
}

// ------------------------------------------------------------------------------ TF32 (wmma)
[[maybe_unused]] constexpr int TBK = 16, TLDA_NN = TBK + 4, TLD = 128 + 4;

template <bool TA>
__global__ void __launch_bounds__(256) k_tf32gemm(int64_t M, int64_t N, int64_t K, const float* __restrict__ A,
                                                  int64_t lda, const float* __restrict__ B, int64_t ldb,
                                                  float* __restrict__ C, int64_t ldc,
                                                  const float* __restrict__ bias, int64_t kchunk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  // TF32 tensor cores need sm_80; tf32_requested() never selects this kernel below it.
  __trap();
#else
  using namespace nvcuda;
  constexpr int ASZ = TA ? TBK * TLD : BM * TLDA_NN;
  __shared__ __align__(128) float As[ASZ > 2048 ? ASZ : 2048];
  __shared__ __align__(128) float Bs[TBK * TLD];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int64_t kbeg = int64_t(blockIdx.z) * kchunk, kend = min(K, kbeg + kchunk);
  C += int64_t(blockIdx.z) * M * ldc;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int64_t k0 = kbeg; k0 < kend; k0 += TBK) {
#pragma unroll
    for (int it = 0; it < 2; ++it) {
      const int idx = tid + it * 256;
      if (TA) {
        const int kr = idx / 32, mc = (idx % 32) * 4;
        const bool ok = k0 + kr < kend && m0 + mc < lda;
        *reinterpret_cast<float4*>(&As[kr * TLD + mc]) = ok ? ldg4(A + (k0 + kr) * lda + m0 + mc) : zero;
      } else {
        const int row = idx / 4, kc = (idx % 4) * 4;
        const bool ok = m0 + row < M && k0 + kc < lda;
        *reinterpret_cast<float4*>(&As[row * TLDA_NN + kc]) = ok ? ldg4(A + (m0 + row) * lda + k0 + kc) : zero;
      }
      const int kr = idx / 32, nc = (idx % 32) * 4;
      const bool okb = k0 + kr < kend && n0 + nc < ldb;
      *reinterpret_cast<float4*>(&Bs[kr * TLD + nc]) = okb ? ldg4(B + (k0 + kr) * ldb + n0 + nc) : zero;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TBK; kk += 8) {
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> bf[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(bf[j], &Bs[kk * TLD + wn * 32 + j * 16], TLD);
#pragma unroll
        for (int t = 0; t < bf[j].num_elements; ++t) bf[j].x[t] = wmma::__float_to_tf32(bf[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (TA) {
          wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> af;
          wmma::load_matrix_sync(af, &As[kk * TLD + wm * 64 + i * 16], TLD);
#pragma unroll
          for (int t = 0; t < af.num_elements; ++t) af.x[t] = wmma::__float_to_tf32(af.x[t]);
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af, bf[j], acc[i][j]);
        } else {
          wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> af;
          wmma::load_matrix_sync(af, &As[(wm * 64 + i * 16) * TLDA_NN + kk], TLDA_NN);
#pragma unroll
          for (int t = 0; t < af.num_elements; ++t) af.x[t] = wmma::__float_to_tf32(af.x[t]);
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af, bf[j], acc[i][j]);
        }
      }
    }
    __syncthreads();
  }
  // epilogue through a per-warp 16×16 staging tile (reusing As)
  float* stage = As + warp * 256;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int64_t r = m0 + wm * 64 + i * 16 + e / 16, c = n0 + wn * 32 + j * 16 + e % 16;
        if (r < M && c < N) C[r * ldc + c] = stage[e] + (bias ? __ldg(bias + c) : 0.f);
      }
      __syncwarp();
    }
#endif
}

// C = Σ_z parts[z] + bias, summed in slice order (deterministic).
__global__ void k_splitk_reduce(const float* __restrict__ parts, int splits, int64_t M, int64_t N, int64_t ldc,
                                const float* __restrict__ bias, float* __restrict__ C) {
  const int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= M * N) return;
  const int64_t r = q / N, c = q % N;
  float s = 0.f;
  for (int z = 0; z < splits; ++z) s += parts[int64_t(z) * M * ldc + r * ldc + c];
  C[r * ldc + c] = s + (bias ? bias[c] : 0.f);
}

int sm_count_cached() {
  static int sms = 0;
  if (sms == 0) {
    int d = 0, v = 0;
    if (cudaGetDevice(&d) == cudaSuccess && cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, d) == cudaSuccess)
      sms = v;
    else
      sms = 1;
  }
  return sms;
}

}  // namespace

// TF32 tensor cores are asked for with OTLM_CUDA_TF32=1 and used only where the current device has
// them (compute capability 8.0 or newer); elsewhere the request is ignored and the FP32 path runs.
bool tf32_requested() {
  if (env_int("OTLM_CUDA_TF32", 0) == 0) return false;
  int d = 0, major = 0;
  if (cudaGetDevice(&d) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the FP32 path reports any real device error itself
    return false;
  }
  return major >= 8;
}

int gemm_tiles_n(int64_t n) { return int((n + BN - 1) / BN); }

otlm_status gemm_launch(cudaStream_t s, bool trans_a, int64_t m, int64_t n, int64_t kk, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, const float* bias,
                        float2* lse_partials, bool tf32, otlm_error* err) {
  const int64_t gy = (m + BM - 1) / BM, gx = (n + BN - 1) / BN;
  if (gy > 65535 || gx > INT32_MAX)
    return fail(err, OTLM_EINVAL, "cuda gemm: shape %lldx%lld exceeds the grid limits", (long long)m, (long long)n);
  if ((lda | ldb | ldc) & 3)
    return fail(err, OTLM_EINTERNAL, "cuda gemm: leading dimensions must be multiples of 4 (%lld, %lld, %lld)",
                (long long)lda, (long long)ldb, (long long)ldc);
  // Split-K when the tile grid cannot fill the device (e.g. dW = Φ_Bᵀ dA: K×K output, long
  // reduction): each slice writes a partial C into a workspace, reduced in slice order.
  int splits = 1;
  const int64_t blocks = gx * gy;
  const int sms = sm_count_cached();
  if (!lse_partials && blocks < 2 * int64_t(sms) && kk >= 1024) {
    splits = int(std::min<int64_t>({(2 * int64_t(sms) + blocks - 1) / blocks, kk / 512, 16}));
    splits = std::max(splits, 1);
  }
  int64_t kchunk = kk;
  if (splits > 1) {
    kchunk = ((kk + splits - 1) / splits + 31) / 32 * 32;  // multiple of both k-steps
    splits = int((kk + kchunk - 1) / kchunk);
  }
  dim3 grid{unsigned(gx), unsigned(gy), unsigned(splits)};
  float* out = c;
  float* ws = nullptr;
  if (splits > 1) {
    const size_t bytes = size_t(splits) * size_t(m) * size_t(ldc) * sizeof(float);
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&ws), bytes, s);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return fail(err, e == cudaErrorMemoryAllocation ? OTLM_ENOMEM : OTLM_EDEVICE,
                  "cuda gemm: cannot allocate %zu bytes of split-K workspace (%s)", bytes, cudaGetErrorName(e));
    }
    out = ws;
  }
  const float* kbias = splits > 1 ? nullptr : bias;
  if (tf32) {
    if (lse_partials) {
      if (ws) cudaFreeAsync(ws, s);
      return fail(err, OTLM_EINTERNAL, "cuda gemm: the TF32 path has no fused log-sum-exp epilogue");
    }
    if (trans_a)
      OTLM_KERNEL(grid, 256, 0, s, k_tf32gemm<true>)(m, n, kk, a, lda, b, ldb, out, ldc, kbias, kchunk);
    else
      OTLM_KERNEL(grid, 256, 0, s, k_tf32gemm<false>)(m, n, kk, a, lda, b, ldb, out, ldc, kbias, kchunk);
  } else {
    const int nt = gemm_tiles_n(n);
    if (trans_a)
      OTLM_KERNEL(grid, 256, 0, s, k_sgemm<true>)(m, n, kk, a, lda, b, ldb, out, ldc, kbias, lse_partials, nt, kchunk);
    else
      OTLM_KERNEL(grid, 256, 0, s, k_sgemm<false>)(m, n, kk, a, lda, b, ldb, out, ldc, kbias, lse_partials, nt, kchunk);
  }
  cudaError_t le = cudaGetLastError();
  if (le == cudaSuccess && splits > 1) {
    OTLM_KERNEL(unsigned((m * n + 255) / 256), 256, 0, s, k_splitk_reduce)(ws, splits, m, n, ldc, bias, c);
    le = cudaGetLastError();
  }
  if (ws) cudaFreeAsync(ws, s);
  if (le != cudaSuccess) {
    return fail(err, OTLM_EDEVICE, "cuda gemm %lldx%lldx%lld (%s): kernel launch failed: %s (%s)", (long long)m,
                (long long)n, (long long)kk, tf32 ? "tf32" : "fp32", cudaGetErrorName(le), cudaGetErrorString(le));
  }
  return OTLM_OK;
}

// Host-pointer entry: C = A·B (+ bias). Matrices are copied into 16-byte-aligned, zero-padded
// device buffers. OTLM_CUDA_GEMM_REPEAT=r (benchmarks) runs the kernel r times (same result) so
// that the kernel time can be separated from the transfers by difference.
otlm_status gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias, float* c,
                 int32_t threads, otlm_error* err) {
  if (otlm_status s = validate_gemm(m, n, kk, a, b, c, threads, err)) return s;
  OTLM_TRY(select_device(err));
  const int64_t lda = pad4(kk), ldb = pad4(n), ldc = pad4(n);
  Stream st;
  OTLM_TRY(st.create(err));
  DeviceBuffer<float> da, db, dc, dbias;
  OTLM_TRY(da.alloc(size_t(m) * size_t(lda), "gemm A", err));
  OTLM_TRY(db.alloc(size_t(kk) * size_t(ldb), "gemm B", err));
  OTLM_TRY(dc.alloc(size_t(m) * size_t(ldc), "gemm C", err));
  OTLM_CU(cudaMemcpy2DAsync(da.ptr, size_t(lda) * 4, a, size_t(kk) * 4, size_t(kk) * 4, size_t(m),
                            cudaMemcpyHostToDevice, st.s),
          "cudaMemcpy2D (gemm A)");
  OTLM_CU(cudaMemcpy2DAsync(db.ptr, size_t(ldb) * 4, b, size_t(n) * 4, size_t(n) * 4, size_t(kk),
                            cudaMemcpyHostToDevice, st.s),
          "cudaMemcpy2D (gemm B)");
  if (bias) {
    OTLM_TRY(dbias.alloc(size_t(n), "gemm bias", err));
    OTLM_CU(cudaMemcpyAsync(dbias.ptr, bias, size_t(n) * 4, cudaMemcpyHostToDevice, st.s), "cudaMemcpy (bias)");
  }
  const bool tf32 = tf32_requested();
  const int reps = std::max(1, env_int("OTLM_CUDA_GEMM_REPEAT", 1));
  for (int r = 0; r < reps; ++r)
    OTLM_TRY(annotate(gemm_launch(st.s, false, m, n, kk, da.ptr, lda, db.ptr, ldb, dc.ptr, ldc,
                                  bias ? dbias.ptr : nullptr, nullptr, tf32, err),
                      err, "gemm m x n", (long long)m, (long long)n));
  OTLM_CU(cudaMemcpy2DAsync(c, size_t(n) * 4, dc.ptr, size_t(ldc) * 4, size_t(n) * 4, size_t(m),
                            cudaMemcpyDeviceToHost, st.s),
          "cudaMemcpy2D (gemm C)");
  OTLM_CU(cudaStreamSynchronize(st.s), "gemm (stream synchronize)");
  return OTLM_OK;
}

}  // namespace otlm::cuda
