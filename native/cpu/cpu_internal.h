// Entry points of the CPU backend, wired into the otlm_backend table in backend.cpp.
#pragma once
#include "otlm/otlm.h"

namespace otlm::cpu {

otlm_status sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                     otlm_sinkhorn_report* rep, otlm_error* err);

otlm_status loss_grad(const otlm_train_params* p, const float* phi_b, int64_t b, const float* w,
                      const float* bias, const double* target_prior, double* loss, float* grad_w,
                      otlm_step_report* rep, otlm_error* err);

otlm_status trainer_create(const otlm_train_params* p, const float* phi, int64_t n, const float* bias,
                           const double* target_prior, otlm_trainer** out, otlm_error* err);
otlm_status trainer_step(otlm_trainer* t, const int32_t* rows, int64_t b, double lr,
                         otlm_step_report* rep, otlm_error* err);
otlm_status trainer_get_weights(otlm_trainer* t, float* w, otlm_error* err);
otlm_status trainer_set_weights(otlm_trainer* t, const float* w, otlm_error* err);
void trainer_destroy(otlm_trainer* t);

otlm_status gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                 float* c, int32_t threads, otlm_error* err);

// "openblas-static", "openblas" or "builtin-avx512" | "builtin-avx2" | "builtin-baseline"
const char* gemm_provider();
// "avx512", "avx2-fma" or "baseline": the exp/reduction kernels selected at run time.
const char* simd_level();

}  // namespace otlm::cpu
