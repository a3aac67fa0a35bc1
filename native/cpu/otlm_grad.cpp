// OTLM loss and gradient on the CPU (docs/architecture.md "OTLM", otlm.h):
//   A = Φ_B W + b, logZ = log_softmax(A), M = -logZ, (f, g) = Sinkhorn_T(M, λ, r = 1, c = B·μ),
//   Y = exp((f ⊕ g - M)/λ),  L = (<Y, M> + λ<Y, log Y>)/B = (Σ_i f_i·rowsum_i + Σ_j g_j·colsum_j)/B.
//
// Forward: the shared Sinkhorn driver with the CPU passes (sinkhorn.cpp): iteration t computes
// f_t = F(g_{t-1}) row by row and, in the same pass, the column sums of the plan
// exp((f_t ⊕ g_{t-1} - M)/λ), which give both the column error and g_t = g_{t-1} + λ(log c - log colsum).
// Columns whose sum underflows get an exact log-sum-exp.
//
// Backward (unrolled): reverse mode through the recurrences, storing only f_t, g_t. With
//   P^f_t = exp((f_t ⊕ g_{t-1} - M)/λ)  (∂f_t,i/∂g_{t-1,j} = -P^f_ij, ∂f_t,i/∂M_ij = P^f_ij)
//   P^g_t = exp((f_t ⊕ g_t - M)/λ)      (∂g_t,j/∂f_t,i = -P^g_ij/c_j, ∂g_t,j/∂M_ij = P^g_ij/c_j)
// one pass per t = S..1 does, for each row i: f̄_t,i = -Σ_j (ḡ_t,j/c_j) P^g_ij (or, for t = S, the
// direct terms of L), M̄_ij += (ḡ_t,j/c_j) P^g_ij + f̄_t,i P^f_ij, and ḡ_{t-1,j} -= Σ_i f̄_t,i P^f_ij.
// The last pass (t = 1) finishes row i of M̄ and turns it into dL/dA through log_softmax while hot.
// Envelope: M̄ = Y/B (Danskin), one pass. Then dL/dW = Φ_Bᵀ dL/dA.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu_internal.h"
#include "otlm/driver.h"
#include "otlm/validate.h"
#include "otlm_engine.h"
#include "sinkhorn_passes.h"
#include "otlm_kernels.h"
#include "thread_pool.h"

namespace otlm::cpu {

namespace {
constexpr int64_t kRowsPerTask = 64;  // fixed row chunk: results independent of the thread count
// The unrolled backward keeps P^f_t (b×k floats) for the next pass when the batch has at most this
// many elements (64 MB), and derives P^g_{t-1} from it instead of recomputing its exps.
constexpr int64_t kReusePlanMax = int64_t(1) << 24;
// ... for the rows whose scale exp((f_{t-1} - f_t)/λ) stays within e^±60 (a float holds e^±87).
constexpr double kReuseMaxShift = 60;
// Within a pass, P^f_t = P^g_t·exp((g_{t-1} - g_t)/λ) column by column, so the pass needs no exp
// at all when both scalings apply. Each pass then adds a few float roundings to the kept plan, so
// every kExactEvery-th pass computes both plans by exp again (docs/architecture.md, "Driver and
// passes").
constexpr int32_t kExactEvery = 8;

// The per-column values of backward pass t, shared by the row and block paths: gp = g_{t-1}/λ,
// gc = g_t/λ and a = ḡ_t/c (t < S), and the column scales cs = exp(gp_j - gc_j) of a derived pass.
struct PassColumns {
  std::vector<double> gp, gc;
  std::vector<float> a, cs;
  explicit PassColumns(int64_t k) : gp(size_t(k)), gc(size_t(k)), a(size_t(k)), cs(size_t(k)) {}
  // Returns whether pass t derives its plans by scaling: not for t = S, every kExactEvery-th pass
  // (t = S - kExactEvery·m), nor when a column scale leaves e^±kReuseMaxShift (exact passes).
  bool prepare(int32_t S, int32_t t, const double* G, const double* gbar, const std::vector<double>& c, double lam) {
    const size_t k = gp.size();
    const double* gprev = G + size_t(t - 1) * k;
    for (size_t j = 0; j < k; ++j) gp[j] = gprev[j] / lam;
    if (t == S) return false;
    const double* gcur = G + size_t(t) * k;
    for (size_t j = 0; j < k; ++j) {
      gc[j] = gcur[j] / lam;
      a[j] = float(gbar[j] / c[j]);
    }
    if ((S - t) % kExactEvery == 0) return false;
    for (size_t j = 0; j < k; ++j) {
      const double d = gp[j] - gc[j];
      if (!(std::fabs(d) <= kReuseMaxShift)) return false;
      cs[j] = float(std::exp(d));
    }
    return true;
  }
};

struct Scratch {
  std::vector<float> a, b;
  void ensure(int64_t k) {
    if (int64_t(a.size()) < k) {
      a.resize(size_t(k));
      b.resize(size_t(k));
    }
  }
};
Scratch& scratch(int64_t k) {
  thread_local Scratch s;
  s.ensure(k);
  return s;
}

int64_t task_count(int64_t b) { return (b + kRowsPerTask - 1) / kRowsPerTask; }
// Up to this k the unrolled backward runs on blocks of 16 rows (backward_blocks); rows padded to 16.
constexpr int64_t kBlockMaxK = 16;
int64_t padded_rows(int64_t b) { return (b + 15) / 16 * 16; }
bool use_blocks(int64_t b, int64_t k) {
  const char* env = std::getenv("OTLM_SMALL_K");  // "0": the row kernels (tests compare the two)
  return k <= kBlockMaxK && padded_rows(b) * k <= kReusePlanMax && !(env && !std::strcmp(env, "0"));
}
// Per-task column accumulators padded to whole cache lines: at small k, tasks on different threads
// would otherwise write the same lines on every row.
int64_t acc_stride(int64_t k) { return (k + 15) / 16 * 16; }

// Sums the per-task column accumulators in task order.
void merge_columns(const LineVector<double>& colacc, int64_t tasks, int64_t k, double* out) {
  for (int64_t j = 0; j < k; ++j) out[j] = 0;
  for (int64_t t = 0; t < tasks; ++t) {
    const double* a = colacc.data() + t * acc_stride(k);
    for (int64_t j = 0; j < k; ++j) out[j] += a[j];
  }
}
// The unrolled backward (the loop at the end of otlm_forward_backward) for k <= kBlockMaxK: the
// same passes on blocks of 16 rows by the blk_* kernels, one row per lane, with L, P^f and M̄ kept
// in the blocks' layout (column j of a block at [16j, 16j + 16)) until the last pass writes dL/dA
// as rows. At k = 10 a row kernel spent most of its time on padding lanes and its horizontal sums.
void backward_blocks(int64_t b, int64_t k, double lam, int32_t S, const double* F, const double* G,
                     const std::vector<double>& c, const float* L, float* D, OtlmWorkspace& ws,
                     const OtlmKernels& kr, int threads) {
  const double invlam = 1.0 / lam;
  const float invB = float(1.0 / double(b));
  const int64_t tasks = task_count(b);
  float* Lt = ws.lt.data();
  float* PF = ws.pf.data();
  float* Dt = ws.dt.data();
  PassColumns col(k);
  double* gbar = ws.gbar.data();
  for (int32_t t = S; t >= 1; --t) {
    const double* ft = F + size_t(t - 1) * b;
    const double* fnext = t < S ? F + size_t(t) * b : nullptr;
    const bool derive = col.prepare(S, t, G, gbar, c, lam);  // else an exact pass
    const bool want_cols = t > 1;
    parallel_for(tasks, threads, [&](int64_t task) {
      double* acc = want_cols ? ws.colacc.data() + task * acc_stride(k) : nullptr;
      alignas(64) double lanes[16 * kBlockMaxK];  // column sums per row lane, merged in lane order below
      if (acc) std::fill(lanes, lanes + 16 * k, 0.0);
      const int64_t i1 = std::min(b, (task + 1) * kRowsPerTask);
      for (int64_t r0 = task * kRowsPerTask; r0 < i1; r0 += 16) {
        const int64_t rows = std::min<int64_t>(16, i1 - r0);
        float* Lb = Lt + r0 * k;
        float* Pb = PF + r0 * k;
        float* Db = Dt + r0 * k;
        alignas(64) double fc[16];
        alignas(64) float scale[16];
        uint32_t reuse = 0;
        for (int64_t r = 0; r < 16; ++r) {
          fc[r] = r < rows ? ft[r0 + r] / lam : -1e30;  // padding rows: plan entries exp(-1e30) = 0
          scale[r] = 1.0f;
          if (t == S || !derive) continue;
          const double shift = r < rows ? (ft[r0 + r] - fnext[r0 + r]) * invlam : 0.0;  // P^g_t = P^f_{t+1}·e^shift
          if (std::fabs(shift) <= kReuseMaxShift) {
            reuse |= 1u << r;
            scale[r] = float(std::exp(shift));
          }
        }
        if (t == S) {
          for (int64_t j = 0; j < k; ++j)
            for (int64_t r = 0; r < 16; ++r) Lb[16 * j + r] = r < rows ? L[(r0 + r) * k + j] : 0.0f;
          kr.blk_last(Lb, col.gp.data(), fc, invlam, invB, k, Pb, Db, acc ? lanes : nullptr);
        } else {
          kr.blk_mid(Lb, col.gc.data(), col.gp.data(), fc, invlam, scale, reuse, derive ? col.cs.data() : nullptr,
                     col.a.data(), k, Pb, Db, acc ? lanes : nullptr);
        }
        if (t == 1) kr.blk_softmax_back(Lb, Db, k, rows, D + r0 * k);
      }
      if (acc)
        for (int64_t j = 0; j < k; ++j) {
          double s = 0;
          for (int l = 0; l < 16; ++l) s += lanes[16 * j + l];
          acc[j] = s;
        }
    });
    if (want_cols) merge_columns(ws.colacc, tasks, k, gbar);  // ḡ_{t-1}
  }
}
}  // namespace

void OtlmWorkspace::reserve(int64_t b, int64_t k, int32_t T) {
  const size_t bk = size_t(b) * size_t(k);
  if (logz.size() < bk) logz.resize(bk);
  if (dbuf.size() < bk) dbuf.resize(bk);
  if (k <= kBlockMaxK && padded_rows(b) * k <= kReusePlanMax) {
    const size_t pk = size_t(padded_rows(b) * k);
    if (pf.size() < pk) pf.resize(pk);
    if (lt.size() < pk) lt.resize(pk);
    if (dt.size() < pk) dt.resize(pk);
  } else if (int64_t(bk) <= kReusePlanMax && pf.size() < bk) {
    pf.resize(bk);
  }
  if (f_hist.size() < size_t(T) * size_t(b)) f_hist.resize(size_t(T) * size_t(b));
  if (g_hist.size() < size_t(T) * size_t(k)) g_hist.resize(size_t(T) * size_t(k));
  if (colacc.size() < size_t(task_count(b) * acc_stride(k))) colacc.resize(size_t(task_count(b) * acc_stride(k)));
  if (colsum.size() < size_t(k)) colsum.resize(size_t(k));
  if (fbar.size() < size_t(b)) fbar.resize(size_t(b));
  if (gbar.size() < size_t(k)) gbar.resize(size_t(k));
  if (grad.size() < size_t(k) * size_t(k)) grad.resize(size_t(k) * size_t(k));
}

otlm_status otlm_forward_backward(const otlm_train_params* p, const float* phi_b, int64_t b,
                                  const float* w, const float* bias, const double* mu,
                                  OtlmWorkspace& ws, OtlmResult& res, otlm_error* err) {
  const int64_t k = p->k;
  const int threads = resolve_threads(p->threads);
  const double lam = p->lambda;
  const double invlam = 1.0 / lam;
  const int32_t T = p->sinkhorn_iters;
  const OtlmKernels& kr = otlm_kernels();
  const int64_t tasks = task_count(b);
  try {
    ws.reserve(b, k, T);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "otlm: cannot allocate the workspace for a batch of %lld x %lld (%.1f MB)",
                (long long)b, (long long)k, 2.0 * double(b) * double(k) * 4 / 1e6);
  }
  float* L = ws.logz.data();
  float* D = ws.dbuf.data();
  std::vector<double> c(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) c[j] = double(b) * mu[j];

  // ---- A = Φ_B W + b with the row log-softmax fused in while each panel of rows is hot.
  const std::function<void(int64_t, int64_t)> log_softmax_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) kr.log_softmax_row(L + i * k, k);
  };
  gemm_nn(b, k, k, phi_b, w, bias, L, threads, &log_softmax_rows);

  // ---- Sinkhorn forward by the shared driver (plain steps, check every iteration, stop at T or
  // when the error is under tol); the hook keeps f_t (t = 1..S) and g_{t-1} for the backward.
  double* G = ws.g_hist.data();  // row t-1 holds g_{t-1}
  double* F = ws.f_hist.data();  // row t-1 holds f_t
  SinkhornProblem pb;
  pb.x = L;  // S = log Z = -M: "logits" whose rows are already log-softmax
  pb.n = b;
  pb.k = k;
  pb.logits = true;
  pb.log_probs = true;
  pb.col_marginal = c.data();
  pb.threads = threads;
  otlm_sinkhorn_params sp{};
  sp.n = b;
  sp.k = k;
  sp.input_kind = OTLM_INPUT_LOGITS;
  sp.lambda = lam;
  sp.max_iter = T;
  sp.tol = p->tol;
  sp.check_every = 1;
  sp.threads = threads;
  sp.overrelax = 1;
  std::vector<double> f_out(static_cast<size_t>(b)), g_out(static_cast<size_t>(k));
  otlm_sinkhorn_buffers io{};
  io.x = L;
  io.col_marginal = c.data();
  io.f = f_out.data();
  io.g = g_out.data();
  otlm_sinkhorn_report rep{};
  struct Record final : driver::Hooks {
    const CpuSinkhornPasses* ps = nullptr;
    double *F, *G;
    int64_t b, k;
    otlm_status after_row_pass(int t, otlm_error*) override {
      std::copy(ps->f(), ps->f() + b, F + size_t(t - 1) * b);
      std::copy(ps->g(), ps->g() + k, G + size_t(t - 1) * k);
      return OTLM_OK;
    }
  } record;
  record.F = F;
  record.G = G;
  record.b = b;
  record.k = k;
  {
    CpuSinkhornPasses passes(pb, nullptr, nullptr);
    record.ps = &passes;
    if (otlm_status st = driver::solve(sp, io, passes, &rep, err, &record)) return st;
    std::copy(passes.colsum(), passes.colsum() + k, ws.colsum.data());
  }
  const int32_t S = rep.iterations;
  const double error = rep.error;
  const int64_t fallbacks = rep.log_fallbacks;
  const double* fS = F + size_t(S - 1) * b;
  const double* gS = G + size_t(S - 1) * k;  // g_{S-1}
  double loss = 0;
  {
    // rows of the final plan sum to 1 by construction of f_S
    double sf = 0, sg = 0;
    for (int64_t i = 0; i < b; ++i) sf += fS[i];
    for (int64_t j = 0; j < k; ++j) sg += gS[j] * ws.colsum[j];
    loss = (sf + sg) / double(b);
  }
  res.loss = loss;
  res.marginal_error = error;
  res.iterations = S;
  res.log_fallbacks = fallbacks;
  if (!std::isfinite(loss))
    return fail(err, OTLM_ENONFINITE, "otlm: the loss is not finite (%g) after %d Sinkhorn iterations", loss, S);

  // ---- Backward: M̄ in D, finished into dL/dA.
  const float invB = float(1.0 / double(b));
  if (p->grad_mode == OTLM_GRAD_ENVELOPE) {
    // M̄ = Y/B with Y the final plan.
    std::vector<double> gs(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) gs[j] = gS[j] / lam;
    parallel_for(tasks, threads, [&](int64_t task) {
      const int64_t i1 = std::min(b, (task + 1) * kRowsPerTask);
      for (int64_t i = task * kRowsPerTask; i < i1; ++i) {
        float* Di = D + i * k;
        kr.exp_shift(L + i * k, gs.data(), fS[i] / lam, invlam, k, Di);
        for (int64_t j = 0; j < k; ++j) Di[j] *= invB;
        kr.softmax_back(L + i * k, k, Di);
      }
    });
  } else if (use_blocks(b, k)) {
    backward_blocks(b, k, lam, S, F, G, c, L, D, ws, kr, threads);
  } else {
    PassColumns col(k);
    double* gbar = ws.gbar.data();
    // P^g_t = exp((f_t ⊕ g_t − M)/λ) = P^f_{t+1} · exp((f_t − f_{t+1})/λ) row by row, with P^f_{t+1}
    // kept from the pass before (t+1), and P^f_t = P^g_t · exp((g_{t−1} − g_t)/λ) column by column:
    // a derived pass needs no exp. Rows whose scale leaves e^±kReuseMaxShift recompute P^g (a 0·inf
    // there would be NaN); exact passes (PassColumns::prepare) recompute both.
    float* PF = int64_t(b) * k <= kReusePlanMax ? ws.pf.data() : nullptr;
    for (int32_t t = S; t >= 1; --t) {
      const double* ft = F + size_t(t - 1) * b;
      const double* fnext = t < S ? F + size_t(t) * b : nullptr;  // f_{t+1}
      const bool derive = col.prepare(S, t, G, gbar, c, lam);       // else an exact pass
      const bool want_cols = t > 1;
      parallel_for(tasks, threads, [&](int64_t task) {
        Scratch& s = scratch(k);
        double* acc = want_cols ? ws.colacc.data() + task * acc_stride(k) : nullptr;
        if (acc) std::fill(acc, acc + k, 0.0);
        const int64_t i1 = std::min(b, (task + 1) * kRowsPerTask);
        for (int64_t i = task * kRowsPerTask; i < i1; ++i) {
          const float* Li = L + i * k;
          float* Di = D + i * k;
          const double fc = ft[i] / lam;
          float* PFi = PF ? PF + i * k : nullptr;
          if (t == S) {
            float* y = PFi ? PFi : s.a.data();  // P^f_S
            float* u = s.b.data();
            kr.exp_shift(Li, col.gp.data(), fc, invlam, k, y);
            float su, sy;
            kr.last_u(y, col.gp.data(), fc, k, u, &su, &sy);
            const float fbar = invB * (su + sy);
            kr.last_update(y, u, invB, fbar, k, Di, acc);
          } else {
            const double shift = (ft[i] - fnext[i]) * invlam;  // P^g_t = P^f_{t+1}·e^shift
            const bool reuse = derive && PFi && std::fabs(shift) <= kReuseMaxShift;
            kr.mid_row(Li, col.gc.data(), col.gp.data(), fc, invlam, reuse ? PFi : nullptr,
                       reuse ? float(std::exp(shift)) : 1.0f, derive ? col.cs.data() : nullptr, col.a.data(), k,
                       s.a.data(), PFi ? PFi : s.b.data(), Di, acc);
          }
          if (t == 1) kr.softmax_back(Li, k, Di);
        }
      });
      if (want_cols) merge_columns(ws.colacc, tasks, k, gbar);  // ḡ_{t-1}
    }
  }

  // ---- dL/dW = Φ_Bᵀ dL/dA
  gemm_tn(b, k, k, phi_b, D, ws.grad.data(), threads);
  for (int64_t q = 0; q < k * k; ++q)
    if (!std::isfinite(ws.grad[q]))
      return fail(err, OTLM_ENONFINITE, "otlm: the gradient dL/dW[%lld, %lld] is not finite (loss %g)",
                  (long long)(q / k), (long long)(q % k), loss);
  return OTLM_OK;
}

otlm_status loss_grad(const otlm_train_params* p, const float* phi_b, int64_t b, const float* w,
                      const float* bias, const double* target_prior, double* loss, float* grad_w,
                      otlm_step_report* rep, otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  if (otlm_status s = validate_train(p, err)) return s;
  const int64_t k = p->k;
  if (b < 1) return fail(err, OTLM_EINVAL, "lossGrad: batch size must be >= 1, got %lld", (long long)b);
  if (b > kMaxElements32 / k || k > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "lossGrad: batch %lld x %lld exceeds 2^31-1 elements", (long long)b,
                (long long)k);
  if (!phi_b) return fail(err, OTLM_EINVAL, "lossGrad: logits (phi) are required");
  if (!w) return fail(err, OTLM_EINVAL, "lossGrad: weights (w) are required");
  if (otlm_status s = check_prior("lossGrad", target_prior, k, err)) return s;
  if (otlm_status s = check_finite("lossGrad", "logits", phi_b, b * k, k, err)) return s;
  if (otlm_status s = check_finite("lossGrad", "weights", w, k * k, k, err)) return s;
  if (bias)
    if (otlm_status s = check_finite("lossGrad", "bias", bias, k, 1, err)) return s;
  OtlmWorkspace ws;
  OtlmResult res;
  otlm_status st = otlm_forward_backward(p, phi_b, b, w, bias, target_prior, ws, res, err);
  if (loss) *loss = res.loss;
  double gn = 0;
  if (st == OTLM_OK) {
    for (int64_t q = 0; q < k * k; ++q) gn += double(ws.grad[q]) * double(ws.grad[q]);
    if (grad_w) std::copy(ws.grad.begin(), ws.grad.begin() + k * k, grad_w);
  }
  if (rep) {
    rep->loss = res.loss;
    rep->marginal_error = res.marginal_error;
    rep->sinkhorn_iters = res.iterations;
    rep->grad_norm = std::sqrt(gn);
    rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return st;
}

}  // namespace otlm::cpu
