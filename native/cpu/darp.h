// DARP in the native engine (issue 14): the weighted KL projection of Kim et al. (NeurIPS 2020),
// the same block-coordinate ascent as the float64 TypeScript reference (src/paths/reference/darp.ts,
// which states the math and stays the oracle of the tests). CPU only; not part of the otlm_backend
// table (no ABI change): the addon calls it directly (native/addon/bind_darp.cpp).
#pragma once
#include <cstdint>

#include "otlm/otlm.h"

namespace otlm::cpu {

// Per-sample weights w_i of the KL terms.
enum DarpWeights : int32_t {
  OTLM_DARP_WEIGHTS_ENTROPY = 0,  // w_i = 1 / max(H(softmax(Φ_i)), 1e-12), computed here
  OTLM_DARP_WEIGHTS_UNIFORM = 1,  // w_i = 1
  OTLM_DARP_WEIGHTS_GIVEN = 2     // DarpBuffers::weights (n values, finite, > 0)
};

struct DarpParams {
  int64_t n = 0, k = 0;
  int32_t max_iter = 1000;   // >= 1: sweeps (row step, then class step unless it is the last)
  double tol = 1e-6;         // >= 0: stop when Σ_k |Σ_i X_ik − c_k| / n < tol, after a row step
  int32_t newton_iter = 50;  // >= 1: Newton iterations per class and sweep (each stops early)
  int32_t weights = OTLM_DARP_WEIGHTS_ENTROPY;
  int32_t threads = 0;       // 0 = default_threads(); results are bit-identical for any count
};

struct DarpBuffers {
  const float* logits = nullptr;        // n*k, row-major, finite
  const double* col_marginal = nullptr; // k: c_k > 0 (N·μ), Σ c = n (relative 1e-6)
  const double* weights = nullptr;      // n, with OTLM_DARP_WEIGHTS_GIVEN
  float* probabilities = nullptr;       // n*k out (X rounded to float32), or NULL
  int32_t* predictions = nullptr;       // n out: argmax_k X_ik of the float64 X (first max), or NULL
  double* log_row_scale = nullptr;      // n out: log a_i, or NULL
  double* nu = nullptr;                 // k out: ν_k, or NULL
  // Called with the column error after every row step (the trace), or NULL.
  void (*on_error)(void* ctx, double error) = nullptr;
  void* ctx = nullptr;
  const volatile int32_t* cancel = nullptr;  // read after every row step: nonzero → OTLM_EABORTED
};

struct DarpReport {
  int32_t iterations = 0;
  double error = 0;
  int32_t converged = 0;
  double seconds = 0;
};

// Runs DARP. Float64 throughout (the logits are read as float32, exactly as the reference reads
// them); work is split into row chunks and classes fixed by the shape alone and merged in a fixed
// order, so results do not depend on `threads` or on the SIMD level (no FMA contraction).
// Returns OTLM_EINVAL (message names the argument) for bad arguments, OTLM_ENOMEM, OTLM_EABORTED,
// or OTLM_ENONFINITE when the column error stops being finite (e.g. weights so small that ν/w
// overflows). Never throws.
otlm_status darp(const DarpParams* p, const DarpBuffers* io, DarpReport* rep, otlm_error* err);

}  // namespace otlm::cpu
