// Instantiates the OTLM row kernels for AVX-512, AVX2 and the baseline ISA (see otlm_kernels_body.h).
#include "otlm_kernels.h"

// The 64-byte vector type of the kernels never crosses a non-inlined call boundary.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12 flags the "undefined" pass-through operand inside its own AVX-512 conversion intrinsics
// once they are inlined under #pragma GCC target (a false positive: those lanes are never read).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cmath>
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>  // masked loads and stores for a row's last block (AVX-512 table)
#endif

#define OTLM_KERNEL_TABLE(ISA_NAME)                                                                  \
  const OtlmKernels table = {ISA_NAME, sum_f,        exp_shift,       last_u,   last_update, mid_row, \
                             softmax_back, log_softmax_row, blk_last, blk_mid,     blk_softmax_back};

namespace otlm::cpu {

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma,bmi2,prefer-vector-width=512")
#define OTLM_KERNEL_MASKED 1  // AVX-512 masked loads and stores (GCC does not define __AVX512F__ here)
namespace k_avx512 {
#include "otlm_kernels_body.h"
OTLM_KERNEL_TABLE("avx512")
}  // namespace k_avx512
#undef OTLM_KERNEL_MASKED
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi2")
namespace k_avx2 {
#include "otlm_kernels_body.h"
OTLM_KERNEL_TABLE("avx2")
}  // namespace k_avx2
#pragma GCC pop_options
#define OTLM_HAVE_X86_KERNELS 1
#endif

namespace k_base {
#include "otlm_kernels_body.h"
OTLM_KERNEL_TABLE("baseline")
}  // namespace k_base

namespace {
int isa_rank(const char* isa) {
  if (!isa) return 0;
  if (std::strcmp(isa, "avx512") == 0) return 2;
  if (std::strcmp(isa, "avx2") == 0) return 1;
  return 0;
}
int cpu_rank() {
#ifdef OTLM_HAVE_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}
const OtlmKernels& by_rank(int r) {
#ifdef OTLM_HAVE_X86_KERNELS
  if (r >= 2) return k_avx512::table;
  if (r == 1) return k_avx2::table;
#else
  (void)r;
#endif
  return k_base::table;
}
}  // namespace

const OtlmKernels& otlm_kernels_for(const char* isa) {
  int want = isa_rank(isa), have = cpu_rank();
  return by_rank(want < have ? want : have);
}

const OtlmKernels& otlm_kernels() {
  static const OtlmKernels& chosen = [] () -> const OtlmKernels& {
    const char* env = std::getenv("OTLM_ISA");
    return env ? otlm_kernels_for(env) : by_rank(cpu_rank());
  }();
  return chosen;
}

}  // namespace otlm::cpu
