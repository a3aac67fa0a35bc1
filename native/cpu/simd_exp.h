// Vectorised exp and the row kernels of the CPU engine, with run-time dispatch.
//
// Header-only: every kernel is an inline function compiled for its ISA with
// __attribute__((target(...))), so no translation unit needs per-file -m flags
// (binding.gyp and CMake build everything with the same flags) and any .cpp of
// the engine can include this file.
//
// Stable interface (namespace otlm::cpu::simd):
//   Level active_level();                 // best level the CPU has, capped by OTLM_SIMD
//   (these and the kernels have internal linkage: one copy per translation unit)
//   const Kernels& kernels(Level);        // table of kernels for one level
//   const Kernels& kernels();             // == kernels(active_level())
//   Kernels::exp          dst[j] = exp(src[j])                       (float in/out)
//   Kernels::exp_affine_sum
//                         dst[j] = exp(alpha*x[j] + h[j] + c), returns Σ dst[j] (double)
//   Kernels::max_affine   max_j (alpha*x[j] + h[j])                  (double)
//   Kernels::axpy         acc[j] += s * e[j]    (acc double, e float)
//   Kernels::axpy2        acc1[j] += s1*e[j], acc2[j] += s2*e[j]
// h may be NULL (treated as zeros) in exp_affine_sum and max_affine.
//
// OTLM_SIMD=baseline|avx2|avx512 in the environment lowers the level (it never
// raises it above what the CPU supports); it is read at every active_level()
// call so tests can compare levels in one process.
//
// Accuracy: exp is within 2 ulp of the correctly rounded result on [-87, 88]
// (tested in test_sinkhorn_cpu), results below ~-103.97 are 0 (denormals in
// between are produced by a two-step scaling), above 88.7228 they are +inf;
// NaN propagates. In exp_affine_sum the argument alpha*x + h + c is formed in
// double, where the large terms of a small λ (|alpha*x| in the thousands) cancel
// without loss, and is rounded once to float before the float exp: relative error
// ≤ 2 ulp + 6e-8·|argument|, i.e. ~1e-7 for the entries near a row's maximum
// (the ones that matter; the row shift keeps them near 0). A double range
// reduction was 26% slower for no visible gain in the plans.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 reports the deliberately undefined upper halves of _mm512_cast*256*
// as uninitialised once inlined; the values are always overwritten.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define OTLM_SIMD_X86 1
#else
#define OTLM_SIMD_X86 0
#endif
#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#define OTLM_SIMD_WASM 1
#else
#define OTLM_SIMD_WASM 0
#endif

namespace otlm::cpu::simd {

// wasm128: WebAssembly SIMD (the wasm build, scripts/build-wasm.sh); never beside the x86 levels.
enum class Level : int { baseline = 0, avx2 = 1, avx512 = 2, wasm128 = 3 };

inline const char* level_name(Level l) {
  switch (l) {
    case Level::avx512: return "avx512";
    case Level::avx2: return "avx2-fma";
    case Level::wasm128: return "wasm-simd128";
    default: return "baseline";
  }
}

struct Kernels {
  Level level;
  void (*exp)(const float* src, float* dst, int64_t n);
  double (*exp_affine_sum)(const float* x, int64_t n, double alpha, const double* h, double c,
                           float* dst);
  double (*max_affine)(const float* x, int64_t n, double alpha, const double* h);
  void (*axpy)(double* acc, const float* e, double s, int64_t n);
  void (*axpy2)(double* acc1, double s1, double* acc2, double s2, const float* e, int64_t n);
};

// Everything below has internal linkage (unnamed namespace): each translation unit
// keeps its own copy, compiled with its own flags. Shared inline definitions would
// be an ODR hazard here, since GCC may fuse the vector mul+add of the intrinsics
// into FMAs under -ffp-contract=fast in one TU and not in another.
namespace {
namespace detail {

// Taylor coefficients 1/k! (degree 7: truncation error < 6e-9 relative on |r| <= ln2/2).
constexpr float kC2 = 0.5f, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720,
                kC7 = 1.0f / 5040;
constexpr double kLog2e = 1.4426950408889634;
// Float path: ln2 split so n*kLn2Hi is exact for |n| < 2^9.
constexpr float kLn2HiF = 0.693145751953125f, kLn2LoF = 1.428606765330187e-06f;
constexpr double kArgLo = -104.0, kArgHi = 89.0;  // exp(-104) rounds to 0, exp(89) to +inf

inline float bits_to_float(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
inline float pow2i(int n) { return bits_to_float(uint32_t(n + 127) << 23); }

// --------------------------------------------------------------- baseline --
// Same algorithm in scalar code (no FMA: -ffp-contract=off keeps a*b+c unfused).
inline float poly_scalar(float r) {
  float p = kC7;
  p = p * r + kC6; p = p * r + kC5; p = p * r + kC4; p = p * r + kC3; p = p * r + kC2;
  p = p * r + 1.0f; p = p * r + 1.0f;
  return p;
}
inline float finish_scalar(float r, int n) {
  int n1 = n >> 1, n2 = n - n1;  // two steps: 2^n alone would overflow/denormalise the scale
  return poly_scalar(r) * pow2i(n1) * pow2i(n2);
}
// Round to nearest by adding and subtracting 1.5·2^23 (2^52): no libm call.
// Branch-free so the compiler can vectorise the loops. A NaN x clamps to kArgLo (converting NaN
// to int is undefined behaviour) and comes out NaN.
inline float exp_f_scalar(float x) {
  float v = x > float(kArgLo) ? x : float(kArgLo);
  v = v < float(kArgHi) ? v : float(kArgHi);
  const float magic = 12582912.0f;  // valid for |x| < 2^22; not reassociated without -ffast-math
  float nf = (v * float(kLog2e) + magic) - magic;
  float r = (v - nf * kLn2HiF) - nf * kLn2LoF;
  const float y = finish_scalar(r, int(nf));
  return x == x ? y : x;
}
inline float exp_d_scalar(double v) { return exp_f_scalar(float(v)); }
inline void exp_baseline(const float* src, float* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = exp_f_scalar(src[j]);
}
// Elementwise loop first (vectorisable by the compiler at any ISA), then the sum.
inline double exp_affine_sum_baseline(const float* x, int64_t n, double alpha, const double* h,
                                      double c, float* dst) {
  if (h) {
    for (int64_t j = 0; j < n; ++j) dst[j] = exp_d_scalar(alpha * double(x[j]) + (h[j] + c));
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = exp_d_scalar(alpha * double(x[j]) + c);
  }
  double s0 = 0, s1 = 0;  // two accumulators: shorter dependency chain
  int64_t j = 0;
  for (; j + 1 < n; j += 2) { s0 += dst[j]; s1 += dst[j + 1]; }
  if (j < n) s0 += dst[j];
  return s0 + s1;
}
inline double max_affine_baseline(const float* x, int64_t n, double alpha, const double* h) {
  double m = -HUGE_VAL;
  for (int64_t j = 0; j < n; ++j) {
    double v = alpha * double(x[j]) + (h ? h[j] : 0.0);
    m = v > m ? v : m;
  }
  return m;
}
inline void axpy_baseline(double* acc, const float* e, double s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += s * double(e[j]);
}
inline void axpy2_baseline(double* a1, double s1, double* a2, double s2, const float* e, int64_t n) {
  for (int64_t j = 0; j < n; ++j) { double v = e[j]; a1[j] += s1 * v; a2[j] += s2 * v; }
}

#if OTLM_SIMD_WASM
// ------------------------------------------------------- WebAssembly SIMD --
// The baseline's algorithm, four lanes at a time, with the same operations in the same order (no
// FMA exists here), so every kernel returns the baseline's bits: exp, the affine argument formed in
// double, the two double accumulators of the sum (even and odd elements, as the scalar code).
// pmin/pmax (one x86 instruction each, where min/max need several to order NaN and ±0) with x as
// their first operand let a NaN through, which then survives the polynomial and the scaling. The
// rounding is the scalar code's magic-number one, whose float bits also give n as an integer
// (cheaper than nearest + trunc_sat in V8).
inline v128_t exp_ps_wasm(v128_t x) {
  v128_t v = wasm_f32x4_pmin(wasm_f32x4_pmax(x, wasm_f32x4_splat(float(kArgLo))), wasm_f32x4_splat(float(kArgHi)));
  const v128_t magic = wasm_f32x4_splat(12582912.0f);
  v128_t t = wasm_f32x4_add(wasm_f32x4_mul(v, wasm_f32x4_splat(float(kLog2e))), magic);
  v128_t nf = wasm_f32x4_sub(t, magic);
  v128_t r = wasm_f32x4_sub(v, wasm_f32x4_mul(nf, wasm_f32x4_splat(kLn2HiF)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(nf, wasm_f32x4_splat(kLn2LoF)));
  v128_t p = wasm_f32x4_splat(kC7);
  for (float c : {kC6, kC5, kC4, kC3, kC2, 1.0f, 1.0f}) p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(c));
  v128_t n = wasm_i32x4_sub(t, magic);  // the float bits of t − magic's: round(v·log2 e), exactly
  v128_t n1 = wasm_i32x4_shr(n, 1), n2 = wasm_i32x4_sub(n, n1);
  v128_t b = wasm_i32x4_splat(127);
  v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(n1, b), 23), s2 = wasm_i32x4_shl(wasm_i32x4_add(n2, b), 23);
  return wasm_f32x4_mul(wasm_f32x4_mul(p, s1), s2);
}
// Four floats per load, widened to two double pairs.
inline void widen4(const float* e, v128_t& lo, v128_t& hi) {
  v128_t ev = wasm_v128_load(e);
  lo = wasm_f64x2_promote_low_f32x4(ev);
  hi = wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(ev, ev, 1, 0));
}
inline void exp_wasm(const float* src, float* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) wasm_v128_store(dst + j, exp_ps_wasm(wasm_v128_load(src + j)));
  for (; j < n; ++j) dst[j] = exp_f_scalar(src[j]);
}
// exp(alpha*x + (h + c)) of four elements, the argument in double, rounded once to float.
inline v128_t affine_exp_wasm(const float* x, const double* h, v128_t va, v128_t vc) {
  v128_t xv = wasm_v128_load(x);
  v128_t xa = wasm_f64x2_promote_low_f32x4(xv);
  v128_t xb = wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(xv, xv, 1, 0));
  v128_t ta = h ? wasm_f64x2_add(wasm_v128_load(h), vc) : vc;
  v128_t tb = h ? wasm_f64x2_add(wasm_v128_load(h + 2), vc) : vc;
  v128_t fa = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_add(wasm_f64x2_mul(va, xa), ta));
  v128_t fb = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_add(wasm_f64x2_mul(va, xb), tb));
  return exp_ps_wasm(wasm_i64x2_shuffle(fa, fb, 0, 2));
}
inline double exp_affine_sum_wasm(const float* x, int64_t n, double alpha, const double* h, double c,
                                  float* dst) {
  const v128_t va = wasm_f64x2_splat(alpha), vc = wasm_f64x2_splat(c);
  v128_t acc = wasm_f64x2_splat(0.0);  // lane 0: even elements, lane 1: odd (the baseline's s0, s1)
  int64_t j = 0;
  // Eight elements a step (two independent exps; the sum still in element order), then four.
  for (; j + 8 <= n; j += 8) {
    v128_t e0 = affine_exp_wasm(x + j, h ? h + j : nullptr, va, vc);
    v128_t e1 = affine_exp_wasm(x + j + 4, h ? h + j + 4 : nullptr, va, vc);
    wasm_v128_store(dst + j, e0);
    wasm_v128_store(dst + j + 4, e1);
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(e0));
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(e0, e0, 1, 0)));
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(e1));
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(e1, e1, 1, 0)));
  }
  for (; j + 4 <= n; j += 4) {
    v128_t e = affine_exp_wasm(x + j, h ? h + j : nullptr, va, vc);
    wasm_v128_store(dst + j, e);
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(e));
    acc = wasm_f64x2_add(acc, wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(e, e, 1, 0)));
  }
  double s0 = wasm_f64x2_extract_lane(acc, 0), s1 = wasm_f64x2_extract_lane(acc, 1);
  for (; j < n; ++j) {
    dst[j] = exp_d_scalar(alpha * double(x[j]) + ((h ? h[j] : 0.0) + c));
    if ((j & 1) == 0) s0 += dst[j];
    else s1 += dst[j];
  }
  return s0 + s1;
}
inline double max_affine_wasm(const float* x, int64_t n, double alpha, const double* h) {
  const v128_t va = wasm_f64x2_splat(alpha);
  v128_t m = wasm_f64x2_splat(-HUGE_VAL);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {  // eight a step, merged in element order
    v128_t a0, a1, b0, b1;
    widen4(x + j, a0, a1);
    widen4(x + j + 4, b0, b1);
    a0 = wasm_f64x2_mul(va, a0);
    a1 = wasm_f64x2_mul(va, a1);
    b0 = wasm_f64x2_mul(va, b0);
    b1 = wasm_f64x2_mul(va, b1);
    if (h) {
      a0 = wasm_f64x2_add(a0, wasm_v128_load(h + j));
      a1 = wasm_f64x2_add(a1, wasm_v128_load(h + j + 2));
      b0 = wasm_f64x2_add(b0, wasm_v128_load(h + j + 4));
      b1 = wasm_f64x2_add(b1, wasm_v128_load(h + j + 6));
    }
    m = wasm_f64x2_pmax(wasm_f64x2_pmax(wasm_f64x2_pmax(wasm_f64x2_pmax(m, a0), a1), b0), b1);
  }
  for (; j + 4 <= n; j += 4) {
    v128_t lo, hi;
    widen4(x + j, lo, hi);
    lo = wasm_f64x2_mul(va, lo);
    hi = wasm_f64x2_mul(va, hi);
    if (h) {
      lo = wasm_f64x2_add(lo, wasm_v128_load(h + j));
      hi = wasm_f64x2_add(hi, wasm_v128_load(h + j + 2));
    }
    // pmax: m kept when v is not greater (as the scalar v > m ? v : m)
    m = wasm_f64x2_pmax(wasm_f64x2_pmax(m, lo), hi);
  }
  double r = std::fmax(wasm_f64x2_extract_lane(m, 0), wasm_f64x2_extract_lane(m, 1));
  for (; j < n; ++j) {
    double v = alpha * double(x[j]) + (h ? h[j] : 0.0);
    r = v > r ? v : r;
  }
  return r;
}
inline void axpy_wasm(double* acc, const float* e, double s, int64_t n) {
  const v128_t vs = wasm_f64x2_splat(s);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    v128_t a0, a1, b0, b1;
    widen4(e + j, a0, a1);
    widen4(e + j + 4, b0, b1);
    wasm_v128_store(acc + j, wasm_f64x2_add(wasm_v128_load(acc + j), wasm_f64x2_mul(vs, a0)));
    wasm_v128_store(acc + j + 2, wasm_f64x2_add(wasm_v128_load(acc + j + 2), wasm_f64x2_mul(vs, a1)));
    wasm_v128_store(acc + j + 4, wasm_f64x2_add(wasm_v128_load(acc + j + 4), wasm_f64x2_mul(vs, b0)));
    wasm_v128_store(acc + j + 6, wasm_f64x2_add(wasm_v128_load(acc + j + 6), wasm_f64x2_mul(vs, b1)));
  }
  for (; j + 4 <= n; j += 4) {
    v128_t lo, hi;
    widen4(e + j, lo, hi);
    wasm_v128_store(acc + j, wasm_f64x2_add(wasm_v128_load(acc + j), wasm_f64x2_mul(vs, lo)));
    wasm_v128_store(acc + j + 2, wasm_f64x2_add(wasm_v128_load(acc + j + 2), wasm_f64x2_mul(vs, hi)));
  }
  for (; j < n; ++j) acc[j] += s * double(e[j]);
}
inline void axpy2_wasm(double* a1, double s1, double* a2, double s2, const float* e, int64_t n) {
  const v128_t v1 = wasm_f64x2_splat(s1), v2 = wasm_f64x2_splat(s2);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    v128_t lo, hi;
    widen4(e + j, lo, hi);
    wasm_v128_store(a1 + j, wasm_f64x2_add(wasm_v128_load(a1 + j), wasm_f64x2_mul(v1, lo)));
    wasm_v128_store(a1 + j + 2, wasm_f64x2_add(wasm_v128_load(a1 + j + 2), wasm_f64x2_mul(v1, hi)));
    wasm_v128_store(a2 + j, wasm_f64x2_add(wasm_v128_load(a2 + j), wasm_f64x2_mul(v2, lo)));
    wasm_v128_store(a2 + j + 2, wasm_f64x2_add(wasm_v128_load(a2 + j + 2), wasm_f64x2_mul(v2, hi)));
  }
  for (; j < n; ++j) { double v = e[j]; a1[j] += s1 * v; a2[j] += s2 * v; }
}
#endif  // OTLM_SIMD_WASM

#if OTLM_SIMD_X86
// ------------------------------------------------------------------- AVX2 --
#define OTLM_T2 __attribute__((target("avx2,fma")))
OTLM_T2 inline __m256 poly_avx2(__m256 r) {
  __m256 p = _mm256_set1_ps(kC7);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}
OTLM_T2 inline __m256 scale_avx2(__m256 p, __m256i n) {
  __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1);
  __m256i b = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, b), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, b), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
// Bound as the first operand of max/min: NaN (second operand) flows through, and
// the NaN then survives the polynomial and the scaling.
OTLM_T2 inline __m256 exp_ps_avx2(__m256 x) {
  __m256 v = _mm256_min_ps(_mm256_set1_ps(float(kArgHi)), _mm256_max_ps(_mm256_set1_ps(float(kArgLo)), x));
  __m256 nf = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(float(kLog2e))),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(kLn2HiF), v);
  r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(kLn2LoF), r);
  return scale_avx2(poly_avx2(r), _mm256_cvtps_epi32(nf));
}
OTLM_T2 inline void exp_avx2(const float* src, float* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, exp_ps_avx2(_mm256_loadu_ps(src + j)));
  if (j < n) {
    alignas(32) float t[8] = {0};
    std::memcpy(t, src + j, size_t(n - j) * 4);
    _mm256_store_ps(t, exp_ps_avx2(_mm256_load_ps(t)));
    std::memcpy(dst + j, t, size_t(n - j) * 4);
  }
}
OTLM_T2 inline __m256 affine_exp_avx2(const float* x, const double* h, __m256d va, __m256d vc,
                                      bool hasH) {
  __m256 xv = _mm256_loadu_ps(x);
  __m256d xa = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
  __m256d xb = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
  __m256d ta = hasH ? _mm256_add_pd(_mm256_loadu_pd(h), vc) : vc;
  __m256d tb = hasH ? _mm256_add_pd(_mm256_loadu_pd(h + 4), vc) : vc;
  return exp_ps_avx2(_mm256_set_m128(_mm256_cvtpd_ps(_mm256_fmadd_pd(va, xb, tb)),
                                     _mm256_cvtpd_ps(_mm256_fmadd_pd(va, xa, ta))));
}
OTLM_T2 inline double exp_affine_sum_avx2(const float* x, int64_t n, double alpha, const double* h,
                                          double c, float* dst) {
  const __m256d va = _mm256_set1_pd(alpha), vc = _mm256_set1_pd(c);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = affine_exp_avx2(x + j, h ? h + j : nullptr, va, vc, h != nullptr);
    _mm256_storeu_ps(dst + j, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  if (j < n) {  // tail through zero-padded copies; padded lanes are masked out of the sum
    int64_t m = n - j;
    alignas(32) float tx[8] = {0};
    alignas(32) double th[8] = {0};
    std::memcpy(tx, x + j, size_t(m) * 4);
    if (h) std::memcpy(th, h + j, size_t(m) * 8);
    __m256 e = affine_exp_avx2(tx, th, va, vc, h != nullptr);
    alignas(32) int32_t lane[8];
    for (int q = 0; q < 8; ++q) lane[q] = q < m ? -1 : 0;
    e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_load_si256((const __m256i*)lane)));
    alignas(32) float te[8];
    _mm256_store_ps(te, e);
    std::memcpy(dst + j, te, size_t(m) * 4);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(s0, s1));
  return (t[0] + t[1]) + (t[2] + t[3]);
}
OTLM_T2 inline double max_affine_avx2(const float* x, int64_t n, double alpha, const double* h) {
  const __m256d va = _mm256_set1_pd(alpha);
  __m256d m0 = _mm256_set1_pd(-HUGE_VAL), m1 = m0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 xv = _mm256_loadu_ps(x + j);
    __m256d a = _mm256_mul_pd(va, _mm256_cvtps_pd(_mm256_castps256_ps128(xv)));
    __m256d b = _mm256_mul_pd(va, _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)));
    if (h) { a = _mm256_add_pd(a, _mm256_loadu_pd(h + j)); b = _mm256_add_pd(b, _mm256_loadu_pd(h + j + 4)); }
    m0 = _mm256_max_pd(m0, a); m1 = _mm256_max_pd(m1, b);
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_max_pd(m0, m1));
  double m = std::fmax(std::fmax(t[0], t[1]), std::fmax(t[2], t[3]));
  for (; j < n; ++j) m = std::fmax(m, alpha * double(x[j]) + (h ? h[j] : 0.0));
  return m;
}
OTLM_T2 inline void axpy_avx2(double* acc, const float* e, double s, int64_t n) {
  const __m256d vs = _mm256_set1_pd(s);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 ev = _mm256_loadu_ps(e + j);
    _mm256_storeu_pd(acc + j, _mm256_fmadd_pd(vs, _mm256_cvtps_pd(_mm256_castps256_ps128(ev)), _mm256_loadu_pd(acc + j)));
    _mm256_storeu_pd(acc + j + 4, _mm256_fmadd_pd(vs, _mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)), _mm256_loadu_pd(acc + j + 4)));
  }
  for (; j < n; ++j) acc[j] = std::fma(s, double(e[j]), acc[j]);
}
OTLM_T2 inline void axpy2_avx2(double* a1, double s1, double* a2, double s2, const float* e, int64_t n) {
  const __m256d v1 = _mm256_set1_pd(s1), v2 = _mm256_set1_pd(s2);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    __m256d ev = _mm256_cvtps_pd(_mm_loadu_ps(e + j));
    _mm256_storeu_pd(a1 + j, _mm256_fmadd_pd(v1, ev, _mm256_loadu_pd(a1 + j)));
    _mm256_storeu_pd(a2 + j, _mm256_fmadd_pd(v2, ev, _mm256_loadu_pd(a2 + j)));
  }
  for (; j < n; ++j) { a1[j] = std::fma(s1, double(e[j]), a1[j]); a2[j] = std::fma(s2, double(e[j]), a2[j]); }
}
#undef OTLM_T2

// ---------------------------------------------------------------- AVX-512 --
#define OTLM_T5 __attribute__((target("avx512f")))
OTLM_T5 inline __m512 poly_avx512(__m512 r) {
  __m512 p = _mm512_set1_ps(kC7);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
}
// Clamping with the bound as the FIRST operand: max/min return the second operand
// when either is NaN, so NaN flows through (no compare + blend needed).
// vscalefps computes p·2^n with correct overflow, denormals and underflow.
OTLM_T5 inline __m512 exp_ps_avx512(__m512 x) {
  __m512 v = _mm512_min_ps(_mm512_set1_ps(float(kArgHi)), _mm512_max_ps(_mm512_set1_ps(float(kArgLo)), x));
  __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(float(kLog2e))),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(kLn2HiF), v);
  r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(kLn2LoF), r);
  return _mm512_scalef_ps(poly_avx512(r), nf);
}
OTLM_T5 inline __m512 cat_pd_to_ps(__m512d a, __m512d b) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(a))),
                                             _mm256_castps_pd(_mm512_cvtpd_ps(b)), 1));
}
OTLM_T5 inline __mmask16 tail_mask16(int64_t m) { return __mmask16((1u << m) - 1u); }
OTLM_T5 inline void exp_avx512(const float* src, float* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, exp_ps_avx512(_mm512_loadu_ps(src + j)));
  if (j < n) {
    __mmask16 k = tail_mask16(n - j);
    _mm512_mask_storeu_ps(dst + j, k, exp_ps_avx512(_mm512_maskz_loadu_ps(k, src + j)));
  }
}
OTLM_T5 inline __m512 affine_exp_avx512(__m512 xv, __m512d ta, __m512d tb, __m512d va) {
  __m512d xa = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
  __m512d xb = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1)));
  return exp_ps_avx512(cat_pd_to_ps(_mm512_fmadd_pd(va, xa, ta), _mm512_fmadd_pd(va, xb, tb)));
}
OTLM_T5 inline void add_ps_to_pd(__m512 e, __m512d& s0, __m512d& s1) {
  s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
  s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}
// Sums: 4 vectors are added in float (error ~4 ulp of the partial), then in double.
OTLM_T5 inline double exp_affine_sum_avx512(const float* x, int64_t n, double alpha, const double* h,
                                            double c, float* dst) {
  const __m512d va = _mm512_set1_pd(alpha), vc = _mm512_set1_pd(c);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0, q = 0;
  for (; j + 16 <= n; j += 16, ++q) {
    __m512d ta = h ? _mm512_add_pd(_mm512_loadu_pd(h + j), vc) : vc;
    __m512d tb = h ? _mm512_add_pd(_mm512_loadu_pd(h + j + 8), vc) : vc;
    __m512 e = affine_exp_avx512(_mm512_loadu_ps(x + j), ta, tb, va);
    _mm512_storeu_ps(dst + j, e);
    acc = _mm512_add_ps(acc, e);
    if ((q & 3) == 3) { add_ps_to_pd(acc, s0, s1); acc = _mm512_setzero_ps(); }
  }
  if (j < n) {
    __mmask16 k = tail_mask16(n - j);
    __mmask8 ka = __mmask8(k & 0xff), kb = __mmask8(k >> 8);
    __m512d ta = h ? _mm512_add_pd(_mm512_maskz_loadu_pd(ka, h + j), vc) : vc;
    __m512d tb = h ? _mm512_add_pd(_mm512_maskz_loadu_pd(kb, h + j + 8), vc) : vc;
    __m512 e = _mm512_maskz_mov_ps(k, affine_exp_avx512(_mm512_maskz_loadu_ps(k, x + j), ta, tb, va));
    _mm512_mask_storeu_ps(dst + j, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  add_ps_to_pd(acc, s0, s1);
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
OTLM_T5 inline double max_affine_avx512(const float* x, int64_t n, double alpha, const double* h) {
  const __m512d va = _mm512_set1_pd(alpha), ninf = _mm512_set1_pd(-HUGE_VAL);
  __m512d m0 = ninf, m1 = ninf;
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = n - j >= 16 ? __mmask16(0xffff) : tail_mask16(n - j);
    __mmask8 ka = __mmask8(k & 0xff), kb = __mmask8(k >> 8);
    __m512 xv = _mm512_maskz_loadu_ps(k, x + j);
    __m512d a = _mm512_mul_pd(va, _mm512_cvtps_pd(_mm512_castps512_ps256(xv)));
    __m512d b = _mm512_mul_pd(va, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1))));
    if (h) { a = _mm512_add_pd(a, _mm512_maskz_loadu_pd(ka, h + j)); b = _mm512_add_pd(b, _mm512_maskz_loadu_pd(kb, h + j + 8)); }
    m0 = _mm512_mask_max_pd(m0, ka, m0, a);
    m1 = _mm512_mask_max_pd(m1, kb, m1, b);
  }
  return _mm512_reduce_max_pd(_mm512_max_pd(m0, m1));
}
OTLM_T5 inline void axpy_avx512(double* acc, const float* e, double s, int64_t n) {
  const __m512d vs = _mm512_set1_pd(s);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 ev = _mm512_loadu_ps(e + j);
    _mm512_storeu_pd(acc + j, _mm512_fmadd_pd(vs, _mm512_cvtps_pd(_mm512_castps512_ps256(ev)), _mm512_loadu_pd(acc + j)));
    _mm512_storeu_pd(acc + j + 8, _mm512_fmadd_pd(vs, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ev), 1))), _mm512_loadu_pd(acc + j + 8)));
  }
  for (; j < n; j += 8) {
    __mmask8 k = n - j >= 8 ? __mmask8(0xff) : __mmask8((1u << (n - j)) - 1u);
    __m512d ev = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(__mmask16(k), e + j)));
    _mm512_mask_storeu_pd(acc + j, k, _mm512_fmadd_pd(vs, ev, _mm512_maskz_loadu_pd(k, acc + j)));
  }
}
OTLM_T5 inline void axpy2_avx512(double* a1, double s1, double* a2, double s2, const float* e, int64_t n) {
  const __m512d v1 = _mm512_set1_pd(s1), v2 = _mm512_set1_pd(s2);
  for (int64_t j = 0; j < n; j += 8) {
    __mmask8 k = n - j >= 8 ? __mmask8(0xff) : __mmask8((1u << (n - j)) - 1u);
    __m512d ev = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(__mmask16(k), e + j)));
    _mm512_mask_storeu_pd(a1 + j, k, _mm512_fmadd_pd(v1, ev, _mm512_maskz_loadu_pd(k, a1 + j)));
    _mm512_mask_storeu_pd(a2 + j, k, _mm512_fmadd_pd(v2, ev, _mm512_maskz_loadu_pd(k, a2 + j)));
  }
}
#undef OTLM_T5
#endif  // OTLM_SIMD_X86

inline Level cpu_level() {
#if OTLM_SIMD_X86
  static const Level l = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Level::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Level::avx2;
    return Level::baseline;
  }();
  return l;
#elif OTLM_SIMD_WASM
  return Level::wasm128;
#else
  return Level::baseline;
#endif
}

}  // namespace detail

inline const Kernels& kernels(Level l) {
  static const Kernels base = {Level::baseline, detail::exp_baseline, detail::exp_affine_sum_baseline,
                               detail::max_affine_baseline, detail::axpy_baseline, detail::axpy2_baseline};
#if OTLM_SIMD_X86
  static const Kernels k2 = {Level::avx2, detail::exp_avx2, detail::exp_affine_sum_avx2,
                             detail::max_affine_avx2, detail::axpy_avx2, detail::axpy2_avx2};
  static const Kernels k5 = {Level::avx512, detail::exp_avx512, detail::exp_affine_sum_avx512,
                             detail::max_affine_avx512, detail::axpy_avx512, detail::axpy2_avx512};
  Level cap = detail::cpu_level();
  if (int(l) > int(cap)) l = cap;
  if (l == Level::avx512) return k5;
  if (l == Level::avx2) return k2;
#endif
#if OTLM_SIMD_WASM
  static const Kernels kw = {Level::wasm128, detail::exp_wasm, detail::exp_affine_sum_wasm,
                             detail::max_affine_wasm, detail::axpy_wasm, detail::axpy2_wasm};
  if (l == Level::wasm128) return kw;
#endif
  (void)l;
  return base;
}

// The level in use: the CPU's best, lowered by OTLM_SIMD=baseline|avx2|avx512.
inline Level active_level() {
  Level l = detail::cpu_level();
  if (const char* env = std::getenv("OTLM_SIMD")) {
    Level want = l;
    if (!std::strcmp(env, "baseline")) want = Level::baseline;
    else if (!std::strcmp(env, "avx2")) want = Level::avx2;
    else if (!std::strcmp(env, "avx512")) want = Level::avx512;
    if (int(want) < int(l)) l = want;
  }
  return l;
}

inline const Kernels& kernels() { return kernels(active_level()); }

}  // namespace
}  // namespace otlm::cpu::simd

#if OTLM_SIMD_X86
#pragma GCC diagnostic pop
#endif
