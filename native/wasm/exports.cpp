// The WebAssembly engine's exports: the CPU backend (native/core + native/cpu, the same sources
// as the addon) behind flat C functions that JavaScript can call without knowing C struct layouts
// (src/native/wasm.ts). Only int32, double and pointers cross the boundary (no 64-bit integers, so
// no BigInt); sizes fit int32 because wasm32 memory is at most 4 GiB. Reports come back as arrays
// of doubles, errors as NUL-terminated text in a caller buffer of OTLM_WASM_ERR bytes.
// Built by scripts/build-wasm.sh (Emscripten, standalone .wasm, WebAssembly SIMD). docs/architecture.md
// "WebAssembly engine" says how it is loaded and run.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

#include "cpu_internal.h"
#include "darp.h"
#include "otlm/otlm.h"

#define OTLM_WASM_EXPORT(name) extern "C" __attribute__((used, export_name(#name)))

namespace {

constexpr int kErr = sizeof(otlm_error::message);

int finish(otlm_status s, const otlm_error& e, char* err) {
  if (s != OTLM_OK && err) std::snprintf(err, kErr, "%s", e.message);
  return int(s);
}

// Runs an engine call; a C++ exception it lets out (a lost pool worker's, in the threaded build)
// becomes an error code with its message, as in the addon (native/addon/worker.h): an exception
// that reached the export would abort() the instance.
template <class F>
otlm_status guarded(otlm_error& e, F&& call) {
  try {
    return call();
  } catch (const std::bad_alloc&) {
    std::snprintf(e.message, kErr, "out of memory");
    return OTLM_ENOMEM;
  } catch (const std::exception& x) {
    std::snprintf(e.message, kErr, "%s", x.what());
    return OTLM_EINTERNAL;
  } catch (...) {
    std::snprintf(e.message, kErr, "unexpected C++ exception in the engine");
    return OTLM_EINTERNAL;
  }
}

// params[0..12]: k, lambda, T, tol, grad_mode, optimizer, beta1, beta2, eps, weight_decay,
// momentum, nesterov, threads (the order of otlm_train_params).
otlm_train_params train_params(const double* v) {
  otlm_train_params p{};
  p.k = int64_t(v[0]);
  p.lambda = v[1];
  p.sinkhorn_iters = int32_t(v[2]);
  p.tol = v[3];
  p.grad_mode = int32_t(v[4]);
  p.optimizer = int32_t(v[5]);
  p.beta1 = v[6];
  p.beta2 = v[7];
  p.eps = v[8];
  p.weight_decay = v[9];
  p.momentum = v[10];
  p.nesterov = int32_t(v[11]);
  p.threads = int32_t(v[12]);
  return p;
}

// rep[0..4]: loss, marginal error, Sinkhorn iterations, gradient norm, seconds.
void step_report(const otlm_step_report& r, double* out) {
  out[0] = r.loss;
  out[1] = r.marginal_error;
  out[2] = r.sinkhorn_iters;
  out[3] = r.grad_norm;
  out[4] = r.seconds;
}

}  // namespace

OTLM_WASM_EXPORT(otlm_wasm_abi) int otlm_wasm_abi() { return OTLM_ABI_VERSION; }
OTLM_WASM_EXPORT(otlm_wasm_err_size) int otlm_wasm_err_size() { return kErr; }

// Fills simd (16 bytes), gemm (32) and compiler (128) and returns the default thread count.
OTLM_WASM_EXPORT(otlm_wasm_info) int otlm_wasm_info(char* simd, char* gemm, char* compiler) {
  otlm_backend_info bi;
  otlm_error e;
  if (otlm_cpu_backend()->info(&bi, &e) != OTLM_OK) return -1;
  std::memcpy(simd, bi.simd, sizeof bi.simd);
  std::memcpy(gemm, bi.gemm, sizeof bi.gemm);
  std::memcpy(compiler, bi.compiler, sizeof bi.compiler);
  return bi.threads;
}

// rep[0..6]: iterations, error, converged, mode bits, log fallbacks, trace length, seconds.
OTLM_WASM_EXPORT(otlm_wasm_sinkhorn)
int otlm_wasm_sinkhorn(const float* x, int n, int k, int input_kind, double lambda, int max_iter, double tol,
                       int check_every, int threads, int warm_start, double eps_scaling, double overrelax,
                       const double* row_marginal, const double* col_marginal, double* f, double* g, float* plan,
                       int32_t* predictions, double* trace, int trace_cap, double* rep, char* err) {
  otlm_sinkhorn_params p{};
  p.n = n;
  p.k = k;
  p.input_kind = input_kind;
  p.lambda = lambda;
  p.max_iter = max_iter;
  p.tol = tol;
  p.check_every = check_every;
  p.threads = threads;
  p.warm_start = warm_start;
  p.eps_scaling = eps_scaling;
  p.overrelax = overrelax;
  otlm_sinkhorn_buffers io{};
  io.x = x;
  io.row_marginal = row_marginal;
  io.col_marginal = col_marginal;
  io.f = f;
  io.g = g;
  io.plan = plan;
  io.predictions = predictions;
  io.error_trace = trace;
  io.error_trace_cap = trace_cap;
  otlm_sinkhorn_report r{};
  otlm_error e{};
  const otlm_status s = guarded(e, [&] { return otlm_cpu_backend()->sinkhorn(&p, &io, &r, &e); });
  rep[0] = r.iterations;
  rep[1] = r.error;
  rep[2] = r.converged;
  rep[3] = r.mode;
  rep[4] = double(r.log_fallbacks);
  rep[5] = r.trace_len;
  rep[6] = r.seconds;
  return finish(s, e, err);
}

OTLM_WASM_EXPORT(otlm_wasm_loss_grad)
int otlm_wasm_loss_grad(const double* params, const float* phi, int b, const float* w, const float* bias,
                        const double* target_prior, float* grad_w, double* rep, char* err) {
  const otlm_train_params p = train_params(params);
  otlm_step_report r{};
  otlm_error e{};
  double loss = 0;
  const otlm_status s =
      guarded(e, [&] { return otlm_cpu_backend()->loss_grad(&p, phi, b, w, bias, target_prior, &loss, grad_w, &r, &e); });
  step_report(r, rep);
  rep[0] = loss;
  return finish(s, e, err);
}

// Returns the trainer, or 0 with err filled.
OTLM_WASM_EXPORT(otlm_wasm_trainer_create)
otlm_trainer* otlm_wasm_trainer_create(const double* params, const float* phi, int n, const float* bias,
                                       const double* target_prior, char* err) {
  const otlm_train_params p = train_params(params);
  otlm_trainer* t = nullptr;
  otlm_error e{};
  const otlm_status s =
      guarded(e, [&] { return otlm_cpu_backend()->trainer_create(&p, phi, n, bias, target_prior, &t, &e); });
  finish(s, e, err);
  return s == OTLM_OK ? t : nullptr;
}

OTLM_WASM_EXPORT(otlm_wasm_trainer_step)
int otlm_wasm_trainer_step(otlm_trainer* t, const int32_t* rows, int b, double lr, double* rep, char* err) {
  otlm_step_report r{};
  otlm_error e{};
  const otlm_status s = guarded(e, [&] { return otlm_cpu_backend()->trainer_step(t, rows, b, lr, &r, &e); });
  step_report(r, rep);
  return finish(s, e, err);
}

OTLM_WASM_EXPORT(otlm_wasm_trainer_weights)
int otlm_wasm_trainer_weights(otlm_trainer* t, float* w, int set, char* err) {
  otlm_error e{};
  const otlm_backend* be = otlm_cpu_backend();
  return finish(guarded(e, [&] { return set ? be->trainer_set_weights(t, w, &e) : be->trainer_get_weights(t, w, &e); }), e,
                err);
}

OTLM_WASM_EXPORT(otlm_wasm_trainer_destroy) void otlm_wasm_trainer_destroy(otlm_trainer* t) {
  otlm_cpu_backend()->trainer_destroy(t);
}

OTLM_WASM_EXPORT(otlm_wasm_gemm)
int otlm_wasm_gemm(int m, int n, int kk, const float* a, const float* b, const float* bias, float* c, int threads,
                   char* err) {
  otlm_error e{};
  return finish(guarded(e, [&] { return otlm_cpu_backend()->gemm(m, n, kk, a, b, bias, c, threads, &e); }), e, err);
}

namespace {
struct Trace {
  double* data;
  int cap, len;
};
void push_trace(void* ctx, double v) {
  auto* t = static_cast<Trace*>(ctx);
  if (t->len < t->cap) t->data[t->len++] = v;
}
}  // namespace

// rep[0..4]: iterations, error, converged, seconds, trace length. trace holds trace_cap doubles.
OTLM_WASM_EXPORT(otlm_wasm_darp)
int otlm_wasm_darp(const float* logits, int n, int k, const double* col_marginal, int weights_mode,
                   const double* weights, int max_iter, double tol, int newton_iter, int threads, float* probabilities,
                   int32_t* predictions, double* log_row_scale, double* nu, double* trace, int trace_cap, double* rep,
                   char* err) {
  otlm::cpu::DarpParams p;
  p.n = n;
  p.k = k;
  p.max_iter = max_iter;
  p.tol = tol;
  p.newton_iter = newton_iter;
  p.weights = weights_mode;
  p.threads = threads;
  Trace tr{trace, trace_cap, 0};
  otlm::cpu::DarpBuffers io;
  io.logits = logits;
  io.col_marginal = col_marginal;
  io.weights = weights;
  io.probabilities = probabilities;
  io.predictions = predictions;
  io.log_row_scale = log_row_scale;
  io.nu = nu;
  io.on_error = push_trace;
  io.ctx = &tr;
  otlm::cpu::DarpReport r;
  otlm_error e{};
  const otlm_status s = guarded(e, [&] { return otlm::cpu::darp(&p, &io, &r, &e); });
  rep[0] = r.iterations;
  rep[1] = r.error;
  rep[2] = r.converged;
  rep[3] = r.seconds;
  rep[4] = tr.len;
  return finish(s, e, err);
}
