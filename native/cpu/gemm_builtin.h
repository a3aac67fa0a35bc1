// The builtin GEMM of the CPU engine (gemm_builtin.cpp): packed, cache-blocked, with AVX-512 (14×32),
// AVX2 (6×16) and portable (4×8) register-blocked micro-kernels chosen at run time. gemm.cpp runs it when
// OpenBLAS is not linked; it is always compiled, so the tests and benchmarks can run it next to OpenBLAS.
//
// Determinism: every C element is reduced over k by one thread, in k-blocks whose size depends on the
// depth (and the ISA) only, so a result is bit-identical for any thread count. Different ISAs round
// differently (FMA or not, block sizes): compare them with a tolerance.
#pragma once
#include <cstdint>
#include <functional>

namespace otlm::cpu {

enum class GemmIsa : int { baseline = 0, avx2 = 1, avx512 = 2 };

// The best level this CPU runs (avx512 needs AVX-512F; avx2 needs AVX2 and FMA), lowered by
// OTLM_SIMD=baseline|avx2|avx512 (the variable the Sinkhorn kernels read), read at every call.
GemmIsa gemm_builtin_isa();
// `want` lowered to what the CPU supports.
GemmIsa gemm_isa_cap(GemmIsa want);
const char* gemm_isa_name(GemmIsa isa);  // "avx512", "avx2" or "baseline"

// C (m×n) = bias + A (m×kk) · B (kk×n), row-major; bias (n) may be NULL (zero). rows_done as in
// gemm_nn (otlm_engine.h): called once per fixed panel of C's rows, after the panel is final.
void gemm_nn_builtin(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                     float* c, int threads, const std::function<void(int64_t, int64_t)>* rows_done,
                     GemmIsa isa);
// C (p×q) = Aᵀ · B with A (m×p), B (m×q), row-major.
void gemm_tn_builtin(int64_t m, int64_t p, int64_t q, const float* a, const float* b, float* c, int threads,
                     GemmIsa isa);

// Benchmark switch (bench_gemm_cpu, bench_otlm_cpu --gemm builtin): when on, gemm_nn, gemm_tn and the
// backend's gemm entry run the builtin even where OpenBLAS is linked, and gemm_provider() says so.
// Process-wide; not exposed to JavaScript.
void gemm_set_prefer_builtin(bool on);
bool gemm_openblas_linked();

}  // namespace otlm::cpu
