// Host-side interface between the CUDA backend's translation units (sinkhorn.cu, gemm.cu, otlm.cu,
// backend.cu). Kernels stay private to the file that launches them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "cuda_common.cuh"
#include "otlm/driver.h"
#include "otlm/otlm.h"

namespace otlm::cuda {

// ------------------------------------------------------------------ Sinkhorn engine --
// A problem living on the device. Internally (as in the CPU backend) the plan is
//   Y_ij = exp(a_i + alpha·x_ij + h_j),  a = f/λ, h = g/λ, alpha = +1/λ (logits) or -1/λ (cost),
// where for LOGITS input f excludes the row log-sum-exp of x (added back on output).
struct SkProblem {
  const float* x = nullptr;  // n × ld, row-major, padding columns zero
  int64_t ld = 0, n = 0, k = 0;
  bool logits = false;       // alpha sign: + (logits) / - (cost)
  const double* r = nullptr;     // device n, or null for r = 1
  const double* logr = nullptr;  // device n, or null
  double rsum = 0;               // Σ r
  const double* col = nullptr;   // device k: c_j
  const double* logc = nullptr;  // device k: log c_j
  const double* lse = nullptr;   // device n: row LSE of logits, added back to f on output, or null
  float* plan_out = nullptr;     // device n × ld the plan may be written to (may alias x), or null
};

struct SkWork;  // opaque: grid choice, partial buffers, fallback state, scalars

// Allocates the work buffers for a problem (grid chosen from the device and the shape).
// twopass: force the two-pass path (row LSE pass + column pass) instead of the fused one-pass kernel.
otlm_status sk_work_create(const SkProblem& pb, bool twopass, SkWork** out, otlm_error* err);
void sk_work_destroy(SkWork* w);
const char* sk_work_path(const SkWork* w);  // "onepass-<GT>x<V>x<R>" or "twopass"
// Device pointer to the column sums S of the last row pass (k doubles).
const double* sk_colsum(const SkWork* w);

// The CUDA backend's passes for the shared Sinkhorn driver (otlm/driver.h). f and g live on the
// device; a plain step is precomputed by the row pass's merge and committed by a pointer swap, so
// plain iterations need no host synchronisation except when the driver asks for the error.
class CudaSinkhornPasses final : public driver::Passes {
 public:
  // pb's device buffers must outlive the passes; f and g start at zero.
  static otlm_status create(const SkProblem& pb, cudaStream_t s, std::unique_ptr<CudaSinkhornPasses>* out,
                            otlm_error* err);
  ~CudaSinkhornPasses() override;

  otlm_status cost_scale(double* scale, otlm_error* err) override;
  otlm_status row_pass(const driver::RowPass& rp, driver::RowStats* stats, otlm_error* err) override;
  otlm_status residual(double lambda, int iteration, double* resid, otlm_error* err) override;
  otlm_status plain_step(double lambda, int iteration, otlm_error* err) override;
  otlm_status get_g(double* g, otlm_error* err) override;
  otlm_status set_g(const double* g, otlm_error* err) override;
  otlm_status finish(double lambda, const otlm_sinkhorn_buffers& io, otlm_error* err) override;
  otlm_status fallbacks(int64_t* count, otlm_error* err) override;

  double* f() { return f_.ptr; }                  // device n (without the row LSE of logits)
  const double* g() const { return gcur_; }       // device k
  const double* colsum() const { return sk_colsum(w_); }  // device k, of the last row pass

 private:
  CudaSinkhornPasses() = default;
  otlm_status merge(double lambda, double* g_out, otlm_error* err);
  otlm_status hessian(double lambda, double* W, otlm_error* err);
  static otlm_status check_bad(int bad, int iteration, double lambda, otlm_error* err);

  SkProblem pb_;
  cudaStream_t s_ = nullptr;
  SkWork* w_ = nullptr;
  DeviceBuffer<double> f_, ga_, gb_, resid_, scal_, da_, hpart_, hess_;
  double* gcur_ = nullptr;
  double* gnext_ = nullptr;
  bool next_ready_ = false;
  int64_t partial_rows_ = 0;
};

// Row log-sum-exp of x (n × ld, k valid columns) into lse (n doubles). When `normalise`,
// x is overwritten by x - lse (float), i.e. log_softmax in place. When `tile_partials` is
// given (n × ntiles float2 (max, Σexp) pairs from the GEMM epilogue) they are merged instead
// of re-reading the row for the max/sum.
otlm_status row_logsumexp(cudaStream_t s, float* x, int64_t ld, int64_t n, int64_t k, double* lse,
                          bool normalise, const float2* tile_partials, int ntiles, otlm_error* err);

// First non-finite element of x (flat index i*k + j), or -1. Synchronises.
otlm_status find_nonfinite(cudaStream_t s, const float* x, int64_t ld, int64_t n, int64_t k,
                           int64_t* first, otlm_error* err);

// ------------------------------------------------------------------ GEMM --
// C (m × n, ldc) = op(A) · B (+ bias), op(A) = A (m × kk, lda) or Aᵀ (A stored kk × m, lda).
// All leading dimensions multiples of 4; buffers 16-byte aligned; padding columns of A and B
// zero (or at least finite). When lse_partials is non-null (FP32 path only) the epilogue also
// writes, per row and 128-column tile, the pair (max, Σ exp(c - max)) of the biased output:
// lse_partials[row * gemm_tiles_n(n) + tile]. TF32 is used when tf32 is true.
int gemm_tiles_n(int64_t n);
otlm_status gemm_launch(cudaStream_t s, bool trans_a, int64_t m, int64_t n, int64_t kk, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, const float* bias,
                        float2* lse_partials, bool tf32, otlm_error* err);
// OTLM_CUDA_TF32=1 in the environment and a current device of compute capability 8.0 or newer.
bool tf32_requested();

// ------------------------------------------------------------------ entry points --
otlm_status sinkhorn(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                     otlm_sinkhorn_report* rep, otlm_error* err);
otlm_status loss_grad(const otlm_train_params* p, const float* phi_b, int64_t b, const float* w,
                      const float* bias, const double* target_prior, double* loss, float* grad_w,
                      otlm_step_report* rep, otlm_error* err);
otlm_status trainer_create(const otlm_train_params* p, const float* phi, int64_t n, const float* bias,
                           const double* target_prior, otlm_trainer** out, otlm_error* err);
otlm_status trainer_step(otlm_trainer* t, const int32_t* rows, int64_t b, double lr,
                         otlm_step_report* rep, otlm_error* err);
otlm_status trainer_get_weights(otlm_trainer* t, float* w, otlm_error* err);
otlm_status trainer_set_weights(otlm_trainer* t, const float* w, otlm_error* err);
void trainer_destroy(otlm_trainer* t);
otlm_status gemm(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                 float* c, int32_t threads, otlm_error* err);

// Selects the device (OTLM_CUDA_DEVICE, default 0) for the calling thread.
otlm_status select_device(otlm_error* err);

}  // namespace otlm::cuda
