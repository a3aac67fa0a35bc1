// The CUDA backend table and its entry point `otlm_cuda_backend_v2`, the only symbol this
// library exports. The probe runs once: it checks the driver, the device count, the selected
// device's compute capability (7.5 or newer) and that our kernel image actually launches there,
// and returns NULL with the reason when any of this fails (the caller then keeps the CPU
// backend). What it learned on the way (driver and runtime versions, every device) is kept in
// an otlm_backend_info, handed to the caller either way and by the table's `info` entry.
//
// The same file builds the emulated library (OTLM_CUDA_EMU=1, native/cuda/emu): it then says so
// in `emulated`, so that info() cannot pass the emulator off as a GPU.
#include <cstdio>
#include <mutex>

#include "cuda_internal.h"

#if defined(OTLM_CUDA_EMU)  // as in cuda_common.cuh
#define OTLM_EMULATED 1
#else
#define OTLM_EMULATED 0
#endif

#define OTLM_STR2(...) #__VA_ARGS__
#define OTLM_STR(...) OTLM_STR2(__VA_ARGS__)

namespace otlm::cuda {

namespace {

// Oldest compute capability the backend supports (Turing). TF32 tensor cores need 8.0.
constexpr int kMinMajor = 7, kMinMinor = 5;

__global__ void k_probe(int* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *out = 42;
}

int g_device = 0;
std::once_flag g_once;
otlm_status g_probe_status = OTLM_EDEVICE;
otlm_error g_probe_err{};
otlm_backend_info g_info{};  // filled by the probe as far as it gets

// The architectures nvcc compiled this library for (SASS; CMake adds PTX of the newest), e.g. "sm_90" or
// "sm_75,sm_90" (from nvcc's __CUDA_ARCH_LIST__ = 750,900).
void arch_list(char* out, size_t cap) {
#ifdef __CUDA_ARCH_LIST__
  const char* list = OTLM_STR(__CUDA_ARCH_LIST__);
  size_t o = 0;
  out[0] = 0;
  for (const char* p = list; *p && o + 1 < cap;) {
    while (*p == ',' || *p == ' ') ++p;
    int v = 0;
    bool any = false;
    for (; *p >= '0' && *p <= '9'; ++p) v = v * 10 + (*p - '0'), any = true;
    if (!any) break;
    int n = std::snprintf(out + o, cap - o, "%ssm_%d", o ? "," : "", v / 10);
    if (n < 0) break;
    o += size_t(n);
  }
  if (o >= cap) out[cap - 1] = 0;
#else
  std::snprintf(out, cap, "%s", OTLM_EMULATED ? "emulated" : "unknown");
#endif
}

#if defined(__clang__)
#define OTLM_HOST_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define OTLM_HOST_COMPILER "gcc " __VERSION__
#else
#define OTLM_HOST_COMPILER "unknown host compiler"
#endif

const char* compiler() {
#if OTLM_EMULATED
  return "otlm CUDA emulator, " OTLM_HOST_COMPILER;
#elif defined(__CUDACC_VER_MAJOR__)
  return "nvcc " OTLM_STR(__CUDACC_VER_MAJOR__) "." OTLM_STR(__CUDACC_VER_MINOR__) ", host " OTLM_HOST_COMPILER;
#else
  return OTLM_HOST_COMPILER;
#endif
}

void fill_gemm(otlm_backend_info* i) {
  std::snprintf(i->gemm, sizeof i->gemm, "%s", tf32_requested() ? "otlm-tf32" : "otlm-fp32");
}

// Fills g_info's device list from the driver (the properties of every device present).
void probe_devices(int count) {
  g_info.device_count = count;
  for (int d = 0; d < count && d < OTLM_INFO_MAX_DEVICES; ++d) {
    otlm_device_info& o = g_info.devices[d];
    o.index = d;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      std::snprintf(o.name, sizeof o.name, "(cudaGetDeviceProperties failed)");
      continue;
    }
    std::snprintf(o.name, sizeof o.name, "%s", p.name);
    o.total_memory_bytes = uint64_t(p.totalGlobalMem);
    o.cc_major = p.major;
    o.cc_minor = p.minor;
    o.sm_count = p.multiProcessorCount;
    o.tf32 = p.major >= 8 ? 1 : 0;
  }
}

otlm_status probe(otlm_error* err) {
  g_info = otlm_backend_info{};
  g_info.emulated = OTLM_EMULATED;
  g_info.device = -1;
  arch_list(g_info.arch, sizeof g_info.arch);
  std::snprintf(g_info.compiler, sizeof g_info.compiler, "%s", compiler());
  fill_gemm(&g_info);
  int drv = 0, rt = 0;
  cudaError_t e = cudaDriverGetVersion(&drv);
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) g_info.runtime_version = rt;
  if (e != cudaSuccess || drv == 0)
    return fail(err, OTLM_EDEVICE, "no CUDA driver: cudaDriverGetVersion returned %s (driver version %d)",
                e == cudaSuccess ? "no driver" : cudaGetErrorName(e), drv);
  g_info.driver_version = drv;
  int count = 0;
  e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return fail(err, OTLM_EDEVICE, "no usable CUDA device: cudaGetDeviceCount failed with %s (%s); driver %d.%d, runtime %d.%d",
                cudaGetErrorName(e), cudaGetErrorString(e), drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  if (count == 0) return fail(err, OTLM_EDEVICE, "no CUDA device (driver %d.%d)", drv / 1000, (drv % 1000) / 10);
  probe_devices(count);
  g_device = env_int("OTLM_CUDA_DEVICE", 0);
  if (g_device < 0 || g_device >= count)
    return fail(err, OTLM_EDEVICE, "OTLM_CUDA_DEVICE=%d but only %d CUDA device(s) are present", g_device, count);
  g_info.device = g_device;
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, g_device);
  if (e != cudaSuccess) return cuda_fail(err, e, "cudaGetDeviceProperties");
  if (prop.major < kMinMajor || (prop.major == kMinMajor && prop.minor < kMinMinor))
    return fail(err, OTLM_EDEVICE,
                "CUDA device %d (%s) is too old: compute capability %d.%d; the CUDA backend needs %d.%d or newer%s",
                g_device, prop.name, prop.major, prop.minor, kMinMajor, kMinMinor,
                count > 1 ? " (OTLM_CUDA_DEVICE selects another device)" : "");
  e = cudaSetDevice(g_device);
  if (e != cudaSuccess) return cuda_fail(err, e, "cudaSetDevice");
  int* d = nullptr;
  e = cudaMalloc(&d, sizeof(int));
  if (e != cudaSuccess) return cuda_fail(err, e, "probe allocation (cudaMalloc of 4 bytes)");
  OTLM_KERNEL(1, 32, 0, 0, k_probe)(d);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  int h = 0;
  if (e == cudaSuccess) e = cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  cudaFree(d);
#if !OTLM_EMULATED
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorUnsupportedPtxVersion)
    return fail(err, OTLM_EDEVICE,
                "CUDA device %d (%s, sm_%d%d): this build of the CUDA backend has no code it can run there "
                "(compiled for %s): %s; rebuild the CUDA backend for sm_%d%d (OTLM_CUDA_ARCHS / CMAKE_CUDA_ARCHITECTURES)",
                g_device, prop.name, prop.major, prop.minor, g_info.arch, cudaGetErrorName(e), prop.major, prop.minor);
#endif
  if (e != cudaSuccess)
    return fail(err, OTLM_EDEVICE, "CUDA device %d (%s): a test kernel failed to run: %s (%s)", g_device, prop.name,
                cudaGetErrorName(e), cudaGetErrorString(e));
  if (h != 42) return fail(err, OTLM_EDEVICE, "CUDA device %d (%s): a test kernel produced a wrong result", g_device, prop.name);
  return OTLM_OK;
}

otlm_status info(otlm_backend_info* out, otlm_error* err) {
  if (!out) return fail(err, OTLM_EINVAL, "info: 'out' is required");
  *out = g_info;
  fill_gemm(out);  // OTLM_CUDA_TF32 is read at every call
  return OTLM_OK;
}

const otlm_backend kBackend = {
    OTLM_ABI_VERSION, "cuda",          info,                sinkhorn,
    loss_grad,        trainer_create,  trainer_step,        trainer_get_weights,
    trainer_set_weights, trainer_destroy, gemm,
};

}  // namespace

otlm_status select_device(otlm_error* err) {
  cudaError_t e = cudaSetDevice(g_device);
  if (e != cudaSuccess) return cuda_fail(err, e, "cudaSetDevice");
  return OTLM_OK;
}

}  // namespace otlm::cuda

extern "C" __attribute__((visibility("default"))) const otlm_backend* otlm_cuda_backend_v2(otlm_backend_info* info,
                                                                                          otlm_error* err) {
  using namespace otlm::cuda;
  try {
    std::call_once(g_once, [] { g_probe_status = probe(&g_probe_err); });
  } catch (...) {
    if (info) *info = otlm_backend_info{};
    otlm::fail(err, OTLM_EINTERNAL, "CUDA backend probe failed unexpectedly");
    return nullptr;
  }
  if (info) {
    *info = g_info;
    fill_gemm(info);
  }
  if (g_probe_status != OTLM_OK) {
    if (err) std::memcpy(err->message, g_probe_err.message, sizeof err->message);
    return nullptr;
  }
  return &kBackend;
}
