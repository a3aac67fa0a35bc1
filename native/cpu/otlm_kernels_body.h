// Row kernels of the OTLM engine. Deliberately WITHOUT an include guard: otlm_kernels.cpp includes
// this body once per ISA (AVX-512, AVX2, baseline) under `#pragma GCC target`, and picks one at run
// time. Plain loops written so GCC vectorises them; every reduction runs over 16 fixed lanes merged in
// a fixed order, so all ISAs (and all thread counts) give bit-identical results. No FMA contraction
// (-ffp-contract=off), same reason.
// NOLINTBEGIN

constexpr int kLanes = 16;
#ifndef OTLM_AI
// Helpers that take or return a 64-byte vector are always inlined: an out-of-line copy (GCC's
// partial inlining made one) would pass it in memory under the AVX2 and baseline ABIs.
#define OTLM_AI inline __attribute__((always_inline))
#endif

// Rows are taken 16 lanes at a time through GCC vector extensions (lowered to 1×zmm, 2×ymm or 4×xmm
// per ISA with the same per-lane operations, hence the same bits everywhere); a row's last, partial
// block is padded with neutral lanes (0, or -inf for a max) that never change a result, so k = 10
// runs as one vector instead of ten scalar iterations.
typedef float v16f __attribute__((vector_size(64)));
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v16i __attribute__((vector_size(64)));

static OTLM_AI v16f splat(float c) { return v16f{} + c; }
static OTLM_AI v8d splat_d(double c) { return v8d{} + c; }
static const v16i kLaneIndex = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static OTLM_AI v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// Lanes [0, m) of p (1 <= m <= 16), the others `pad`.
static OTLM_AI v16f load_part(const float* p, int64_t m, float pad = 0.0f) {
  if (m >= kLanes) return load16(p);
#ifdef OTLM_KERNEL_MASKED
  return (v16f)_mm512_mask_loadu_ps((__m512)splat(pad), __mmask16((1u << m) - 1u), p);
#else
  v16f v = splat(pad);
  for (int l = 0; l < m; ++l) v[l] = p[l];
  return v;
#endif
}
static OTLM_AI void store_part(float* p, const v16f& v, int64_t m) {
  if (m >= kLanes) {
    std::memcpy(p, &v, sizeof v);
    return;
  }
#ifdef OTLM_KERNEL_MASKED
  _mm512_mask_storeu_ps(p, __mmask16((1u << m) - 1u), (__m512)v);
#else
  for (int l = 0; l < m; ++l) p[l] = v[l];
#endif
}
// Lanes [0, m) of p as two halves of doubles, the others 0.
static OTLM_AI void load_part_d(const double* p, int64_t m, v8d& lo, v8d& hi) {
#ifdef OTLM_KERNEL_MASKED
  const unsigned mk = m >= kLanes ? 0xffffu : (1u << m) - 1u;
  lo = (v8d)_mm512_maskz_loadu_pd(__mmask8(mk & 0xff), p);
  hi = (v8d)_mm512_maskz_loadu_pd(__mmask8(mk >> 8), p + 8);
#else
  lo = v8d{};
  hi = v8d{};
  for (int l = 0; l < m && l < kLanes; ++l) {
    if (l < 8) lo[l] = p[l];
    else hi[l - 8] = p[l];
  }
#endif
}
// acc[0, m) += the 16 lanes (lo, hi) as doubles.
static OTLM_AI void add_part_d(double* acc, int64_t m, const v8d& lo, const v8d& hi) {
  if (m >= kLanes) {
    v8d a, b;
    std::memcpy(&a, acc, sizeof a);
    std::memcpy(&b, acc + 8, sizeof b);
    a += lo;
    b += hi;
    std::memcpy(acc, &a, sizeof a);
    std::memcpy(acc + 8, &b, sizeof b);
    return;
  }
#ifdef OTLM_KERNEL_MASKED
  const __mmask8 ka = __mmask8(((1u << m) - 1u) & 0xff), kb = __mmask8(((1u << m) - 1u) >> 8);
  _mm512_mask_storeu_pd(acc, ka, _mm512_add_pd(_mm512_maskz_loadu_pd(ka, acc), (__m512d)lo));
  _mm512_mask_storeu_pd(acc + 8, kb, _mm512_add_pd(_mm512_maskz_loadu_pd(kb, acc + 8), (__m512d)hi));
#else
  for (int l = 0; l < m; ++l) acc[l] += l < 8 ? lo[l] : hi[l - 8];
#endif
}
// Float halves to doubles and back (exact one way, rounded to nearest the other on every ISA). GCC
// lowers the generic form to 4-lane pieces even for AVX-512, hence the intrinsics there.
static OTLM_AI v8d lo_d(const v16f& v) {
#ifdef OTLM_KERNEL_MASKED
  return (v8d)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
#else
  return __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), v8d);
#endif
}
static OTLM_AI v8d hi_d(const v16f& v) {
#ifdef OTLM_KERNEL_MASKED
  return (v8d)_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1)));
#else
  return __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), v8d);
#endif
}
static OTLM_AI v16f cat_f(const v8d& lo, const v8d& hi) {
#ifdef OTLM_KERNEL_MASKED
  return (v16f)_mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps((__m512d)lo))),
                                                   _mm256_castps_pd(_mm512_cvtpd_ps((__m512d)hi)), 1));
#else
  const v8f a = __builtin_convertvector(lo, v8f), b = __builtin_convertvector(hi, v8f);
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
}
// Lanes at or past m set to 0 (a padded lane's exp may be inf, and inf·0 is NaN).
static OTLM_AI v16f keep(const v16f& v, int64_t m) {
  return m >= kLanes ? v : (kLaneIndex < int32_t(m) ? v : splat(0.0f));
}

// exp(x) in float on 16 lanes: Cody-Waite reduction x = k·ln2 + r, |r| <= ln2/2, degree-7 Taylor for
// e^r (truncation < 6e-9 relative), 2^k built in the exponent bits. 0 below -87 (no denormals),
// saturates above 88, propagates NaN (which the first clamp turns into -87 until the last line).
static OTLM_AI v16f exp_v(const v16f& x) {
  v16f xc = x > -87.0f ? x : splat(-87.0f);
  xc = xc < 88.0f ? xc : splat(88.0f);
  const v16f kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const v16f r = (xc - kf * 0.693145751953125f) - kf * 1.428606765330187045e-06f;
  v16f p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v16i bits = (__builtin_convertvector(kf, v16i) + 127) << 23;
  const v16f y = p * (v16f)bits;
  return x < -87.0f ? splat(0.0f) : (x == x ? y : x);
}

// A fixed pairwise tree (lanes l and l + 8, then + 4, + 2, + 1): the same order on every ISA, and
// 4 dependent adds instead of 16 on the row's critical path.
static OTLM_AI float lane_sum(const v16f& acc) {
  typedef float v8f_ __attribute__((vector_size(32)));
  typedef float v4f_ __attribute__((vector_size(16)));
  const v8f_ a = __builtin_shufflevector(acc, acc, 0, 1, 2, 3, 4, 5, 6, 7) +
                 __builtin_shufflevector(acc, acc, 8, 9, 10, 11, 12, 13, 14, 15);
  const v4f_ b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

static float sum_f(const float* __restrict x, int64_t n) {
  v16f acc = {};
  for (int64_t j = 0; j < n; j += kLanes) acc += load_part(x + j, n - j);
  return lane_sum(acc);
}

static float max_f(const float* __restrict x, int64_t n) {
  v16f mx = splat(-INFINITY);
  for (int64_t j = 0; j < n; j += kLanes) {
    const v16f v = load_part(x + j, n - j, -INFINITY);
    mx = v > mx ? v : mx;
  }
  float mm = mx[0];
  for (int l = 1; l < kLanes; ++l) mm = mx[l] > mm ? mx[l] : mm;
  return mm;
}

// Exponent arguments are formed in double: with a small λ, (f_i + g_j - M_ij)/λ is a difference of
// terms in the hundreds, where a float ulp would already cost 1e-5 relative in the result.
// exp(c + gs_j + L_j·invlam) for the block of lanes [j, j + m).
static OTLM_AI v16f exp_shift_v(const float* __restrict L, const double* __restrict gs, double c, double invlam,
                               int64_t m) {
  const v16f Lv = load_part(L, m);
  v8d glo, ghi;
  load_part_d(gs, m, glo, ghi);
  const v8d vc = splat_d(c), vi = splat_d(invlam);
  return keep(exp_v(cat_f((vc + glo) + lo_d(Lv) * vi, (vc + ghi) + hi_d(Lv) * vi)), m);
}

// out_j = exp(c + gs_j + L_j·invlam)
static void exp_shift(const float* __restrict L, const double* __restrict gs, double c, double invlam, int64_t n,
                      float* __restrict out) {
  for (int64_t j = 0; j < n; j += kLanes) store_part(out + j, exp_shift_v(L + j, gs + j, c, invlam, n - j), n - j);
}

// Last (t = S) backward pass of a row, y = final plan row. u_j = y_j·(fc + gs_j) = Y·log Y.
// Returns Σu and Σy (for the f adjoint); u kept in `u`.
static void last_u(const float* __restrict y, const double* __restrict gs, double fc, int64_t n,
                   float* __restrict u, float* __restrict su, float* __restrict sy) {
  v16f au = {}, ay = {};
  const v8d vf = splat_d(fc);
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j;
    const v16f yv = load_part(y + j, m);
    v8d glo, ghi;
    load_part_d(gs + j, m, glo, ghi);
    const v16f uv = yv * cat_f(vf + glo, vf + ghi);
    store_part(u + j, uv, m);
    au += uv;
    ay += yv;
  }
  *su = lane_sum(au);
  *sy = lane_sum(ay);
}

// mbar_j = -invB·u_j + fbar·y_j ;  acc_j += invB·(u_j + y_j) - fbar·y_j
static void last_update(const float* __restrict y, const float* __restrict u, float invB, float fbar, int64_t n,
                        float* __restrict mbar, double* __restrict acc) {
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j;
    const v16f yv = load_part(y + j, m), uv = load_part(u + j, m);
    store_part(mbar + j, fbar * yv - invB * uv, m);
    if (acc) {
      const v16f t = invB * (uv + yv) - fbar * yv;
      add_part_d(acc + j, m, lo_d(t), hi_d(t));
    }
  }
}

// One middle pass (1 <= t < S) of the unrolled backward for one row, in one call (at small k the
// calls cost more than the arithmetic): q = P^g_t row, as pf_prev·scale when pf_prev is given (the
// P^f_{t+1} row kept from the pass before) else exp(fc + gc_j + L_j·invlam); fbar = -Σ a_j q_j;
// pf = P^f_t row, as q_j·cs_j when the column scales cs_j = exp(gp_j - gc_j) are given, else
// exp(fc + gp_j + L_j·invlam); pf may overwrite pf_prev (read first); mbar_j += a_j q_j + fbar·pf_j;
// acc_j -= fbar·pf_j (acc may be null). q holds the q_j afterwards.
static void mid_row(const float* __restrict L, const double* __restrict gc, const double* __restrict gp, double fc,
                    double invlam, const float* pf_prev, float scale, const float* __restrict cs,
                    const float* __restrict a, int64_t n, float* __restrict q, float* pf, float* __restrict mbar,
                    double* __restrict acc) {
  v16f s = {};
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j;
    const v16f qv = pf_prev ? load_part(pf_prev + j, m) * scale : exp_shift_v(L + j, gc + j, fc, invlam, m);
    store_part(q + j, qv, m);
    s += qv * load_part(a + j, m);
  }
  const float fbar = -lane_sum(s);
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j;
    const v16f qv = load_part(q + j, m);
    const v16f pv = cs ? qv * load_part(cs + j, m) : exp_shift_v(L + j, gp + j, fc, invlam, m);
    store_part(pf + j, pv, m);
    const v16f t = fbar * pv;
    store_part(mbar + j, load_part(mbar + j, m) + (qv * load_part(a + j, m) + t), m);
    if (acc) add_part_d(acc + j, m, -lo_d(t), -hi_d(t));
  }
}

// Through log_softmax: d_j = -mbar_j + exp(L_j)·Σ mbar   (dL/dlogZ = -dL/dM), in place.
static void softmax_back(const float* __restrict L, int64_t n, float* __restrict mbar) {
  const float s = sum_f(mbar, n);
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t m = n - j;
    store_part(mbar + j, exp_v(load_part(L + j, m)) * s - load_part(mbar + j, m), m);
  }
}

// Row log-softmax in place: a_j -> a_j - max - log Σ exp(a_j - max)
static void log_softmax_row(float* __restrict a, int64_t n) {
  const float mm = max_f(a, n);
  v16f acc = {};
  for (int64_t j = 0; j < n; j += kLanes) acc += keep(exp_v(load_part(a + j, n - j) - mm), n - j);
  const float shift = float(double(mm) + std::log(double(lane_sum(acc))));
  for (int64_t j = 0; j < n; j += kLanes) store_part(a + j, load_part(a + j, n - j) - shift, n - j);
}

// ---- Blocks of 16 rows for k <= 16 (the unrolled backward's small-k path, otlm_grad.cpp): a block
// holds column j of its 16 rows at [16j, 16j + 16), so every lane is a row and a 10-wide row no
// longer fills a 16-lane vector with padding. Each element sees the same operations as in the row
// kernels above, and a row's sum takes lane_sum's tree over its columns (padded with zeros the same
// way), so a row's f̄ is the row kernels' value; the column accumulators `acc` (16 per column, one
// per row lane) add in another order than a row-by-row pass, so ḡ may differ in its last bits.
// fc: the block's 16 values f_t,i/λ (padding rows carry -1e30, whose plan entries are 0).

// Σ_j x_j by lane_sum's tree over a row of k <= 16 columns (missing columns are +0, as its pad lanes).
static OTLM_AI v16f tree_sum_cols(const v16f* x, int64_t k) {
  const v16f z = {};
  v16f a[8];
  for (int l = 0; l < 8; ++l) a[l] = (l < k ? x[l] : z) + (l + 8 < k ? x[l + 8] : z);
  const v16f b0 = a[0] + a[4], b1 = a[1] + a[5], b2 = a[2] + a[6], b3 = a[3] + a[7];
  return (b0 + b2) + (b1 + b3);
}

// exp(fc_r + gs + L_r·invlam) for the 16 rows r of one column (exp_shift_v's operations).
static OTLM_AI v16f exp_col(const float* __restrict Lj, double gs, const v8d& flo, const v8d& fhi, double invlam) {
  const v16f Lv = load16(Lj);
  const v8d g = splat_d(gs), vi = splat_d(invlam);
  return exp_v(cat_f((flo + g) + lo_d(Lv) * vi, (fhi + g) + hi_d(Lv) * vi));
}

// acc[0, 16) += t as doubles (add_part_d on a full block).
static OTLM_AI void add_lanes_d(double* __restrict acc, const v8d& lo, const v8d& hi) { add_part_d(acc, kLanes, lo, hi); }

// Pass t = S (last_u + last_update): pf = P^f_S, mbar = f̄·y - invB·u, acc += invB·(u + y) - f̄·y.
static void blk_last(const float* __restrict Lt, const double* __restrict gp, const double* __restrict fc, double invlam,
                     float invB, int64_t k, float* __restrict pf, float* __restrict mbar, double* __restrict acc) {
  v8d flo, fhi;
  std::memcpy(&flo, fc, sizeof flo);
  std::memcpy(&fhi, fc + 8, sizeof fhi);
  v16f y[kLanes], u[kLanes];
  for (int64_t j = 0; j < k; ++j) {
    y[j] = exp_col(Lt + 16 * j, gp[j], flo, fhi, invlam);
    std::memcpy(pf + 16 * j, &y[j], sizeof y[j]);
    const v8d g = splat_d(gp[j]);
    u[j] = y[j] * cat_f(flo + g, fhi + g);
  }
  const v16f fbar = splat(invB) * (tree_sum_cols(u, k) + tree_sum_cols(y, k));
  for (int64_t j = 0; j < k; ++j) {
    const v16f mv = fbar * y[j] - invB * u[j];
    std::memcpy(mbar + 16 * j, &mv, sizeof mv);
    if (acc) {
      const v16f t = invB * (u[j] + y[j]) - fbar * y[j];
      add_lanes_d(acc + 16 * j, lo_d(t), hi_d(t));
    }
  }
}

// A middle pass (mid_row on 16 rows): q = pf·scale in the lanes set in `reuse` (a bit per row),
// else exp(fc + gc_j + L·invlam); f̄ = -Σ a_j q_j; pf = q·cs_j where the column scales are given,
// else exp(fc + gp_j + L·invlam) (pf overwrites the kept P^f_{t+1} after reading it);
// mbar += a_j q_j + f̄·pf; acc -= f̄·pf.
static void blk_mid(const float* __restrict Lt, const double* __restrict gc, const double* __restrict gp,
                    const double* __restrict fc, double invlam, const float* __restrict scale, uint32_t reuse,
                    const float* __restrict cs, const float* __restrict a, int64_t k, float* __restrict pf,
                    float* __restrict mbar, double* __restrict acc) {
  v8d flo, fhi;
  std::memcpy(&flo, fc, sizeof flo);
  std::memcpy(&fhi, fc + 8, sizeof fhi);
  const v16f sc = load16(scale);
  v16i use = {};
  for (int l = 0; l < kLanes; ++l) use[l] = (reuse >> l) & 1u ? -1 : 0;
  v16f q[kLanes], qa[kLanes];
  for (int64_t j = 0; j < k; ++j) {
    if (reuse == 0xffffu) {
      q[j] = load16(pf + 16 * j) * sc;
    } else {
      q[j] = exp_col(Lt + 16 * j, gc[j], flo, fhi, invlam);
      if (reuse) q[j] = use != 0 ? load16(pf + 16 * j) * sc : q[j];
    }
    qa[j] = q[j] * a[j];
  }
  const v16f fbar = -tree_sum_cols(qa, k);
  for (int64_t j = 0; j < k; ++j) {
    const v16f pv = cs ? q[j] * cs[j] : exp_col(Lt + 16 * j, gp[j], flo, fhi, invlam);
    std::memcpy(pf + 16 * j, &pv, sizeof pv);
    const v16f t = fbar * pv;
    const v16f mv = load16(mbar + 16 * j) + (qa[j] + t);
    std::memcpy(mbar + 16 * j, &mv, sizeof mv);
    if (acc) add_lanes_d(acc + 16 * j, -lo_d(t), -hi_d(t));
  }
}

// softmax_back on the block, written as rows [0, rows) of d (row stride k).
static void blk_softmax_back(const float* __restrict Lt, const float* __restrict mbar, int64_t k, int64_t rows,
                             float* __restrict d) {
  v16f m[kLanes];
  for (int64_t j = 0; j < k; ++j) m[j] = load16(mbar + 16 * j);
  const v16f s = tree_sum_cols(m, k);
  for (int64_t j = 0; j < k; ++j) {
    const v16f r = exp_v(load16(Lt + 16 * j)) * s - m[j];
    for (int64_t i = 0; i < rows; ++i) d[i * k + j] = r[i];
  }
}

// NOLINTEND
