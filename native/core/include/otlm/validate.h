// Argument checks shared by every backend, so the CPU and CUDA engines reject
// exactly the same inputs with the same messages.
#pragma once
#include "otlm/otlm.h"

#ifdef __cplusplus
#include <cstdarg>
namespace otlm {

// printf into err->message; returns `code` so callers can `return fail(...)`.
otlm_status fail(otlm_error* err, otlm_status code, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

otlm_status validate_sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                              otlm_error* err);
otlm_status validate_train(const otlm_train_params* p, otlm_error* err);

// OTLM inputs; `who` prefixes messages ("lossGrad", "trainer").
otlm_status check_prior(const char* who, const double* mu, int64_t k, otlm_error* err);
// Every x[i] finite; names the first bad element as [row, col] when cols > 1.
otlm_status check_finite(const char* who, const char* name, const float* x, int64_t count, int64_t cols,
                         otlm_error* err);
// The gemm entry's arguments (C = A·B + bias; m×kk times kk×n).
otlm_status validate_gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* c,
                          int32_t threads, otlm_error* err);

// Largest index any backend addresses with 64-bit arithmetic; 32-bit paths must check this.
constexpr int64_t kMaxElements32 = (int64_t(1) << 31) - 1;

}  // namespace otlm
#endif
