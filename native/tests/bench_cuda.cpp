// CUDA backend benchmarks (run by bench/gpu-check.sh on a GPU machine).
//
//  1. device-to-device copy bandwidth (cudaMemcpy D2D of a 1 GiB buffer; BW = bytes read + written / t)
//  2. Sinkhorn per-iteration time at 20000×1000 and 24426×8142 (logits input), measured through the
//     public ABI by difference: t(I2 iterations) - t(I1 iterations) over I2 - I1 (the upload and the
//     outputs cancel), and its ratio to one read of M at the measured bandwidth (goal ≤ 2×)
//  3. our GEMM kernels (FP32, TF32) on the OTLM shapes, by difference of OTLM_CUDA_GEMM_REPEAT runs,
//     against cuBLAS SGEMM loaded at run time with dlopen (goal ≥ 70% on FP32)
//  4. an OTLM step at B = 10000, K = 1000, T = 7 and the whole 100-step fit (goal < 2 s)
//  5. GPU/CPU speed-up for the same Sinkhorn and the same step
// Prints a table and one JSON line (prefix "JSON "). OTLM_BENCH_QUICK=1 shortens everything.
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "otlm/otlm.h"

#ifdef OTLM_BENCH_CUDART
#include <cuda_runtime.h>
#endif

#ifndef OTLM_CUDA_LIB
#define OTLM_CUDA_LIB ""
#endif

namespace {

using Clock = std::chrono::steady_clock;
double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const otlm_backend* CPU = nullptr;
const otlm_backend* GPU = nullptr;
bool quick = false;
std::mt19937_64 rng(12345);

struct Row {
  std::string name, value, goal;
};
std::vector<Row> table;
std::string json = "{";
void put(const std::string& name, double v, const char* unit, const std::string& goal = "") {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g %s", v, unit);
  table.push_back({name, b, goal});
  std::string key = name;
  for (auto& ch : key)
    if (!isalnum((unsigned char)ch)) ch = '_';
  char j[128];
  std::snprintf(j, sizeof j, "%s\"%s\":%.6g", json.size() > 1 ? "," : "", key.c_str(), std::isfinite(v) ? v : -1.0);
  json += j;
}

// Host buffers: pinned when the CUDA runtime is linked (steadier uploads), else plain.
struct HostBuf {
  float* p = nullptr;
  bool pinned = false;
  std::vector<float> v;
  explicit HostBuf(size_t n) {
#ifdef OTLM_BENCH_CUDART
    if (cudaMallocHost(reinterpret_cast<void**>(&p), n * sizeof(float)) == cudaSuccess) {
      pinned = true;
      return;
    }
    cudaGetLastError();
#endif
    v.resize(n);
    p = v.data();
  }
  ~HostBuf() {
#ifdef OTLM_BENCH_CUDART
    if (pinned) cudaFreeHost(p);
#endif
  }
};

void fill_logits(float* x, int64_t n, int64_t k) {
  std::normal_distribution<float> nd(0.f, 1.5f);
  std::vector<float> bias(static_cast<size_t>(k));
  for (auto& b : bias) b = 2.f * nd(rng);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) x[i * k + j] = nd(rng) + bias[size_t(j)];
}

// Seconds of one sinkhorn call with `iters` iterations (no plan/predictions).
double sk_time(const otlm_backend* be, const float* x, int64_t n, int64_t k, int iters, const std::vector<double>& col) {
  std::vector<double> f(static_cast<size_t>(n)), g(static_cast<size_t>(k));
  otlm_sinkhorn_params p{};
  p.n = n;
  p.k = k;
  p.input_kind = OTLM_INPUT_LOGITS;
  p.lambda = 0.1;
  p.max_iter = iters;
  p.tol = 0;
  p.check_every = 1 << 30;
  p.overrelax = 1;
  otlm_sinkhorn_buffers b{};
  b.x = x;
  b.col_marginal = col.data();
  b.f = f.data();
  b.g = g.data();
  otlm_sinkhorn_report rep{};
  otlm_error e{};
  double t0 = now();
  otlm_status s = be->sinkhorn(&p, &b, &rep, &e);
  double t = now() - t0;
  if (s != OTLM_OK) {
    std::printf("  sinkhorn (%s) failed: %s\n", be->name, e.message);
    return NAN;
  }
  return t;
}

// per-iteration seconds by difference
double sk_per_iter(const otlm_backend* be, const float* x, int64_t n, int64_t k, int i1, int i2, int reps) {
  std::vector<double> col(static_cast<size_t>(k), double(n) / double(k));
  std::vector<double> d;
  sk_time(be, x, n, k, 1, col);  // warm-up
  for (int r = 0; r < reps; ++r) {
    double a = sk_time(be, x, n, k, i1, col), b = sk_time(be, x, n, k, i2, col);
    d.push_back((b - a) / double(i2 - i1));
  }
  return median(d);
}

double gemm_time(const otlm_backend* be, int64_t m, int64_t n, int64_t kk, const float* a, const float* b, float* c) {
  otlm_error e{};
  double t0 = now();
  otlm_status s = be->gemm(m, n, kk, a, b, nullptr, c, 0, &e);
  double t = now() - t0;
  if (s != OTLM_OK) {
    std::printf("  gemm failed: %s\n", e.message);
    return NAN;
  }
  return t;
}

// ---- cuBLAS peer, loaded at run time (prototypes declared here; no headers, no link)
typedef int (*cublasCreate_t)(void**);
typedef int (*cublasDestroy_t)(void*);
typedef int (*cublasSgemm_t)(void*, int, int, int, int, int, const float*, const float*, int, const float*, int,
                             const float*, float*, int);
typedef int (*cublasSetMathMode_t)(void*, int);

#ifdef OTLM_BENCH_CUDART
double cublas_gflops(int64_t m, int64_t n, int64_t kk, bool tf32, std::string* why) {
  static void* h = nullptr;
  if (!h) {
    for (const char* name : {"libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}) {
      h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (h) break;
    }
  }
  if (!h) {
    *why = "libcublas not found (set LD_LIBRARY_PATH to the CUDA lib64 directory)";
    return NAN;
  }
  auto create = reinterpret_cast<cublasCreate_t>(dlsym(h, "cublasCreate_v2"));
  auto destroy = reinterpret_cast<cublasDestroy_t>(dlsym(h, "cublasDestroy_v2"));
  auto sgemm = reinterpret_cast<cublasSgemm_t>(dlsym(h, "cublasSgemm_v2"));
  auto mathmode = reinterpret_cast<cublasSetMathMode_t>(dlsym(h, "cublasSetMathMode"));
  if (!create || !destroy || !sgemm) {
    *why = "libcublas lacks cublasCreate_v2/cublasSgemm_v2";
    return NAN;
  }
  void* handle = nullptr;
  if (create(&handle) != 0) {
    *why = "cublasCreate failed";
    return NAN;
  }
  if (mathmode) mathmode(handle, tf32 ? 3 /*CUBLAS_TF32_TENSOR_OP_MATH*/ : 0 /*CUBLAS_DEFAULT_MATH*/);
  float *a = nullptr, *b = nullptr, *c = nullptr;
  double gf = NAN;
  if (cudaMalloc(&a, size_t(m * kk) * 4) == cudaSuccess && cudaMalloc(&b, size_t(kk * n) * 4) == cudaSuccess &&
      cudaMalloc(&c, size_t(m * n) * 4) == cudaSuccess) {
    cudaMemset(a, 0, size_t(m * kk) * 4);
    cudaMemset(b, 0, size_t(kk * n) * 4);
    const float one = 1.f, zero = 0.f;
    // row-major C = A·B  ⇔  column-major Cᵀ = Bᵀ·Aᵀ
    sgemm(handle, 0, 0, int(n), int(m), int(kk), &one, b, int(n), a, int(kk), &zero, c, int(n));
    cudaDeviceSynchronize();
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const int reps = quick ? 5 : 20;
    cudaEventRecord(e0);
    for (int r = 0; r < reps; ++r)
      sgemm(handle, 0, 0, int(n), int(m), int(kk), &one, b, int(n), a, int(kk), &zero, c, int(n));
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    gf = 2.0 * double(m) * double(n) * double(kk) * reps / (double(ms) * 1e-3) / 1e9;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  } else {
    *why = "cudaMalloc failed";
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  destroy(handle);
  return gf;
}

double d2d_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    return NAN;
  }
  cudaMemset(a, 1, bytes);
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  const int reps = 10;
  cudaEventRecord(e0);
  for (int r = 0; r < reps; ++r) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) * reps / (double(ms) * 1e-3);  // bytes read + written per second
}
#endif

double otlm_step_bench(const otlm_backend* be, int64_t n, int64_t k, int64_t b, int steps, double* fit_seconds,
                       double* first_loss, double* last_loss) {
  HostBuf phi(static_cast<size_t>(n * k));
  fill_logits(phi.p, n, k);
  std::vector<float> bias(static_cast<size_t>(k));
  std::vector<double> mu(static_cast<size_t>(k), 1.0 / double(k));
  for (int64_t j = 0; j < k; ++j) bias[size_t(j)] = float(-std::log((j + 1.0) / double(k)));
  otlm_train_params p{};
  p.k = k;
  p.lambda = 1.2;
  p.sinkhorn_iters = 7;
  p.tol = 0;
  p.grad_mode = OTLM_GRAD_UNROLLED;
  p.optimizer = OTLM_OPT_SGD;
  p.beta1 = 0.9;
  p.beta2 = 0.999;
  p.eps = 1e-8;
  p.weight_decay = 1e-3;
  p.momentum = 0.9;
  std::vector<int32_t> rows(static_cast<size_t>(b));
  double t0 = now();
  otlm_trainer* t = nullptr;
  otlm_error e{};
  if (be->trainer_create(&p, phi.p, n, bias.data(), mu.data(), &t, &e) != OTLM_OK) {
    std::printf("  trainer_create (%s) failed: %s\n", be->name, e.message);
    return NAN;
  }
  std::vector<double> st;
  for (int s = 0; s < steps; ++s) {
    for (int64_t i = 0; i < b; ++i) rows[size_t(i)] = int32_t((int64_t(s) * b + i) % n);
    otlm_step_report rep{};
    double a = now();
    if (be->trainer_step(t, rows.data(), b, 0.2, &rep, &e) != OTLM_OK) {
      std::printf("  trainer_step (%s) failed: %s\n", be->name, e.message);
      be->trainer_destroy(t);
      return NAN;
    }
    st.push_back(now() - a);
    if (s == 0 && first_loss) *first_loss = rep.loss;
    if (last_loss) *last_loss = rep.loss;
  }
  std::vector<float> w(static_cast<size_t>(k * k));
  be->trainer_get_weights(t, w.data(), &e);
  if (fit_seconds) *fit_seconds = now() - t0;
  be->trainer_destroy(t);
  if (st.size() > 2) st.erase(st.begin());  // first step includes allocation
  return median(st);
}

}  // namespace

int main() {
  quick = std::getenv("OTLM_BENCH_QUICK") != nullptr;
  const char* lib = OTLM_CUDA_LIB;
  if (!*lib) {
    std::printf("SKIP: the CUDA backend was not built\n");
    return 0;
  }
  void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::printf("SKIP: cannot load %s: %s\n", lib, dlerror());
    return 0;
  }
  auto entry = reinterpret_cast<otlm_cuda_backend_fn>(dlsym(h, OTLM_CUDA_ENTRY));
  otlm_error err{};
  GPU = entry ? entry(nullptr, &err) : nullptr;
  if (!GPU) {
    std::printf("SKIP: CUDA backend unavailable: %s\n", entry ? err.message : "entry point missing");
    return 0;
  }
  CPU = otlm_cpu_backend();
  otlm_backend_info gi{}, ci{};
  GPU->info(&gi, &err);
  CPU->info(&ci, &err);
  const otlm_device_info* dev = gi.device >= 0 && gi.device < OTLM_INFO_MAX_DEVICES ? &gi.devices[gi.device] : nullptr;
  std::printf("cuda: %s, %.1f GiB, sm_%d%d, %d SMs; driver %d.%d, runtime %d.%d, gemm %s%s\n", dev ? dev->name : "?",
              dev ? double(dev->total_memory_bytes) / 1073741824.0 : 0.0, dev ? dev->cc_major : 0, dev ? dev->cc_minor : 0,
              dev ? dev->sm_count : 0, gi.driver_version / 1000, (gi.driver_version % 1000) / 10, gi.runtime_version / 1000,
              (gi.runtime_version % 1000) / 10, gi.gemm, gi.emulated ? " (EMULATED on the CPU)" : "");
  std::printf("cpu:  SIMD %s, %d threads, gemm %s, %s\n", ci.simd, ci.threads, ci.gemm, ci.compiler);

  double bw = NAN;
#ifdef OTLM_BENCH_CUDART
  bw = d2d_bandwidth();
  put("d2d copy bandwidth", bw / 1e9, "GB/s");
#else
  std::printf("(bench built without the CUDA runtime: no bandwidth or cuBLAS figures)\n");
#endif

  // ---- Sinkhorn per iteration
  struct Sh {
    int64_t n, k;
  } shapes[] = {{20000, 1000}, {24426, 8142}};
  for (const Sh& s : shapes) {
    HostBuf x(static_cast<size_t>(s.n * s.k));
    fill_logits(x.p, s.n, s.k);
    const int reps = quick ? 1 : 3;
    double g = sk_per_iter(GPU, x.p, s.n, s.k, 10, quick ? 60 : 210, reps);
    char name[96];
    std::snprintf(name, sizeof name, "sinkhorn %lldx%lld cuda per iteration", (long long)s.n, (long long)s.k);
    put(name, g * 1e3, "ms");
    if (std::isfinite(bw)) {
      const double floor_s = double(s.n) * double(s.k) * 4 / bw;
      std::snprintf(name, sizeof name, "sinkhorn %lldx%lld / one read of M", (long long)s.n, (long long)s.k);
      put(name, g / floor_s, "x", "<= 2");
    }
    double c = sk_per_iter(CPU, x.p, s.n, s.k, 2, quick ? 4 : 6, 1);
    std::snprintf(name, sizeof name, "sinkhorn %lldx%lld cpu per iteration", (long long)s.n, (long long)s.k);
    put(name, c * 1e3, "ms");
    std::snprintf(name, sizeof name, "sinkhorn %lldx%lld speed-up gpu/cpu", (long long)s.n, (long long)s.k);
    put(name, c / g, "x");
  }

  // ---- GEMM on the OTLM shapes
  struct Gs {
    const char* name;
    int64_t m, n, kk;
  } gshapes[] = {{"A=PhiW 10000x1000x1000", 10000, 1000, 1000}, {"dW=PhiT.dA 1000x1000x10000", 1000, 1000, 10000}};
  for (const Gs& s : gshapes) {
    HostBuf a(static_cast<size_t>(s.m * s.kk)), b(static_cast<size_t>(s.kk * s.n)), c(static_cast<size_t>(s.m * s.n));
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t q = 0; q < s.m * s.kk; ++q) a.p[q] = nd(rng);
    for (int64_t q = 0; q < s.kk * s.n; ++q) b.p[q] = nd(rng);
    for (int tf32 = 0; tf32 < 2; ++tf32) {
      if (tf32) setenv("OTLM_CUDA_TF32", "1", 1);
      const int R = quick ? 6 : 21;
      std::vector<double> d;
      for (int r = 0; r < (quick ? 1 : 3); ++r) {
        setenv("OTLM_CUDA_GEMM_REPEAT", "1", 1);
        double t1 = gemm_time(GPU, s.m, s.n, s.kk, a.p, b.p, c.p);
        setenv("OTLM_CUDA_GEMM_REPEAT", std::to_string(R).c_str(), 1);
        double tr = gemm_time(GPU, s.m, s.n, s.kk, a.p, b.p, c.p);
        d.push_back((tr - t1) / (R - 1));
      }
      unsetenv("OTLM_CUDA_GEMM_REPEAT");
      unsetenv("OTLM_CUDA_TF32");
      const double gf = 2.0 * double(s.m) * double(s.n) * double(s.kk) / median(d) / 1e9;
      std::string nm = std::string("gemm ") + s.name + (tf32 ? " otlm tf32" : " otlm fp32");
      put(nm, gf, "GFLOP/s");
#ifdef OTLM_BENCH_CUDART
      std::string why;
      double cb = cublas_gflops(s.m, s.n, s.kk, tf32 != 0, &why);
      if (std::isfinite(cb)) {
        put(std::string("gemm ") + s.name + (tf32 ? " cublas tf32" : " cublas sgemm"), cb, "GFLOP/s");
        put(std::string("gemm ") + s.name + (tf32 ? " tf32 otlm/cublas" : " fp32 otlm/cublas"), gf / cb, "x",
            tf32 ? "" : ">= 0.7");
      } else if (!tf32) {
        std::printf("  cuBLAS peer unavailable: %s\n", why.c_str());
      }
#endif
    }
  }

  // ---- OTLM step and fit (ImageNet-LT preset: SGD, λ 1.2, T 7, batch 10000, K 1000)
  {
    const int64_t n = 20000, k = 1000, b = 10000;
    double fit = NAN, l0 = NAN, l1 = NAN;
    double step = otlm_step_bench(GPU, n, k, b, quick ? 10 : 100, &fit, &l0, &l1);
    put("otlm step B=10000 K=1000 T=7 cuda", step * 1e3, "ms");
    put(quick ? "otlm 10-step fit cuda (quick)" : "otlm 100-step fit cuda", fit, "s", quick ? "" : "< 2");
    std::printf("  fit loss %.6g -> %.6g\n", l0, l1);
    double cstep = otlm_step_bench(CPU, n, k, b, quick ? 2 : 3, nullptr, nullptr, nullptr);
    put("otlm step B=10000 K=1000 T=7 cpu", cstep * 1e3, "ms");
    put("otlm step speed-up gpu/cpu", cstep / step, "x");
  }

  std::printf("\n%-58s %-18s %s\n", "benchmark", "value", "goal");
  for (const Row& r : table) std::printf("%-58s %-18s %s\n", r.name.c_str(), r.value.c_str(), r.goal.c_str());
  json += "}";
  std::printf("JSON %s\n", json.c_str());
  return 0;
}
