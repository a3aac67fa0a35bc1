// The CUDA backend table and its entry point `otlm_cuda_backend_v1`, the only symbol this
// library exports. The probe runs once: it checks the driver, the device count, the selected
// device's compute capability and that our kernel image actually launches there, and returns
// NULL with the reason when any of this fails (the caller then keeps the CPU backend).
#include <mutex>
#include <string>

#include "cuda_internal.h"

namespace otlm::cuda {

namespace {

__global__ void k_probe(int* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *out = 42;
}

int g_device = 0;
std::once_flag g_once;
otlm_status g_probe_status = OTLM_EDEVICE;
otlm_error g_probe_err{};

std::string json_escape(const char* s) {
  std::string o;
  for (; *s; ++s) {
    unsigned char ch = static_cast<unsigned char>(*s);
    if (ch == '"' || ch == '\\') {
      o += '\\';
      o += char(ch);
    } else if (ch < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      o += b;
    } else {
      o += char(ch);
    }
  }
  return o;
}

otlm_status probe(otlm_error* err) {
  int drv = 0, rt = 0;
  cudaError_t e = cudaDriverGetVersion(&drv);
  if (e != cudaSuccess || drv == 0)
    return fail(err, OTLM_EDEVICE, "no CUDA driver: cudaDriverGetVersion returned %s (driver version %d)",
                e == cudaSuccess ? "no driver" : cudaGetErrorName(e), drv);
  cudaRuntimeGetVersion(&rt);
  int count = 0;
  e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return fail(err, OTLM_EDEVICE, "no usable CUDA device: cudaGetDeviceCount failed with %s (%s); driver %d.%d, runtime %d.%d",
                cudaGetErrorName(e), cudaGetErrorString(e), drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  if (count == 0) return fail(err, OTLM_EDEVICE, "no CUDA device (driver %d.%d)", drv / 1000, (drv % 1000) / 10);
  g_device = env_int("OTLM_CUDA_DEVICE", 0);
  if (g_device < 0 || g_device >= count)
    return fail(err, OTLM_EDEVICE, "OTLM_CUDA_DEVICE=%d but only %d CUDA device(s) are present", g_device, count);
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, g_device);
  if (e != cudaSuccess) return cuda_fail(err, e, "cudaGetDeviceProperties");
  if (prop.major < 9)
    return fail(err, OTLM_EDEVICE,
                "CUDA device %d (%s) has compute capability %d.%d; this build of the CUDA backend needs 9.0 or newer "
                "(sm_90 code + compute_90 PTX)",
                g_device, prop.name, prop.major, prop.minor);
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
  if (e != cudaSuccess)
    return fail(err, OTLM_EDEVICE, "CUDA device %d (%s): a test kernel failed to run: %s (%s)", g_device, prop.name,
                cudaGetErrorName(e), cudaGetErrorString(e));
  if (h != 42) return fail(err, OTLM_EDEVICE, "CUDA device %d (%s): a test kernel produced a wrong result", g_device, prop.name);
  return OTLM_OK;
}

otlm_status info_json(char* out, size_t cap, otlm_error* err) {
  if (!out || cap == 0) return fail(err, OTLM_EINVAL, "info: output buffer is required");
  int drv = 0, rt = 0, count = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  cudaGetDeviceCount(&count);
  std::string s = "{\"driver\":" + std::to_string(drv) + ",\"runtime\":" + std::to_string(rt) +
                  ",\"device\":" + std::to_string(g_device) + ",\"gemm\":\"" +
                  (tf32_requested() ? "otlm-tf32" : "otlm-fp32") +
                  "\",\"build\":\"sm_90+compute_90, cudart static\",\"devices\":[";
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    if (d) s += ",";
    s += "{\"index\":" + std::to_string(d) + ",\"name\":\"" + json_escape(p.name) +
         "\",\"memory\":" + std::to_string((unsigned long long)p.totalGlobalMem) + ",\"cc\":\"" +
         std::to_string(p.major) + "." + std::to_string(p.minor) + "\",\"sms\":" +
         std::to_string(p.multiProcessorCount) + "}";
  }
  s += "]}";
  if (s.size() + 1 > cap) return fail(err, OTLM_EINVAL, "info: buffer of %zu bytes is too small (%zu needed)", cap, s.size() + 1);
  std::memcpy(out, s.c_str(), s.size() + 1);
  return OTLM_OK;
}

const otlm_backend kBackend = {
    OTLM_ABI_VERSION, "cuda",          info_json,           sinkhorn,
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

extern "C" __attribute__((visibility("default"))) const otlm_backend* otlm_cuda_backend_v1(otlm_error* err) {
  using namespace otlm::cuda;
  try {
    std::call_once(g_once, [] { g_probe_status = probe(&g_probe_err); });
  } catch (...) {
    otlm::fail(err, OTLM_EINTERNAL, "CUDA backend probe failed unexpectedly");
    return nullptr;
  }
  if (g_probe_status != OTLM_OK) {
    if (err) std::memcpy(err->message, g_probe_err.message, sizeof err->message);
    return nullptr;
  }
  return &kBackend;
}
