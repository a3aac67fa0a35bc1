// Finds and loads the CUDA backend library at run time, once, and records why
// it is not usable when it is not (missing file, no driver, no device).
#pragma once
#include <string>

#include "otlm/otlm.h"

namespace otlm::addon {

struct CudaState {
  std::string path;       // the library file tried
  bool file_found = false;
  const otlm_backend* backend = nullptr;  // non-null when usable
  std::string reason;     // why backend is null
  // What the library's entry point found (driver, runtime, devices), usable or not;
  // valid when has_info (the entry point ran).
  bool has_info = false;
  otlm_backend_info info{};
};

const CudaState& cuda_state();

}  // namespace otlm::addon
