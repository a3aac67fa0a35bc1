#include "otlm/validate.h"

#include <cmath>
#include <cstdint>
#include <cstdio>

namespace otlm {

otlm_status fail(otlm_error* err, otlm_status code, const char* fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
  }
  return code;
}

namespace {
bool overlaps(const void* a, size_t abytes, const void* b, size_t bbytes) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bbytes && y < x + abytes;
}
}  // namespace

otlm_status validate_sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                              otlm_error* err) {
  if (!p || !io) return fail(err, OTLM_EINVAL, "sinkhorn: params and buffers are required");
  if (p->n < 1 || p->k < 1)
    return fail(err, OTLM_EINVAL, "sinkhorn: shape must be at least 1x1, got %lldx%lld",
                (long long)p->n, (long long)p->k);
  if (p->n > INT64_MAX / p->k)
    return fail(err, OTLM_EINVAL, "sinkhorn: shape %lldx%lld overflows", (long long)p->n,
                (long long)p->k);
  if (p->input_kind != OTLM_INPUT_COST && p->input_kind != OTLM_INPUT_LOGITS)
    return fail(err, OTLM_EINVAL, "sinkhorn: input_kind must be 0 (cost) or 1 (logits)");
  if (!(p->lambda > 0) || !std::isfinite(p->lambda))
    return fail(err, OTLM_EINVAL, "sinkhorn: lambda must be a finite number > 0, got %g", p->lambda);
  if (p->max_iter < 1) return fail(err, OTLM_EINVAL, "sinkhorn: maxIter must be >= 1, got %d", p->max_iter);
  if (!(p->tol >= 0)) return fail(err, OTLM_EINVAL, "sinkhorn: tol must be >= 0, got %g", p->tol);
  if (p->check_every < 1)
    return fail(err, OTLM_EINVAL, "sinkhorn: checkEvery must be >= 1, got %d", p->check_every);
  if (p->threads < 0 || p->threads > OTLM_MAX_THREADS)
    return fail(err, OTLM_EINVAL, "sinkhorn: threads must be in [0, %d] (0 = default), got %d", OTLM_MAX_THREADS, p->threads);
  if (p->eps_scaling != 0 && !(p->eps_scaling > 0 && p->eps_scaling < 1))
    return fail(err, OTLM_EINVAL, "sinkhorn: epsScaling must be 0 (off) or in (0, 1), got %g",
                p->eps_scaling);
  if (!(p->overrelax >= 1 && p->overrelax < 2))
    return fail(err, OTLM_EINVAL, "sinkhorn: overrelax must be in [1, 2), got %g", p->overrelax);
  if (!io->x) return fail(err, OTLM_EINVAL, "sinkhorn: input matrix is required");
  if (!io->col_marginal) return fail(err, OTLM_EINVAL, "sinkhorn: column marginal is required");
  if (!io->f || !io->g) return fail(err, OTLM_EINVAL, "sinkhorn: f and g outputs are required");
  // Outputs written while x is still read: in place (plan == x) is supported, any other overlap is not.
  const size_t xbytes = size_t(p->n * p->k) * sizeof(float);
  if (io->plan && io->plan != io->x && overlaps(io->plan, xbytes, io->x, xbytes))
    return fail(err, OTLM_EINVAL, "sinkhorn: plan overlaps the input without being the same array");
  if (io->predictions && (overlaps(io->predictions, size_t(p->n) * 4, io->x, xbytes) ||
                          (io->plan && overlaps(io->predictions, size_t(p->n) * 4, io->plan, xbytes))))
    return fail(err, OTLM_EINVAL, "sinkhorn: predictions overlap the input or the plan");
  double rs = 0, cs = 0;
  for (int64_t i = 0; i < p->n; ++i) {
    double r = io->row_marginal ? io->row_marginal[i] : 1.0;
    if (!(r > 0) || !std::isfinite(r))
      return fail(err, OTLM_EINVAL, "sinkhorn: row marginal[%lld] must be finite and > 0, got %g",
                  (long long)i, r);
    rs += r;
  }
  for (int64_t j = 0; j < p->k; ++j) {
    double c = io->col_marginal[j];
    if (!(c > 0) || !std::isfinite(c))
      return fail(err, OTLM_EINVAL, "sinkhorn: column marginal[%lld] must be finite and > 0, got %g",
                  (long long)j, c);
    cs += c;
  }
  if (std::fabs(rs - cs) > 1e-6 * rs)
    return fail(err, OTLM_EINVAL,
                "sinkhorn: marginals must have equal mass (rows sum to %.17g, columns to %.17g)", rs, cs);
  if (p->warm_start) {
    for (int64_t i = 0; i < p->n; ++i)
      if (!std::isfinite(io->f[i]))
        return fail(err, OTLM_EINVAL, "sinkhorn: warm-start f[%lld] is not finite", (long long)i);
    for (int64_t j = 0; j < p->k; ++j)
      if (!std::isfinite(io->g[j]))
        return fail(err, OTLM_EINVAL, "sinkhorn: warm-start g[%lld] is not finite", (long long)j);
  }
  return OTLM_OK;
}

otlm_status validate_train(const otlm_train_params* p, otlm_error* err) {
  if (!p) return fail(err, OTLM_EINVAL, "train: params are required");
  if (p->k < 1) return fail(err, OTLM_EINVAL, "train: k must be >= 1, got %lld", (long long)p->k);
  if (!(p->lambda > 0) || !std::isfinite(p->lambda))
    return fail(err, OTLM_EINVAL, "train: lambda must be a finite number > 0, got %g", p->lambda);
  if (p->sinkhorn_iters < 1)
    return fail(err, OTLM_EINVAL, "train: sinkhornIters (T) must be >= 1, got %d", p->sinkhorn_iters);
  if (!(p->tol >= 0)) return fail(err, OTLM_EINVAL, "train: tol must be >= 0, got %g", p->tol);
  if (p->grad_mode != OTLM_GRAD_UNROLLED && p->grad_mode != OTLM_GRAD_ENVELOPE)
    return fail(err, OTLM_EINVAL, "train: grad must be unrolled (0) or envelope (1)");
  if (p->optimizer < OTLM_OPT_ADAM || p->optimizer > OTLM_OPT_SGD)
    return fail(err, OTLM_EINVAL, "train: optimizer must be adam, adamw or sgd");
  if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
    return fail(err, OTLM_EINVAL, "train: Adam betas must be in [0, 1), got (%g, %g)", p->beta1, p->beta2);
  if (!(p->eps > 0)) return fail(err, OTLM_EINVAL, "train: eps must be > 0, got %g", p->eps);
  if (!(p->weight_decay >= 0) || !std::isfinite(p->weight_decay))
    return fail(err, OTLM_EINVAL, "train: weightDecay must be >= 0, got %g", p->weight_decay);
  if (!(p->momentum >= 0 && p->momentum < 1))
    return fail(err, OTLM_EINVAL, "train: momentum must be in [0, 1), got %g", p->momentum);
  if (p->threads < 0 || p->threads > OTLM_MAX_THREADS)
    return fail(err, OTLM_EINVAL, "train: threads must be in [0, %d] (0 = default), got %d", OTLM_MAX_THREADS, p->threads);
  return OTLM_OK;
}

otlm_status check_prior(const char* who, const double* mu, int64_t k, otlm_error* err) {
  if (!mu) return fail(err, OTLM_EINVAL, "%s: targetPrior is required", who);
  double s = 0;
  for (int64_t j = 0; j < k; ++j) {
    if (!(mu[j] > 0) || !std::isfinite(mu[j]))
      return fail(err, OTLM_EINVAL, "%s: targetPrior[%lld] must be finite and > 0, got %g", who, (long long)j,
                  mu[j]);
    s += mu[j];
  }
  if (std::fabs(s - 1) > 1e-6) return fail(err, OTLM_EINVAL, "%s: targetPrior must sum to 1, sums to %.17g", who, s);
  return OTLM_OK;
}

otlm_status check_finite(const char* who, const char* name, const float* x, int64_t count, int64_t cols,
                         otlm_error* err) {
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(x[i])) {
      if (cols > 1)
        return fail(err, OTLM_EINVAL, "%s: %s[%lld, %lld] is not finite (%g)", who, name, (long long)(i / cols),
                    (long long)(i % cols), double(x[i]));
      return fail(err, OTLM_EINVAL, "%s: %s[%lld] is not finite (%g)", who, name, (long long)i, double(x[i]));
    }
  return OTLM_OK;
}

otlm_status validate_gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* c,
                          int32_t threads, otlm_error* err) {
  if (m < 1 || n < 1 || kk < 1)
    return fail(err, OTLM_EINVAL, "gemm: shapes must be >= 1, got m=%lld n=%lld k=%lld", (long long)m,
                (long long)n, (long long)kk);
  if (m > kMaxElements32 / kk || kk > kMaxElements32 / n || m > kMaxElements32 / n)
    return fail(err, OTLM_EINVAL, "gemm: shape m=%lld n=%lld k=%lld exceeds 2^31-1 elements per matrix",
                (long long)m, (long long)n, (long long)kk);
  if (!a) return fail(err, OTLM_EINVAL, "gemm: a is required");
  if (!b) return fail(err, OTLM_EINVAL, "gemm: b is required");
  if (!c) return fail(err, OTLM_EINVAL, "gemm: c is required");
  if (threads < 0 || threads > OTLM_MAX_THREADS)
    return fail(err, OTLM_EINVAL, "gemm: threads must be in [0, %d] (0 = default), got %d", OTLM_MAX_THREADS, threads);
  return OTLM_OK;
}

}  // namespace otlm
