// The plain Sinkhorn row pass for small k (k <= kSmallKMax), AVX-512 (docs/architecture.md, "Small k").
// At k = 10 the general pass spends its time per row, not per element: three indirect kernel calls,
// a 16-lane reduction for 10 values, a scalar log and a column update through memory. Here a row is
// at most 8 vectors held in registers, the kernels are inlined, the column partials stay in
// registers for the whole chunk, and the row logs are taken 8 rows at a time by a vector log.
// Same math as the general pass (e_ij = exp(a_old + α x_ij + h_j) with the affine term in double,
// Y_ij = e_ij·r_i/s_i, a_new = a_old + log(r_i/s_i)); rows whose shifted sum leaves the safe range
// are reported back for the exact path. Rows are taken in order within a chunk, so a chunk's
// partials, and the solve, do not depend on the thread count.
#pragma once
#include <cmath>
#include <cstdint>

#include "simd_exp.h"

namespace otlm::cpu::small_k {

// One vector per row. Rows of 2-8 vectors (k <= 128) work too (rows<NV>), but per thread they ran
// slower than the general pass here (k = 32: 28.9 vs 22.6 ms per 600000-row iteration), so they are
// not used (docs/architecture.md, "Small k").
constexpr int64_t kSmallKMax = 16;

#if OTLM_SIMD_X86
#define OTLM_T5 __attribute__((target("avx512f")))

// log(w) for 8 positive normal doubles, within ~1 ulp: w = m·2^e with m in [0.75, 1.5), then
// log m = 2 atanh(z), z = (m − 1)/(m + 1), |z| <= 0.2, by its series to z^23 (truncation < 1e-18).
OTLM_T5 inline __m512d log_pd(__m512d w) {
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d m = _mm512_getmant_pd(w, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_zero);
  __m512d e = _mm512_getexp_pd(w);
  e = _mm512_mask_add_pd(e, _mm512_cmp_pd_mask(m, one, _CMP_LT_OQ), e, one);  // m was halved
  __m512d z = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
  __m512d z2 = _mm512_mul_pd(z, z);
  __m512d p = _mm512_set1_pd(1.0 / 23);
  for (int d = 21; d >= 3; d -= 2) p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(1.0 / d));
  p = _mm512_fmadd_pd(p, z2, one);
  __m512d lm = _mm512_mul_pd(_mm512_add_pd(z, z), p);
  return _mm512_fmadd_pd(e, _mm512_set1_pd(0.6931471805599453094), lm);
}

// What one chunk reports back to the pass.
struct ChunkOut {
  double dlse = 0;          // Σ r_i (a_old − a_new)
  bool nonfinite = false;   // a row potential became non-finite
};

// Rows waiting for their log: a_new = a_old + log(r/s), 8 rows per vector log.
struct LogQueue {
  alignas(64) double w[8], a[8], r[8];
  int64_t row[8];
  int n = 0;
  OTLM_T5 void flush(double lambda, double* f, ChunkOut& out) {
    if (!n) return;
    alignas(64) double lw[8];
    _mm512_store_pd(lw, log_pd(_mm512_mask_loadu_pd(_mm512_set1_pd(1.0), __mmask8((1u << n) - 1u), w)));
    for (int q = 0; q < n; ++q) {
      const double a_new = a[q] + lw[q];
      if (!std::isfinite(a_new)) out.nonfinite = true;
      f[row[q]] = a_new * lambda;
      out.dlse += r[q] * (a[q] - a_new);  // as the general pass forms it
    }
    n = 0;
  }
  OTLM_T5 void push(int64_t i, double wi, double a_old, double ri, double lambda, double* f, ChunkOut& out) {
    w[n] = wi;
    a[n] = a_old;
    r[n] = ri;
    row[n] = i;
    if (++n == 8) flush(lambda, f, out);
  }
};

// Rows [i0, i1) of x (n×k, k <= 16·NV): updates f (f = a·λ), adds the column sums of the exact-row
// plan to pc (k doubles), and calls exact(i) for each row whose shifted sum is out of [lo, hi]
// (that row then updates f, pc and the fallback count itself, in the general pass's way).
template <int NV, typename Exact>
OTLM_T5 inline ChunkOut rows(const float* x, int64_t k, int64_t i0, int64_t i1, double lambda, double alpha,
                             const double* h, const double* r, double* f, double* pc, double lo, double hi,
                             Exact&& exact) {
  const double inv = 1.0 / lambda;
  const __m512d va = _mm512_set1_pd(alpha);
  __mmask16 mk[NV];
  __m512d hv[2 * NV], acc[2 * NV];
  for (int v = 0; v < NV; ++v) {
    const int64_t left = k - 16 * v;
    mk[v] = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
    const __mmask8 ka = __mmask8(mk[v] & 0xff), kb = __mmask8(mk[v] >> 8);
    hv[2 * v] = _mm512_maskz_loadu_pd(ka, h + 16 * v);
    hv[2 * v + 1] = _mm512_maskz_loadu_pd(kb, h + 16 * v + 8);
    acc[2 * v] = acc[2 * v + 1] = _mm512_setzero_pd();
  }
  ChunkOut out;
  LogQueue q;
  for (int64_t i = i0; i < i1; ++i) {
    const float* row = x + i * k;
    const double a_old = f[i] * inv;
    const __m512d vc = _mm512_set1_pd(a_old);
    __m512 e[NV];
    __m512 fs = _mm512_setzero_ps();
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int v = 0; v < NV; ++v) {  // summed as exp_affine_sum_avx512 does: 4 vectors in float, then double
      const __m512 xv = _mm512_maskz_loadu_ps(mk[v], row + 16 * v);
      e[v] = _mm512_maskz_mov_ps(mk[v], simd::detail::affine_exp_avx512(
                                            xv, _mm512_add_pd(hv[2 * v], vc), _mm512_add_pd(hv[2 * v + 1], vc), va));
      fs = _mm512_add_ps(fs, e[v]);
      if ((v & 3) == 3 && v + 1 < NV) {
        simd::detail::add_ps_to_pd(fs, s0, s1);
        fs = _mm512_setzero_ps();
      }
    }
    simd::detail::add_ps_to_pd(fs, s0, s1);
    const double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    if (!(s >= lo && s <= hi)) {
      exact(i);
      continue;
    }
    const double ri = r ? r[i] : 1.0;
    const double w = ri / s;
    const __m512d vw = _mm512_set1_pd(w);
    for (int v = 0; v < NV; ++v) {
      const __m512 ev = e[v];
      acc[2 * v] = _mm512_fmadd_pd(vw, _mm512_cvtps_pd(_mm512_castps512_ps256(ev)), acc[2 * v]);
      acc[2 * v + 1] = _mm512_fmadd_pd(
          vw, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ev), 1))), acc[2 * v + 1]);
    }
    q.push(i, w, a_old, ri, lambda, f, out);
  }
  q.flush(lambda, f, out);
  for (int v = 0; v < NV; ++v) {
    const __mmask8 ka = __mmask8(mk[v] & 0xff), kb = __mmask8(mk[v] >> 8);
    _mm512_mask_storeu_pd(pc + 16 * v, ka, _mm512_add_pd(_mm512_maskz_loadu_pd(ka, pc + 16 * v), acc[2 * v]));
    _mm512_mask_storeu_pd(pc + 16 * v + 8, kb,
                          _mm512_add_pd(_mm512_maskz_loadu_pd(kb, pc + 16 * v + 8), acc[2 * v + 1]));
  }
  return out;
}
#undef OTLM_T5
#endif  // OTLM_SIMD_X86

}  // namespace otlm::cpu::small_k
