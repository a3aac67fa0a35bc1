// Internals of the CPU OTLM engine shared by gemm.cpp, otlm_grad.cpp and trainer.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "line_vector.h"
#include "otlm/otlm.h"

namespace otlm::cpu {

// Threads for this call: 0 means default_threads().
int resolve_threads(int32_t threads);

// C (m×n) = A (m×kk) · B (kk×n), row-major, plus bias (n) broadcast over rows when not NULL.
// `rows_done(r0, r1)`, when given, runs on rows [r0, r1) of C right after they are computed, while they
// are still in cache (the OTLM forward fuses its row log-softmax there). No argument checks.
void gemm_nn(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
             float* c, int threads, const std::function<void(int64_t, int64_t)>* rows_done = nullptr);

// C (p×q) = Aᵀ · B with A (m×p), B (m×q), row-major. No argument checks.
void gemm_tn(int64_t m, int64_t p, int64_t q, const float* a, const float* b, float* c, int threads);

// Scratch of one forward/backward; reused across trainer steps so a step allocates nothing.
struct OtlmWorkspace {
  std::vector<float> logz;     // b×k: log_softmax(Φ_B W + bias); the cost is M = -logz
  std::vector<float> dbuf;     // b×k: dL/dM accumulated by the backward, then dL/dA
  std::vector<float> pf;       // b×k when b·k <= kReusePlanMax: P^f_t kept for the next backward pass
  std::vector<float> lt, dt;   // k <= 16: L and M̄ in blocks of 16 rows (rows padded to 16), as pf then
  std::vector<double> f_hist;  // T×b: f_t for t = 1..S
  std::vector<double> g_hist;  // T×k: g_t for t = 0..S-1 (g_0 = 0)
  LineVector<double> colacc;  // per-task column accumulators (k padded to cache lines), merged in task order
  std::vector<double> colsum;  // k
  std::vector<double> fbar, gbar;  // adjoints
  std::vector<float> grad;     // k×k
  // Reserve for a batch of b rows; throws std::bad_alloc.
  void reserve(int64_t b, int64_t k, int32_t T);
};

struct OtlmResult {
  double loss = 0;
  double marginal_error = 0;
  int32_t iterations = 0;
  int64_t log_fallbacks = 0;
};

// Forward + backward on a batch; leaves dL/dW in ws.grad (k×k). Inputs are validated by the caller.
// Returns OTLM_ENONFINITE (with a message) when the loss or the gradient is not finite.
otlm_status otlm_forward_backward(const otlm_train_params* p, const float* phi_b, int64_t b,
                                  const float* w, const float* bias, const double* mu,
                                  OtlmWorkspace& ws, OtlmResult& res, otlm_error* err);


}  // namespace otlm::cpu
