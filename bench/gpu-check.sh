#!/usr/bin/env bash
# One-shot GPU check for a machine with an NVIDIA GPU, CMake and nvcc (no package registry needed,
# Node optional). Builds the native library with the CUDA backend, runs the C++ tests (CUDA vs CPU
# included), the CUDA microbenchmarks and, briefly, the CPU benchmarks; then, when node and
# node_modules are present, the TS GPU tests. Prints a final table; designed to finish in < 8 min.
#
#   bench/gpu-check.sh                 # outputs under $OUT (if set) or bench/gpu-check-out/
#   OTLM_GPU_BUILD_DIR=/tmp/b bench/gpu-check.sh
#   OTLM_BENCH_QUICK=1 bench/gpu-check.sh   # shorter benchmarks
#   OTLM_GPU_ARCHS="75;80;86;89;90;100;120" bench/gpu-check.sh   # the release build's SASS list
#
# The build compiles SASS for this machine's GPU only (its compute capability from nvidia-smi), to
# keep the build short; the release default (every generation from sm_75, CMakeLists.txt
# OTLM_CUDA_ARCHS) takes ~3x longer and produces the same code for this GPU.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-$ROOT/bench/gpu-check-out}
BUILD=${OTLM_GPU_BUILD_DIR:-${TMPDIR:-/tmp}/otlm-gpu-build}
JOBS=${OTLM_JOBS:-$(nproc 2>/dev/null || echo 4)}
mkdir -p "$OUTDIR"
T0=$(date +%s)
declare -a STAGES
stage() {  # name status seconds
  STAGES+=("$(printf '%-28s %-8s %5ss' "$1" "$2" "$3")")
}
run_stage() {  # name timeout logfile cmd...
  local name=$1 limit=$2 log=$3; shift 3
  local s=$(date +%s)
  echo "==> $name (limit ${limit}s, log $log)"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local st=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    if [ "${SOFT:-0}" = 1 ]; then st="cut@${limit}s"; rc=0; else st=TIMEOUT; fi
  elif [ $rc -ne 0 ]; then st="FAIL($rc)"; fi
  stage "$name" "$st" $(( $(date +%s) - s ))
  tail -n 25 "$log"
  return $rc
}

# CUDA toolkit location: for nvcc and for dlopen("libcublas.so") in the benchmark
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then echo "gpu-check: nvcc not found (add the CUDA toolkit's bin to PATH)"; exit 2; fi
CUDA_HOME=${CUDA_HOME:-$(cd "$(dirname "$(readlink -f "$NVCC")")/.." && pwd)}
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib"; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "nvcc: $("$NVCC" --version | tail -n 1)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} | tee "$OUTDIR/machine.txt"

ARCHS=${OTLM_GPU_ARCHS:-}
if [ -z "$ARCHS" ] && command -v nvidia-smi >/dev/null; then
  ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
fi
case "$ARCHS" in ''|*[!0-9\;]*) ARCHS="75;80;86;89;90;100;120" ;; esac
echo "CUDA architectures: $ARCHS" | tee -a "$OUTDIR/machine.txt"
run_stage "configure" 120 "$OUTDIR/configure.log" \
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DOTLM_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DOTLM_CUDA_ARCHS="$ARCHS"
CFG=$?
BLD=1
if [ $CFG -eq 0 ]; then
  run_stage "build" 300 "$OUTDIR/build.log" cmake --build "$BUILD" -j "$JOBS"
  BLD=$?
fi
if [ $BLD -eq 0 ]; then
  run_stage "ctest (CUDA vs CPU)" 200 "$OUTDIR/ctest.log" \
    ctest --test-dir "$BUILD" --output-on-failure --timeout 180
  # the CUDA test must have run, not skipped
  if grep -q "test_cuda .*Skipped" "$OUTDIR/ctest.log"; then
    # on a machine with a GPU a skipped CUDA test is a failure (see its reason with ctest -V -R test_cuda)
    if command -v nvidia-smi >/dev/null; then stage "  test_cuda ran" "FAIL(skipped)" 0; else stage "  test_cuda ran" "SKIPPED" 0; fi
    "$BUILD/test_cuda" 2>&1 | head -n 3
  fi
  if [ -x "$BUILD/bench_cuda" ]; then
    run_stage "bench_cuda" 200 "$OUTDIR/bench_cuda.log" "$BUILD/bench_cuda"
    grep '^JSON ' "$OUTDIR/bench_cuda.log" | sed 's/^JSON //' >"$OUTDIR/bench_cuda.json"
  fi
  for b in "$BUILD"/bench_*; do
    [ -x "$b" ] || continue
    case "$(basename "$b")" in bench_cuda) continue ;; esac
    SOFT=1 OTLM_BENCH_QUICK=1 run_stage "$(basename "$b") (quick)" 45 "$OUTDIR/$(basename "$b").log" "$b"
  done
fi
if command -v node >/dev/null && [ -d "$ROOT/node_modules" ] && [ -d "$ROOT/test/cuda" ]; then
  pushd "$ROOT" >/dev/null
  OTLM_CUDA_LIB="$BUILD/Release/libotlm_cuda.so" run_stage "vitest test/cuda" 90 "$OUTDIR/vitest.log" npx vitest run test/cuda
  popd >/dev/null
else
  stage "vitest test/cuda" "skipped" 0
fi

echo
echo "================ gpu-check summary ($(( $(date +%s) - T0 ))s total) ================"
cat "$OUTDIR/machine.txt"
printf '%s\n' "${STAGES[@]}"
if [ -f "$OUTDIR/bench_cuda.log" ]; then
  echo
  sed -n '/^benchmark /,/^JSON /p' "$OUTDIR/bench_cuda.log" | grep -v '^JSON '
fi
echo "outputs: $OUTDIR"
printf '%s\n' "${STAGES[@]}" | grep -q 'FAIL\|TIMEOUT' && exit 1
exit 0
