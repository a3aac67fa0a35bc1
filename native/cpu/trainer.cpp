// The native OTLM trainer: owns Φ (copied once), W, optimizer state and the batch workspace, so a step
// moves no K×K array across the API. Optimizers follow PyTorch's update rules exactly (torch.optim.Adam
// with L2 weight decay added to the gradient, AdamW with decoupled decay, SGD with momentum, dampening 0,
// optional Nesterov), in double for the moments and float for W.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <vector>
#include <new>

#include "cpu_internal.h"
#include "otlm/optimizer.h"
#include "otlm/validate.h"
#include "otlm_engine.h"
#include "thread_pool.h"

struct otlm_trainer {
  otlm_train_params p;
  int64_t n = 0, k = 0;
  std::vector<float> phi;    // n×k
  std::vector<float> bias;   // k or empty
  std::vector<double> mu;    // k
  std::vector<float> w;      // k×k
  std::vector<double> m1, m2;  // Adam moments or the SGD momentum buffer (m1)
  int64_t step = 0;
  std::vector<float> batch;  // b×k gathered rows
  otlm::cpu::OtlmWorkspace ws;
};

namespace otlm::cpu {

otlm_status trainer_create(const otlm_train_params* p, const float* phi, int64_t n, const float* bias,
                           const double* target_prior, otlm_trainer** out, otlm_error* err) {
  if (!out) return fail(err, OTLM_EINVAL, "trainer: out pointer is required");
  *out = nullptr;
  if (otlm_status s = validate_train(p, err)) return s;
  const int64_t k = p->k;
  if (n < 1) return fail(err, OTLM_EINVAL, "trainer: logits must have at least 1 row, got %lld", (long long)n);
  if (n > kMaxElements32 / k || k > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "trainer: logits %lld x %lld exceed 2^31-1 elements", (long long)n,
                (long long)k);
  if (!phi) return fail(err, OTLM_EINVAL, "trainer: logits (phi) are required");
  if (otlm_status s = check_prior("trainer", target_prior, k, err)) return s;
  if (otlm_status s = check_finite("trainer", "logits", phi, n * k, k, err)) return s;
  if (bias)
    if (otlm_status s = check_finite("trainer", "bias", bias, k, 1, err)) return s;
  otlm_trainer* t = nullptr;
  try {
    t = new otlm_trainer();
    t->p = *p;
    t->n = n;
    t->k = k;
    t->phi.assign(phi, phi + n * k);
    if (bias) t->bias.assign(bias, bias + k);
    t->mu.assign(target_prior, target_prior + k);
    t->w.assign(size_t(k * k), 0.0f);
    for (int64_t j = 0; j < k; ++j) t->w[size_t(j * k + j)] = 1.0f;
    t->m1.assign(size_t(k * k), 0.0);
    if (p->optimizer != OTLM_OPT_SGD) t->m2.assign(size_t(k * k), 0.0);
  } catch (const std::bad_alloc&) {
    delete t;
    return fail(err, OTLM_ENOMEM, "trainer: cannot allocate %.1f MB for logits %lld x %lld and W",
                (double(n) * double(k) * 4 + double(k) * double(k) * 20) / 1e6, (long long)n, (long long)k);
  }
  *out = t;
  return OTLM_OK;
}

otlm_status trainer_step(otlm_trainer* t, const int32_t* rows, int64_t b, double lr, otlm_step_report* rep,
                         otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!t) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  if (b < 1) return fail(err, OTLM_EINVAL, "trainer.step: batch size must be >= 1, got %lld", (long long)b);
  if (!rows) return fail(err, OTLM_EINVAL, "trainer.step: rows are required");
  if (!(lr > 0) || !std::isfinite(lr))
    return fail(err, OTLM_EINVAL, "trainer.step: lr must be a finite number > 0, got %g", lr);
  const int64_t k = t->k;
  if (b > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "trainer.step: batch %lld x %lld exceeds 2^31-1 elements", (long long)b,
                (long long)k);
  for (int64_t i = 0; i < b; ++i)
    if (rows[i] < 0 || rows[i] >= t->n)
      return fail(err, OTLM_EINVAL, "trainer.step: rows[%lld] = %d is out of range [0, %lld)", (long long)i,
                  rows[i], (long long)t->n);
  const int threads = resolve_threads(t->p.threads);
  try {
    if (t->batch.size() < size_t(b * k)) t->batch.resize(size_t(b * k));
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "trainer.step: cannot allocate the batch buffer (%.1f MB)",
                double(b) * double(k) * 4 / 1e6);
  }
  float* batch = t->batch.data();
  parallel_for((b + 255) / 256, threads, [&](int64_t task) {
    const int64_t i1 = std::min(b, (task + 1) * 256);
    for (int64_t i = task * 256; i < i1; ++i)
      std::memcpy(batch + i * k, t->phi.data() + int64_t(rows[i]) * k, sizeof(float) * size_t(k));
  });

  OtlmResult res;
  otlm_status st = otlm_forward_backward(&t->p, batch, b, t->w.data(), t->bias.empty() ? nullptr : t->bias.data(),
                                         t->mu.data(), t->ws, res, err);
  auto report = [&](double gn) {
    if (!rep) return;
    rep->loss = res.loss;
    rep->marginal_error = res.marginal_error;
    rep->sinkhorn_iters = res.iterations;
    rep->grad_norm = gn;
    rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if (st != OTLM_OK) {
    if (st == OTLM_ENONFINITE) {
      // Prefix the step so the caller can say which one diverged; W and the moments are untouched.
      char msg[sizeof(err->message)];
      std::snprintf(msg, sizeof msg, "trainer.step %lld: %.400s; weights kept at their last finite value",
                    (long long)(t->step + 1), err ? err->message : "");
      if (err) std::snprintf(err->message, sizeof err->message, "%s", msg);
    }
    report(NAN);
    return st;
  }

  const float* grad = t->ws.grad.data();
  const int64_t kk = k * k;
  double gn = 0;
  for (int64_t q = 0; q < kk; ++q) gn += double(grad[q]) * double(grad[q]);
  gn = std::sqrt(gn);

  // Optimizer update (otlm/optimizer.h; element-wise in fixed chunks, so identical for any thread
  // count). Element q's new (w, m1, m2) is written only when `commit`: a first pass without commit
  // checks that every updated weight is finite, so an overflowing update (e.g. a huge lr) leaves W
  // and the optimizer state exactly as they were.
  const OptimizerStep o = optimizer_step(t->p, lr, t->step + 1);
  const int64_t step = o.step;
  float* w = t->w.data();
  double* m1 = t->m1.data();
  double* m2 = t->m2.empty() ? nullptr : t->m2.data();
  auto update = [&](int64_t q, bool commit) -> bool {
    double a = m1[q], v = m2 ? m2[q] : 0;
    const float wf = optimizer_update(o, w[q], grad[q], a, v);
    if (commit) {
      w[q] = wf;
      m1[q] = a;
      if (m2) m2[q] = v;
    }
    return std::isfinite(wf);
  };
  const int64_t tasks = (kk + 4095) / 4096;
  std::vector<int64_t> bad(size_t(tasks), -1);  // first non-finite index per task
  parallel_for(tasks, threads, [&](int64_t task) {
    const int64_t q1 = std::min(kk, (task + 1) * 4096);
    for (int64_t q = task * 4096; q < q1; ++q)
      if (!update(q, false)) {
        bad[size_t(task)] = q;
        break;
      }
  });
  for (int64_t q : bad)
    if (q >= 0) {
      report(gn);
      return fail(err, OTLM_ENONFINITE,
                  "trainer.step %lld: the update made W[%lld, %lld] non-finite (lr %g too large?); weights kept at "
                  "their last finite value",
                  (long long)step, (long long)(q / k), (long long)(q % k), lr);
    }
  parallel_for(tasks, threads, [&](int64_t task) {
    const int64_t q1 = std::min(kk, (task + 1) * 4096);
    for (int64_t q = task * 4096; q < q1; ++q) update(q, true);
  });
  t->step = step;
  report(gn);
  return OTLM_OK;
}

otlm_status trainer_get_weights(otlm_trainer* t, float* w, otlm_error* err) {
  if (!t) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  if (!w) return fail(err, OTLM_EINVAL, "trainer.getWeights: output w is required");
  std::memcpy(w, t->w.data(), sizeof(float) * t->w.size());
  return OTLM_OK;
}

// Replaces W; the optimizer state (moments, step count) is kept, as PyTorch does when a parameter's
// data is overwritten.
otlm_status trainer_set_weights(otlm_trainer* t, const float* w, otlm_error* err) {
  if (!t) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  if (!w) return fail(err, OTLM_EINVAL, "trainer.setWeights: w is required");
  if (otlm_status s = check_finite("trainer.setWeights", "w", w, t->k * t->k, t->k, err)) return s;
  std::memcpy(t->w.data(), w, sizeof(float) * t->w.size());
  return OTLM_OK;
}

void trainer_destroy(otlm_trainer* t) { delete t; }

}  // namespace otlm::cpu
