#!/usr/bin/env node
// npm install hook: use the prebuilt binary (prebuilds/<platform>-<arch>/) when it loads; otherwise
// build from source with CMake (cmake-js, the primary build: CPU engine + CUDA backend when nvcc is
// found), falling back to node-gyp (CPU only) where CMake is missing.
// OTLM_BUILD_FROM_SOURCE=1 or `npm install --build-from-source` forces the source build, and then a
// build that cannot run fails the install (no silent fallback to the prebuild the user refused).
// In a git checkout the addon is always built (prebuilds/ there may be older than the sources), and
// must build. Otherwise a failed build leaves the install working: otlm then runs on its
// WebAssembly engine or the TypeScript reference path, and `otlm info` says why.
// Nothing is downloaded: cmake-js uses the node-api-headers package (N-API only).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const log = (msg) => console.error(`otlm: ${msg}`);

if (process.env.OTLM_SKIP_BUILD === '1') {
  log('OTLM_SKIP_BUILD=1: not building the native addon');
  process.exit(0);
}

const npmFlag = (process.env.npm_config_build_from_source || '').toLowerCase();
const forced =
  process.env.OTLM_BUILD_FROM_SOURCE === '1'
    ? 'OTLM_BUILD_FROM_SOURCE=1'
    : ['true', '1'].includes(npmFlag) || npmFlag.split(',').includes('otlm')
      ? '--build-from-source'
      : fs.existsSync(path.join(root, '.git'))
        ? 'a git checkout'
        : null;

/** The prebuilt addon for this platform, loaded in a child process (a crash must not end the install). */
function tryPrebuild() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let file;
  try {
    // node-gyp-build's choice among prebuilds/ (platform, arch, libc tags): the one the loader takes.
    process.env.PREBUILDS_ONLY = '1';
    file = require('node-gyp-build').resolve(root);
  } catch {
    return { ok: false, why: fs.existsSync(dir) ? `no prebuilt binary in ${path.relative(root, dir)} matches this system` : `no prebuilt binary for ${process.platform}-${process.arch}` };
  } finally {
    delete process.env.PREBUILDS_ONLY;
  }
  const rel = path.relative(root, file);
  const probe = `try { require(${JSON.stringify(file)}).info(); } catch (e) { process.stderr.write(String(e && e.message).split('\\n')[0]); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  if (r.status === 0) return { ok: true, file: rel };
  const err = r.status === null ? `killed by ${r.signal}` : (r.stderr || `exit code ${r.status}`).split(`${file}: `).join('').trim();
  return { ok: false, why: `the prebuilt binary ${rel} does not load: ${err}` };
}

const pre = forced ? null : tryPrebuild();
if (pre?.ok) {
  log(`using the prebuilt binary ${pre.file}`);
  process.exit(0);
}
log(`building the native addon from source (${forced || pre.why})`);

function which(cmd) {
  const dirs = cmd.includes('/') ? [''] : (process.env.PATH || '').split(path.delimiter);
  return dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function fail(lines) {
  for (const l of lines) log(l);
  if (forced) process.exit(1);
  log("otlm works without it, on the WebAssembly engine ('wasm') or the reference path, more slowly.");
  process.exit(0);
}

// Name what is missing up front, rather than let a build tool fail deep in its own output.
const cxx = process.env.CXX ? process.env.CXX.split(/\s+/)[0] : ['c++', 'g++', 'clang++'].find(which);
if (!cxx || !which(cxx)) {
  const usePrebuild = forced && forced !== 'a git checkout' && fs.existsSync(path.join(root, 'prebuilds'));
  fail([
    `cannot build: no C++ compiler found (${process.env.CXX ? `CXX=${process.env.CXX}` : 'c++, g++ or clang++'} on PATH).`,
    `Install a C++17 compiler and CMake >= 3.18 (Debian/Ubuntu: apt-get install g++ cmake)${usePrebuild ? `, or drop ${forced} to use the prebuilt binary` : ''}.`,
  ]);
}

function run(cmd, args) {
  log(`${path.basename(cmd)} ${args.join(' ')}`);
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: false }).status === 0;
}

const hasCmake = which('cmake');
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const extra = (process.env.OTLM_CMAKE_ARGS || '').split(/\s+/).filter(Boolean);
if (hasCmake && run(process.execPath, [cmakeJs, 'compile', '--out', 'build', '--CDOTLM_TESTS=OFF', ...extra])) process.exit(0);
if (hasCmake) log('the CMake build failed; trying node-gyp (CPU backend only)');
else log('cmake not found; building with node-gyp (CPU backend only; install cmake >= 3.18 for the CUDA backend)');
let nodeGyp;
try {
  nodeGyp = path.join(path.dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
} catch {
  nodeGyp = null;
}
if (nodeGyp ? run(process.execPath, [nodeGyp, 'rebuild']) : run('node-gyp', ['rebuild'])) process.exit(0);
fail([
  'could not build the native addon.',
  'Needs: a C++17 compiler, CMake >= 3.18 (or node-gyp + python3 + make), optionally libopenblas-dev and nvcc.',
]);
