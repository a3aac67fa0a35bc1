// sinkhorn(opts) / sinkhornSync(opts): one solve on any backend.
//   opts: { backend?, x: Float32Array(n*k), n, k, inputKind?: 'cost'|'logits',
//           lambda, maxIter, tol, checkEvery, threads?, colMarginal: Float64Array(k),
//           rowMarginal?: Float64Array(n), f0?: Float64Array(n), g0?: Float64Array(k),
//           epsScaling?, overrelax?, plan?: boolean | Float32Array(n*k) (may be x itself: in place),
//           predictions?: boolean, traceCap?, cancel?: Int32Array(1) (on a SharedArrayBuffer when async) }
//   -> { f, g, iterations, error, converged, mode, logFallbacks, trace, seconds, plan?, predictions? }
#include <napi.h>

#include <cstring>

#include "args.h"
#include "worker.h"

namespace otlm::addon {
namespace {

struct SinkhornCall {
  const otlm_backend* be = nullptr;
  otlm_sinkhorn_params p{};
  otlm_sinkhorn_buffers io{};
  otlm_sinkhorn_report rep{};
  View<float> x, plan_out;  // plan_out: a caller-supplied plan array (may be `x` itself: in place)
  View<double> r, c, f0, g0;
  View<int32_t> cancel;
  Napi::Reference<Napi::Float64Array> f, g, trace;
  Napi::Reference<Napi::Float32Array> plan;  // a plan array the binding made (plan: true)
  Napi::Reference<Napi::Int32Array> pred;
};

Napi::Value Sinkhorn(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, 0, "sinkhorn");
  auto call = std::make_shared<SinkhornCall>();
  SinkhornCall& s = *call;
  s.be = backend_arg(o);
  const int64_t n = integer(o, "n", -1, 1, INT64_MAX);
  const int64_t k = integer(o, "k", -1, 1, INT64_MAX);
  if (n > INT64_MAX / k) throw_range(env, "'n' * 'k' overflows");
  s.p.n = n;
  s.p.k = k;
  Napi::Value kind = o.Get("inputKind");
  std::string kinds = kind.IsUndefined() ? "cost" : (kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "");
  if (kinds == "cost") s.p.input_kind = OTLM_INPUT_COST;
  else if (kinds == "logits") s.p.input_kind = OTLM_INPUT_LOGITS;
  else throw_type(env, "'inputKind' must be 'cost' or 'logits'");
  s.p.lambda = number(o, "lambda", 1.0);
  s.p.max_iter = int32_t(integer(o, "maxIter", 1000, INT32_MIN, INT32_MAX));
  s.p.tol = number(o, "tol", 1e-3);
  s.p.check_every = int32_t(integer(o, "checkEvery", 1, INT32_MIN, INT32_MAX));
  s.p.threads = int32_t(integer(o, "threads", 0, 0, OTLM_MAX_THREADS));
  s.p.eps_scaling = number(o, "epsScaling", 0);
  s.p.overrelax = number(o, "overrelax", 1);

  const Access access = async ? Access::Async : Access::Sync;
  s.x = input<float>(env, o.Get("x"), "x", n * k, access);
  s.c = input<double>(env, o.Get("colMarginal"), "colMarginal", k, access);
  s.r = input<double>(env, o.Get("rowMarginal"), "rowMarginal", n, access, true);
  s.f0 = input<double>(env, o.Get("f0"), "f0", n, Access::Sync, true);  // copied into f below
  s.g0 = input<double>(env, o.Get("g0"), "g0", k, Access::Sync, true);
  if (s.f0.present() != s.g0.present()) throw_type(env, "'f0' and 'g0' must be given together (warm start)");
  s.cancel = shared_flag<int32_t>(env, o.Get("cancel"), "cancel", 1, access);

  auto f = Napi::Float64Array::New(env, size_t(n));
  auto g = Napi::Float64Array::New(env, size_t(k));
  if (s.f0.present()) {
    std::memcpy(f.Data(), s.f0.data, size_t(n) * sizeof(double));
    std::memcpy(g.Data(), s.g0.data, size_t(k) * sizeof(double));
    s.p.warm_start = 1;
  }
  s.f = Napi::Reference<Napi::Float64Array>::New(f, 1);
  s.g = Napi::Reference<Napi::Float64Array>::New(g, 1);

  Napi::Value planv = o.Get("plan");
  float* plan_ptr = nullptr;
  if (planv.IsTypedArray()) {
    s.plan_out = output<float>(env, planv, "plan", n * k, access);
    check_disjoint(env, s.plan_out, "plan", s.x, "x", true);
    check_disjoint(env, s.plan_out, "plan", s.c, "colMarginal");
    check_disjoint(env, s.plan_out, "plan", s.r, "rowMarginal");
    plan_ptr = s.plan_out.data;
  } else if (planv.IsBoolean() && planv.As<Napi::Boolean>().Value()) {
    auto pl = Napi::Float32Array::New(env, size_t(n * k));
    plan_ptr = pl.Data();
    s.plan = Napi::Reference<Napi::Float32Array>::New(pl, 1);
  } else if (!planv.IsUndefined() && !planv.IsBoolean()) {
    throw_type(env, "'plan' must be a boolean or a Float32Array of length n*k, got " + describe(planv));
  }
  int32_t* pred_ptr = nullptr;
  if (boolean(o, "predictions", false)) {
    auto pr = Napi::Int32Array::New(env, size_t(n));
    pred_ptr = pr.Data();
    s.pred = Napi::Reference<Napi::Int32Array>::New(pr, 1);
  }
  const int64_t cap = integer(o, "traceCap", 0, 0, 1 << 24);
  auto trace = Napi::Float64Array::New(env, size_t(cap));
  s.trace = Napi::Reference<Napi::Float64Array>::New(trace, 1);

  s.io.x = s.x.data;
  s.io.row_marginal = s.r.data;
  s.io.col_marginal = s.c.data;
  s.io.f = f.Data();
  s.io.g = g.Data();
  s.io.plan = plan_ptr;
  s.io.predictions = pred_ptr;
  s.io.error_trace = cap ? trace.Data() : nullptr;
  s.io.error_trace_cap = int32_t(cap);
  s.io.cancel = s.cancel.data;

  SinkhornCall* p = call.get();
  return dispatch(
      env, async, [p](otlm_error* err) { return p->be->sinkhorn(&p->p, &p->io, &p->rep, err); },
      [p](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("f", p->f.Value());
        out.Set("g", p->g.Value());
        out.Set("iterations", p->rep.iterations);
        out.Set("error", p->rep.error);
        out.Set("converged", Napi::Boolean::New(env, p->rep.converged != 0));
        Napi::Array modes = Napi::Array::New(env);
        uint32_t m = 0;
        if (p->rep.mode & OTLM_MODE_SCALING) modes.Set(m++, "scaling");
        if (p->rep.mode & OTLM_MODE_LOG) modes.Set(m++, "log");
        out.Set("mode", modes);
        out.Set("logFallbacks", double(p->rep.log_fallbacks));
        auto tr = p->trace.Value();
        out.Set("trace", tr.Get("subarray").As<Napi::Function>().Call(tr, {Napi::Number::New(env, 0), Napi::Number::New(env, p->rep.trace_len)}));
        out.Set("seconds", p->rep.seconds);
        out.Set("backend", p->be->name);
        if (!p->plan.IsEmpty()) out.Set("plan", p->plan.Value());
        if (p->plan_out.present()) {
          write_back(env, p->plan_out, "plan");
          out.Set("plan", p->plan_out.ref.Value());
        }
        if (!p->pred.IsEmpty()) out.Set("predictions", p->pred.Value());
        return out;
      },
      call);
}

}  // namespace

void init_sinkhorn(Napi::Env env, Napi::Object exports) {
  exports.Set("sinkhorn", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Sinkhorn(i, true); }, "sinkhorn"));
  exports.Set("sinkhornSync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Sinkhorn(i, false); }, "sinkhornSync"));
}

}  // namespace otlm::addon
