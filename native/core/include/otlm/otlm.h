/* otlm engine C ABI.
 *
 * Every backend (CPU in the addon, CUDA in a separately loaded shared library)
 * fills one otlm_backend table. The addon, the C++ tests and the benchmarks only
 * talk to backends through this table, so a CUDA result can always be checked
 * against the CPU one. Plain C so the CUDA library can be dlopen'ed safely.
 *
 * Conventions: matrices are row-major float32; potentials and marginals float64;
 * sizes int64. Functions return otlm_status and fill `err->message` on failure.
 * No function may throw or abort the process.
 */
#ifndef OTLM_H
#define OTLM_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2: typed otlm_backend_info replaces info_json; CUDA entry otlm_cuda_backend_v2 fills it. */
#define OTLM_ABI_VERSION 2

/* Largest worker-thread count any entry accepts (0 = the backend default). */
#define OTLM_MAX_THREADS 4096

typedef enum otlm_status {
  OTLM_OK = 0,
  OTLM_EINVAL = 1,     /* bad argument: message names it */
  OTLM_ENOMEM = 2,     /* allocation failed: message gives the size */
  OTLM_EDEVICE = 3,    /* device / driver / launch failure */
  OTLM_ENOTSUP = 4,    /* not supported by this backend */
  OTLM_EINTERNAL = 5,
  OTLM_EABORTED = 6,   /* cancel flag was raised */
  OTLM_ENONFINITE = 7  /* NaN/Inf appeared in a result */
} otlm_status;

typedef struct otlm_error {
  char message[512];
} otlm_error;

/* ---------------------------------------------------------------- Sinkhorn --
 * Solves min <M,Y> + λ Σ Y log Y  s.t.  Y 1 = r,  Yᵀ 1 = c   (Σr = Σc)
 * in the log domain: Y_ij = exp((f_i + g_j - M_ij)/λ).
 * One iteration = one f update followed (unless it is the last) by a g update;
 * the solver stops right after an f update, so rows of the returned plan are exact
 * and `error` = Σ_j |(Yᵀ1)_j - c_j| / Σr is the column error of that plan.
 */
typedef enum otlm_input_kind {
  OTLM_INPUT_COST = 0,   /* x is the cost M */
  OTLM_INPUT_LOGITS = 1  /* x is logits Φ; cost M = -log_softmax(Φ) row-wise (paper Alg. 1) */
} otlm_input_kind;

typedef enum otlm_sinkhorn_mode_bits {
  OTLM_MODE_SCALING = 1,   /* rows updated by shifted sums (one exp per element) */
  OTLM_MODE_LOG = 2        /* some rows/columns needed an exact max-shifted log-sum-exp */
} otlm_sinkhorn_mode_bits;

typedef struct otlm_sinkhorn_params {
  int64_t n, k;
  int32_t input_kind;      /* otlm_input_kind */
  double lambda;           /* > 0 */
  int32_t max_iter;        /* >= 1 */
  double tol;              /* >= 0; stop when error < tol (checked every check_every iters) */
  int32_t check_every;     /* >= 1 */
  int32_t threads;         /* 0 = backend default */
  int32_t warm_start;      /* 1: f and g hold initial potentials */
  double eps_scaling;      /* 0 = off; else factor in (0,1): stages λ_s = max(λ, λ0·factor^s), λ0 from the
                              cost scale (CPU: a stage ends at column error < max(tol, 1e-2) or after 50
                              iterations; CUDA: one iteration per stage); potentials carry over */
  double overrelax;        /* 1 = plain Sinkhorn; ω in (1,2): accelerated g-updates (CPU: damped Newton
                              steps on the semi-dual in g when k <= 64 — ω unused —, else Anderson
                              mixing, memory 8, relaxation ω, safeguarded restarts; CUDA: adaptive
                              over-relaxation). f updates stay plain, so rows remain exact and every
                              backend converges to the same plan. Every pass counts as an iteration. */
} otlm_sinkhorn_params;

typedef struct otlm_sinkhorn_buffers {
  const float* x;               /* n*k */
  const double* row_marginal;   /* n, or NULL for all ones */
  const double* col_marginal;   /* k, required */
  double* f;                    /* n, out (in when warm_start) */
  double* g;                    /* k, out (in when warm_start) */
  float* plan;                  /* n*k or NULL */
  int32_t* predictions;         /* n or NULL: argmax_j Y_ij (first max on ties) */
  double* error_trace;          /* error at every check, or NULL */
  int32_t error_trace_cap;
  const volatile int32_t* cancel; /* or NULL; checked at every convergence check */
} otlm_sinkhorn_buffers;

typedef struct otlm_sinkhorn_report {
  int32_t iterations;
  double error;
  int32_t converged;
  int32_t mode;                 /* otlm_sinkhorn_mode_bits */
  int64_t log_fallbacks;        /* rows/columns that needed an exact log-sum-exp */
  int32_t trace_len;
  double seconds;
} otlm_sinkhorn_report;

/* ------------------------------------------------------------------- OTLM --
 * A = Φ_B W + b, log Z = log_softmax(A), M = -log Z, Y = Sinkhorn_T(M, λ, r=1, c=B·μ)
 * L = (-<Y, log Z> + λ <Y, log Y>) / B       (mean over the batch rows)
 * dL/dW = Φ_Bᵀ dL/dA.
 */
typedef enum otlm_grad_mode { OTLM_GRAD_UNROLLED = 0, OTLM_GRAD_ENVELOPE = 1 } otlm_grad_mode;
typedef enum otlm_optimizer { OTLM_OPT_ADAM = 0, OTLM_OPT_ADAMW = 1, OTLM_OPT_SGD = 2 } otlm_optimizer;

typedef struct otlm_train_params {
  int64_t k;
  double lambda;
  int32_t sinkhorn_iters;       /* T >= 1 */
  double tol;                   /* Δ: stop Sinkhorn early when error < tol (0 = run all T) */
  int32_t grad_mode;            /* otlm_grad_mode */
  int32_t optimizer;            /* otlm_optimizer */
  double beta1, beta2, eps;     /* Adam */
  double weight_decay;          /* Adam: L2 added to the gradient (PyTorch); AdamW: decoupled */
  double momentum;              /* SGD (PyTorch semantics, dampening 0) */
  int32_t nesterov;
  int32_t threads;
} otlm_train_params;

typedef struct otlm_step_report {
  double loss;
  double marginal_error;        /* Sinkhorn column error at the end of the forward */
  int32_t sinkhorn_iters;       /* iterations actually run */
  double grad_norm;             /* Frobenius norm of dL/dW (before weight decay) */
  double seconds;
} otlm_step_report;

typedef struct otlm_trainer otlm_trainer;

/* ------------------------------------------------------------------- info --
 * What a backend runs on: ONE struct for every backend, filled by its `info` entry (and, for
 * CUDA, by the library's entry point even when the device is not usable, as far as the probe
 * got). Fields that do not apply to a backend stay zero / empty. Strings are NUL-terminated
 * (truncated to their arrays). The addon turns this struct into the JS object of info()
 * field by field (src/native/binding.ts types it).
 */
#define OTLM_INFO_MAX_DEVICES 16

typedef struct otlm_device_info {
  int32_t index;                /* CUDA device ordinal */
  char name[256];
  uint64_t total_memory_bytes;
  int32_t cc_major, cc_minor;   /* compute capability */
  int32_t sm_count;             /* streaming multiprocessors */
  int32_t tf32;                 /* 1: TF32 tensor cores (compute capability >= 8.0) */
} otlm_device_info;

typedef struct otlm_backend_info {
  /* ---- both */
  char gemm[32];                /* CPU: "openblas-static" | "openblas" | "builtin-avx512|avx2|baseline"; CUDA: "otlm-fp32" | "otlm-tf32" */
  char compiler[128];           /* what compiled the backend */
  /* ---- CPU */
  char simd[16];                /* "avx512" | "avx2-fma" | "baseline" (kernels selected at run time) */
  int32_t threads;              /* default worker threads */
  /* ---- CUDA */
  int32_t driver_version;       /* as cudaDriverGetVersion: 1000*major + 10*minor; 0: no driver answered */
  int32_t runtime_version;      /* as cudaRuntimeGetVersion; 0: unknown */
  int32_t emulated;             /* 1: the CUDA API is emulated on the CPU (library built with OTLM_CUDA_EMU=1) */
  int32_t device;               /* ordinal the backend runs on, or refused (OTLM_CUDA_DEVICE); -1: none chosen */
  char arch[160];               /* virtual architectures compiled in, e.g. "compute_75,compute_80,compute_90" */
  int32_t device_count;         /* devices present; devices[] holds the first OTLM_INFO_MAX_DEVICES */
  otlm_device_info devices[OTLM_INFO_MAX_DEVICES];
} otlm_backend_info;

/* ---------------------------------------------------------------- backend -- */
typedef struct otlm_backend {
  int32_t abi_version;          /* OTLM_ABI_VERSION */
  const char* name;             /* "cpu" | "cuda" */

  /* Describes the backend (SIMD, threads, GEMM provider; driver, runtime, devices). Zeroes
   * *out first. */
  otlm_status (*info)(otlm_backend_info* out, otlm_error* err);

  otlm_status (*sinkhorn)(const otlm_sinkhorn_params* p, const otlm_sinkhorn_buffers* io,
                          otlm_sinkhorn_report* rep, otlm_error* err);

  /* One forward+backward of the OTLM loss on a batch (no optimizer). grad_w: k*k, may be NULL. */
  otlm_status (*loss_grad)(const otlm_train_params* p, const float* phi_b, int64_t b,
                           const float* w, const float* bias /* k or NULL */,
                           const double* target_prior /* k, sums to 1 */,
                           double* loss, float* grad_w, otlm_step_report* rep, otlm_error* err);

  /* Trainer: keeps Φ (n*k, copied), W (identity at start), optimizer state and batch buffers. */
  otlm_status (*trainer_create)(const otlm_train_params* p, const float* phi, int64_t n,
                                const float* bias, const double* target_prior,
                                otlm_trainer** out, otlm_error* err);
  otlm_status (*trainer_step)(otlm_trainer* t, const int32_t* rows, int64_t b, double lr,
                              otlm_step_report* rep, otlm_error* err);
  otlm_status (*trainer_get_weights)(otlm_trainer* t, float* w /* k*k */, otlm_error* err);
  otlm_status (*trainer_set_weights)(otlm_trainer* t, const float* w, otlm_error* err);
  void (*trainer_destroy)(otlm_trainer* t);

  /* C = A·B (+ bias broadcast over rows when bias != NULL); A m*kk, B kk*n, row-major. */
  otlm_status (*gemm)(int64_t m, int64_t n, int64_t kk, const float* a, const float* b,
                      const float* bias, float* c, int32_t threads, otlm_error* err);
} otlm_backend;

/* The CPU backend (linked into the addon and the C++ tests). */
const otlm_backend* otlm_cpu_backend(void);

/* Exported by the CUDA shared library (libotlm_cuda.so). Returns NULL and fills
 * err when no usable driver/device is present; the caller then keeps the CPU.
 * `info` (may be NULL) is filled either way with what the probe found (driver and
 * runtime versions, devices), so a caller can show the device it refused and why.
 * The symbol carries the ABI version: a library built for another ABI lacks it. */
typedef const otlm_backend* (*otlm_cuda_backend_fn)(otlm_backend_info* info, otlm_error* err);
#define OTLM_CUDA_ENTRY "otlm_cuda_backend_v2"
/* The entry of ABI 1 libraries (info_json): only looked up to explain a stale library. */
#define OTLM_CUDA_ENTRY_V1 "otlm_cuda_backend_v1"

#ifdef __cplusplus
}
#endif
#endif
