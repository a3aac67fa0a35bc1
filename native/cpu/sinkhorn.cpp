// CPU log-domain Sinkhorn (otlm.h): one fused pass over the matrix per iteration.
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
// ε-scaling: stages λ_s = max(λ, λ0·factor^s) with λ0 = the mean row range of the
// cost; a stage ends when its column error is under max(tol, 1e-2) or after 50
// iterations, and f and g carry over to the next stage. Acceleration (overrelax
// > 1): Newton steps on the semi-dual in g when k <= 64 (class Newton), Anderson
// mixing of the g-updates otherwise (class Anderson); both restart at each stage.
// Convergence (error < tol) is only declared at the target λ; every check is on
// an exact-row plan.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "cpu_internal.h"
#include "otlm/validate.h"
#include "simd_exp.h"
#include "thread_pool.h"

namespace otlm::cpu {

const char* simd_level() { return simd::level_name(simd::active_level()); }

namespace {

constexpr double kRowLo = 1e-20, kRowHi = 1e20;  // safe range of a shifted row sum
constexpr double kColTiny = 1e-30;               // colsum < kColTiny·c_j → exact column LSE
constexpr int64_t kColBlock = 256;               // columns per merge task
constexpr double kStageTol = 1e-2;               // ε-scaling: column error that ends a stage
constexpr int kStageCap = 50;                    // ε-scaling: iterations per stage at most

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fixed decomposition: at most 128 row chunks of at least ~64k elements each.
struct Layout {
  int64_t rows_per_chunk, nchunks, ncolblocks;
  Layout(int64_t n, int64_t k) {
    rows_per_chunk = std::max<int64_t>(ceil_div(n, 128), ceil_div(65536, k));
    rows_per_chunk = std::min(std::max<int64_t>(rows_per_chunk, 1), n);
    nchunks = ceil_div(n, rows_per_chunk);
    ncolblocks = ceil_div(k, kColBlock);
  }
};

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

struct ChunkState {
  int64_t fallbacks = 0;
  int64_t bad_index = -1;  // first non-finite input element (flat index)
  bool nonfinite = false;  // a potential became NaN/Inf
  double dlse = 0;         // Σ_i r_i (a_old_i - a_new_i): change of the semi-dual's row part
};

// Acceleration (params.overrelax = ω > 1): Anderson mixing (type II, memory 8)
// of the g-updates with relaxation β = ω. With r_t = log c - log colsum_t (the
// plain update of h = g/λ) and the last m differences ΔH, ΔR of h and r:
//     γ = argmin ||r_t - ΔR γ||²   (normal equations, Tikhonov 1e-10·trace)
//     h_{t+1} = h_t + ω r_t - (ΔH + ω ΔR) γ
// With no history this is exactly the over-relaxed update h += ω r, and for a
// linear fixed-point map it behaves like restarted GMRES, so it beats the best
// fixed SOR factor (whose rate is ω*-1): on long-tailed logits (k = 100), ~6-20x
// fewer iterations than plain Sinkhorn at λ = 0.1..0.01.
// Every f update stays a plain one, so rows are exact and `error` is exact at
// every iteration. Safety rule: the history is dropped (next step = plain
// over-relaxed step) when the error exceeds 10x its best value or has not
// improved for 20 iterations; after 5 such restarts the stage continues as
// plain Sinkhorn. Used when k > Newton::kMaxK; restarted at each ε-scaling stage.
class Anderson {
 public:
  Anderson(int64_t k, double beta) : k_(k), beta_(beta), off_(beta <= 1) {}
  bool enabled() const { return !off_; }
  void reset() {  // new λ: the history is of another map
    H_.clear();
    R_.clear();
    best_ = HUGE_VAL;
    restarts_ = 0;
    off_ = beta_ <= 1;
  }
  int restarts() const { return restarts_; }

  // h: current h (in/out), r: plain residual. err: exact column error of this iterate.
  void step(std::vector<double>& h, const std::vector<double>& r, double err, int64_t it) {
    if (off_) {
      for (int64_t j = 0; j < k_; ++j) h[size_t(j)] += r[size_t(j)];
      return;
    }
    if (err < best_) { best_ = err; best_it_ = it; }
    else if (err > 10 * best_ || it - best_it_ > 20) restart(err, it);
    H_.push_back(h);
    R_.push_back(r);
    if (int(H_.size()) > kMem + 1) { H_.erase(H_.begin()); R_.erase(R_.begin()); }
    const int m = int(H_.size()) - 1;
    std::vector<double> hn(h);
    for (int64_t j = 0; j < k_; ++j) hn[size_t(j)] += beta_ * r[size_t(j)];
    if (m > 0) {
      // dR_i = R[i+1]-R[i]; normal equations (m x m), solved by Gaussian elimination
      std::vector<double> A(size_t(m * m), 0.0), b(size_t(m), 0.0), gam(size_t(m), 0.0);
      std::vector<std::vector<double>> dR(static_cast<size_t>(m), std::vector<double>(static_cast<size_t>(k_)));
      for (int i = 0; i < m; ++i)
        for (int64_t j = 0; j < k_; ++j) dR[size_t(i)][size_t(j)] = R_[size_t(i + 1)][size_t(j)] - R_[size_t(i)][size_t(j)];
      double tr = 0;
      for (int i = 0; i < m; ++i) {
        for (int q = 0; q <= i; ++q) {
          double acc = 0;
          for (int64_t j = 0; j < k_; ++j) acc += dR[size_t(i)][size_t(j)] * dR[size_t(q)][size_t(j)];
          A[size_t(i * m + q)] = A[size_t(q * m + i)] = acc;
        }
        double acc = 0;
        for (int64_t j = 0; j < k_; ++j) acc += dR[size_t(i)][size_t(j)] * r[size_t(j)];
        b[size_t(i)] = acc;
        tr += A[size_t(i * m + i)];
      }
      for (int i = 0; i < m; ++i) A[size_t(i * m + i)] += 1e-10 * tr + 1e-300;
      if (solve_spd(A, b, gam, m)) {
        for (int i = 0; i < m; ++i) {
          const double gi = gam[size_t(i)];
          for (int64_t j = 0; j < k_; ++j)
            hn[size_t(j)] -= gi * ((H_[size_t(i + 1)][size_t(j)] - H_[size_t(i)][size_t(j)]) + beta_ * dR[size_t(i)][size_t(j)]);
        }
      }
    }
    bool finite = true;
    for (double v : hn) finite = finite && std::isfinite(v);
    if (finite) h.swap(hn);
    else { restart(err, it); for (int64_t j = 0; j < k_; ++j) h[size_t(j)] += r[size_t(j)]; }
  }

 private:
  static constexpr int kMem = 8;
  void restart(double err, int64_t it) {
    H_.clear();
    R_.clear();
    best_ = err;
    best_it_ = it;
    if (++restarts_ >= 5) off_ = true;
  }
  // Gaussian elimination with partial pivoting; false if singular.
  static bool solve_spd(std::vector<double> A, std::vector<double> b, std::vector<double>& x, int m) {
    for (int c = 0; c < m; ++c) {
      int piv = c;
      for (int i = c + 1; i < m; ++i)
        if (std::fabs(A[size_t(i * m + c)]) > std::fabs(A[size_t(piv * m + c)])) piv = i;
      if (!(std::fabs(A[size_t(piv * m + c)]) > 0)) return false;
      if (piv != c) {
        for (int q = 0; q < m; ++q) std::swap(A[size_t(c * m + q)], A[size_t(piv * m + q)]);
        std::swap(b[size_t(c)], b[size_t(piv)]);
      }
      for (int i = c + 1; i < m; ++i) {
        double f = A[size_t(i * m + c)] / A[size_t(c * m + c)];
        for (int q = c; q < m; ++q) A[size_t(i * m + q)] -= f * A[size_t(c * m + q)];
        b[size_t(i)] -= f * b[size_t(c)];
      }
    }
    for (int i = m - 1; i >= 0; --i) {
      double acc = b[size_t(i)];
      for (int q = i + 1; q < m; ++q) acc -= A[size_t(i * m + q)] * x[size_t(q)];
      x[size_t(i)] = acc / A[size_t(i * m + i)];
    }
    for (int i = 0; i < m; ++i)
      if (!std::isfinite(x[size_t(i)])) return false;
    return true;
  }
  int64_t k_;
  double beta_;
  bool off_;
  int restarts_ = 0;
  double best_ = HUGE_VAL;
  int64_t best_it_ = 0;
  std::vector<std::vector<double>> H_, R_;
};

// Acceleration for small k (params.overrelax > 1, k <= kNewtonMaxK): damped Newton
// steps on the semi-dual in h = g/λ,
//     F(h) = Σ_i r_i LSE_j(α x_ij + h_j) - Σ_j c_j h_j,
// whose gradient is colsum(h) - c (colsum of the exact-row plan of the pass) and
// whose Hessian is the graph Laplacian L = diag(W 1) - W with
// W_jk = Σ_i P_ij P_ik / r_i (j != k). The off-diagonal sums are accumulated in the
// fused pass (k(k-1)/2 products per row) and the diagonal is taken from L 1 = 0, so
// there is no cancellation even when rows are nearly one-hot (small λ). Plain
// Sinkhorn is the same iteration with L replaced by diag(colsum), which is why it
// crawls when the plan is nearly hard (its rate → 1) while Newton does not care.
// Steps: solve (L + τ 11ᵀ + ρ I) δ = c - colsum (Cholesky, τ = mean diagonal, so δ
// is the minimum-norm step; ρ grows from 1e-12·τ if L is numerically indefinite),
// cap max|δ| at kMaxStep, then backtrack: a trial h_b + tδ is accepted when the
// semi-dual decreased by Armijo's rule (its exact change comes for free from the
// next pass: Σ_i r_i (a_old - a_new) - cᵀΔh) or when the column error halved;
// otherwise t /= 4, and below t = 1/64 the step falls back to a plain Sinkhorn
// step and kCooldown plain iterations. Every pass is counted as an iteration and
// every f update is a plain one, so the semantics of `error` are unchanged.
class Newton {
 public:
  static constexpr int64_t kMaxK = 64;
  Newton(int64_t k, bool on) : k_(k), on_(on && k >= 2 && k <= kMaxK) {
    if (on_) {
      hb_.resize(size_t(k)); rb_.resize(size_t(k)); d_.resize(size_t(k));
      L_.resize(size_t(k * k));
    }
  }
  bool enabled() const { return on_; }
  bool wants_hessian() const { return on_ && cool_ == 0; }
  int64_t rejected() const { return rejected_; }
  void reset() { have_base_ = false; cool_ = 0; F_ = 0; }

  // h: the point of this pass (in/out); resid: plain step log c - log colsum;
  // W: merged off-diagonal weights (k*k, upper triangle j<q used), or null;
  // dF: F(h) - F(previous pass's h), NaN when not comparable (new λ / first pass).
  void step(std::vector<double>& h, const std::vector<double>& resid, const std::vector<double>& colsum,
            const double* cm, double err, double dF, const double* W) {
    const size_t k = size_t(k_);
    if (std::isfinite(dF)) F_ += dF;
    else { F_ = 0; have_base_ = false; }
    if (have_base_) {  // this pass evaluated the trial h_b + t δ
      const bool ok = F_ <= Fb_ + 1e-4 * t_ * slope_ || err < 0.5 * errb_;
      if (!ok) {
        ++rejected_;
        t_ *= 0.25;
        if (t_ < 1.0 / 64) {
          for (size_t j = 0; j < k; ++j) h[j] = hb_[j] + rb_[j];
          have_base_ = false;
          cool_ = kCooldown;
        } else {
          for (size_t j = 0; j < k; ++j) h[j] = hb_[j] + t_ * d_[j];
        }
        return;
      }
    }
    have_base_ = false;
    if (cool_ > 0 || !W) {
      if (cool_ > 0) --cool_;
      for (size_t j = 0; j < k; ++j) h[j] += resid[j];
      return;
    }
    // Laplacian + gauge term; right-hand side b = c - colsum (sums to ~0)
    double trace = 0;
    for (size_t j = 0; j < k; ++j) {
      double dsum = 0;
      for (size_t q = 0; q < k; ++q) {
        if (q == j) continue;
        double w = j < q ? W[j * k + q] : W[q * k + j];
        L_[j * k + q] = -w;
        dsum += w;
      }
      L_[j * k + j] = dsum;
      trace += dsum;
    }
    const double tau = trace / double(k);
    std::vector<double> b(k);
    for (size_t j = 0; j < k; ++j) b[j] = cm[j] - colsum[j];
    bool solved = false;
    if (tau > 0 && std::isfinite(tau)) {
      for (double rho = 1e-12 * tau; rho < tau && !solved; rho *= 1e3) solved = chol_solve(tau, rho, b);
    }
    double slope = 0, dmax = 0;
    if (solved) {
      for (size_t j = 0; j < k; ++j) {
        slope -= b[j] * d_[j];  // ∇F·δ = (colsum - c)·δ
        dmax = std::max(dmax, std::fabs(d_[j]));
      }
    }
    if (!solved || !(slope < 0) || !std::isfinite(dmax)) {
      for (size_t j = 0; j < k; ++j) h[j] += resid[j];
      return;
    }
    hb_ = h;
    rb_ = resid;
    errb_ = err;
    Fb_ = F_;
    slope_ = slope;
    t_ = dmax > kMaxStep ? kMaxStep / dmax : 1.0;
    have_base_ = true;
    for (size_t j = 0; j < k; ++j) h[j] = hb_[j] + t_ * d_[j];
  }

 private:
  static constexpr double kMaxStep = 8;  // max |δ_j| of one step (e^8 ≈ 3000x mass change)
  static constexpr int kCooldown = 5;
  // Cholesky of L + tau 11ᵀ + rho I; solution into d_. false if not positive definite.
  bool chol_solve(double tau, double rho, const std::vector<double>& b) {
    const size_t k = size_t(k_);
    std::vector<double> A(k * k);
    for (size_t j = 0; j < k; ++j)
      for (size_t q = 0; q < k; ++q) A[j * k + q] = L_[j * k + q] + tau + (j == q ? rho : 0.0);
    for (size_t j = 0; j < k; ++j) {
      double dgl = A[j * k + j];
      for (size_t p = 0; p < j; ++p) dgl -= A[j * k + p] * A[j * k + p];
      if (!(dgl > 1e-14 * (tau + rho))) return false;
      dgl = std::sqrt(dgl);
      A[j * k + j] = dgl;
      for (size_t i = j + 1; i < k; ++i) {
        double v = A[i * k + j];
        for (size_t p = 0; p < j; ++p) v -= A[i * k + p] * A[j * k + p];
        A[i * k + j] = v / dgl;
      }
    }
    for (size_t j = 0; j < k; ++j) {
      double v = b[j];
      for (size_t p = 0; p < j; ++p) v -= A[j * k + p] * d_[p];
      d_[j] = v / A[j * k + j];
    }
    for (size_t j = k; j-- > 0;) {
      double v = d_[j];
      for (size_t p = j + 1; p < k; ++p) v -= A[p * k + j] * d_[p];
      d_[j] = v / A[j * k + j];
    }
    for (size_t j = 0; j < k; ++j)
      if (!std::isfinite(d_[j])) return false;
    return true;
  }
  int64_t k_;
  bool on_;
  bool have_base_ = false;
  int cool_ = 0;
  int64_t rejected_ = 0;
  double F_ = 0, Fb_ = 0, errb_ = 0, slope_ = 0, t_ = 1;
  std::vector<double> hb_, rb_, d_, L_;
};

otlm_status run(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                otlm_sinkhorn_report* rep, otlm_error* err) {
  auto t0 = std::chrono::steady_clock::now();
  const int64_t n = p->n, k = p->k;
  const bool logits = p->input_kind == OTLM_INPUT_LOGITS;
  const int threads = p->threads > 0 ? p->threads : default_threads();
  const simd::Kernels& K = simd::kernels();
  const Layout L(n, k);
  const float* x = io->x;
  const double* rm = io->row_marginal;
  const double* cm = io->col_marginal;
  const double lambda = p->lambda;

  std::vector<double> f(static_cast<size_t>(n)), g(static_cast<size_t>(k)), h(static_cast<size_t>(k)), lse;
  std::vector<double> part, colsum(static_cast<size_t>(k)), resid(static_cast<size_t>(k)),
      errpart(static_cast<size_t>(L.ncolblocks));
  std::vector<float> ebuf;
  std::vector<double> logc(static_cast<size_t>(k));
  std::vector<ChunkState> cs(static_cast<size_t>(L.nchunks));
  try {
    part.resize(size_t(L.nchunks * k));
    ebuf.resize(size_t(L.nchunks * k));
    if (logits) lse.resize(size_t(n));
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "sinkhorn: out of memory allocating %lld bytes of work buffers",
                (long long)(L.nchunks * k * 20 + n * 24));
  }
  double rsum = 0;
  for (int64_t i = 0; i < n; ++i) rsum += rm ? rm[i] : 1.0;
  for (int64_t j = 0; j < k; ++j) logc[size_t(j)] = std::log(cm[j]);
  if (p->warm_start) {
    std::copy(io->f, io->f + n, f.begin());  // for LOGITS, lse is subtracted in the first pass
    std::copy(io->g, io->g + k, g.begin());
  }

  // ε-scaling start: λ0 = mean row range of the cost (a plan at λ ≥ the cost's
  // spread is nearly flat and Sinkhorn is already converged there).
  double lambda0 = lambda;
  if (p->eps_scaling > 0) {
    std::vector<double> rng(static_cast<size_t>(L.nchunks));
    parallel_for(L.nchunks, threads, [&](int64_t c) {
      int64_t i0 = c * L.rows_per_chunk, i1 = std::min(n, i0 + L.rows_per_chunk);
      double acc = 0;
      for (int64_t i = i0; i < i1; ++i) {
        const float* row = x + i * k;
        acc += K.max_affine(row, k, 1.0, nullptr) + K.max_affine(row, k, -1.0, nullptr);
      }
      rng[size_t(c)] = acc;
    });
    double tot = 0;
    for (double v : rng) tot += v;
    double scale = tot / double(n);
    if (std::isfinite(scale) && scale > lambda) lambda0 = scale;
  }

  // Acceleration: Newton on the semi-dual for small k, Anderson mixing otherwise.
  Newton newton(k, p->overrelax > 1);
  Anderson accel(k, newton.enabled() ? 1.0 : p->overrelax);
  std::vector<double> W, hprev(static_cast<size_t>(k));
  if (newton.enabled()) W.resize(size_t(L.nchunks * k * k));
  int64_t fallbacks = 0;
  int32_t trace_len = 0, it = 0;
  double error = HUGE_VAL;
  bool converged = false, scaled_any = false, aborted = false;
  // ε-scaling stages: λ_s = max(λ, λ0·factor^s); a stage ends when its error is
  // under kStageTol (or tol, if larger) or after kStageCap iterations; f and g
  // carry over to the next stage.
  int stage = 0, stage_it = 0;
  auto stage_lambda = [&](int s) {
    return lambda0 > lambda ? std::max(lambda, lambda0 * std::pow(p->eps_scaling, double(s))) : lambda;
  };
  double lam_t = stage_lambda(0);
  bool new_stage = true;

  for (it = 1; it <= p->max_iter; ++it) {
    const bool first = it == 1;
    const bool at_target = lam_t == lambda;
    const double inv = 1.0 / lam_t, alpha = logits ? inv : -inv;
    if (new_stage) {
      for (int64_t j = 0; j < k; ++j) h[size_t(j)] = g[size_t(j)] * inv;
      newton.reset();
      accel.reset();
    }
    const bool comparable = !new_stage;  // a_old and hprev are at this λ: ΔF is exact
    const bool hess = newton.wants_hessian();
    ++stage_it;
    const bool last = it == p->max_iter;
    const bool check = (it % p->check_every == 0) || last;
    const bool fast_ok = !first || p->warm_start;
    // ---- fused row pass: f update + column partials of the updated plan
    parallel_for(L.nchunks, threads, [&](int64_t c) {
      ChunkState& st = cs[size_t(c)];
      double* pc = part.data() + c * k;
      float* e = ebuf.data() + c * k;
      double* wc = hess ? W.data() + c * k * k : nullptr;
      std::fill(pc, pc + k, 0.0);
      if (wc) std::fill(wc, wc + k * k, 0.0);
      st.dlse = 0;
      int64_t i0 = c * L.rows_per_chunk, i1 = std::min(n, i0 + L.rows_per_chunk);
      for (int64_t i = i0; i < i1; ++i) {
        const float* row = x + i * k;
        const double r = rm ? rm[i] : 1.0;
        if (first) {
          int64_t b = first_nonfinite(row, k);
          if (b >= 0) {
            if (st.bad_index < 0) st.bad_index = i * k + b;
            return;
          }
          if (logits) {
            double m0 = K.max_affine(row, k, 1.0, nullptr);
            lse[size_t(i)] = m0 + std::log(K.exp_affine_sum(row, k, 1.0, nullptr, -m0, e));
            if (p->warm_start) f[size_t(i)] -= lse[size_t(i)];
          }
        }
        const double a_old = f[size_t(i)] * inv;
        double s = 0, base = 0;
        bool exact = !fast_ok;
        if (fast_ok) {
          s = K.exp_affine_sum(row, k, alpha, h.data(), a_old, e);
          base = a_old;
          exact = !(s >= kRowLo && s <= kRowHi);
        }
        if (exact) {
          double m = K.max_affine(row, k, alpha, h.data());
          base = -m;
          s = K.exp_affine_sum(row, k, alpha, h.data(), base, e);
          ++st.fallbacks;
        }
        const double a_plain = base + std::log(r / s);
        if (!std::isfinite(a_plain)) { st.nonfinite = true; return; }
        f[size_t(i)] = a_plain * lam_t;
        K.axpy(pc, e, r / s, k);  // Y_ij = e_ij · r_i / s_i
        st.dlse += r * (a_old - a_plain);
        if (wc) {  // W_jq += Y_ij Y_iq / r_i, j < q
          const double w = r / (s * s);
          for (int64_t j = 0; j + 1 < k; ++j) {
            const double ej = w * double(e[j]);
            double* wr = wc + j * k;
            for (int64_t q = j + 1; q < k; ++q) wr[q] += ej * double(e[q]);
          }
        }
      }
    });
    for (int64_t c = 0; c < L.nchunks; ++c) {
      ChunkState& st = cs[size_t(c)];
      if (st.bad_index >= 0)
        return fail(err, OTLM_EINVAL, "sinkhorn: input x[%lld] (row %lld, column %lld) is not finite",
                    (long long)st.bad_index, (long long)(st.bad_index / k), (long long)(st.bad_index % k));
      if (st.nonfinite)
        return fail(err, OTLM_ENONFINITE,
                    "sinkhorn: a row potential became non-finite at iteration %d (lambda %g)", it, lam_t);
      fallbacks += st.fallbacks;
      st.fallbacks = 0;
    }
    double dF = HUGE_VAL;  // F(h) - F(hprev), the semi-dual's change since the last pass
    if (comparable && !first) {
      double acc = 0;
      for (int64_t c = 0; c < L.nchunks; ++c) acc += cs[size_t(c)].dlse;
      for (int64_t j = 0; j < k; ++j) acc -= cm[j] * (h[size_t(j)] - hprev[size_t(j)]);
      dF = acc;
    }
    hprev = h;
    if (hess)  // merge the Hessian partials in chunk order (into chunk 0's slot)
      for (int64_t c = 1; c < L.nchunks; ++c)
        for (int64_t q = 0; q < k * k; ++q) W[size_t(q)] += W[size_t(c * k * k + q)];
    if (!first || p->warm_start) scaled_any = true;

    // ---- merge column partials in chunk order; error of the exact-row plan
    parallel_for(L.ncolblocks, threads, [&](int64_t b) {
      int64_t j0 = b * kColBlock, j1 = std::min(k, j0 + kColBlock);
      for (int64_t j = j0; j < j1; ++j) colsum[size_t(j)] = 0;
      for (int64_t c = 0; c < L.nchunks; ++c) {
        const double* pc = part.data() + c * k;
        for (int64_t j = j0; j < j1; ++j) colsum[size_t(j)] += pc[j];
      }
      double acc = 0;
      for (int64_t j = j0; j < j1; ++j) acc += std::fabs(colsum[size_t(j)] - cm[j]);
      errpart[size_t(b)] = acc;
    });
    double esum = 0;
    for (double v : errpart) esum += v;
    error = esum / rsum;
    if (std::isnan(error))
      return fail(err, OTLM_ENONFINITE, "sinkhorn: column sums became NaN at iteration %d", it);

    if (check) {
      if (io->error_trace && trace_len < io->error_trace_cap) io->error_trace[trace_len++] = error;
      if (at_target && error < p->tol) converged = true;
      if (io->cancel && *io->cancel) aborted = true;
    }
    if (converged || last || aborted) break;

    // ---- g update: residual r_j = log c_j - log colsum_j (exact column LSE where the
    // sum underflowed), then h += r, or the accelerated step at the target λ
    std::vector<int64_t> flagged;
    for (int64_t j = 0; j < k; ++j) {
      double cj = colsum[size_t(j)];
      if (cj >= kColTiny * cm[j] && cj <= 1e300)
        resid[size_t(j)] = logc[size_t(j)] - std::log(cj);
      else
        flagged.push_back(j);
    }
    if (!flagged.empty()) {
      const int64_t nf = int64_t(flagged.size());
      std::vector<double> mx, sm;
      try {
        mx.assign(size_t(L.nchunks * nf), -HUGE_VAL);
        sm.assign(size_t(L.nchunks * nf), 0.0);
      } catch (const std::bad_alloc&) {
        return fail(err, OTLM_ENOMEM, "sinkhorn: out of memory in the column fallback");
      }
      parallel_for(L.nchunks, threads, [&](int64_t c) {
        double* m = mx.data() + c * nf;
        double* s = sm.data() + c * nf;
        int64_t i0 = c * L.rows_per_chunk, i1 = std::min(n, i0 + L.rows_per_chunk);
        for (int64_t i = i0; i < i1; ++i) {
          const double a = f[size_t(i)] * inv;
          const float* row = x + i * k;
          for (int64_t q = 0; q < nf; ++q) {
            int64_t j = flagged[size_t(q)];
            double v = a + alpha * double(row[j]) + h[size_t(j)];
            if (v > m[q]) { s[q] = s[q] * std::exp(m[q] - v) + 1.0; m[q] = v; }
            else s[q] += std::exp(v - m[q]);
          }
        }
      });
      for (int64_t q = 0; q < nf; ++q) {
        double M = -HUGE_VAL, S = 0;
        for (int64_t c = 0; c < L.nchunks; ++c) {
          double m = mx[size_t(c * nf + q)], s = sm[size_t(c * nf + q)];
          if (m == -HUGE_VAL) continue;
          if (m > M) { S = S * std::exp(M - m) + s; M = m; }
          else S += s * std::exp(m - M);
        }
        int64_t j = flagged[size_t(q)];
        double lse_col = M + std::log(S);  // log colsum_j, exactly
        resid[size_t(j)] = logc[size_t(j)] - lse_col;
      }
      fallbacks += nf;
    }
    if (newton.enabled()) {
      newton.step(h, resid, colsum, cm, error, dF, hess ? W.data() : nullptr);
    } else if (accel.enabled()) {
      accel.step(h, resid, error, it);
    } else {
      for (int64_t j = 0; j < k; ++j) h[size_t(j)] += resid[size_t(j)];
    }
    for (int64_t j = 0; j < k; ++j) {
      if (!std::isfinite(h[size_t(j)]))
        return fail(err, OTLM_ENONFINITE,
                    "sinkhorn: column potential g[%lld] became non-finite at iteration %d (lambda %g)",
                    (long long)j, it, lam_t);
      g[size_t(j)] = h[size_t(j)] * lam_t;
    }
    new_stage = false;
    if (!at_target && (error < std::max(p->tol, kStageTol) || stage_it >= kStageCap)) {
      lam_t = stage_lambda(++stage);
      stage_it = 0;
      new_stage = true;
    }
  }
  if (it > p->max_iter) it = p->max_iter;

  // ---- final pass: plan rows exp(a_i + α x_ij + h_j) (sum to r_i) and predictions
  {
    const double inv = 1.0 / lam_t, alpha = logits ? inv : -inv;
    if (io->plan || io->predictions) {
      parallel_for(L.nchunks, threads, [&](int64_t c) {
        int64_t i0 = c * L.rows_per_chunk, i1 = std::min(n, i0 + L.rows_per_chunk);
        for (int64_t i = i0; i < i1; ++i) {
          const float* row = x + i * k;
          if (io->plan) K.exp_affine_sum(row, k, alpha, h.data(), f[size_t(i)] * inv, io->plan + i * k);
          if (io->predictions) io->predictions[i] = argmax_affine(row, k, alpha, h.data());
        }
      });
    }
  }
  for (int64_t i = 0; i < n; ++i) io->f[i] = f[size_t(i)] + (logits ? lse[size_t(i)] : 0.0);
  for (int64_t j = 0; j < k; ++j) io->g[j] = g[size_t(j)];

  if (rep) {
    rep->iterations = it;
    rep->error = error;
    rep->converged = converged ? 1 : 0;
    rep->mode = (scaled_any ? OTLM_MODE_SCALING : 0) | (fallbacks > 0 ? OTLM_MODE_LOG : 0);
    rep->log_fallbacks = fallbacks;
    rep->trace_len = trace_len;
    rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (aborted) return fail(err, OTLM_EABORTED, "sinkhorn: cancelled after %d iterations", it);
  return OTLM_OK;
}

}  // namespace

otlm_status sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                     otlm_sinkhorn_report* rep, otlm_error* err) {
  if (otlm_status s = validate_sinkhorn(p, io, err)) return s;
  try {
    return run(p, io, rep, err);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "sinkhorn: out of memory (n=%lld, k=%lld)", (long long)p->n,
                (long long)p->k);
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "sinkhorn: unexpected internal error");
  }
}

}  // namespace otlm::cpu
