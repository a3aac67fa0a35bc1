// Runs an engine call either now (the *Sync twins) or on the libuv pool behind a
// Promise. `keep` owns every reference the call needs, so inputs and outputs stay
// alive until the Promise settles; it is released on the main thread.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <new>

#include "args.h"

namespace otlm::addon {

using EngineRun = std::function<otlm_status(otlm_error*)>;
using EngineDone = std::function<Napi::Value(Napi::Env)>;

inline otlm_status guarded(const EngineRun& run, otlm_error* err) {
  try {
    return run(err);
  } catch (const std::bad_alloc&) {
    std::snprintf(err->message, sizeof(err->message), "out of memory");
    return OTLM_ENOMEM;
  } catch (...) {
    std::snprintf(err->message, sizeof(err->message), "unexpected C++ exception in the engine");
    return OTLM_EINTERNAL;
  }
}

class EngineWorker : public Napi::AsyncWorker {
 public:
  EngineWorker(Napi::Env env, EngineRun run, EngineDone done, std::shared_ptr<void> keep)
      : Napi::AsyncWorker(env, "otlm"), deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)), done_(std::move(done)), keep_(std::move(keep)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override { status_ = guarded(run_, &err_); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (status_ != OTLM_OK) {
      deferred_.Reject(engine_error(env, status_, err_).Value());
    } else {
      try {
        deferred_.Resolve(done_(env));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    }
    keep_.reset();
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(e.Value());
    keep_.reset();
  }

 private:
  Napi::Promise::Deferred deferred_;
  EngineRun run_;
  EngineDone done_;
  std::shared_ptr<void> keep_;
  otlm_status status_ = OTLM_OK;
  otlm_error err_{};
};

inline Napi::Value dispatch(Napi::Env env, bool async, EngineRun run, EngineDone done,
                            std::shared_ptr<void> keep) {
  if (async) {
    auto* w = new EngineWorker(env, std::move(run), std::move(done), std::move(keep));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  otlm_error err{};
  otlm_status s = guarded(run, &err);
  if (s != OTLM_OK) throw engine_error(env, s, err);
  return done(env);
}

}  // namespace otlm::addon
