#!/usr/bin/env bash
# `npm run test:install`: what a user gets from the published package. From a fresh clone of HEAD,
# `npm ci && npm pack` (prepack builds prebuilds/), then `npm install <tarball>` into an empty
# project with a PATH on which no compiler, cmake, make, python3 or nvcc is found. Checks:
# - the install takes under 30 s and its script takes the prebuilt binary; `npx otlm demo` prints
#   its table; info() says the addon came from the prebuilds and the CUDA library beside it loads;
# - OTLM_BUILD_FROM_SOURCE=1 and --build-from-source make the install fail, naming the compiler;
# - a prebuilt binary that does not load (truncated) leads to a source build that says why (compilers
#   back on PATH; CPU only, to keep it short).
# Uncommitted changes are not tested. TMPDIR sets where the scratch folder goes.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/otlm-test-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say() { echo "test:install: $*"; }
fail() { echo "test:install: FAIL: $*" >&2; exit 1; }
npm_q=(--no-audit --no-fund --loglevel=error)

[ -z "$(git status --porcelain --untracked-files=no)" ] || say "note: uncommitted changes are not tested (a clone of HEAD is)"
git clone -q . "$tmp/src"
# OTLM_SKIP_BUILD: the clone's own CMake build is not what gets packed (prepack builds the prebuilds).
(cd "$tmp/src" && OTLM_SKIP_BUILD=1 npm ci "${npm_q[@]}" >"$tmp/pack.log" 2>&1 && npm pack --pack-destination "$tmp" --loglevel=warn >>"$tmp/pack.log" 2>&1) ||
  { tail -40 "$tmp/pack.log" >&2; fail "npm ci && npm pack"; }
tgz=$(ls "$tmp"/otlm-*.tgz)
# prepack leaves nothing behind but ignored output (prebuilds/, build-prebuild/, lib/).
[ -z "$(git -C "$tmp/src" status --porcelain)" ] || { git -C "$tmp/src" status --short >&2; fail "npm pack left the clone dirty"; }
git -C "$tmp/src" check-ignore -q prebuilds/linux-x64/otlm.glibc.node || fail "prebuilds/ is not ignored by git"
grep '^otlm: prebuilds' "$tmp/pack.log" || true
tar -tzvf "$tgz" >"$tmp/contents"
awk '/prebuilds\/.+[^\/]$/ { printf "test:install:   %s %.1f MB\n", $6, $3 / 1e6 }' "$tmp/contents"
grep -q ' package/prebuilds/linux-x64/otlm\.glibc\.node$' "$tmp/contents" || fail "no prebuilt addon in $tgz"
size=$(stat -c %s "$tgz")
say "tarball $(basename "$tgz"): $(( size / 1000000 )).$(( size % 1000000 / 100000 )) MB (packed after $(( $(date +%s) - start )) s)"

# A PATH holding only node, npm, npx and the shell tools npm and the checks use.
mask="$tmp/bin"
mkdir "$mask"
for t in node npm npx sh bash env cat cp mv rm mkdir ln ls chmod grep sed head tail tr uname date dirname basename readlink; do
  ln -s "$(command -v "$t")" "$mask/$t"
done
for t in cmake cc c++ gcc g++ clang clang++ nvcc make python3; do
  ! PATH="$mask" command -v "$t" >/dev/null || fail "$t is on the masked PATH"
done

# allowScripts: npm 11 runs a dependency's install script with a warning unless the project lists it;
# later versions may skip unlisted ones (the prebuilt binary then loads without the script).
new_app() {
  mkdir "$1" && cd "$1"
  echo '{ "name": "app", "version": "1.0.0", "private": true, "allowScripts": { "otlm": true } }' >package.json
}
app="$tmp/app"
new_app "$app"
t0=$(date +%s%N)
PATH="$mask" npm install "${npm_q[@]}" --foreground-scripts "$tgz" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "npm install"; }
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
say "npm install <tarball> without compilers: $(( ms / 1000 )).$(( ms % 1000 / 100 )) s"
[ "$ms" -lt 30000 ] || fail "the install took ${ms} ms (limit 30 s)"
grep -q '^otlm: using the prebuilt binary prebuilds/linux-x64/otlm.glibc.node' "$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "the install script did not take the prebuilt binary"; }
say "install script: $(grep -o 'using the prebuilt binary.*' "$tmp/install.log")"

masked() { timeout 120 env PATH="$mask" "$@"; }  # a hang fails the test instead of blocking it
rc=0
masked npx --no-install otlm demo >"$tmp/demo.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$tmp/demo.log" >&2; fail "npx otlm demo: exit code $rc (124: still running after 120 s)"; }
grep -q '^method ' "$tmp/demo.log" && grep -qE '^OTLM +[0-9]' "$tmp/demo.log" || { cat "$tmp/demo.log" >&2; fail "npx otlm demo printed no table"; }
say "npx otlm demo: $(grep -E '^OTLM +[0-9]' "$tmp/demo.log")"
native=$(masked node -e "import('otlm').then(m=>console.log(JSON.stringify(m.info().native)))")
say "info().native: $native"
[[ "$native" == *'"source":"prebuild"'* ]] || fail "the addon did not come from the prebuilds"
if grep -q ' package/prebuilds/linux-x64/libotlm_cuda\.so$' "$tmp/contents"; then
  cuda=$(masked node -e "import('otlm').then(m=>{const c=m.info().cuda;console.log(JSON.stringify({library:c.library,reason:c.reason}))})")
  say "info().cuda: $cuda"
  [[ "$cuda" == *'/prebuilds/linux-x64/libotlm_cuda.so"'* && "$cuda" != *'cannot load'* && "$cuda" != *'does not exist'* ]] ||
    fail "the CUDA library beside the prebuilt addon did not load"
fi

# Forced source builds without compilers fail and say what is missing.
for force in OTLM_BUILD_FROM_SOURCE=1 --build-from-source; do
  new_app "$tmp/app-${force%%=*}"
  if [ "$force" = --build-from-source ]; then cmd=(npm install "${npm_q[@]}" --build-from-source "$tgz")
  else cmd=(env OTLM_BUILD_FROM_SOURCE=1 npm install "${npm_q[@]}" "$tgz"); fi
  if out=$(PATH="$mask" "${cmd[@]}" 2>&1); then echo "$out" >&2; fail "$force without compilers: the install succeeded"; fi
  grep -q 'no C++ compiler found' <<<"$out" || { echo "$out" >&2; fail "$force: no message naming the missing compiler"; }
  say "$force without compilers fails: $(grep -o 'cannot build: .*' <<<"$out" | head -1)"
done

# A prebuilt binary that does not load: the script says why and builds from source.
cd "$app"
pre=node_modules/otlm/prebuilds/linux-x64/otlm.glibc.node
head -c 4096 "$pre" >"$pre.cut" && mv "$pre.cut" "$pre"
step=$(date +%s)
out=$(OTLM_CMAKE_ARGS=-DOTLM_CUDA=OFF npm rebuild otlm --foreground-scripts 2>&1) || { echo "$out" | tail -30 >&2; fail "source build after a broken prebuild"; }
grep -q 'building the native addon from source (the prebuilt binary prebuilds/linux-x64/otlm.glibc.node does not load' <<<"$out" ||
  { echo "$out" | head -20 >&2; fail "no reason printed for the source build"; }
say "$(grep -o 'building the native addon from source.*' <<<"$out")"
native=$(timeout 120 node -e "import('otlm').then(m=>console.log(JSON.stringify(m.info().native)))")
[[ "$native" == *'"source":"build"'* ]] || fail "after the source build: $native"
say "then info().native: $native ($(( $(date +%s) - step )) s)"
say "passed in $(( $(date +%s) - start )) s"
