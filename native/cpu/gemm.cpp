// GEMM for the OTLM engine: OpenBLAS when linked (OTLM_HAVE_CBLAS), else the builtin packed GEMM with
// AVX-512/AVX2/baseline micro-kernels (gemm_builtin.cpp, always compiled). Both are deterministic for any
// thread count: work is cut into fixed panels of C, and every C element is reduced over k by one thread
// in a fixed order.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cpu_internal.h"
#include "gemm_builtin.h"
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

namespace {
std::atomic<bool> g_prefer_builtin{false};

// OpenBLAS runs unless it is not linked or a benchmark asked for the builtin.
bool use_blas() {
#ifdef OTLM_HAVE_CBLAS
  return !g_prefer_builtin.load(std::memory_order_relaxed);
#else
  return false;
#endif
}
}  // namespace

void gemm_set_prefer_builtin(bool on) { g_prefer_builtin.store(on, std::memory_order_relaxed); }

bool gemm_openblas_linked() {
#ifdef OTLM_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

const char* gemm_provider() {
  if (use_blas()) return OTLM_GEMM_PROVIDER;
  switch (gemm_builtin_isa()) {
    case GemmIsa::avx512: return "builtin-avx512";
    case GemmIsa::avx2: return "builtin-avx2";
    default: return "builtin-baseline";
  }
}

int resolve_threads(int32_t threads) { return threads > 0 ? int(threads) : default_threads(); }

#ifdef OTLM_HAVE_CBLAS
namespace {
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
}  // namespace
#endif

void gemm_nn(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
             float* c, int threads, const std::function<void(int64_t, int64_t)>* rows_done) {
  if (!use_blas()) {
    gemm_nn_builtin(m, n, kk, a, b, bias, c, threads, rows_done, gemm_builtin_isa());
    return;
  }
#ifdef OTLM_HAVE_CBLAS
  // Start from the bias (or zero), then C += A·B.
  parallel_for((m + 255) / 256, threads, [&](int64_t t) {
    int64_t i1 = std::min(m, (t + 1) * 256);
    for (int64_t i = t * 256; i < i1; ++i) {
      if (bias) std::memcpy(c + i * n, bias, sizeof(float) * size_t(n));
      else std::memset(c + i * n, 0, sizeof(float) * size_t(n));
    }
  });
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
#endif
}

void gemm_tn(int64_t m, int64_t p, int64_t q, const float* a, const float* b, float* c, int threads) {
  if (!use_blas()) {
    gemm_tn_builtin(m, p, q, a, b, c, threads, gemm_builtin_isa());
    return;
  }
#ifdef OTLM_HAVE_CBLAS
  // Fixed panels of C's rows (each a full reduction over m), so the result is thread-count independent.
  set_blas_threads(1);
  const int64_t panels = (p + kBlasTnPanel - 1) / kBlasTnPanel;
  parallel_for(panels, threads, [&](int64_t t) {
    const int64_t p0 = t * kBlasTnPanel, rows = std::min(p, p0 + kBlasTnPanel) - p0;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(rows), int(q), int(m), 1.0f, a + p0, int(p), b,
                int(q), 0.0f, c + p0 * q, int(q));
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
