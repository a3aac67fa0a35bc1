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
};

const CudaState& cuda_state();

}  // namespace otlm::addon
