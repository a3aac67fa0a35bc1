// darp(opts) / darpSync(opts): DARP on the native CPU engine (native/cpu/darp.h).
//   opts: { logits: Float32Array(n*k), n, k, colMarginal: Float64Array(k) (c = N·μ),
//           weights?: 'entropy' (default) | 'uniform' | Float64Array(n), maxIter?, tol?, newtonIter?,
//           threads?, cancel?: Int32Array(1) (on a SharedArrayBuffer when async) }
//   -> { probabilities: Float32Array(n*k), predictions: Int32Array(n), logRowScale: Float64Array(n),
//        nu: Float64Array(k), iterations, error, converged, trace: Float64Array, seconds, backend: 'cpu' }
// Inputs follow the memory contract of args.h (async calls read snapshots); every output array is
// made here, so the engine writes it in place.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "darp.h"
#include "worker.h"

namespace otlm::addon {
namespace {

struct DarpCall {
  cpu::DarpParams p{};
  cpu::DarpBuffers io{};
  cpu::DarpReport rep{};
  View<float> logits;
  View<double> c, w;
  View<int32_t> cancel;
  Napi::Reference<Napi::Float32Array> probs;
  Napi::Reference<Napi::Int32Array> pred;
  Napi::Reference<Napi::Float64Array> log_a, nu;
  std::vector<double> trace;
};

void push_trace(void* ctx, double e) {
  auto* t = static_cast<std::vector<double>*>(ctx);
  if (t->size() < (size_t(1) << 24)) t->push_back(e);  // the first 2^24 sweeps, as sinkhorn's traceCap
}

Napi::Value Darp(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, 0, "darp");
  auto call = std::make_shared<DarpCall>();
  DarpCall& d = *call;
  const int64_t n = integer(o, "n", -1, 1, INT64_MAX);
  const int64_t k = integer(o, "k", -1, 1, INT64_MAX);
  if (n > INT64_MAX / 8 / k) throw_range(env, "'n' * 'k' overflows");
  d.p.n = n;
  d.p.k = k;
  d.p.max_iter = int32_t(integer(o, "maxIter", 1000, 1, INT32_MAX));
  d.p.tol = number(o, "tol", 1e-6);
  if (!(d.p.tol >= 0) || !std::isfinite(d.p.tol)) throw_range(env, "'tol' must be a finite number >= 0");
  d.p.newton_iter = int32_t(integer(o, "newtonIter", 50, 1, INT32_MAX));
  d.p.threads = int32_t(integer(o, "threads", 0, 0, OTLM_MAX_THREADS));

  const Access access = async ? Access::Async : Access::Sync;
  d.logits = input<float>(env, o.Get("logits"), "logits", n * k, access);
  d.c = input<double>(env, o.Get("colMarginal"), "colMarginal", k, access);
  Napi::Value wv = o.Get("weights");
  if (wv.IsUndefined() || (wv.IsString() && wv.As<Napi::String>().Utf8Value() == "entropy")) {
    d.p.weights = cpu::OTLM_DARP_WEIGHTS_ENTROPY;
  } else if (wv.IsString() && wv.As<Napi::String>().Utf8Value() == "uniform") {
    d.p.weights = cpu::OTLM_DARP_WEIGHTS_UNIFORM;
  } else if (wv.IsTypedArray()) {
    d.w = input<double>(env, wv, "weights", n, access);
    d.p.weights = cpu::OTLM_DARP_WEIGHTS_GIVEN;
  } else {
    throw_type(env, "'weights' must be 'entropy', 'uniform' or a Float64Array of length n, got " +
                        (wv.IsString() ? "'" + wv.As<Napi::String>().Utf8Value() + "'" : describe(wv)));
  }
  d.cancel = shared_flag<int32_t>(env, o.Get("cancel"), "cancel", 1, access);

  auto probs = Napi::Float32Array::New(env, size_t(n * k));
  auto pred = Napi::Int32Array::New(env, size_t(n));
  auto log_a = Napi::Float64Array::New(env, size_t(n));
  auto nu = Napi::Float64Array::New(env, size_t(k));
  d.probs = Napi::Reference<Napi::Float32Array>::New(probs, 1);
  d.pred = Napi::Reference<Napi::Int32Array>::New(pred, 1);
  d.log_a = Napi::Reference<Napi::Float64Array>::New(log_a, 1);
  d.nu = Napi::Reference<Napi::Float64Array>::New(nu, 1);
  d.trace.reserve(size_t(std::min<int64_t>(d.p.max_iter, 4096)));

  d.io.logits = d.logits.data;
  d.io.col_marginal = d.c.data;
  d.io.weights = d.w.data;
  d.io.probabilities = probs.Data();
  d.io.predictions = pred.Data();
  d.io.log_row_scale = log_a.Data();
  d.io.nu = nu.Data();
  d.io.on_error = push_trace;
  d.io.ctx = &d.trace;
  d.io.cancel = d.cancel.data;

  DarpCall* p = call.get();
  return dispatch(
      env, async, [p](otlm_error* err) { return cpu::darp(&p->p, &p->io, &p->rep, err); },
      [p](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("probabilities", p->probs.Value());
        out.Set("predictions", p->pred.Value());
        out.Set("logRowScale", p->log_a.Value());
        out.Set("nu", p->nu.Value());
        out.Set("iterations", p->rep.iterations);
        out.Set("error", p->rep.error);
        out.Set("converged", Napi::Boolean::New(env, p->rep.converged != 0));
        auto tr = Napi::Float64Array::New(env, p->trace.size());
        if (!p->trace.empty()) std::memcpy(tr.Data(), p->trace.data(), p->trace.size() * sizeof(double));
        out.Set("trace", tr);
        out.Set("seconds", p->rep.seconds);
        out.Set("backend", "cpu");
        return out;
      },
      call);
}

}  // namespace

void init_darp(Napi::Env env, Napi::Object exports) {
  exports.Set("darp", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Darp(i, true); }, "darp"));
  exports.Set("darpSync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Darp(i, false); }, "darpSync"));
}

}  // namespace otlm::addon
