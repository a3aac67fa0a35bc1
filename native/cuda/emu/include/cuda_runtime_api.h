// Shadow of the CUDA runtime API header for the emulated build (native/cuda/emu).
#pragma once
#include "otlm_cuda_emu.h"
