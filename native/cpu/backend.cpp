// The CPU backend table and its self-description for info().
#include <cstdio>

#include "cpu_internal.h"
#include "otlm/validate.h"
#include "thread_pool.h"

#ifndef OTLM_GEMM_PROVIDER
#define OTLM_GEMM_PROVIDER "builtin"
#endif

namespace otlm::cpu {
namespace {

otlm_status info_json(char* out, size_t cap, otlm_error* err) {
  int n = std::snprintf(out, cap,
                        "{\"simd\":\"%s\",\"threads\":%d,\"gemm\":\"%s\",\"compiler\":\"%s\"}",
                        simd_level(), default_threads(), gemm_provider(), __VERSION__);
  if (n < 0 || size_t(n) >= cap) return fail(err, OTLM_EINTERNAL, "info: buffer too small");
  return OTLM_OK;
}

const otlm_backend kBackend = {
    OTLM_ABI_VERSION,  "cpu",           info_json,           sinkhorn,
    loss_grad,         trainer_create,  trainer_step,        trainer_get_weights,
    trainer_set_weights, trainer_destroy, gemm,
};

}  // namespace
}  // namespace otlm::cpu

extern "C" const otlm_backend* otlm_cpu_backend(void) { return &otlm::cpu::kBackend; }
