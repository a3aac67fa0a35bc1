// Shadow of the CUDA runtime header for the emulated build (native/cuda/emu): this folder comes
// first on the include path of libotlm_cuda_emu only.
#pragma once
#include "otlm_cuda_emu.h"
