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

// Largest index any backend addresses with 64-bit arithmetic; 32-bit paths must check this.
constexpr int64_t kMaxElements32 = (int64_t(1) << 31) - 1;

}  // namespace otlm
#endif
