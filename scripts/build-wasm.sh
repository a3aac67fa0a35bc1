#!/usr/bin/env bash
# `npm run build:wasm`: the WebAssembly engine, lib/wasm/otlm.wasm, from the same C++ sources as
# the CPU backend (native/sources.gypi's core and cpu lists) plus native/wasm/exports.cpp.
# Emscripten (Debian's `emscripten` package), standalone .wasm: no JavaScript glue, the imports
# are a few WASI calls that src/native/wasm.ts provides. WebAssembly SIMD (-msimd128) and
# WebAssembly exceptions (bad_alloc becomes OTLM_ENOMEM, as in the addon); single-threaded.
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
mkdir -p "$out" build-wasm
# -ffp-contract=off as in the native builds: results must not depend on fused multiply-adds.
flags=(-O3 -std=c++17 -msimd128 -ffp-contract=off -fno-math-errno -fwasm-exceptions
       -Inative/core/include -Inative/cpu -DOTLM_GEMM_PROVIDER='"builtin"')
objs=()
pids=()
fail=0
for s in $srcs native/wasm/exports.cpp; do
  o=build-wasm/$(basename "$s").o
  objs+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ -n "$(find native/cpu native/core native/wasm -newer "$o" -name '*.h' -print -quit)" ]; then
    echo "build-wasm: $s" >&2
    rm -f "$o"
    em++ "${flags[@]}" -c "$s" -o "$o" &
    pids+=($!)
  fi
  if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "build-wasm: compilation failed" >&2; exit 1; }
tmp="$out/.otlm.wasm.$$"
em++ "${flags[@]}" "${objs[@]}" -o "$tmp" -sSTANDALONE_WASM --no-entry -sALLOW_MEMORY_GROWTH \
  -sINITIAL_MEMORY=16MB -sMAXIMUM_MEMORY=4GB -sTOTAL_STACK=1MB -sEXPORTED_FUNCTIONS=_malloc,_free
mv "$tmp" "$out/otlm.wasm"
echo "build-wasm: $out/otlm.wasm ($(stat -c %s "$out/otlm.wasm") bytes)" >&2
