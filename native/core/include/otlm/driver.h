// The one Sinkhorn driver (docs/architecture.md, "Driver and passes").
//
// Everything that is not a pass over the n×k matrix lives here once, for every backend: the
// ε-scaling schedule, the acceleration strategy (none / Anderson / Newton), the convergence check,
// the error trace, cancellation, warm starts and the report. A backend implements `Passes`: a fused
// row pass (f update, column sums of the exact-row plan, and on request what Newton needs), the
// column residual with an exact log-sum-exp for columns whose sums underflowed, the plain g step,
// and the output pass. So an option means the same thing on every backend, and the CPU and CUDA
// backends take the same decisions from the same errors.
//
// Notation (otlm.h): the plan is Y_ij = exp((f_i + g_j − M_ij)/λ); a = f/λ, h = g/λ.
#pragma once
#include <cstdint>

#include "otlm/otlm.h"

namespace otlm::driver {

// ε-scaling: a stage ends when its column error is under max(tol, kStageTol) or after kStageCap
// iterations; λ_s = max(λ, λ0·factor^s) with λ0 the mean row range of the cost.
constexpr double kStageTol = 1e-2;
constexpr int kStageCap = 50;
// Acceleration: damped Newton on the semi-dual up to this k, Anderson mixing above.
constexpr int64_t kNewtonMaxK = 64;
// A column whose float-accumulated plan sum S_j is below 1e-30·c_j (its exps underflowed), or
// above 1e300, gets an exact log-domain column log-sum-exp. Compared as log S_j − log c_j: the
// product 1e-30·c_j underflows to 0 for a tiny (valid) c_j such as 1e-300.
constexpr double kLogColumnFloor = -69.077552789821368;  // log 1e-30
constexpr double kColumnCeil = 1e300;

// What one row pass must produce. The pass always updates f (plainly, so rows of the plan are
// exact) from the backend's current g at `lambda`, and keeps the column sums of that plan.
struct RowPass {
  int iteration = 0;          // 1-based, for messages
  double lambda = 1;
  bool fast = false;          // f holds a meaningful previous potential (not a cold first pass)
  bool want_error = false;    // stats.error = Σ_j |colsum_j − c_j| / Σr
  bool want_dlse = false;     // stats.dlse = Σ_i r_i (a_old,i − a_new,i)
  double* colsum = nullptr;   // host k: copy of the column sums, or null
  double* hessian = nullptr;  // host k×k: W_jq = Σ_i Y_ij Y_iq / r_i for j < q, or null
  bool plain_next = false;    // the driver will most likely call plain_step next (may be precomputed)
};
struct RowStats {
  double error = 0;
  double dlse = 0;
};

class Passes {
 public:
  virtual ~Passes() = default;
  // Mean over rows of (max_j x_ij − min_j x_ij): the cost scale that starts the ε schedule.
  virtual otlm_status cost_scale(double* scale, otlm_error* err) = 0;
  virtual otlm_status row_pass(const RowPass& rp, RowStats* stats, otlm_error* err) = 0;
  // resid_j = log c_j − log colsum_j of the last row pass (exact column log-sum-exp where the sum
  // underflowed), the plain update of h.
  virtual otlm_status residual(double lambda, int iteration, double* resid, otlm_error* err) = 0;
  // g ← g + λ·resid on the backend (no host round trip needed).
  virtual otlm_status plain_step(double lambda, int iteration, otlm_error* err) = 0;
  virtual otlm_status get_g(double* g, otlm_error* err) = 0;
  virtual otlm_status set_g(const double* g, otlm_error* err) = 0;
  // Plan and predictions (when io asks for them) at `lambda`, then f and g into io.
  virtual otlm_status finish(double lambda, const otlm_sinkhorn_buffers& io, otlm_error* err) = 0;
  // Rows and columns that needed an exact log-sum-exp so far.
  virtual otlm_status fallbacks(int64_t* count, otlm_error* err) = 0;
};

// Called by the driver after every row pass (the OTLM forward records the potentials there).
class Hooks {
 public:
  virtual ~Hooks() = default;
  virtual otlm_status after_row_pass(int iteration, otlm_error* err) = 0;
};

// Runs the solve described by p (validated by the caller) over `passes`. io supplies the host
// column marginal, the trace buffer, the cancel flag and the outputs; its x is not read here.
otlm_status solve(const otlm_sinkhorn_params& p, const otlm_sinkhorn_buffers& io, Passes& passes,
                  otlm_sinkhorn_report* rep, otlm_error* err, Hooks* hooks = nullptr);

}  // namespace otlm::driver
