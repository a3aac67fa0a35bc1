# The one list of native sources. binding.gyp includes this file and
# CMakeLists.txt parses it, so the two builds cannot drift.
{
  'variables': {
    'otlm_core_sources': [
      'native/core/src/validate.cpp',
      'native/core/src/driver.cpp',
      'native/core/src/acceleration.cpp',
    ],
    'otlm_cpu_sources': [
      'native/cpu/backend.cpp',
      'native/cpu/thread_pool.cpp',
      'native/cpu/sinkhorn.cpp',
      'native/cpu/gemm.cpp',
      'native/cpu/gemm_builtin.cpp',
      'native/cpu/otlm_grad.cpp',
      'native/cpu/trainer.cpp',
      'native/cpu/otlm_kernels.cpp',
      'native/cpu/darp.cpp',
    ],
    'otlm_addon_sources': [
      'native/addon/addon.cpp',
      'native/addon/cuda_loader.cpp',
      'native/addon/bind_sinkhorn.cpp',
      'native/addon/bind_train.cpp',
      'native/addon/bind_darp.cpp',
    ],
  },
}
