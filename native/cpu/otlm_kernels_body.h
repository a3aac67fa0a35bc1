// Row kernels of the OTLM engine. Deliberately WITHOUT an include guard: otlm_kernels.cpp includes
// this body once per ISA (AVX-512, AVX2, baseline) under `#pragma GCC target`, and picks one at run
// time. Plain loops written so GCC vectorises them; every reduction runs over 16 fixed lanes merged in
// a fixed order, so all ISAs (and all thread counts) give bit-identical results. No FMA contraction
// (-ffp-contract=off), same reason.
// NOLINTBEGIN

constexpr int kLanes = 16;

// exp(x) in float: Cody-Waite reduction x = k·ln2 + r, |r| <= ln2/2, degree-7 Taylor for e^r
// (truncation < 6e-9 relative), 2^k built in the exponent bits. Returns 0 below -87 (no denormals),
// saturates above 88, propagates NaN.
static inline float exp_f(float x) {
  // Written so a NaN x clamps to -87 here (converting NaN to int is undefined) and is restored below.
  float xc = x > -87.0f ? x : -87.0f;
  xc = xc < 88.0f ? xc : 88.0f;
  const float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - kf * 0.693145751953125f) - kf * 1.428606765330187045e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (int32_t(kf) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = p * scale;
  return x < -87.0f ? 0.0f : (x == x ? y : x);
}

// 16-lane reductions through GCC vector extensions (lowered to 1×zmm, 2×ymm or 4×xmm per ISA with the
// same per-lane order, hence the same bits everywhere).
typedef float v16f __attribute__((vector_size(64)));
static inline v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

static float lane_sum(const v16f& acc) {
  float s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

static float sum_f(const float* __restrict x, int64_t n) {
  v16f acc = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) acc += load16(x + j);
  for (int l = 0; j < n; ++j, ++l) acc[l] += x[j];
  return lane_sum(acc);
}

static float max_f(const float* __restrict x, int64_t n) {
  v16f mx;
  for (int l = 0; l < kLanes; ++l) mx[l] = -INFINITY;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const v16f v = load16(x + j);
    mx = v > mx ? v : mx;
  }
  for (int l = 0; j < n; ++j, ++l) mx[l] = x[j] > mx[l] ? x[j] : mx[l];
  float mm = mx[0];
  for (int l = 1; l < kLanes; ++l) mm = mx[l] > mm ? mx[l] : mm;
  return mm;
}

// Exponent arguments are formed in double: with a small λ, (f_i + g_j - M_ij)/λ is a difference of
// terms in the hundreds, where a float ulp would already cost 1e-5 relative in the result.
// out_j = exp(c + gs_j + L_j·invlam)
static void exp_shift(const float* __restrict L, const double* __restrict gs, double c, double invlam, int64_t n,
                      float* __restrict out) {
  for (int64_t j = 0; j < n; ++j) out[j] = exp_f(float((c + gs[j]) + double(L[j]) * invlam));
}

// Last (t = S) backward pass of a row, y = final plan row. u_j = y_j·(fc + gs_j) = Y·log Y.
// Returns Σu + Σy in *s (for the f adjoint); u kept in `u`.
static void last_u(const float* __restrict y, const double* __restrict gs, double fc, int64_t n,
                   float* __restrict u, float* __restrict su, float* __restrict sy) {
  for (int64_t j = 0; j < n; ++j) u[j] = y[j] * float(fc + gs[j]);
  *su = sum_f(u, n);
  *sy = sum_f(y, n);
}

// mbar_j = -invB·u_j + fbar·y_j ;  acc_j += invB·(u_j + y_j) - fbar·y_j
static void last_update(const float* __restrict y, const float* __restrict u, float invB, float fbar, int64_t n,
                        float* __restrict mbar,
                        double* __restrict acc) {
  for (int64_t j = 0; j < n; ++j) {
    mbar[j] = fbar * y[j] - invB * u[j];
    if (acc) acc[j] += double(invB * (u[j] + y[j]) - fbar * y[j]);
  }
}

// q_j = a_j·pg_j in place; returns Σ q
static float mul_sum(float* __restrict pg, const float* __restrict a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) pg[j] = pg[j] * a[j];
  return sum_f(pg, n);
}

// mbar_j += q_j + fbar·pf_j ;  acc_j -= fbar·pf_j
static void mid_update(const float* __restrict q, const float* __restrict pf, float fbar, int64_t n,
                       float* __restrict mbar, double* __restrict acc) {
  for (int64_t j = 0; j < n; ++j) {
    const float t = fbar * pf[j];
    mbar[j] += q[j] + t;
    if (acc) acc[j] -= double(t);
  }
}

// One middle pass (1 <= t < S) of the unrolled backward for one row, in one call (at small k the
// calls cost more than the arithmetic): q = P^g_t row, as pf_prev·scale when pf_prev is given (the
// P^f_{t+1} row kept from the pass before) else exp(fc + gc_j + L_j·invlam); fbar = -Σ a_j q_j;
// pf = P^f_t row = exp(fc + gp_j + L_j·invlam), which may overwrite pf_prev (read first);
// mbar_j += a_j q_j + fbar·pf_j; acc_j -= fbar·pf_j (acc may be null).
static void mid_row(const float* __restrict L, const double* __restrict gc, const double* __restrict gp, double fc,
                    double invlam, const float* pf_prev, float scale, const float* __restrict a, int64_t n,
                    float* __restrict q, float* pf, float* __restrict mbar, double* __restrict acc) {
  if (pf_prev) {
    for (int64_t j = 0; j < n; ++j) q[j] = pf_prev[j] * scale;
  } else {
    exp_shift(L, gc, fc, invlam, n, q);
  }
  const float fbar = -mul_sum(q, a, n);
  exp_shift(L, gp, fc, invlam, n, pf);
  mid_update(q, pf, fbar, n, mbar, acc);
}

// Through log_softmax: d_j = -mbar_j + exp(L_j)·Σ mbar   (dL/dlogZ = -dL/dM), in place.
static void softmax_back(const float* __restrict L, int64_t n, float* __restrict mbar, float* __restrict z) {
  const float s = sum_f(mbar, n);
  for (int64_t j = 0; j < n; ++j) z[j] = exp_f(L[j]);
  for (int64_t j = 0; j < n; ++j) mbar[j] = z[j] * s - mbar[j];
}

// Row log-softmax in place: a_j -> a_j - max - log Σ exp(a_j - max)
static void log_softmax_row(float* __restrict a, int64_t n, float* __restrict scratch) {
  const float mm = max_f(a, n);
  for (int64_t j = 0; j < n; ++j) scratch[j] = exp_f(a[j] - mm);
  const float shift = float(double(mm) + std::log(double(sum_f(scratch, n))));
  for (int64_t j = 0; j < n; ++j) a[j] = a[j] - shift;
}

// NOLINTEND
