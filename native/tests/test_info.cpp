// The backends' typed self-description (otlm_backend_info): the CPU backend fills its fields
// and leaves the CUDA ones empty; the CUDA library's entry point fills what its probe found
// whether or not a device is usable, and says why when none is. The library is the one named
// by OTLM_CUDA_LIB in the environment (the emulated one, for instance), else the one this
// build made; without either that part is skipped.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "otlm/otlm.h"
#include "check.h"


template <size_t N> static bool terminated(const char (&s)[N]) { return std::memchr(s, 0, N) != nullptr; }

static void test_cpu() {
  const otlm_backend* b = otlm_cpu_backend();
  CHECK(b->abi_version == OTLM_ABI_VERSION && std::strcmp(b->name, "cpu") == 0, "table header");
  otlm_backend_info i;
  std::memset(&i, 0x5a, sizeof i);  // info must overwrite every field
  otlm_error err{};
  CHECK(b->info(&i, &err) == OTLM_OK, "info failed: %s", err.message);
  CHECK(terminated(i.simd) && terminated(i.gemm) && terminated(i.compiler) && terminated(i.arch),
        "strings are NUL-terminated");
  const std::string simd = i.simd, gemm = i.gemm;
  CHECK(simd == "avx512" || simd == "avx2-fma" || simd == "baseline", "simd '%s'", i.simd);
  CHECK(i.threads >= 1, "threads %d", i.threads);
  CHECK(gemm == "openblas-static" || gemm == "openblas" || gemm == "builtin-avx512" || gemm == "builtin-avx2" || gemm == "builtin-baseline", "gemm '%s'", i.gemm);
  CHECK(std::strlen(i.compiler) > 4, "compiler '%s'", i.compiler);
  CHECK(i.driver_version == 0 && i.runtime_version == 0 && i.emulated == 0 && i.device == -1 &&
            i.device_count == 0 && i.arch[0] == 0 && i.devices[0].name[0] == 0 && i.devices[0].total_memory_bytes == 0,
        "CUDA fields of the CPU backend are empty (driver %d, devices %d, device %d)", i.driver_version,
        i.device_count, i.device);
  CHECK(b->info(nullptr, &err) == OTLM_EINVAL && std::strstr(err.message, "out"), "info(NULL): '%s'", err.message);
  std::printf("cpu: SIMD %s, %d threads, gemm %s, %s\n", i.simd, i.threads, i.gemm, i.compiler);
}

static void check_device(const otlm_device_info& d, int index) {
  CHECK(d.index == index, "device %d has index %d", index, d.index);
  CHECK(terminated(d.name) && d.name[0], "device %d has a name", index);
  CHECK(d.total_memory_bytes > 0, "device %d (%s): memory %llu", index, d.name,
        (unsigned long long)d.total_memory_bytes);
  CHECK(d.cc_major >= 1 && d.cc_minor >= 0 && d.sm_count >= 1, "device %d (%s): sm_%d%d, %d SMs", index, d.name,
        d.cc_major, d.cc_minor, d.sm_count);
  CHECK(d.tf32 == (d.cc_major >= 8 ? 1 : 0), "device %d (%s): tf32 %d at sm_%d%d", index, d.name, d.tf32, d.cc_major,
        d.cc_minor);
}

// 0: checked, 77: skipped.
static int test_cuda() {
  const char* env = std::getenv("OTLM_CUDA_LIB");
  const char* lib = env && *env ? env : OTLM_CUDA_LIB;
  if (!lib || !*lib) {
    std::printf("SKIP cuda part: no CUDA library (not built, OTLM_CUDA_LIB not set)\n");
    return 77;
  }
  void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::printf("SKIP cuda part: cannot load %s: %s\n", lib, dlerror());
    return 77;
  }
  auto entry = reinterpret_cast<otlm_cuda_backend_fn>(dlsym(h, OTLM_CUDA_ENTRY));
  CHECK(entry != nullptr, "%s exports no %s", lib, OTLM_CUDA_ENTRY);
  if (!entry) return 0;
  otlm_backend_info i;
  std::memset(&i, 0x5a, sizeof i);
  otlm_error err{};
  const otlm_backend* b = entry(&i, &err);
  CHECK(terminated(i.gemm) && terminated(i.compiler) && terminated(i.arch), "strings are NUL-terminated");
  CHECK(std::strcmp(i.gemm, "otlm-fp32") == 0 || std::strcmp(i.gemm, "otlm-tf32") == 0, "gemm '%s'", i.gemm);
  CHECK(i.compiler[0] && i.arch[0], "compiler '%s', arch '%s'", i.compiler, i.arch);
  CHECK(i.simd[0] == 0 && i.threads == 0, "CPU fields of the CUDA backend are empty");
  CHECK(i.emulated == 0 || i.emulated == 1, "emulated %d", i.emulated);
  CHECK(i.device_count >= 0 && i.device >= -1, "device_count %d, device %d", i.device_count, i.device);
  for (int d = 0; d < i.device_count && d < OTLM_INFO_MAX_DEVICES; ++d) check_device(i.devices[d], d);
  std::printf("cuda (%s): %s; driver %d, runtime %d, %d device(s)%s, arch %s, %s\n", lib,
              b ? "usable" : err.message, i.driver_version, i.runtime_version, i.device_count,
              i.emulated ? ", EMULATED" : "", i.arch, i.compiler);
  if (b) {
    CHECK(b->abi_version == OTLM_ABI_VERSION && std::strcmp(b->name, "cuda") == 0, "table header");
    CHECK(i.driver_version > 0 && i.device_count >= 1 && i.device >= 0 && i.device < i.device_count,
          "a usable backend has a driver and a device (driver %d, %d devices, device %d)", i.driver_version,
          i.device_count, i.device);
    if (i.device >= 0 && i.device < OTLM_INFO_MAX_DEVICES) {
      const otlm_device_info& d = i.devices[i.device];
      CHECK(d.cc_major * 10 + d.cc_minor >= 75, "usable device %s at sm_%d%d (< 7.5)", d.name, d.cc_major, d.cc_minor);
      if (i.emulated) CHECK(std::strstr(d.name, "emulator") != nullptr, "emulated device name '%s'", d.name);
    }
    otlm_backend_info j{};
    CHECK(b->info(&j, &err) == OTLM_OK, "table info: %s", err.message);
    CHECK(j.device == i.device && j.device_count == i.device_count && j.driver_version == i.driver_version &&
              std::strcmp(j.devices[0].name, i.devices[0].name) == 0,
          "the table's info agrees with the entry point's");
    CHECK(b->info(nullptr, &err) == OTLM_EINVAL, "info(NULL)");
  } else {
    CHECK(err.message[0] != 0, "an unusable library says why");
    // Each refusal names its cause; the device fields say what was found before it.
    if (i.driver_version == 0) CHECK(std::strstr(err.message, "no CUDA driver"), "no driver: '%s'", err.message);
    else if (i.device_count == 0) CHECK(std::strstr(err.message, "CUDA device"), "no device: '%s'", err.message);
    // A second call gives the same answer (the probe runs once).
    otlm_error err2{};
    otlm_backend_info i2{};
    CHECK(entry(&i2, &err2) == nullptr && std::strcmp(err.message, err2.message) == 0 &&
              i2.driver_version == i.driver_version,
          "second call: '%s'", err2.message);
    CHECK(entry(nullptr, &err2) == nullptr, "info may be NULL");
  }
  return 0;
}

int main() {
  test_cpu();
  test_cuda();
  return check_summary();
}
