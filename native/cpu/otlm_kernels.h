// Row kernels of the OTLM engine, one table per ISA, chosen once at run time.
#pragma once
#include <cstdint>

namespace otlm::cpu {

struct OtlmKernels {
  const char* isa;  // "avx512", "avx2" or "baseline"
  float (*sum)(const float* x, int64_t n);
  void (*exp_shift)(const float* L, const double* gs, double c, double invlam, int64_t n, float* out);
  void (*last_u)(const float* y, const double* gs, double fc, int64_t n, float* u, float* su, float* sy);
  void (*last_update)(const float* y, const float* u, float invB, float fbar, int64_t n, float* mbar,
                      double* acc);
  void (*mid_row)(const float* L, const double* gc, const double* gp, double fc, double invlam,
                  const float* pf_prev, float scale, const float* cs, const float* a, int64_t n, float* q,
                  float* pf, float* mbar, double* acc);
  void (*softmax_back)(const float* L, int64_t n, float* mbar);
  void (*log_softmax_row)(float* a, int64_t n);
  // Blocks of 16 rows for k <= 16, column j of the block at [16j, 16j + 16) (otlm_kernels_body.h).
  void (*blk_last)(const float* Lt, const double* gp, const double* fc, double invlam, float invB, int64_t k,
                   float* pf, float* mbar, double* acc);
  void (*blk_mid)(const float* Lt, const double* gc, const double* gp, const double* fc, double invlam,
                  const float* scale, uint32_t reuse, const float* cs, const float* a, int64_t k, float* pf,
                  float* mbar, double* acc);
  void (*blk_softmax_back)(const float* Lt, const float* mbar, int64_t k, int64_t rows, float* d);
};

// The best table this CPU supports; OTLM_ISA=baseline|avx2|avx512 in the environment caps it
// (used by the tests to check that every ISA gives the same bits).
const OtlmKernels& otlm_kernels();
const OtlmKernels& otlm_kernels_for(const char* isa);  // nullptr-safe: unknown -> baseline

}  // namespace otlm::cpu
