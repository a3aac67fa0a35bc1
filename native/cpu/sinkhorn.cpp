// CPU log-domain Sinkhorn passes (otlm/driver.h): one fused pass over the matrix per iteration.
//
// Internally the cost is S = M (COST input) or S = -Φ (LOGITS input: the row
// constant logsumexp_j Φ_ij of -log_softmax is absorbed into f and added back at
// the end), and the plan is Y_ij = exp(a_i + α x_ij + h_j) with a = f/λ, h = g/λ,
// α = +1/λ (logits) or -1/λ (cost).
//
// One iteration, per fixed chunk of rows (chunking depends on n and k only, so
// results are bit-identical for any thread count):
//   row i:  e_ij = exp(a_i_old + α x_ij + h_j)   (one exp per element, kept in a
//           row buffer that stays in L1), s_i = Σ_j e_ij (double),
//           a_i_new = a_i_old + log(r_i / s_i), so Y_ij = e_ij · r_i / s_i
//           with no second exp;
//   chunk:  column partials Σ_i e_ij · r_i/s_i in double;
// then the partials are merged in chunk order (parallel over column ranges),
// the column error is read off that exact-row plan, and h_j += log c_j - log colsum_j.
//
// Precision choice: the exponent α x + h + a is formed in double and rounded once
// to float before the float32 exp (simd_exp.h). In float32 alone, α x at
// λ = 0.005 and |x| ~ 20 is ~4000 with an ulp of 5e-4, i.e. a 5e-4 relative error
// on the plan; in double the large terms cancel exactly and the plans match a
// float64 solver to ~1e-7 of their max (test_sinkhorn_cpu: ≤ 1e-5 required, at
// λ down to 0.005). Keeping the range reduction in double as well cost 26% more
// per element (0.59 vs 0.44 ns/element, AVX-512) for no gain in the plans; the
// price of the float rounding is a floor of ~1e-8 on the reachable column error.
// Row sums and column partials are accumulated in double.
//
// Rows whose shifted sum leaves [1e-20, 1e20] (first cold iteration, overflow,
// underflow, big jumps at small λ) are redone with an exact max-shifted
// log-sum-exp (e_ij ≤ 1); columns whose sum underflows get an exact log-domain
// column LSE. Both are counted in report.log_fallbacks (mode bit OTLM_MODE_LOG);
// a cold start therefore reports n fallbacks from its first iteration.
//
// The iteration itself (ε schedule, acceleration, convergence, trace, cancellation)
// is the shared driver's (native/core/src/driver.cpp); this file supplies its passes.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

#include "cpu_internal.h"
#include "otlm/validate.h"
#include "sinkhorn_passes.h"
#include "sinkhorn_small_k.h"
#include "thread_pool.h"

namespace otlm::cpu {

const char* simd_level() { return simd::level_name(simd::active_level()); }

namespace {

constexpr double kRowLo = 1e-20, kRowHi = 1e20;  // safe range of a shifted row sum
constexpr int64_t kColBlock = 256;               // columns per merge task
constexpr int64_t kSmallKCopyMax = int64_t(256) << 20;  // bytes of transposed blocks a small-k solve may keep

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Index of the first NaN/Inf in row[0..k), or -1. Integer test so it vectorises.
int64_t first_nonfinite(const float* row, int64_t k) {
  uint32_t bad = 0;
  for (int64_t j = 0; j < k; ++j) {
    uint32_t b;
    std::memcpy(&b, row + j, 4);
    bad |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return -1;
  for (int64_t j = 0; j < k; ++j)
    if (!std::isfinite(row[j])) return j;
  return -1;
}

// argmax_j (α x_j + h_j), first max on ties. A plain scalar scan (run once per
// solve): it must not depend on a SIMD kernel rounding the same way.
int32_t argmax_affine(const float* row, int64_t k, double alpha, const double* h) {
  int64_t best = 0;
  double m = alpha * double(row[0]) + h[0];
  for (int64_t j = 1; j < k; ++j) {
    double v = alpha * double(row[j]) + h[j];
    if (v > m) { m = v; best = j; }
  }
  return int32_t(best);
}

// Newton's Laplacian partials of one row: W_jq += Y_ij Y_iq / r_i (j < q), w = r_i / s_i².
void add_laplacian(double* wc, const float* e, int64_t k, double w) {
  for (int64_t j = 0; j + 1 < k; ++j) {
    const double ej = w * double(e[j]);
    double* wr = wc + j * k;
    for (int64_t q = j + 1; q < k; ++q) wr[q] += ej * double(e[q]);
  }
}

}  // namespace

// Fixed decomposition, so results do not depend on the thread count: at most 128 row chunks of
// ~64k elements each, but at least 8 chunks (of >= 512 elements) where there are rows enough, so
// a CIFAR-sized batch (5000×10: one 64k chunk) still runs on every thread.
CpuSinkhornPasses::CpuSinkhornPasses(const SinkhornProblem& pb, const double* f0, const double* g0)
    : pb_(pb), K_(simd::kernels()), threads_(pb.threads > 0 ? pb.threads : default_threads()) {
  const int64_t n = pb.n, k = pb.k;
  rows_per_chunk_ = std::max<int64_t>(
      ceil_div(n, 128), std::max<int64_t>(std::min<int64_t>(ceil_div(65536, k), ceil_div(n, 8)), ceil_div(512, k)));
  rows_per_chunk_ = std::min(std::max<int64_t>(rows_per_chunk_, 1), n);
  nchunks_ = ceil_div(n, rows_per_chunk_);
  ncolblocks_ = ceil_div(k, kColBlock);
  f_.assign(size_t(n), 0.0);
  g_.assign(size_t(k), 0.0);
  if (pb.warm_start) {
    std::copy(f0, f0 + n, f_.begin());  // for logits the row LSE is subtracted in the first pass
    std::copy(g0, g0 + k, g_.begin());
  }
  h_.resize(size_t(k));
  resid_.resize(size_t(k));
  logc_.resize(size_t(k));
  colsum_.resize(size_t(k));
  errpart_.resize(size_t(ncolblocks_));
  // Per-chunk rows padded to whole cache lines: at small k, chunks written by different threads
  // would otherwise share lines on every row (2 threads ran 4x slower than 1 at k = 10).
  cstride_ = ceil_div(k, 16) * 16;
  part_.resize(size_t(nchunks_ * cstride_));
  ebuf_.resize(size_t(nchunks_ * cstride_));
  chunks_.resize(size_t(nchunks_));
  if (pb.logits && !pb.log_probs) lse_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) rsum_ += pb.row_marginal ? pb.row_marginal[i] : 1.0;
  for (int64_t j = 0; j < k; ++j) logc_[size_t(j)] = std::log(pb.col_marginal[j]);
  const char* env = std::getenv("OTLM_SMALL_K");  // "0": the general pass (tests compare the two)
  small_k_ = K_.level == simd::Level::avx512 && k <= small_k::kSmallKMax && !(env && !std::strcmp(env, "0"));
  // The small-k pass transposes each 16-row block; x never changes during a solve, so up to
  // kSmallKCopyMax bytes it keeps the transposed blocks from its first pass and reads them after
  // (a fifth of its time at k = 10). OTLM_SMALL_K=stream: always transpose (tests compare the two).
  if (small_k_ && !(env && !std::strcmp(env, "stream"))) {
    xt_stride_ = ceil_div(rows_per_chunk_, 16) * 16 * k;
    if (nchunks_ * xt_stride_ * int64_t(sizeof(float)) <= kSmallKCopyMax) {
      xt_.resize(size_t(nchunks_ * xt_stride_));
      xt_filled_.assign(size_t(nchunks_), 0);
    }
  }
}

int64_t CpuSinkhornPasses::rows_end(int64_t c) const { return std::min(pb_.n, (c + 1) * rows_per_chunk_); }

otlm_status CpuSinkhornPasses::cost_scale(double* scale, otlm_error*) {
  std::vector<double> rng(static_cast<size_t>(nchunks_));
  parallel_for(nchunks_, threads_, [&](int64_t c) {
    double acc = 0;
    for (int64_t i = rows_begin(c); i < rows_end(c); ++i) {
      const float* row = pb_.x + i * pb_.k;
      acc += K_.max_affine(row, pb_.k, 1.0, nullptr) + K_.max_affine(row, pb_.k, -1.0, nullptr);
    }
    rng[size_t(c)] = acc;
  });
  double tot = 0;
  for (double v : rng) tot += v;
  *scale = tot / double(pb_.n);
  return OTLM_OK;
}

// One chunk of the fused row pass: e_ij = exp(a_old + α x_ij + h_j) (one exp per element, in the
// chunk's row buffer), s_i = Σ_j e_ij, a_new = a_old + log(r_i/s_i), so Y_ij = e_ij·r_i/s_i; the
// column partials and (Newton) the Laplacian partials of that plan. Rows whose shifted sum leaves
// [kRowLo, kRowHi] are redone with an exact max-shifted log-sum-exp.
void CpuSinkhornPasses::row_chunk(int64_t c, double lambda, bool fast, bool hess) {
  const int64_t k = pb_.k;
  Chunk& st = chunks_[size_t(c)];
  double* pc = part_.data() + c * cstride_;
  float* e = ebuf_.data() + c * cstride_;
  double* wc = hess ? W_.data() + c * wstride() : nullptr;
  std::fill(pc, pc + k, 0.0);
  if (wc) std::fill(wc, wc + k * k, 0.0);
  st.dlse = 0;
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  const RowScale sc{lambda, inv, alpha};
#if OTLM_SIMD_X86
  if (small_k_ && fast && !hess && scanned_) {  // sinkhorn_small_k.h; odd rows come back to one_row
    auto exact = [&](int64_t i) { one_row(i, sc, false, st, pc, e, nullptr); };
    const int64_t i0 = rows_begin(c), i1 = rows_end(c);
    const double* r = pb_.row_marginal;
    float* xt = xt_.empty() ? nullptr : xt_.data() + c * xt_stride_;
    const bool fill = xt && !xt_filled_[size_t(c)];
    if (fill) xt_filled_[size_t(c)] = 1;
    const small_k::ChunkOut o =
        small_k::rows_by_lane(pb_.x, xt, fill, k, i0, i1, lambda, alpha, h_.data(), r, f_.data(), pc, kRowLo, kRowHi, exact);
    st.dlse += o.dlse;
    if (o.nonfinite) st.nonfinite = true;
    return;
  }
#endif
  RowLogs logs;
  RowLogs* q = fast && K_.level == simd::Level::avx512 ? &logs : nullptr;
  for (int64_t i = rows_begin(c); i < rows_end(c); ++i)
    if (!one_row(i, sc, fast, st, pc, e, wc, q)) break;
  if (q) flush_logs(*q, lambda, st);
}

void CpuSinkhornPasses::flush_logs(RowLogs& q, double lambda, Chunk& st) {
  if (!q.n) return;
  double lw[8];
#if OTLM_SIMD_X86
  small_k::log_n(q.w, lw, q.n);
#else
  for (int t = 0; t < q.n; ++t) lw[t] = std::log(q.w[t]);
#endif
  for (int t = 0; t < q.n; ++t) {
    const double a_new = q.a[t] + lw[t];
    if (!std::isfinite(a_new)) st.nonfinite = true;
    f_[size_t(q.row[t])] = a_new * lambda;
    st.dlse += q.r[t] * (q.a[t] - a_new);
  }
  q.n = 0;
}

// One row of the fused row pass (see row_chunk); false when the chunk must stop (bad input or a
// non-finite potential, recorded in st).
bool CpuSinkhornPasses::one_row(int64_t i, const RowScale& sc, bool fast, Chunk& st, double* pc, float* e,
                                double* wc, RowLogs* logs) {
  const int64_t k = pb_.k;
  const double lambda = sc.lambda, inv = sc.inv, alpha = sc.alpha;
  const float* row = pb_.x + i * k;
  const double r = pb_.row_marginal ? pb_.row_marginal[i] : 1.0;
  if (!scanned_) {
    int64_t b = first_nonfinite(row, k);
    if (b >= 0) {
      if (st.bad_index < 0) st.bad_index = i * k + b;
      return false;
    }
    if (!lse_.empty()) {
      double m0 = K_.max_affine(row, k, 1.0, nullptr);
      lse_[size_t(i)] = m0 + std::log(K_.exp_affine_sum(row, k, 1.0, nullptr, -m0, e));
      if (pb_.warm_start) f_[size_t(i)] -= lse_[size_t(i)];
    }
  }
  const double a_old = f_[size_t(i)] * inv;
  double s = 0, base = 0;
  bool exact = !fast;
  if (fast) {
    s = K_.exp_affine_sum(row, k, alpha, h_.data(), a_old, e);
    base = a_old;
    exact = !(s >= kRowLo && s <= kRowHi);
  }
  if (logs && !exact) {  // the usual case: the log waits for seven more rows
    const double w = r / s;
    K_.axpy(pc, e, w, k);  // Y_ij = e_ij · r_i / s_i
    if (wc) add_laplacian(wc, e, k, r / (s * s));
    RowLogs& q = *logs;
    q.w[q.n] = w;
    q.a[q.n] = a_old;
    q.r[q.n] = r;
    q.row[q.n] = i;
    if (++q.n == 8) flush_logs(q, lambda, st);
    return !st.nonfinite;
  }
  if (exact) {
    double m = K_.max_affine(row, k, alpha, h_.data());
    base = -m;
    s = K_.exp_affine_sum(row, k, alpha, h_.data(), base, e);
    ++st.fallbacks;
  }
  const double a_plain = base + std::log(r / s);
  if (!std::isfinite(a_plain)) {
    st.nonfinite = true;
    return false;
  }
  f_[size_t(i)] = a_plain * lambda;
  K_.axpy(pc, e, r / s, k);  // Y_ij = e_ij · r_i / s_i
  st.dlse += r * (a_old - a_plain);
  if (wc) add_laplacian(wc, e, k, r / (s * s));
  return true;
}

otlm_status CpuSinkhornPasses::row_pass(const driver::RowPass& rp, driver::RowStats* stats, otlm_error* err) {
  const int64_t k = pb_.k;
  const double inv = 1.0 / rp.lambda;
  for (int64_t j = 0; j < k; ++j) h_[size_t(j)] = g_[size_t(j)] * inv;
  const bool hess = rp.hessian != nullptr;
  if (hess && W_.size() < size_t(nchunks_ * wstride())) W_.resize(size_t(nchunks_ * wstride()));
  parallel_for(nchunks_, threads_, [&](int64_t c) { row_chunk(c, rp.lambda, rp.fast, hess); });
  scanned_ = true;
  double dlse = 0;
  for (Chunk& st : chunks_) {
    if (st.bad_index >= 0 && pb_.log_probs)  // the OTLM forward: log_softmax(Φ_B W + b) overflowed
      return fail(err, OTLM_ENONFINITE, "otlm: log_softmax(phi W + b)[%lld, %lld] is not finite",
                  (long long)(st.bad_index / k), (long long)(st.bad_index % k));
    if (st.bad_index >= 0)
      return fail(err, OTLM_EINVAL, "sinkhorn: input x[%lld] (row %lld, column %lld) is not finite",
                  (long long)st.bad_index, (long long)(st.bad_index / k), (long long)(st.bad_index % k));
    if (st.nonfinite)
      return fail(err, OTLM_ENONFINITE,
                  "sinkhorn: a row potential became non-finite at iteration %d (lambda %g)", rp.iteration,
                  rp.lambda);
    fallbacks_ += st.fallbacks;
    st.fallbacks = 0;
    dlse += st.dlse;
  }
  stats->dlse = dlse;
  if (hess) {  // merge the Laplacian partials in chunk order
    std::copy(W_.begin(), W_.begin() + k * k, rp.hessian);
    for (int64_t c = 1; c < nchunks_; ++c)
      for (int64_t q = 0; q < k * k; ++q) rp.hessian[q] += W_[size_t(c * wstride() + q)];
  }
  // merge column partials in chunk order (parallel over column blocks); error of the exact-row plan
  const double* cm = pb_.col_marginal;
  parallel_for(ncolblocks_, threads_, [&](int64_t b) {
    const int64_t j0 = b * kColBlock, j1 = std::min(k, j0 + kColBlock);
    for (int64_t j = j0; j < j1; ++j) colsum_[size_t(j)] = 0;
    for (int64_t c = 0; c < nchunks_; ++c) {
      const double* pc = part_.data() + c * cstride_;
      for (int64_t j = j0; j < j1; ++j) colsum_[size_t(j)] += pc[j];
    }
    double acc = 0;
    for (int64_t j = j0; j < j1; ++j) acc += std::fabs(colsum_[size_t(j)] - cm[j]);
    errpart_[size_t(b)] = acc;
  });
  double esum = 0;
  for (double v : errpart_) esum += v;
  stats->error = esum / rsum_;
  if (rp.colsum) std::copy(colsum_.begin(), colsum_.end(), rp.colsum);
  return OTLM_OK;
}

// r_j = log c_j − log colsum_j; columns whose float-accumulated sum underflowed (or overflowed)
// get an exact log-domain column LSE over the current f and h.
otlm_status CpuSinkhornPasses::residual(double lambda, int, double* resid, otlm_error* err) {
  const int64_t k = pb_.k;
  std::vector<int64_t> flagged;
  for (int64_t j = 0; j < k; ++j) {
    const double cj = colsum_[size_t(j)];
    const double lc = cj > 0 && cj <= driver::kColumnCeil ? std::log(cj) : -HUGE_VAL;
    if (lc - logc_[size_t(j)] >= driver::kLogColumnFloor) resid[j] = logc_[size_t(j)] - lc;
    else flagged.push_back(j);
  }
  if (flagged.empty()) return OTLM_OK;
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  const int64_t nf = int64_t(flagged.size());
  std::vector<double> mx, sm;
  try {
    mx.assign(size_t(nchunks_ * nf), -HUGE_VAL);
    sm.assign(size_t(nchunks_ * nf), 0.0);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "sinkhorn: out of memory in the column fallback");
  }
  parallel_for(nchunks_, threads_, [&](int64_t c) {
    double* m = mx.data() + c * nf;
    double* s = sm.data() + c * nf;
    for (int64_t i = rows_begin(c); i < rows_end(c); ++i) {
      const double a = f_[size_t(i)] * inv;
      const float* row = pb_.x + i * k;
      for (int64_t q = 0; q < nf; ++q) {
        const int64_t j = flagged[size_t(q)];
        const double v = a + alpha * double(row[j]) + h_[size_t(j)];
        if (v > m[q]) { s[q] = s[q] * std::exp(m[q] - v) + 1.0; m[q] = v; }
        else s[q] += std::exp(v - m[q]);
      }
    }
  });
  for (int64_t q = 0; q < nf; ++q) {
    double M = -HUGE_VAL, S = 0;
    for (int64_t c = 0; c < nchunks_; ++c) {
      const double m = mx[size_t(c * nf + q)], s = sm[size_t(c * nf + q)];
      if (m == -HUGE_VAL) continue;
      if (m > M) { S = S * std::exp(M - m) + s; M = m; }
      else S += s * std::exp(m - M);
    }
    const int64_t j = flagged[size_t(q)];
    resid[j] = logc_[size_t(j)] - (M + std::log(S));  // M + log S = log colsum_j, exactly
  }
  fallbacks_ += nf;
  return OTLM_OK;
}

otlm_status CpuSinkhornPasses::plain_step(double lambda, int iteration, otlm_error* err) {
  const int64_t k = pb_.k;
  if (otlm_status st = residual(lambda, iteration, resid_.data(), err)) return st;
  for (int64_t j = 0; j < k; ++j) {
    const double h = h_[size_t(j)] + resid_[size_t(j)];
    if (!std::isfinite(h))
      return fail(err, OTLM_ENONFINITE,
                  "sinkhorn: column potential g[%lld] became non-finite at iteration %d (lambda %g)",
                  (long long)j, iteration, lambda);
    g_[size_t(j)] = h * lambda;
  }
  return OTLM_OK;
}

otlm_status CpuSinkhornPasses::get_g(double* g, otlm_error*) {
  std::copy(g_.begin(), g_.end(), g);
  return OTLM_OK;
}

otlm_status CpuSinkhornPasses::set_g(const double* g, otlm_error*) {
  std::copy(g, g + pb_.k, g_.begin());
  return OTLM_OK;
}

// Plan rows exp(a_i + α x_ij + h_j) (they sum to r_i), predictions, then f (with the row LSE of
// logits added back) and g.
otlm_status CpuSinkhornPasses::finish(double lambda, const otlm_sinkhorn_buffers& io, otlm_error*) {
  const int64_t n = pb_.n, k = pb_.k;
  const double inv = 1.0 / lambda, alpha = pb_.logits ? inv : -inv;
  for (int64_t j = 0; j < k; ++j) h_[size_t(j)] = g_[size_t(j)] * inv;
  if (io.plan || io.predictions) {
    parallel_for(nchunks_, threads_, [&](int64_t c) {
      for (int64_t i = rows_begin(c); i < rows_end(c); ++i) {
        const float* row = pb_.x + i * k;
        // The argmax first: the plan may be written in place over x (plan == x).
        if (io.predictions) io.predictions[i] = argmax_affine(row, k, alpha, h_.data());
        if (io.plan) K_.exp_affine_sum(row, k, alpha, h_.data(), f_[size_t(i)] * inv, io.plan + i * k);
      }
    });
  }
  for (int64_t i = 0; i < n; ++i) io.f[i] = f_[size_t(i)] + (lse_.empty() ? 0.0 : lse_[size_t(i)]);
  std::copy(g_.begin(), g_.end(), io.g);
  return OTLM_OK;
}

otlm_status CpuSinkhornPasses::fallbacks(int64_t* count, otlm_error*) {
  *count = fallbacks_;
  return OTLM_OK;
}

otlm_status sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                     otlm_sinkhorn_report* rep, otlm_error* err) {
  if (otlm_status s = validate_sinkhorn(p, io, err)) return s;
  try {
    SinkhornProblem pb;
    pb.x = io->x;
    pb.n = p->n;
    pb.k = p->k;
    pb.logits = p->input_kind == OTLM_INPUT_LOGITS;
    pb.row_marginal = io->row_marginal;
    pb.col_marginal = io->col_marginal;
    pb.warm_start = p->warm_start != 0;
    pb.threads = p->threads;
    CpuSinkhornPasses passes(pb, io->f, io->g);
    return driver::solve(*p, *io, passes, rep, err);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "sinkhorn: out of memory (n=%lld, k=%lld)", (long long)p->n,
                (long long)p->k);
  } catch (const std::exception& x) {
    return fail(err, OTLM_EINTERNAL, "sinkhorn: %s", x.what());
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "sinkhorn: unexpected internal error");
  }
}

}  // namespace otlm::cpu
