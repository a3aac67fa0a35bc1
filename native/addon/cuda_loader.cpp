#include "cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

namespace otlm::addon {
namespace {

// Directory of the loaded addon file itself: the CUDA library ships beside it
// (build/Release/ or prebuilds/<platform>/).
std::string addon_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&cuda_state), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    auto slash = p.find_last_of('/');
    if (slash != std::string::npos) return p.substr(0, slash);
  }
  return ".";
}

CudaState load() {
  CudaState st;
  const char* env = std::getenv("OTLM_CUDA_LIB");
  st.path = env && *env ? env : addon_dir() + "/libotlm_cuda.so";
  struct stat sb{};
  st.file_found = ::stat(st.path.c_str(), &sb) == 0;
  if (!st.file_found) {
    st.reason = "CUDA backend not built: " + st.path +
                " does not exist (build with nvcc present: npm run build:native)";
    return st;
  }
  void* h = dlopen(st.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    st.reason = std::string("cannot load ") + st.path + ": " + (e ? e : "unknown dlopen error");
    return st;
  }
  auto entry = reinterpret_cast<otlm_cuda_backend_fn>(dlsym(h, OTLM_CUDA_ENTRY));
  if (!entry) {
    if (dlsym(h, OTLM_CUDA_ENTRY_V1))
      st.reason = st.path + " is a CUDA backend of an older ABI (it exports " OTLM_CUDA_ENTRY_V1 ", this addon needs " +
                  OTLM_CUDA_ENTRY "): rebuild it (npm run build:native)";
    else
      st.reason = st.path + " has no symbol " OTLM_CUDA_ENTRY " (stale or foreign library)";
    return st;  // keep the handle: unloading CUDA libraries is unsafe
  }
  otlm_error err{};
  const otlm_backend* b = entry(&st.info, &err);
  st.has_info = true;
  if (!b) {
    st.reason = err.message[0] ? err.message : "CUDA backend reported no usable device";
    return st;
  }
  if (b->abi_version != OTLM_ABI_VERSION) {
    st.reason = "CUDA backend ABI " + std::to_string(b->abi_version) + " does not match addon ABI " +
                std::to_string(OTLM_ABI_VERSION) + " (rebuild: npm run build:native)";
    return st;
  }
  st.backend = b;
  return st;
}

}  // namespace

const CudaState& cuda_state() {
  static std::once_flag once;
  static CudaState state;
  std::call_once(once, [] { state = load(); });
  return state;
}

}  // namespace otlm::addon
