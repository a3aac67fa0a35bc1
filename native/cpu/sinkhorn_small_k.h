// The plain Sinkhorn row pass for small k (k <= kSmallKMax), AVX-512 (docs/architecture.md, "Small k").
// At k = 10 the general pass spends its time per row, not per element: three indirect kernel calls,
// a 16-lane reduction for 10 values, a scalar log and a column update through memory. Here sixteen
// rows are one block with a row per lane: the block is loaded as it lies in memory and transposed
// in registers (column j of the block becomes one vector), so every lane works at any k, and a row's
// sum, division, log and update are vertical operations on sixteen rows at once. Same math as the
// general pass (e_ij = exp(a_old + α x_ij + h_j) with the affine term in double, Y_ij = e_ij·r_i/s_i,
// a_new = a_old + log(r_i/s_i)); rows whose shifted sum leaves the safe range are reported back for
// the exact path. A chunk's blocks are taken in order, so its partials, and the solve, do not depend
// on the thread count.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "simd_exp.h"

namespace otlm::cpu::small_k {

// A block of 16 rows is k vectors; the transpose costs about k/2 permutes per column, so it pays
// only while a row is at most one vector.
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

// out[q] = log(w[q]) for q < n <= 8 (positive normal w).
OTLM_T5 inline void log_n(const double* w, double* out, int n) {
  const __mmask8 m = __mmask8((1u << n) - 1u);
  _mm512_mask_storeu_pd(out, m, log_pd(_mm512_mask_loadu_pd(_mm512_set1_pd(1.0), m, w)));
}

// What one chunk reports back to the pass.
struct ChunkOut {
  double dlse = 0;          // Σ r_i (a_old − a_new)
  bool nonfinite = false;   // a row potential became non-finite
};

// Where column j of a block of 16 rows of K floats (K vectors as they lie in memory) comes from:
// lane l is element l·K + j, in vector v = (l·K + j) / 16; vectors are taken in pairs (2p, 2p+1)
// by one two-source permute each, and mask[j][p] marks the lanes pair p supplies.
template <int K>
struct Transpose {
  __m512i idx[K][(K + 1) / 2];
  __mmask16 mask[K][(K + 1) / 2];
};
template <int K>
OTLM_T5 const Transpose<K>& transpose_table() {
  static const Transpose<K> t = [] {
    Transpose<K> r{};
    for (int j = 0; j < K; ++j)
      for (int p = 0; p < (K + 1) / 2; ++p) {
        alignas(64) int32_t lane[16] = {};
        unsigned m = 0;
        for (int l = 0; l < 16; ++l) {
          const int pos = l * K + j, v = pos / 16;
          if (v == 2 * p || v == 2 * p + 1) {
            lane[l] = (v - 2 * p) * 16 + pos % 16;
            m |= 1u << l;
          }
        }
        std::memcpy(&r.idx[j][p], lane, sizeof lane);
        r.mask[j][p] = __mmask16(m);
      }
    return r;
  }();
  return t;
}

// Rows [i0, i1) of x for k = K <= 16, sixteen rows at a time with one row per lane. Each e_ij is
// formed exactly as the general pass forms it, and a row's sum is taken in the same tree order as
// its 16-lane reduction, so s_i and r_i/s_i are bit-identical to the general pass's; the log is
// log_pd (within 4e-16 of std::log), and the column partials and Σ r (a_old − a_new) are summed
// per lane, then across lanes at the end of the chunk.
//
// xt, when not null, is the chunk's transposed copy (block b, column j: 16 floats at xt + (b·K + j)·16):
// with `fill` the blocks are transposed from x and stored there, else they are read from it.
template <int K, typename Exact>
OTLM_T5 inline ChunkOut rows_by_lane(const float* x, float* xt, bool fill, int64_t i0, int64_t i1, double lambda,
                                     double alpha, const double* h, const double* r, double* f, double* pc,
                                     double lo, double hi, Exact&& exact) {
  static_assert(K >= 1 && K <= 16, "one row per lane needs k <= 16");
  const __m512d va = _mm512_set1_pd(alpha), vinv = _mm512_set1_pd(1.0 / lambda), vlam = _mm512_set1_pd(lambda);
  const __m512d vlo = _mm512_set1_pd(lo), vhi = _mm512_set1_pd(hi), one = _mm512_set1_pd(1.0);
  const Transpose<K>& tr = transpose_table<K>();
  __m512d acc[2 * K];
  for (int j = 0; j < 2 * K; ++j) acc[j] = _mm512_setzero_pd();
  __m512d dla = _mm512_setzero_pd(), dlb = _mm512_setzero_pd();
  ChunkOut out;
  for (int64_t i = i0; i < i1; i += 16) {
    const int64_t m = i1 - i < 16 ? i1 - i : 16;
    const __mmask16 lm = m == 16 ? __mmask16(0xffff) : __mmask16((1u << m) - 1u);
    const __mmask8 la = __mmask8(lm & 0xff), lb = __mmask8(lm >> 8);
    const __m512d aa = _mm512_mul_pd(_mm512_maskz_loadu_pd(la, f + i), vinv);
    const __m512d ab = _mm512_mul_pd(_mm512_maskz_loadu_pd(lb, f + i + 8), vinv);
    const float* base = x + i * K;
    float* tb = xt ? xt + (i - i0) * K : nullptr;  // this block in the copy
    // f, 8 blocks ahead: its masked loads were a hot spot (an A/B was within this VM's noise, or better)
    _mm_prefetch(reinterpret_cast<const char*>(f + i + 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(f + i + 136), _MM_HINT_T0);
    const bool transpose = !tb || fill;
    __m512 xr[K];  // the block as it lies in memory: 16 rows of K = K vectors
    if (transpose)
      for (int v = 0; v < K; ++v) {
        const int64_t left = m * K - 16 * v;
        xr[v] = left >= 16 ? _mm512_loadu_ps(base + 16 * v)
                           : _mm512_maskz_loadu_ps(left > 0 ? __mmask16((1u << left) - 1u) : __mmask16(0), base + 16 * v);
      }
    __m512d d[2 * K];  // double(e_ij), rows in lanes: d[2j] rows 0-7, d[2j+1] rows 8-15
    for (int j = 0; j < K; ++j) {
      __m512 xv;
      if (transpose) {
        // column j: lane l takes element l·K + j, from the pair of vectors that holds it
        xv = _mm512_permutex2var_ps(xr[0], tr.idx[j][0], xr[K > 1 ? 1 : 0]);
        for (int p = 1; p < (K + 1) / 2; ++p)
          xv = _mm512_mask_mov_ps(xv, tr.mask[j][p],
                                  _mm512_permutex2var_ps(xr[2 * p], tr.idx[j][p], xr[2 * p + 1 < K ? 2 * p + 1 : 2 * p]));
        if (tb) _mm512_store_ps(tb + 16 * j, xv);
      } else {
        xv = _mm512_load_ps(tb + 16 * j);
      }
      const __m512d hj = _mm512_set1_pd(h[j]);
      const __m512 e = _mm512_maskz_mov_ps(
          lm, simd::detail::affine_exp_avx512(xv, _mm512_add_pd(hj, aa), _mm512_add_pd(hj, ab), va));
      d[2 * j] = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
      d[2 * j + 1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    // The row sum in the general pass's order: slot q of its 16-lane vector holds column q;
    // t_q = e_q + e_{q+8}, then _mm512_reduce_add_pd's halving tree over t_0..t_7.
    __m512d sum[2];
    for (int hf = 0; hf < 2; ++hf) {
      __m512d t[8];
      for (int q = 0; q < 8; ++q) {
        const __m512d lo_q = q < K ? d[2 * q + hf] : _mm512_setzero_pd();
        t[q] = q + 8 < K ? _mm512_add_pd(lo_q, d[2 * (q + 8) + hf]) : lo_q;
      }
      for (int q = 0; q < 4; ++q) t[q] = _mm512_add_pd(t[q + 4], t[q]);
      for (int q = 0; q < 2; ++q) t[q] = _mm512_add_pd(t[q + 2], t[q]);
      sum[hf] = _mm512_add_pd(t[0], t[1]);
    }
    const __m512d ra = r ? _mm512_maskz_loadu_pd(la, r + i) : one, rb = r ? _mm512_maskz_loadu_pd(lb, r + i + 8) : one;
    const __mmask8 ga = la & _mm512_cmp_pd_mask(sum[0], vlo, _CMP_GE_OQ) & _mm512_cmp_pd_mask(sum[0], vhi, _CMP_LE_OQ);
    const __mmask8 gb = lb & _mm512_cmp_pd_mask(sum[1], vlo, _CMP_GE_OQ) & _mm512_cmp_pd_mask(sum[1], vhi, _CMP_LE_OQ);
    const __m512d wa = _mm512_mask_div_pd(one, ga, ra, sum[0]), wb = _mm512_mask_div_pd(one, gb, rb, sum[1]);
    const __m512d na = _mm512_add_pd(aa, log_pd(wa)), nb = _mm512_add_pd(ab, log_pd(wb));
    _mm512_mask_storeu_pd(f + i, ga, _mm512_mul_pd(na, vlam));
    _mm512_mask_storeu_pd(f + i + 8, gb, _mm512_mul_pd(nb, vlam));
    const __m512d inf = _mm512_set1_pd(HUGE_VAL);  // |a_new| < inf also fails for NaN
    if ((_mm512_mask_cmp_pd_mask(ga, _mm512_abs_pd(na), inf, _CMP_LT_OQ) != ga) ||
        (_mm512_mask_cmp_pd_mask(gb, _mm512_abs_pd(nb), inf, _CMP_LT_OQ) != gb))
      out.nonfinite = true;
    dla = _mm512_mask3_fmadd_pd(ra, _mm512_sub_pd(aa, na), dla, ga);  // Σ r (a_old − a_new), per lane
    dlb = _mm512_mask3_fmadd_pd(rb, _mm512_sub_pd(ab, nb), dlb, gb);
    if (__builtin_expect(ga != la || gb != lb, 0)) {
      const unsigned good = unsigned(ga) | (unsigned(gb) << 8);
      for (int q = 0; q < m; ++q)
        if (!(good >> q & 1u)) exact(i + q);
    }
    for (int j = 0; j < K; ++j) {
      acc[2 * j] = _mm512_mask3_fmadd_pd(wa, d[2 * j], acc[2 * j], ga);
      acc[2 * j + 1] = _mm512_mask3_fmadd_pd(wb, d[2 * j + 1], acc[2 * j + 1], gb);
    }
  }
  for (int j = 0; j < K; ++j) pc[j] += _mm512_reduce_add_pd(_mm512_add_pd(acc[2 * j], acc[2 * j + 1]));
  out.dlse += _mm512_reduce_add_pd(_mm512_add_pd(dla, dlb));
  return out;
}

// rows_by_lane for a k known only at run time (1 <= k <= 16).
template <typename Exact>
OTLM_T5 inline ChunkOut rows_by_lane(const float* x, float* xt, bool fill, int64_t k, int64_t i0, int64_t i1,
                                     double lambda, double alpha, const double* h, const double* r, double* f,
                                     double* pc, double lo, double hi, Exact&& exact) {
  switch (k) {
#define OTLM_K(K) \
  case K: return rows_by_lane<K>(x, xt, fill, i0, i1, lambda, alpha, h, r, f, pc, lo, hi, exact);
    OTLM_K(1) OTLM_K(2) OTLM_K(3) OTLM_K(4) OTLM_K(5) OTLM_K(6) OTLM_K(7) OTLM_K(8)
    OTLM_K(9) OTLM_K(10) OTLM_K(11) OTLM_K(12) OTLM_K(13) OTLM_K(14) OTLM_K(15) OTLM_K(16)
#undef OTLM_K
    default:  // not reached (k <= kSmallKMax): every row by the general code
      for (int64_t i = i0; i < i1; ++i) exact(i);
      return ChunkOut{};
  }
}
#undef OTLM_T5
#endif  // OTLM_SIMD_X86

}  // namespace otlm::cpu::small_k
