// Module entry: info(), backend selection and the GEMM binding; Sinkhorn and the
// OTLM bindings live in bind_sinkhorn.cpp and bind_train.cpp.
#include <napi.h>

#include "args.h"
#include "cuda_loader.h"
#include "worker.h"

namespace otlm::addon {

void init_sinkhorn(Napi::Env env, Napi::Object exports);
void init_train(Napi::Env env, Napi::Object exports);

const otlm_backend* backend_arg(Napi::Object o) {
  Napi::Value v = o.Get("backend");
  std::string name = v.IsUndefined() ? "cpu" : (v.IsString() ? v.As<Napi::String>().Utf8Value() : "");
  if (name == "cpu") return otlm_cpu_backend();
  if (name == "cuda") {
    const CudaState& st = cuda_state();
    if (!st.backend) {
      Napi::Error e = Napi::Error::New(o.Env(), "backend 'cuda' is not available: " + st.reason);
      e.Set("code", Napi::String::New(o.Env(), "OTLM_ENODEVICE"));
      throw e;
    }
    return st.backend;
  }
  throw_type(o.Env(), "'backend' must be 'cpu' or 'cuda' at the native layer, got " +
                          (v.IsString() ? "'" + name + "'" : describe(v)));
}

static Napi::Value backend_json(Napi::Env env, const otlm_backend* b) {
  char buf[8192];
  otlm_error err{};
  if (b->info_json(buf, sizeof buf, &err) != OTLM_OK) return Napi::String::New(env, "{}");
  return Napi::String::New(env, buf);
}

static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("abi", Napi::Number::New(env, OTLM_ABI_VERSION));
  out.Set("napi", Napi::Number::New(env, NAPI_VERSION));
  out.Set("cpu", backend_json(env, otlm_cpu_backend()));
  const CudaState& st = cuda_state();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("path", st.path);
  cuda.Set("built", st.file_found);
  cuda.Set("usable", st.backend != nullptr);
  cuda.Set("reason", st.reason);
  cuda.Set("info", st.backend ? backend_json(env, st.backend) : env.Null());
  out.Set("cuda", cuda);
  return out;
}

// gemm({a, b, m, n, kk, bias?, threads?, backend?}) -> Float32Array c (m*n)
static Napi::Value Gemm(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, 0, "gemm");
  struct Call {
    View<float> a, b, bias;
    Napi::Reference<Napi::Float32Array> c;
    float* cdata = nullptr;
    int64_t m, n, kk;
    int32_t threads;
    const otlm_backend* be;
  };
  auto call = std::make_shared<Call>();
  call->be = backend_arg(o);
  call->m = integer(o, "m", -1, 1, INT64_MAX);
  call->n = integer(o, "n", -1, 1, INT64_MAX);
  call->kk = integer(o, "kk", -1, 1, INT64_MAX);
  call->threads = int32_t(integer(o, "threads", 0, 0, 4096));
  call->a = typed<float>(env, o.Get("a"), "a", call->m * call->kk);
  call->b = typed<float>(env, o.Get("b"), "b", call->kk * call->n);
  call->bias = typed<float>(env, o.Get("bias"), "bias", call->n, true);
  auto c = Napi::Float32Array::New(env, size_t(call->m * call->n));
  call->cdata = c.Data();
  call->c = Napi::Reference<Napi::Float32Array>::New(c, 1);
  Call* p = call.get();
  return dispatch(
      env, async,
      [p](otlm_error* err) {
        return p->be->gemm(p->m, p->n, p->kk, p->a.data, p->b.data, p->bias.data, p->cdata, p->threads, err);
      },
      [p](Napi::Env) -> Napi::Value { return p->c.Value(); }, call);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("gemm", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Gemm(i, true); }, "gemm"));
  exports.Set("gemmSync", Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return Gemm(i, false); }, "gemmSync"));
  init_sinkhorn(env, exports);
  init_train(env, exports);
  return exports;
}

}  // namespace otlm::addon

static Napi::Object InitOtlm(Napi::Env env, Napi::Object exports) { return otlm::addon::Init(env, exports); }
NODE_API_MODULE(otlm_native, InitOtlm)
