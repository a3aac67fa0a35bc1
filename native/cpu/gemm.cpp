// GEMM for the OTLM engine: OpenBLAS when linked (OTLM_HAVE_CBLAS), else a cache-blocked builtin.
// Both are deterministic for any thread count: work is cut into fixed panels of C's rows, and every C
// element is reduced over k by one single-threaded call in a fixed order.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cpu_internal.h"
#include "otlm/validate.h"
#include "otlm_engine.h"
#include "thread_pool.h"

#ifdef OTLM_HAVE_CBLAS
#include <cblas.h>
#endif

#ifndef OTLM_GEMM_PROVIDER
#define OTLM_GEMM_PROVIDER "builtin"
#endif

namespace otlm::cpu {

const char* gemm_provider() { return OTLM_GEMM_PROVIDER; }

int resolve_threads(int32_t threads) { return threads > 0 ? int(threads) : default_threads(); }

namespace {

#ifdef OTLM_HAVE_CBLAS
constexpr int64_t kBlasRowPanel = 512;  // rows of A per single-threaded sgemm call
constexpr int64_t kBlasTnPanel = 128;   // rows of C = Aᵀ·B per call
// openblas_set_num_threads is global and not free; only call it when the count changes.
std::atomic<int> g_blas_threads{-1};
void set_blas_threads(int t) {
  if (g_blas_threads.load(std::memory_order_relaxed) != t) {
    openblas_set_num_threads(t);
    g_blas_threads.store(t, std::memory_order_relaxed);
  }
}
#else
constexpr int64_t kRowsPerTask = 32;   // rows of C per task (fixed: determinism)
constexpr int64_t kDepthBlock = 256;   // k-panel kept in L2
constexpr int64_t kColBlock = 1024;    // columns of C per pass

// C[rows, j0:j1] += A[rows, k0:k1] · B[k0:k1, j0:j1]; the inner j loop vectorises.
__attribute__((target_clones("avx512f", "avx2", "default")))
void nn_block(int64_t i0, int64_t i1, int64_t k0, int64_t k1, int64_t j0, int64_t j1, int64_t n,
              int64_t kk, const float* a, const float* b, float* c) {
  for (int64_t i = i0; i < i1; ++i) {
    float* ci = c + i * n;
    const float* ai = a + i * kk;
    for (int64_t k = k0; k < k1; ++k) {
      const float av = ai[k];
      const float* bk = b + k * n;
      for (int64_t j = j0; j < j1; ++j) ci[j] += av * bk[j];
    }
  }
}

// C[p0:p1, :] += Σ_{i in [i0,i1)} A[i, p]·B[i, :].
__attribute__((target_clones("avx512f", "avx2", "default")))
void tn_block(int64_t i0, int64_t i1, int64_t p0, int64_t p1, int64_t p, int64_t q, const float* a,
              const float* b, float* c) {
  for (int64_t i = i0; i < i1; ++i) {
    const float* bi = b + i * q;
    for (int64_t r = p0; r < p1; ++r) {
      const float av = a[i * p + r];
      float* cr = c + r * q;
      for (int64_t j = 0; j < q; ++j) cr[j] += av * bi[j];
    }
  }
}
#endif

}  // namespace

void gemm_nn(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
             float* c, int threads, const std::function<void(int64_t, int64_t)>* rows_done) {
  // Start from the bias (or zero) so both paths compute bias + A·B in the same way.
  parallel_for((m + 255) / 256, threads, [&](int64_t t) {
    int64_t i1 = std::min(m, (t + 1) * 256);
    for (int64_t i = t * 256; i < i1; ++i) {
      if (bias) std::memcpy(c + i * n, bias, sizeof(float) * size_t(n));
      else std::memset(c + i * n, 0, sizeof(float) * size_t(n));
    }
  });
#ifdef OTLM_HAVE_CBLAS
  // OpenBLAS single-threaded on fixed row panels run by our pool: its own threads would keep spinning
  // after the call and steal the cores from the Sinkhorn passes that follow.
  set_blas_threads(1);
  const int64_t panels = (m + kBlasRowPanel - 1) / kBlasRowPanel;
  parallel_for(panels, threads, [&](int64_t t) {
    const int64_t i0 = t * kBlasRowPanel, rows = std::min(m, i0 + kBlasRowPanel) - i0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(n), int(kk), 1.0f, a + i0 * kk,
                int(kk), b, int(n), 1.0f, c + i0 * n, int(n));
    if (rows_done) (*rows_done)(i0, i0 + rows);
  });
#else
  parallel_for((m + kRowsPerTask - 1) / kRowsPerTask, threads, [&](int64_t t) {
    int64_t i0 = t * kRowsPerTask, i1 = std::min(m, i0 + kRowsPerTask);
    for (int64_t j0 = 0; j0 < n; j0 += kColBlock)
      for (int64_t k0 = 0; k0 < kk; k0 += kDepthBlock)
        nn_block(i0, i1, k0, std::min(kk, k0 + kDepthBlock), j0, std::min(n, j0 + kColBlock), n, kk, a, b,
                 c);
    if (rows_done) (*rows_done)(i0, i1);
  });
#endif
}

void gemm_tn(int64_t m, int64_t p, int64_t q, const float* a, const float* b, float* c, int threads) {
#ifdef OTLM_HAVE_CBLAS
  // Fixed panels of C's rows (each a full reduction over m), so the result is thread-count independent.
  set_blas_threads(1);
  const int64_t panels = (p + kBlasTnPanel - 1) / kBlasTnPanel;
  parallel_for(panels, threads, [&](int64_t t) {
    const int64_t p0 = t * kBlasTnPanel, rows = std::min(p, p0 + kBlasTnPanel) - p0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(rows), int(q), int(m), 1.0f, a + p0, int(p), b,
                int(q), 0.0f, c + p0 * q, int(q));
  });
#else
  constexpr int64_t kP = 16, kI = 256;
  parallel_for((p + kP - 1) / kP, threads, [&](int64_t t) {
    int64_t p0 = t * kP, p1 = std::min(p, p0 + kP);
    std::memset(c + p0 * q, 0, sizeof(float) * size_t((p1 - p0) * q));
    for (int64_t i0 = 0; i0 < m; i0 += kI) tn_block(i0, std::min(m, i0 + kI), p0, p1, p, q, a, b, c);
  });
#endif
}

otlm_status gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                 float* c, int32_t threads, otlm_error* err) {
  if (otlm_status s = validate_gemm(m, n, kk, a, b, c, threads, err)) return s;
  gemm_nn(m, n, kk, a, b, bias, c, resolve_threads(threads));
  return OTLM_OK;
}

}  // namespace otlm::cpu
