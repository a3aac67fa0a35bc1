# node-gyp build of the CPU engine and the addon (the CUDA backend needs CMake:
# `npm run build:native`). Sources come from native/sources.gypi, shared with CMake.
{
  'includes': ['native/sources.gypi'],
  'variables': {
    'openblas_static%': '<!(node -p "require(\'fs\').existsSync(\'/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a\') ? \'/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a\' : \'\'")',
    # 1 in the prebuilt binary (scripts/prebuild.cjs sets OTLM_PREBUILD=1).
    'otlm_prebuild%': '<!(node -p "process.env.OTLM_PREBUILD === \'1\' ? 1 : 0")',
  },
  'targets': [
    {
      'target_name': 'otlm',
      'sources': ['<@(otlm_core_sources)', '<@(otlm_cpu_sources)', '<@(otlm_addon_sources)'],
      'include_dirs': [
        '<!(node -p "require(\'node-addon-api\').include_dir")',
        'native/core/include',
        'native/cpu',
      ],
      'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED', 'NAPI_CPP_EXCEPTIONS'],
      'cflags!': ['-fno-exceptions', '-O2'],
      'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-O2'],
      'cflags_cc': ['-std=c++17', '-O3', '-ffp-contract=off', '-fno-math-errno', '-fexceptions'],
      'libraries': ['-lpthread', '-ldl'],
      'conditions': [
        ['openblas_static!=""', {
          'defines': ['OTLM_HAVE_CBLAS=1', 'OTLM_GEMM_PROVIDER="openblas-static"'],
          'include_dirs': ['/usr/include/x86_64-linux-gnu/openblas-pthread'],
          'libraries': ['<(openblas_static)'],
        }, {
          'defines': ['OTLM_GEMM_PROVIDER="builtin"'],
        }],
        # The prebuilt binary carries its libstdc++ (built with GCC 12 it would need the system's
        # to be GCC >= 12's) and keeps the symbols of the static libraries private.
        ['otlm_prebuild==1', {
          'sources': ['native/addon/glibc_compat.cpp'],
          'ldflags': ['-static-libstdc++', '-Wl,--exclude-libs,ALL'],
        }],
      ],
    },
  ],
}
