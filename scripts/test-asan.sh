#!/usr/bin/env bash
# The public API driven from Node against the addon built with AddressSanitizer and
# UndefinedBehaviorSanitizer (npm run test:asan [-- vitest paths]): a read or write of freed or
# out-of-bounds memory, or undefined behaviour, in the engine is a report that fails the run.
# Node itself is not instrumented: the sanitizer runtimes are preloaded into it.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build:ts
npx cmake-js compile --out build-asan-node --CDOTLM_SANITIZE=ON --CDOTLM_CUDA=OFF --log-level error >/dev/null
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export OTLM_NATIVE_PATH="$PWD/build-asan-node/Release/otlm.node"
if [ $# -eq 0 ]; then set -- test/hardening test/methods test/train test/online test/cli test/foundation/native-args.test.ts; fi
npx vitest run "$@"
