// otlm CUDA emulator: the CUDA sources of native/cuda compiled as C++ and run on the CPU.
//
// Included (through the shadow <cuda_runtime.h> and <mma.h> in this folder) only by the emulated
// build (OTLM_CUDA_EMU=1, CMake option OTLM_CUDA_EMU). It supplies what nvcc would: the CUDA
// keywords, the built-in variables, vector types, device intrinsics, nvcuda::wmma and the subset
// of the runtime API the backend calls. The runtime (scheduler, memory, streams) is in
// ../runtime.cpp; README.md beside it lists what the emulator checks and what it cannot.
//
// Execution model: a launch runs synchronously on the calling OS thread, one block after another.
// Every CUDA thread of a block is a fiber (boost.context) and the fibers of a block switch only at
// synchronisation points (__syncthreads, named barriers, __syncwarp, warp shuffles and votes, the
// wmma collectives), so everything between two sync points runs without interruption: plain
// read-modify-write atomics are exact, and a missing barrier shows up as a wrong result or as the
// deadlock report (block, barrier, waiting threads) instead of a silent race. `__shared__`
// variables are thread_local statics, shared by all fibers of the block that runs on this thread.
#pragma once

#if !defined(OTLM_CUDA_EMU)
#error "native/cuda/emu/include is for the emulated build only (define OTLM_CUDA_EMU)"
#endif

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define OTLM_EMU_HIDDEN __attribute__((visibility("hidden")))

// ------------------------------------------------------------------------------ keywords --
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __CUDA_EMU__ 1

// ------------------------------------------------------------------------------ vector types --
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(16) double2 { double x, y; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
inline constexpr float2 make_float2(float x, float y) { return float2{x, y}; }
inline constexpr float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline constexpr double2 make_double2(double x, double y) { return double2{x, y}; }
inline constexpr int2 make_int2(int x, int y) { return int2{x, y}; }
inline constexpr int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline constexpr uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline constexpr uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline constexpr dim3 make_dim3(unsigned x, unsigned y, unsigned z) { return dim3(x, y, z); }
inline constexpr int warpSize = 32;

// ------------------------------------------------------------------------------ runtime types --
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidPitchValue = 12,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorUnsupportedPtxVersion = 222,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxBlockDimX = 2,
  cudaDevAttrMaxBlockDimY = 3,
  cudaDevAttrMaxBlockDimZ = 4,
  cudaDevAttrMaxGridDimX = 5,
  cudaDevAttrMaxGridDimY = 6,
  cudaDevAttrMaxGridDimZ = 7,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrTotalConstantMemory = 9,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMaxRegistersPerBlock = 12,
  cudaDevAttrClockRate = 13,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrMaxRegistersPerMultiprocessor = 82,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int clockRate;
  size_t totalConstMem;
  int major;
  int minor;
  int multiProcessorCount;
  int l2CacheSize;
  int maxThreadsPerMultiProcessor;
  size_t sharedMemPerMultiprocessor;
  int regsPerMultiprocessor;
  size_t sharedMemPerBlockOptin;
  int pciBusID;
  int pciDeviceID;
  int pciDomainID;
  int unifiedAddressing;
  int managedMemory;
};

struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

// ------------------------------------------------------------------------------ runtime API --
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t s);
template <class T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <class T>
inline cudaError_t cudaMallocAsync(T** ptr, size_t bytes, cudaStream_t s) {
  return cudaMallocAsync(reinterpret_cast<void**>(ptr), bytes, s);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t s = 0);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

namespace otlm_emu {
namespace detail {
OTLM_EMU_HIDDEN cudaError_t func_set_attribute(const void* fn, cudaFuncAttribute attr, int value);
OTLM_EMU_HIDDEN cudaError_t occupancy(int* blocks, const void* fn, int block_size, size_t smem);
template <class F>
inline const void* fn_id(F* f) {
  return reinterpret_cast<const void*>(f);
}
}  // namespace detail
}  // namespace otlm_emu

template <class F>
inline cudaError_t cudaFuncSetAttribute(F* fn, cudaFuncAttribute attr, int value) {
  return ::otlm_emu::detail::func_set_attribute(::otlm_emu::detail::fn_id(fn), attr, value);
}
template <class F>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F* fn, int block_size, size_t smem) {
  return ::otlm_emu::detail::occupancy(blocks, ::otlm_emu::detail::fn_id(fn), block_size, smem);
}

// ------------------------------------------------------------------------------ built-ins --
namespace otlm_emu {
namespace detail {

// What a kernel sees of the thread it runs as, and of its block (layouts shared with runtime.cpp).
struct ThreadView {
  uint3 tid;
  unsigned linear, lane, warp;
};
struct BlockView {
  uint3 bid;
  dim3 bdim, gdim;
  void* dyn_smem;
  size_t dyn_smem_bytes;
};
// Set by the scheduler on every fiber switch (thread) and for every block (block). `__thread`
// (constant-initialised) instead of thread_local: no per-access TLS wrapper call.
extern __thread ThreadView* t_thread OTLM_EMU_HIDDEN;
extern __thread BlockView* t_block OTLM_EMU_HIDDEN;

// Synchronisation points: the only places where the running fiber may give way to another.
OTLM_EMU_HIDDEN void syncthreads();
OTLM_EMU_HIDDEN void named_barrier(unsigned id, unsigned count);
// A warp-collective operation over the lanes of `mask`: the calling lane waits until every lane
// of the mask has arrived at a collective with the same `complete` function; the last to arrive
// calls complete(args, mask) once, with args[lane] = the `arg` each lane passed (lane stacks stay
// valid while they wait). complete == nullptr: a plain __syncwarp.
typedef void (*CollectiveFn)(void* const* args, unsigned mask);
OTLM_EMU_HIDDEN void warp_collective(const char* what, unsigned mask, void* arg, CollectiveFn complete);
[[noreturn]] OTLM_EMU_HIDDEN void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

struct ShflArg {
  uint64_t value;
  int src;
  uint64_t result;
};
OTLM_EMU_HIDDEN void shfl_complete(void* const* args, unsigned mask);
OTLM_EMU_HIDDEN uint64_t shuffle(const char* what, unsigned mask, uint64_t value, int kind, int arg, int width);
OTLM_EMU_HIDDEN unsigned ballot(const char* what, unsigned mask, int pred);
// `mask` without the lanes that do not exist in this block (a block of fewer than 32 threads).
OTLM_EMU_HIDDEN unsigned existing_lanes(unsigned mask);

template <class T>
inline T shfl(const char* what, unsigned mask, T v, int kind, int arg, int width) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of an unsupported type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle(what, mask, bits, kind, arg, width);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

template <class T>
inline T* dynamic_shared() {
  return reinterpret_cast<T*>(t_block->dyn_smem);
}

}  // namespace detail

template <class T>
inline T* dynamic_shared() {
  return detail::dynamic_shared<T>();
}
inline void named_barrier(unsigned id, unsigned count) { detail::named_barrier(id, count); }

// ------------------------------------------------------------------------------ launches --
namespace detail {
struct LaunchCfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  const char* name;
  const void* fn;
};
// Runs the whole grid before it returns; configuration errors go to cudaGetLastError.
OTLM_EMU_HIDDEN void launch(const LaunchCfg& cfg, void (*thunk)(void*), void* pack);
}  // namespace detail

template <class... P>
struct Launcher {
  detail::LaunchCfg cfg;
  void (*fn)(P...);
  template <class Pack>
  static void thunk(void* p) {
    Pack* k = static_cast<Pack*>(p);
    std::apply(k->fn, k->args);  // every thread gets its own copy of the parameters
  }
  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Pack {
      void (*fn)(P...);
      std::tuple<P...> args;
    };
    Pack pack{fn, std::tuple<P...>(std::forward<A>(a)...)};
    detail::launch(cfg, &thunk<Pack>, &pack);
  }
};
// OTLM_KERNEL(grid, block, smem, stream, kernel)(args...) (native/cuda/cuda_common.cuh).
template <class... P>
inline Launcher<P...> launcher(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char* name,
                               void (*fn)(P...)) {
  return Launcher<P...>{detail::LaunchCfg{grid, block, smem, stream, name, detail::fn_id(fn)}, fn};
}

}  // namespace otlm_emu

#define threadIdx (::otlm_emu::detail::t_thread->tid)
#define blockIdx (::otlm_emu::detail::t_block->bid)
#define blockDim (::otlm_emu::detail::t_block->bdim)
#define gridDim (::otlm_emu::detail::t_block->gdim)

// ------------------------------------------------------------------------------ sync --
inline void __syncthreads() { ::otlm_emu::detail::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::otlm_emu::detail::warp_collective("__syncwarp", mask, nullptr, nullptr);
}
inline void __barrier_sync(unsigned id) { ::otlm_emu::detail::named_barrier(id, 0); }
inline void __barrier_sync_count(unsigned id, unsigned count) { ::otlm_emu::detail::named_barrier(id, count); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  return ::otlm_emu::detail::shfl("__shfl_sync", mask, v, 0, src, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return ::otlm_emu::detail::shfl("__shfl_up_sync", mask, v, 1, int(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return ::otlm_emu::detail::shfl("__shfl_down_sync", mask, v, 2, int(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  return ::otlm_emu::detail::shfl("__shfl_xor_sync", mask, v, 3, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return ::otlm_emu::detail::ballot("__ballot_sync", mask, pred);
}
inline int __any_sync(unsigned mask, int pred) { return ::otlm_emu::detail::ballot("__any_sync", mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  return ::otlm_emu::detail::ballot("__all_sync", mask, pred) == ::otlm_emu::detail::existing_lanes(mask);
}
OTLM_EMU_HIDDEN unsigned __activemask();

// ------------------------------------------------------------------------------ atomics --
// Fibers switch only at sync points, so these are exact on one OS thread; the __atomic builtins
// keep them exact when two host threads run kernels on the same memory at once.
namespace otlm_emu {
namespace detail {
template <class T, class F>
inline T atomic_update(T* p, F f) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(p, &old, f(old), false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T, class F>
inline T atomic_update_fp(T* p, F f) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U* q = reinterpret_cast<U*>(p);
  U old = __atomic_load_n(q, __ATOMIC_RELAXED);
  for (;;) {
    T ov;
    std::memcpy(&ov, &old, sizeof ov);
    T nv = f(ov);
    U nb;
    std::memcpy(&nb, &nv, sizeof nb);
    if (__atomic_compare_exchange_n(q, &old, nb, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return ov;
  }
}
}  // namespace detail
}  // namespace otlm_emu

#define OTLM_EMU_INT_ATOMICS(T)                                                                          \
  inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }                  \
  inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }                  \
  inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }                  \
  inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }                    \
  inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }                  \
  inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }                \
  inline T atomicMax(T* p, T v) {                                                                        \
    return ::otlm_emu::detail::atomic_update(p, [v](T o) { return o < v ? v : o; });                     \
  }                                                                                                      \
  inline T atomicMin(T* p, T v) {                                                                        \
    return ::otlm_emu::detail::atomic_update(p, [v](T o) { return v < o ? v : o; });                     \
  }                                                                                                      \
  inline T atomicCAS(T* p, T cmp, T v) {                                                                 \
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);                 \
    return cmp;                                                                                          \
  }
OTLM_EMU_INT_ATOMICS(int)
OTLM_EMU_INT_ATOMICS(unsigned)
OTLM_EMU_INT_ATOMICS(long long)
OTLM_EMU_INT_ATOMICS(unsigned long long)
#undef OTLM_EMU_INT_ATOMICS
inline unsigned atomicInc(unsigned* p, unsigned lim) {
  return ::otlm_emu::detail::atomic_update(p, [lim](unsigned o) { return o >= lim ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned* p, unsigned lim) {
  return ::otlm_emu::detail::atomic_update(p, [lim](unsigned o) { return (o == 0 || o > lim) ? lim : o - 1; });
}
inline float atomicAdd(float* p, float v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](float o) { return o + v; });
}
inline double atomicAdd(double* p, double v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](double o) { return o + v; });
}
inline float atomicExch(float* p, float v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](float) { return v; });
}
inline float atomicMax(float* p, float v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](float o) { return fmaxf(o, v); });
}
inline float atomicMin(float* p, float v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](float o) { return fminf(o, v); });
}
inline double atomicMax(double* p, double v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](double o) { return fmax(o, v); });
}
inline double atomicMin(double* p, double v) {
  return ::otlm_emu::detail::atomic_update_fp(p, [v](double o) { return fmin(o, v); });
}

// ------------------------------------------------------------------------------ loads, math --
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcs(const T* p) {
  return *p;
}
template <class T>
inline void __stcs(T* p, T v) {
  *p = v;
}

// nvcc's device overloads of min/max (the host <algorithm> has only std::min/std::max).
#define OTLM_EMU_MINMAX(T)                                  \
  inline T min(T a, T b) { return b < a ? b : a; }          \
  inline T max(T a, T b) { return a < b ? b : a; }
OTLM_EMU_MINMAX(int)
OTLM_EMU_MINMAX(unsigned)
OTLM_EMU_MINMAX(long)
OTLM_EMU_MINMAX(unsigned long)
OTLM_EMU_MINMAX(long long)
OTLM_EMU_MINMAX(unsigned long long)
#undef OTLM_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// The fast intrinsics are the exact libm functions here (nvcc's approximations are not emulated).
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// Correctly rounded, never contracted into an FMA (the empty asm hides the product from the
// optimizer), as nvcc's _rn intrinsics.
inline double __dmul_rn(double a, double b) {
  double r = a * b;
  __asm__("" : "+x"(r));
  return r;
}
inline double __dadd_rn(double a, double b) {
  double r = a + b;
  __asm__("" : "+x"(r));
  return r;
}
inline double __dsub_rn(double a, double b) {
  double r = a - b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fmul_rn(float a, float b) {
  float r = a * b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fadd_rn(float a, float b) {
  float r = a + b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fsub_rn(float a, float b) {
  float r = a - b;
  __asm__("" : "+x"(r));
  return r;
}
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __int_as_float(int v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}
inline int __float_as_int(float f) {
  int v;
  std::memcpy(&v, &f, 4);
  return v;
}
inline unsigned __float_as_uint(float f) {
  unsigned v;
  std::memcpy(&v, &f, 4);
  return v;
}
inline float __uint_as_float(unsigned v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}
inline long long __double_as_longlong(double d) {
  long long v;
  std::memcpy(&v, &d, 8);
  return v;
}
inline double __longlong_as_double(long long v) {
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __ffsll(long long v) { return __builtin_ffsll(v); }
inline int __clz(int v) { return v ? __builtin_clz(unsigned(v)) : 32; }
inline int __clzll(long long v) { return v ? __builtin_clzll((unsigned long long)v) : 64; }
inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
[[noreturn]] inline void __trap() { ::otlm_emu::detail::fatal("__trap() called in a kernel"); }
