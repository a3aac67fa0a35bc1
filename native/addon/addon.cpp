// Module entry: info(), backend selection and the GEMM binding; Sinkhorn and the
// OTLM bindings live in bind_sinkhorn.cpp and bind_train.cpp.
#include <napi.h>

#include <algorithm>
#include <string>

#include "args.h"
#include "cuda_loader.h"
#include "worker.h"

namespace otlm::addon {

void init_sinkhorn(Napi::Env env, Napi::Object exports);
void init_train(Napi::Env env, Napi::Object exports);
void init_darp(Napi::Env env, Napi::Object exports);

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

// ---- info(): otlm_backend_info -> JS objects, field by field (typed in src/native/binding.ts)

// "13.0" from cudaDriverGetVersion's 13000; null when 0 (nothing answered).
static Napi::Value cuda_version(Napi::Env env, int32_t v) {
  if (v <= 0) return env.Null();
  return Napi::String::New(env, std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10));
}

// A fixed-size char array that may lack its NUL (a foreign library): never read past it.
template <size_t N> static Napi::String str(Napi::Env env, const char (&s)[N]) {
  size_t n = 0;
  while (n < N && s[n]) ++n;
  return Napi::String::New(env, s, n);
}

static Napi::Object cpu_info(Napi::Env env) {
  otlm_backend_info i{};
  otlm_error err{};
  if (otlm_cpu_backend()->info(&i, &err) != OTLM_OK)
    throw Napi::Error::New(env, std::string("otlm: the CPU backend's info failed: ") + err.message);
  Napi::Object o = Napi::Object::New(env);
  o.Set("simd", str(env, i.simd));
  o.Set("threads", Napi::Number::New(env, i.threads));
  o.Set("gemm", str(env, i.gemm));
  o.Set("compiler", str(env, i.compiler));
  return o;
}

static Napi::Object cuda_info(Napi::Env env, const otlm_backend_info& i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("driverVersion", cuda_version(env, i.driver_version));
  o.Set("runtimeVersion", cuda_version(env, i.runtime_version));
  o.Set("emulated", Napi::Boolean::New(env, i.emulated != 0));
  o.Set("device", i.device >= 0 ? Napi::Value(Napi::Number::New(env, i.device)) : env.Null());
  o.Set("gemm", str(env, i.gemm));
  o.Set("arch", str(env, i.arch));
  o.Set("compiler", str(env, i.compiler));
  o.Set("deviceCount", Napi::Number::New(env, i.device_count));
  const int32_t n = std::max(0, std::min<int32_t>(i.device_count, OTLM_INFO_MAX_DEVICES));
  Napi::Array devices = Napi::Array::New(env, size_t(n));
  for (int32_t d = 0; d < n; ++d) {
    const otlm_device_info& di = i.devices[d];
    Napi::Object od = Napi::Object::New(env);
    od.Set("index", Napi::Number::New(env, di.index));
    od.Set("name", str(env, di.name));
    od.Set("memoryBytes", Napi::Number::New(env, double(di.total_memory_bytes)));
    od.Set("computeCapability", Napi::String::New(env, std::to_string(di.cc_major) + "." + std::to_string(di.cc_minor)));
    od.Set("smCount", Napi::Number::New(env, di.sm_count));
    od.Set("tf32", Napi::Boolean::New(env, di.tf32 != 0));
    devices.Set(uint32_t(d), od);
  }
  o.Set("devices", devices);
  return o;
}

static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("abi", Napi::Number::New(env, OTLM_ABI_VERSION));
  out.Set("napi", Napi::Number::New(env, NAPI_VERSION));
  out.Set("cpu", cpu_info(env));
  const CudaState& st = cuda_state();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("path", st.path);
  cuda.Set("built", st.file_found);
  cuda.Set("usable", st.backend != nullptr);
  cuda.Set("reason", st.reason);
  // A usable backend describes itself (its table's info copies the probe's findings, cheaply);
  // otherwise what the entry point's probe found before it refused, if it ran.
  otlm_backend_info ci{};
  otlm_error err{};
  if (st.backend && st.backend->info(&ci, &err) == OTLM_OK) cuda.Set("info", cuda_info(env, ci));
  else if (st.has_info) cuda.Set("info", cuda_info(env, st.info));
  else cuda.Set("info", env.Null());
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
  call->threads = int32_t(integer(o, "threads", 0, 0, OTLM_MAX_THREADS));
  const Access access = async ? Access::Async : Access::Sync;
  call->a = input<float>(env, o.Get("a"), "a", call->m * call->kk, access);
  call->b = input<float>(env, o.Get("b"), "b", call->kk * call->n, access);
  call->bias = input<float>(env, o.Get("bias"), "bias", call->n, access, true);
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
  init_darp(env, exports);
  return exports;
}

}  // namespace otlm::addon

static Napi::Object InitOtlm(Napi::Env env, Napi::Object exports) { return otlm::addon::Init(env, exports); }
NODE_API_MODULE(otlm_native, InitOtlm)
