// Argument conversion for the bindings: every check names the argument and
// throws a JS TypeError/RangeError; nothing reaches the engine unchecked.
#pragma once
#include <napi.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "otlm/otlm.h"

namespace otlm::addon {

inline std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "Float32Array";
      case napi_float64_array: return "Float64Array";
      case napi_int32_array: return "Int32Array";
      case napi_uint8_array: return "Uint8Array";
      default: return "another TypedArray";
    }
  }
  if (v.IsArray()) return "Array";
  if (v.IsNumber()) return "number";
  if (v.IsString()) return "string";
  if (v.IsBoolean()) return "boolean";
  return "object";
}

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

template <typename T> struct TypedTraits;
template <> struct TypedTraits<float> { static constexpr napi_typedarray_type type = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct TypedTraits<double> { static constexpr napi_typedarray_type type = napi_float64_array; static constexpr const char* name = "Float64Array"; };
template <> struct TypedTraits<int32_t> { static constexpr napi_typedarray_type type = napi_int32_array; static constexpr const char* name = "Int32Array"; };

// How the engine reaches a caller's typed arrays (docs/architecture.md, "Memory contract").
// A *Sync call runs while no JavaScript can run: it reads and writes the caller's memory in
// place. An async call runs on the libuv pool while JavaScript goes on, and JavaScript can free
// an ArrayBuffer's memory under it (transfer it with structuredClone or postMessage, or shrink a
// resizable one). So an async call never keeps a pointer into an ArrayBuffer: it snapshots each
// input at the call and writes each caller-supplied output into its own memory, copied back when
// the call settles. A SharedArrayBuffer can be neither detached nor shrunk: views of one are
// used in place by async calls too (zero-copy).
enum class Access { Sync, Async };

// Memory for async snapshots and staged outputs. A fresh multi-megabyte buffer costs more in
// first-touch page faults than in the copy itself (80 MB: 235 ms in 4 KiB pages, 10 ms advised as
// 2 MiB huge pages, on the bench VM; bench/async-contract.js), so large ones are huge-page aligned.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <typename T> using HostBuffer = std::unique_ptr<T[], FreeDeleter>;

template <typename T> HostBuffer<T> host_alloc(Napi::Env env, size_t count, const std::string& name) {
  const size_t bytes = count * sizeof(T);
  void* p = nullptr;
#if defined(__linux__)
  constexpr size_t kHuge = size_t(2) << 20;
  if (bytes >= kHuge) {
    const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
    p = std::aligned_alloc(kHuge, rounded);
    if (p) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
  }
#endif
  if (!p) p = std::malloc(bytes ? bytes : 1);
  if (!p) {
    Napi::Error e = Napi::Error::New(env, "out of memory copying '" + name + "' (" + std::to_string(bytes) +
                                              " bytes) for an async call; a SharedArrayBuffer view is used in place");
    e.Set("code", Napi::String::New(env, "OTLM_ENOMEM"));
    throw e;
  }
  return HostBuffer<T>(static_cast<T*>(p));
}

template <typename T> struct View {
  T* data = nullptr;        // what the engine reads or writes
  size_t length = 0;
  const void* user = nullptr;  // the caller's memory, for the overlap checks
  bool shared = false;         // backed by a SharedArrayBuffer
  Napi::Reference<Napi::TypedArrayOf<T>> ref;  // keeps the caller's array alive for the call
  HostBuffer<T> owned;         // an async call's own copy (snapshot or output staging)
  bool present() const { return data != nullptr || length != 0; }
  size_t bytes() const { return length * sizeof(T); }
};

namespace detail {
template <typename T>
View<T> attach(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expected_len) {
  View<T> out;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedTraits<T>::type)
    throw_type(env, "'" + name + "' must be a " + TypedTraits<T>::name + ", got " + describe(v));
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  napi_value ab = arr.ArrayBuffer();
  bool detached = false, plain = false;
  if (napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached)
    throw_type(env, "'" + name + "' is backed by a detached ArrayBuffer");
  if (napi_is_arraybuffer(env, ab, &plain) != napi_ok)
    throw_type(env, "'" + name + "': cannot inspect its buffer");
  if (expected_len >= 0 && int64_t(arr.ElementLength()) != expected_len)
    throw_range(env, "'" + name + "' must have length " + std::to_string(expected_len) + ", got " +
                         std::to_string(arr.ElementLength()));
  out.data = arr.Data();
  out.length = arr.ElementLength();
  out.user = out.data;
  out.shared = !plain;  // napi_is_arraybuffer is false for a SharedArrayBuffer
  out.ref = Napi::Reference<Napi::TypedArrayOf<T>>::New(arr, 1);
  return out;
}
}  // namespace detail

// An array the engine only reads. Async: a snapshot unless shared.
template <typename T>
View<T> input(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expected_len, Access access,
              bool optional = false) {
  if (optional && (v.IsUndefined() || v.IsNull())) return {};
  View<T> out = detail::attach<T>(env, v, name, expected_len);
  if (access == Access::Async && !out.shared && out.length) {
    out.owned = host_alloc<T>(env, out.length, name);
    std::memcpy(out.owned.get(), out.data, out.bytes());
    out.data = out.owned.get();
  }
  return out;
}

// A caller-supplied array the engine writes. Async: staged in own memory unless shared, and
// copied to the caller's array by write_back when the call settles.
template <typename T>
View<T> output(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expected_len, Access access) {
  View<T> out = detail::attach<T>(env, v, name, expected_len);
  if (access == Access::Async && !out.shared && out.length) {
    out.owned = host_alloc<T>(env, out.length, name);
    out.data = out.owned.get();
  }
  return out;
}

// An array the engine reads while JavaScript writes it (a cancel flag): async calls need a
// SharedArrayBuffer, whose memory stays put.
template <typename T>
View<T> shared_flag(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expected_len,
                    Access access) {
  if (v.IsUndefined() || v.IsNull()) return {};
  View<T> out = detail::attach<T>(env, v, name, expected_len);
  if (access == Access::Async && !out.shared)
    throw_type(env, "'" + name + "' must be backed by a SharedArrayBuffer in an async call");
  return out;
}

// Copies a staged output into the caller's array, on the main thread as the call settles. The
// caller may have detached or shrunk it meanwhile: then the result has nowhere to go.
template <typename T> void write_back(Napi::Env env, View<T>& v, const std::string& name) {
  if (!v.owned) return;
  auto arr = v.ref.Value();
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, arr.ArrayBuffer(), &detached) != napi_ok || detached ||
      arr.ElementLength() != v.length) {
    Napi::Error e = Napi::TypeError::New(env, "'" + name + "' was detached or resized while the call ran; its result was discarded");
    e.Set("code", Napi::String::New(env, "OTLM_EDETACHED"));
    throw e;
  }
  std::memcpy(arr.Data(), v.owned.get(), v.bytes());
  v.owned.reset();
}

// Output `out` must not overlap any input, except being exactly `same` (in-place, supported).
template <typename O, typename I>
void check_disjoint(Napi::Env env, const View<O>& out, const std::string& out_name, const View<I>& in,
                    const std::string& in_name, bool exact_alias_ok = false) {
  if (!out.user || !in.user || !out.length || !in.length) return;
  auto a = reinterpret_cast<uintptr_t>(out.user), b = reinterpret_cast<uintptr_t>(in.user);
  if (a + out.bytes() <= b || b + in.bytes() <= a) return;
  if (exact_alias_ok && a == b && out.bytes() == in.bytes()) return;
  throw_range(env, "'" + out_name + "' overlaps '" + in_name + "'" +
                       (exact_alias_ok ? " without being the same view (in-place output must be the exact same "
                                         "elements)"
                                       : "; pass a separate array"));
}

inline Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsObject())
    throw_type(info.Env(), std::string(what) + ": expected an options object");
  return info[i].As<Napi::Object>();
}

inline double number(Napi::Object o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsNumber()) throw_type(o.Env(), std::string("'") + key + "' must be a number, got " + describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) throw_range(o.Env(), std::string("'") + key + "' must not be NaN");
  return d;
}

inline int64_t integer(Napi::Object o, const char* key, int64_t def, int64_t lo, int64_t hi) {
  double d = number(o, key, double(def));
  if (d != std::floor(d) || d < double(lo) || d > double(hi))
    throw_range(o.Env(), std::string("'") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + std::to_string(d));
  return int64_t(d);
}

inline bool boolean(Napi::Object o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsBoolean()) throw_type(o.Env(), std::string("'") + key + "' must be a boolean, got " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

inline const char* status_code(otlm_status s) {
  switch (s) {
    case OTLM_OK: return "OTLM_OK";
    case OTLM_EINVAL: return "OTLM_EINVAL";
    case OTLM_ENOMEM: return "OTLM_ENOMEM";
    case OTLM_EDEVICE: return "OTLM_EDEVICE";
    case OTLM_ENOTSUP: return "OTLM_ENOTSUP";
    case OTLM_EABORTED: return "OTLM_EABORTED";
    case OTLM_ENONFINITE: return "OTLM_ENONFINITE";
    default: return "OTLM_EINTERNAL";
  }
}

// An engine failure as a JS error: RangeError for bad arguments, Error otherwise,
// with `code` set to the status name so callers can branch on it.
inline Napi::Error engine_error(Napi::Env env, otlm_status s, const otlm_error& err) {
  std::string msg = err.message[0] ? err.message : "engine failed";
  Napi::Error e = s == OTLM_EINVAL ? Napi::RangeError::New(env, msg) : Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, status_code(s)));
  return e;
}

// The backend named by opts.backend ('cpu' default, or 'cuda'); throws when unavailable.
const otlm_backend* backend_arg(Napi::Object o);

}  // namespace otlm::addon
