// Shared helpers of the CUDA backend: error plumbing, device buffers, small device utilities.
// Every CUDA call goes through OTLM_CU / DeviceBuffer so that a failure becomes an
// otlm_status with a message naming the operation and the size involved; nothing throws.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "otlm/otlm.h"
#include "otlm/validate.h"

// ---------------------------------------------------------------- launches, barriers --
// The same sources compile with nvcc and, as plain C++, with the CPU emulator in native/cuda/emu
// (OTLM_CUDA_EMU=1). Everything the emulator cannot take in CUDA syntax goes through these:
//   OTLM_KERNEL(grid, block, smem, stream, kernel)(args...)   a kernel launch (kernel last, so a
//                                                             template's commas are fine)
//   otlm_named_barrier(id, count)                             bar.sync id, count
//   OTLM_DYNAMIC_SHARED(type, name)                           extern __shared__ type name[]
#if defined(OTLM_CUDA_EMU)
#define OTLM_KERNEL(grid, block, smem, stream, ...) \
  ::otlm_emu::launcher(grid, block, smem, stream, #__VA_ARGS__, __VA_ARGS__)
#define OTLM_DYNAMIC_SHARED(type, name) type* const name = ::otlm_emu::dynamic_shared<type>()
__device__ __forceinline__ void otlm_named_barrier(unsigned id, unsigned count) {
  ::otlm_emu::named_barrier(id, count);
}
#else
#define OTLM_KERNEL(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define OTLM_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
// The asm, not __barrier_sync_count: nvcc 13 lowers that intrinsic to the non-aligned
// `barrier.sync id, count`, while the kernels were written for (and the PTX keeps) the aligned
// `bar.sync id, count`, checked with `nvcc -ptx native/cuda/sinkhorn.cu`.
__device__ __forceinline__ void otlm_named_barrier(unsigned id, unsigned count) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
}
#endif

namespace otlm::cuda {

// ---------------------------------------------------------------- errors --
inline otlm_status cuda_fail(otlm_error* err, cudaError_t e, const char* what) {
  otlm_status code = (e == cudaErrorMemoryAllocation) ? OTLM_ENOMEM : OTLM_EDEVICE;
  return fail(err, code, "cuda: %s failed: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

// Appends the problem size to a device/memory error message so the caller sees which size failed.
inline otlm_status annotate(otlm_status st, otlm_error* err, const char* what, long long a, long long b) {
  if (err && (st == OTLM_EDEVICE || st == OTLM_ENOMEM || st == OTLM_EINTERNAL)) {
    size_t len = std::strlen(err->message);
    if (len + 1 < sizeof(err->message))
      std::snprintf(err->message + len, sizeof(err->message) - len, " [%s %lldx%lld]", what, a, b);
  }
  return st;
}

// Evaluates a cudaError_t expression; on failure returns an otlm_status from the enclosing function.
#define OTLM_CU(expr, what)                                         \
  do {                                                              \
    cudaError_t otlm_e_ = (expr);                                   \
    if (otlm_e_ != cudaSuccess) return ::otlm::cuda::cuda_fail(err, otlm_e_, what); \
  } while (0)

// After a kernel launch: launch-configuration errors are reported at once.
#define OTLM_LAUNCH(what) OTLM_CU(cudaGetLastError(), "kernel launch " what)

// Propagates an otlm_status.
#define OTLM_TRY(expr)                  \
  do {                                  \
    otlm_status otlm_s_ = (expr);       \
    if (otlm_s_ != OTLM_OK) return otlm_s_; \
  } while (0)

// ---------------------------------------------------------------- buffers --
// Owning device allocation. alloc() reports the byte count on failure (OTLM_ENOMEM).
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }
  void reset() {
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    count = 0;
  }
  // Allocates (zero-filled) `n` elements; `what` names the buffer in the error message.
  otlm_status alloc(size_t n, const char* what, otlm_error* err) {
    reset();
    if (n == 0) n = 1;
    if (n > SIZE_MAX / sizeof(T))
      return fail(err, OTLM_ENOMEM, "cuda: %s: %zu elements overflow the address space", what, n);
    size_t bytes = n * sizeof(T);
    cudaError_t e = cudaMalloc(&ptr, bytes);
    if (e != cudaSuccess) {
      ptr = nullptr;
      cudaGetLastError();  // clear the (non-sticky) allocation error
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return fail(err, e == cudaErrorMemoryAllocation ? OTLM_ENOMEM : OTLM_EDEVICE,
                  "cuda: cannot allocate %zu bytes for %s (%s; %zu of %zu bytes free on the device)", bytes,
                  what, cudaGetErrorName(e), free_b, total_b);
    }
    count = n;
    // cudaMemset runs on the legacy default stream, which does not order with our non-blocking
    // streams: wait for it before the buffer is used anywhere else.
    e = cudaMemset(ptr, 0, bytes);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamLegacy);
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaMemset of a new buffer");
    return OTLM_OK;
  }
  size_t bytes() const { return count * sizeof(T); }
};

// Non-blocking stream owned by one call or one trainer.
struct Stream {
  cudaStream_t s = nullptr;
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
  otlm_status create(otlm_error* err) {
    OTLM_CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    return OTLM_OK;
  }
};

// Leading dimension used for every device matrix: rows padded to a multiple of 4 floats so that
// every row starts on a 16-byte boundary (float4 loads). Padding is kept at zero.
inline int64_t pad4(int64_t k) { return (k + 3) & ~int64_t(3); }

inline int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  return std::atoi(v);
}

// Device properties needed to size grids (cached per device by the caller).
struct DeviceInfo {
  int device = 0;
  int sm_count = 1;
  int max_smem_optin = 48 * 1024;
};
otlm_status current_device_info(DeviceInfo* out, otlm_error* err);

// ---------------------------------------------------------------- device utils --
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_max(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over a whole block of `warps` warps in a fixed order; the total is valid on thread 0 only.
// red: `warps` doubles of shared memory.
__device__ __forceinline__ double block_sum(double v, double* red, int warps) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < warps; ++w) t += red[w];
  return t;
}
// exp in the pair merge: exact in double, the fast intrinsic in float (GEMM epilogue partials).
__device__ __forceinline__ double merge_exp(double x) { return exp(x); }
__device__ __forceinline__ float merge_exp(float x) { return __expf(x); }
// Online log-sum-exp pair merge: (m, s) represents exp(m) * s.
template <typename T>
__device__ __forceinline__ void lse_merge(T& m, T& s, T m2, T s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  if (m2 > m) {
    s = s * merge_exp(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * merge_exp(m2 - m);
  }
}

}  // namespace otlm::cuda
