// OTLM bindings.
//   lossGrad(opts) / lossGradSync(opts): one forward+backward on a batch.
//     opts: { backend?, ...trainParams, phi: Float32Array(b*k), b, w: Float32Array(k*k),
//             bias?: Float32Array(k), targetPrior: Float64Array(k), grad?: boolean }
//     -> { loss, gradW?, marginalError, sinkhornIters, gradNorm, seconds }
//   new Trainer(opts): opts { backend?, ...trainParams, phi: Float32Array(n*k), n,
//             bias?, targetPrior }; Φ is copied once, W starts at the identity.
//     step(rows: Int32Array, lr) -> Promise<report>, stepSync(rows, lr) -> report,
//     getWeights() -> Float32Array(k*k), setWeights(Float32Array), close().
//   trainParams: k, lambda, sinkhornIters, tol, grad ('unrolled'|'envelope'),
//     optimizer ('adam'|'adamw'|'sgd'), beta1, beta2, eps, weightDecay, momentum, nesterov, threads
#include <napi.h>

#include <atomic>
#include <cstring>

#include "args.h"
#include "worker.h"

namespace otlm::addon {
namespace {

std::string str(Napi::Object o, const char* key, const char* def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsString()) throw_type(o.Env(), std::string("'") + key + "' must be a string, got " + describe(v));
  return v.As<Napi::String>().Utf8Value();
}

otlm_train_params train_params(Napi::Object o) {
  otlm_train_params p{};
  p.k = integer(o, "k", -1, 1, INT32_MAX);
  p.lambda = number(o, "lambda", 1.0);
  p.sinkhorn_iters = int32_t(integer(o, "sinkhornIters", 10, INT32_MIN, INT32_MAX));
  p.tol = number(o, "tol", 0);
  std::string grad = str(o, "grad", "unrolled");
  if (grad == "unrolled") p.grad_mode = OTLM_GRAD_UNROLLED;
  else if (grad == "envelope") p.grad_mode = OTLM_GRAD_ENVELOPE;
  else throw_type(o.Env(), "'grad' must be 'unrolled' or 'envelope', got '" + grad + "'");
  std::string opt = str(o, "optimizer", "adam");
  if (opt == "adam") p.optimizer = OTLM_OPT_ADAM;
  else if (opt == "adamw") p.optimizer = OTLM_OPT_ADAMW;
  else if (opt == "sgd") p.optimizer = OTLM_OPT_SGD;
  else throw_type(o.Env(), "'optimizer' must be 'adam', 'adamw' or 'sgd', got '" + opt + "'");
  p.beta1 = number(o, "beta1", 0.9);
  p.beta2 = number(o, "beta2", 0.999);
  p.eps = number(o, "eps", 1e-8);
  p.weight_decay = number(o, "weightDecay", 0);
  p.momentum = number(o, "momentum", 0);
  p.nesterov = boolean(o, "nesterov", false) ? 1 : 0;
  p.threads = int32_t(integer(o, "threads", 0, 0, OTLM_MAX_THREADS));
  return p;
}

Napi::Object step_report(Napi::Env env, const otlm_step_report& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("marginalError", r.marginal_error);
  out.Set("sinkhornIters", r.sinkhorn_iters);
  out.Set("gradNorm", r.grad_norm);
  out.Set("seconds", r.seconds);
  return out;
}

struct LossGradCall {
  const otlm_backend* be;
  otlm_train_params p;
  int64_t b;
  View<float> phi, w, bias;
  View<double> mu;
  Napi::Reference<Napi::Float32Array> grad;
  float* grad_ptr = nullptr;
  double loss = 0;
  otlm_step_report rep{};
};

Napi::Value LossGrad(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, 0, "lossGrad");
  auto call = std::make_shared<LossGradCall>();
  LossGradCall& c = *call;
  c.be = backend_arg(o);
  c.p = train_params(o);
  const int64_t k = c.p.k;
  c.b = integer(o, "b", -1, 1, INT64_MAX / k);
  const Access access = async ? Access::Async : Access::Sync;
  c.phi = input<float>(env, o.Get("phi"), "phi", c.b * k, access);
  c.w = input<float>(env, o.Get("w"), "w", k * k, access);
  c.bias = input<float>(env, o.Get("bias"), "bias", k, access, true);
  c.mu = input<double>(env, o.Get("targetPrior"), "targetPrior", k, access);
  if (boolean(o, "wantGrad", true)) {
    auto g = Napi::Float32Array::New(env, size_t(k * k));
    c.grad_ptr = g.Data();
    c.grad = Napi::Reference<Napi::Float32Array>::New(g, 1);
  }
  LossGradCall* p = call.get();
  return dispatch(
      env, async,
      [p](otlm_error* err) {
        return p->be->loss_grad(&p->p, p->phi.data, p->b, p->w.data, p->bias.data, p->mu.data, &p->loss,
                                p->grad_ptr, &p->rep, err);
      },
      [p](Napi::Env env) -> Napi::Value {
        Napi::Object out = step_report(env, p->rep);
        out.Set("loss", p->loss);
        if (!p->grad.IsEmpty()) out.Set("gradW", p->grad.Value());
        return out;
      },
      call);
}

// The native trainer owned by a JS object. One step at a time: `busy` guards it,
// and the async step holds a reference to the JS object so it cannot be collected.
class Trainer : public Napi::ObjectWrap<Trainer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Trainer",
                       {InstanceMethod("step", &Trainer::Step), InstanceMethod("stepSync", &Trainer::StepSync),
                        InstanceMethod("getWeights", &Trainer::GetWeights),
                        InstanceMethod("setWeights", &Trainer::SetWeights), InstanceMethod("close", &Trainer::Close)});
  }

  explicit Trainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Trainer>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "Trainer");
    be_ = backend_arg(o);
    otlm_train_params p = train_params(o);
    k_ = p.k;
    n_ = integer(o, "n", -1, 1, INT64_MAX / k_);
    // Synchronous: the trainer copies Φ, the bias and the prior before returning.
    View<float> phi = input<float>(env, o.Get("phi"), "phi", n_ * k_, Access::Sync);
    View<float> bias = input<float>(env, o.Get("bias"), "bias", k_, Access::Sync, true);
    View<double> mu = input<double>(env, o.Get("targetPrior"), "targetPrior", k_, Access::Sync);
    otlm_error err{};
    otlm_status s = be_->trainer_create(&p, phi.data, n_, bias.data, mu.data, &t_, &err);
    if (s != OTLM_OK) throw engine_error(env, s, err);
  }
  ~Trainer() override {
    if (t_) be_->trainer_destroy(t_);
  }

 private:
  struct StepCall {
    Trainer* self;
    View<int32_t> rows;
    double lr;
    otlm_step_report rep{};
    Napi::ObjectReference hold;
    ~StepCall() { self->busy_ = false; }  // runs on the main thread once the step settled
  };

  void check_open(Napi::Env env) {
    if (!t_) throw Napi::Error::New(env, "Trainer is closed");
    if (busy_) throw Napi::Error::New(env, "Trainer is busy: await the previous step first");
  }

  Napi::Value DoStep(const Napi::CallbackInfo& info, bool async) {
    Napi::Env env = info.Env();
    check_open(env);
    auto call = std::make_shared<StepCall>();
    call->self = this;
    call->rows = input<int32_t>(env, info[0], "rows", -1, async ? Access::Async : Access::Sync);
    if (call->rows.length < 1) throw_range(env, "'rows' must hold at least one row index (batch size >= 1)");
    if (info.Length() < 2 || !info[1].IsNumber()) throw_type(env, "'lr' must be a number");
    call->lr = info[1].As<Napi::Number>().DoubleValue();
    call->hold = Napi::Persistent(info.This().As<Napi::Object>());
    busy_ = true;
    StepCall* c = call.get();
    try {
      return dispatch(
          env, async,
          [c](otlm_error* err) {
            return c->self->be_->trainer_step(c->self->t_, c->rows.data, int64_t(c->rows.length), c->lr, &c->rep, err);
          },
          [c](Napi::Env env) -> Napi::Value { return step_report(env, c->rep); }, call);
    } catch (...) {
      busy_ = false;
      throw;
    }
  }
  Napi::Value Step(const Napi::CallbackInfo& info) { return DoStep(info, true); }
  Napi::Value StepSync(const Napi::CallbackInfo& info) { return DoStep(info, false); }

  Napi::Value GetWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_open(env);
    auto w = Napi::Float32Array::New(env, size_t(k_ * k_));
    otlm_error err{};
    otlm_status s = be_->trainer_get_weights(t_, w.Data(), &err);
    if (s != OTLM_OK) throw engine_error(env, s, err);
    return w;
  }
  Napi::Value SetWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_open(env);
    View<float> w = input<float>(env, info[0], "weights", k_ * k_, Access::Sync);
    otlm_error err{};
    otlm_status s = be_->trainer_set_weights(t_, w.data, &err);
    if (s != OTLM_OK) throw engine_error(env, s, err);
    return env.Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "Trainer is busy: await the step before close()");
    if (t_) be_->trainer_destroy(t_);
    t_ = nullptr;
    return info.Env().Undefined();
  }

  const otlm_backend* be_ = nullptr;
  otlm_trainer* t_ = nullptr;
  int64_t n_ = 0, k_ = 0;
  bool busy_ = false;
};

}  // namespace

void init_train(Napi::Env env, Napi::Object exports) {
  exports.Set("lossGrad", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return LossGrad(i, true); }, "lossGrad"));
  exports.Set("lossGradSync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return LossGrad(i, false); }, "lossGradSync"));
  exports.Set("Trainer", Trainer::Define(env));
}

}  // namespace otlm::addon
