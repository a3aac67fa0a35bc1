// Argument conversion for the bindings: every check names the argument and
// throws a JS TypeError/RangeError; nothing reaches the engine unchecked.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
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

// A checked view of a typed array. Data() honours byteOffset (subarray views read
// the right elements). `ref` keeps the array alive for the whole async call.
template <typename T> struct View {
  T* data = nullptr;
  size_t length = 0;
  Napi::Reference<Napi::TypedArrayOf<T>> ref;
  bool present() const { return data != nullptr || length != 0; }
};

template <typename T>
View<T> typed(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t expected_len,
              bool optional = false) {
  View<T> out;
  if (optional && (v.IsUndefined() || v.IsNull())) return out;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedTraits<T>::type)
    throw_type(env, "'" + name + "' must be a " + TypedTraits<T>::name + ", got " + describe(v));
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  bool detached = false;
  napi_value ab = arr.ArrayBuffer();
  if (napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached)
    throw_type(env, "'" + name + "' is backed by a detached ArrayBuffer");
  if (expected_len >= 0 && int64_t(arr.ElementLength()) != expected_len)
    throw_range(env, "'" + name + "' must have length " + std::to_string(expected_len) + ", got " +
                         std::to_string(arr.ElementLength()));
  out.data = arr.Data();
  out.length = arr.ElementLength();
  out.ref = Napi::Reference<Napi::TypedArrayOf<T>>::New(arr, 1);
  return out;
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
