// The CPU backend table and its self-description (otlm_backend_info) for info().
#include <cstdio>

#include "cpu_internal.h"
#include "otlm/validate.h"
#include "thread_pool.h"

#ifndef OTLM_GEMM_PROVIDER
#define OTLM_GEMM_PROVIDER "builtin"
#endif

#if defined(__clang__)
#define OTLM_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define OTLM_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define OTLM_COMPILER "msvc"
#else
#define OTLM_COMPILER "unknown"
#endif

namespace otlm::cpu {
namespace {

otlm_status info(otlm_backend_info* out, otlm_error* err) {
  if (!out) return fail(err, OTLM_EINVAL, "info: 'out' is required");
  *out = otlm_backend_info{};
  std::snprintf(out->simd, sizeof out->simd, "%s", simd_level());
  out->threads = default_threads();
  std::snprintf(out->gemm, sizeof out->gemm, "%s", gemm_provider());
  std::snprintf(out->compiler, sizeof out->compiler, "%s", OTLM_COMPILER);
  out->device = -1;
  return OTLM_OK;
}

const otlm_backend kBackend = {
    OTLM_ABI_VERSION,  "cpu",           info,                sinkhorn,
    loss_grad,         trainer_create,  trainer_step,        trainer_get_weights,
    trainer_set_weights, trainer_destroy, gemm,
};

}  // namespace
}  // namespace otlm::cpu

extern "C" const otlm_backend* otlm_cpu_backend(void) { return &otlm::cpu::kBackend; }
