// The one Sinkhorn driver (otlm/driver.h, docs/architecture.md "Driver and passes").
//
// One iteration: a row pass at (λ_t, g) → f and the column sums of the exact-row plan; at a check
// the error goes to the trace and decides convergence (only at the target λ) and cancellation;
// then the g step: plain (on the backend) or the acceleration strategy's step (on the host).
// ε-scaling: stages λ_s = max(λ, λ0·factor^s); a stage ends when its error is under
// max(tol, kStageTol) or after kStageCap iterations; f and g carry over. Every pass counts as an
// iteration, and the solver stops right after a row pass, so rows of the returned plan are exact
// and `error` is the exact column error of that plan.
#include "otlm/driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "acceleration.h"
#include "otlm/validate.h"

namespace otlm::driver {

namespace {

struct Schedule {
  double lambda, lambda0, factor;
  double at(int stage) const {
    return lambda0 > lambda ? std::max(lambda, lambda0 * std::pow(factor, double(stage))) : lambda;
  }
};

otlm_status start_schedule(const otlm_sinkhorn_params& p, Passes& passes, Schedule* s, otlm_error* err) {
  s->lambda = s->lambda0 = p.lambda;
  s->factor = p.eps_scaling;
  if (p.eps_scaling > 0) {
    // A plan at λ ≥ the cost's spread is nearly flat: Sinkhorn is already converged there.
    double scale = 0;
    if (otlm_status st = passes.cost_scale(&scale, err)) return st;
    if (std::isfinite(scale) && scale > p.lambda) s->lambda0 = scale;
  }
  return OTLM_OK;
}

// The accelerated g step: h from the strategy, checked, handed to the backend as g = λh.
otlm_status accelerated_step(Acceleration& acc, Passes& passes, const AccelStep& in, double lam, int it,
                             std::vector<double>& h, std::vector<double>& g, otlm_error* err) {
  acc.step(in, h);
  for (size_t j = 0; j < h.size(); ++j) {
    if (!std::isfinite(h[j]))
      return fail(err, OTLM_ENONFINITE,
                  "sinkhorn: column potential g[%lld] became non-finite at iteration %d (lambda %g)",
                  (long long)j, it, lam);
    g[j] = h[j] * lam;
  }
  return passes.set_g(g.data(), err);
}

}  // namespace

otlm_status solve(const otlm_sinkhorn_params& p, const otlm_sinkhorn_buffers& io, Passes& passes,
                  otlm_sinkhorn_report* rep, otlm_error* err, Hooks* hooks) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t k = size_t(p.k);
  Schedule sched;
  if (otlm_status st = start_schedule(p, passes, &sched, err)) return st;
  std::unique_ptr<Acceleration> accel = make_acceleration(p.overrelax, p.k);
  std::vector<double> h, hprev, g, resid, colsum, W;
  if (accel) {
    h.resize(k), hprev.resize(k), g.resize(k), resid.resize(k), colsum.resize(k);
    if (accel->wants_hessian()) W.resize(k * k);
  }

  int32_t trace_len = 0, it = 0;
  int stage = 0, stage_it = 0;
  double error = HUGE_VAL, lam = sched.at(0);
  bool converged = false, scaled_any = false, aborted = false, new_stage = true;
  for (it = 1; it <= p.max_iter; ++it) {
    const bool first = it == 1, last = it == p.max_iter;
    const bool at_target = lam == p.lambda;
    const bool check = (it % p.check_every == 0) || last;
    const bool comparable = !new_stage;  // the previous pass was at this λ: ΔF is exact
    if (new_stage && accel) {
      if (otlm_status st = passes.get_g(g.data(), err)) return st;
      for (size_t j = 0; j < k; ++j) h[j] = g[j] / lam;
      accel->reset();
    }
    ++stage_it;
    RowPass rp;
    rp.iteration = it;
    rp.lambda = lam;
    rp.fast = !first || p.warm_start;
    rp.want_error = check || accel || !at_target;
    rp.want_dlse = accel && accel->wants_pass_data();
    rp.colsum = rp.want_dlse ? colsum.data() : nullptr;
    rp.hessian = accel && accel->wants_hessian() ? W.data() : nullptr;
    rp.plain_next = !accel && !last;
    RowStats stats;
    if (otlm_status st = passes.row_pass(rp, &stats, err)) return st;
    if (hooks)
      if (otlm_status st = hooks->after_row_pass(it, err)) return st;
    scaled_any = scaled_any || rp.fast;
    if (rp.want_error) {
      error = stats.error;
      if (std::isnan(error))
        return fail(err, OTLM_ENONFINITE, "sinkhorn: column sums became NaN at iteration %d", it);
    }
    double dF = HUGE_VAL;  // F(h) − F(hprev): the semi-dual's change since the last pass
    if (rp.want_dlse && comparable && !first) {
      dF = stats.dlse;
      for (size_t j = 0; j < k; ++j) dF -= io.col_marginal[j] * (h[j] - hprev[j]);
    }
    if (accel) hprev = h;
    if (check) {
      if (io.error_trace && trace_len < io.error_trace_cap) io.error_trace[trace_len++] = error;
      if (at_target && error < p.tol) converged = true;
      if (io.cancel && *io.cancel) aborted = true;
    }
    if (converged || last || aborted) break;

    if (!accel) {
      if (otlm_status st = passes.plain_step(lam, it, err)) return st;
    } else {
      if (otlm_status st = passes.residual(lam, it, resid.data(), err)) return st;
      AccelStep in;
      in.resid = resid.data();
      in.colsum = rp.colsum;
      in.cm = io.col_marginal;
      in.hessian = rp.hessian;
      in.error = error;
      in.dF = dF;
      in.iteration = it;
      if (otlm_status st = accelerated_step(*accel, passes, in, lam, it, h, g, err)) return st;
    }
    new_stage = false;
    if (!at_target && (error < std::max(p.tol, kStageTol) || stage_it >= kStageCap)) {
      lam = sched.at(++stage);
      stage_it = 0;
      new_stage = true;
    }
  }
  if (it > p.max_iter) it = p.max_iter;

  if (otlm_status st = passes.finish(lam, io, err)) return st;
  int64_t fallbacks = 0;
  if (otlm_status st = passes.fallbacks(&fallbacks, err)) return st;
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

}  // namespace otlm::driver
