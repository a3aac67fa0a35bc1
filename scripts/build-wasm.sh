#!/usr/bin/env bash
# `npm run build:wasm`: the WebAssembly engine, lib/wasm/otlm.wasm, from the same C++ sources as
# the CPU backend (native/sources.gypi's core and cpu lists) plus native/wasm/exports.cpp.
# Emscripten (Debian's `emscripten` package), standalone .wasm: no JavaScript glue, the imports
# are a few WASI calls that src/native/wasm.ts provides. WebAssembly SIMD (-msimd128) and
# WebAssembly exceptions (bad_alloc becomes OTLM_ENOMEM, as in the addon). Two variants:
# otlm.wasm, single-threaded, and otlm-mt.wasm, on a shared memory for a pool of worker instances.
set -euo pipefail
cd "$(dirname "$0")/.."
# --if-available (npm's `prepare`): without Emscripten, say so and leave the engine out (backend
# 'wasm' then reports it missing); a published package always carries it (prepack builds it).
if ! command -v emcc >/dev/null; then
  if [ "${1:-}" = "--if-available" ]; then
    echo "build-wasm: emcc not found: the WebAssembly engine is not built (apt-get install emscripten, then npm run build:wasm)" >&2
    exit 0
  fi
  echo "build-wasm: emcc not found (apt-get install emscripten)" >&2
  exit 1
fi
srcs=$(node -e "
  const t = require('fs').readFileSync('native/sources.gypi', 'utf8');
  const list = (n) => JSON.parse(t.match(new RegExp(\"'\" + n + \"'\\\\s*:\\\\s*(\\\\[[^\\\\]]*\\\\])\"))[1].replace(/'/g, '\"').replace(/,\\s*\\]/, ']'));
  console.log([...list('otlm_core_sources'), ...list('otlm_cpu_sources')].join(' '));")
out=lib/wasm
mkdir -p "$out" build-wasm/st build-wasm/mt
# -ffp-contract=off as in the native builds: results must not depend on fused multiply-adds.
flags=(-O3 -std=c++17 -msimd128 -ffp-contract=off -fno-math-errno -fwasm-exceptions
       -Inative/core/include -Inative/cpu -DOTLM_GEMM_PROVIDER='"builtin"')
# The threaded variant (docs/architecture.md, "WebAssembly engine"): the same sources with the
# atomics and bulk-memory features (thread_local becomes per-instance TLS) and thread_pool.cpp's
# instance pool, plus native/wasm/threads.cpp (allocator lock, worker exports). Not Emscripten's
# pthreads: those need its JavaScript glue, and STANDALONE_WASM refuses them.
mt_flags=(-matomics -mbulk-memory -DOTLM_WASM_THREADS=1)
link=(-sSTANDALONE_WASM --no-entry -sALLOW_MEMORY_GROWTH -sINITIAL_MEMORY=16MB -sMAXIMUM_MEMORY=4GB
      -sTOTAL_STACK=1MB -sEXPORTED_FUNCTIONS=_malloc,_free)

pids=()
fail=0
compile() {  # compile <src> <obj> <extra flags...>
  local s=$1 o=$2
  shift 2
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ -n "$(find native/cpu native/core native/wasm -newer "$o" -name '*.h' -print -quit)" ]; then
    echo "build-wasm: $o" >&2
    rm -f "$o"
    em++ "${flags[@]}" "$@" -c "$s" -o "$o" &
    pids+=($!)
  fi
  if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
}
st_objs=()
mt_objs=()
for s in $srcs native/wasm/exports.cpp; do
  st_objs+=("build-wasm/st/$(basename "$s").o")
  compile "$s" "${st_objs[-1]}"
  mt_objs+=("build-wasm/mt/$(basename "$s").o")
  compile "$s" "${mt_objs[-1]}" "${mt_flags[@]}"
done
mt_objs+=(build-wasm/mt/threads.cpp.o)
compile native/wasm/threads.cpp build-wasm/mt/threads.cpp.o "${mt_flags[@]}"
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "build-wasm: compilation failed" >&2; exit 1; }
tmp="$out/.otlm.wasm.$$"
em++ "${flags[@]}" "${st_objs[@]}" -o "$tmp" "${link[@]}"
mv "$tmp" "$out/otlm.wasm"
echo "build-wasm: $out/otlm.wasm ($(stat -c %s "$out/otlm.wasm") bytes)" >&2
# Memory imported (every instance gets the same one) and shared. --no-check-features: the system
# libraries are the single-threaded ones (see native/wasm/threads.cpp for why that is safe here).
em++ "${flags[@]}" "${mt_flags[@]}" "${mt_objs[@]}" -o "$tmp" "${link[@]}" -sIMPORTED_MEMORY \
  -Wl,--shared-memory -Wl,--no-check-features
mv "$tmp" "$out/otlm-mt.wasm"
echo "build-wasm: $out/otlm-mt.wasm ($(stat -c %s "$out/otlm-mt.wasm") bytes)" >&2
