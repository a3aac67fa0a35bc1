#!/usr/bin/env node
// npm install hook: use a matching prebuilt binary when one loads; otherwise build
// from source with CMake (cmake-js, the primary build: CPU engine + CUDA backend
// when nvcc is found), falling back to node-gyp (CPU only) where CMake is missing.
// Nothing is downloaded: cmake-js uses the node-api-headers package (N-API only).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const log = (msg) => console.error(`otlm: ${msg}`);

if (process.env.OTLM_SKIP_BUILD === '1') {
  log('OTLM_SKIP_BUILD=1: not building the native addon');
  process.exit(0);
}

if (process.env.OTLM_BUILD_FROM_SOURCE !== '1') {
  try {
    const file = require('node-gyp-build').resolve(root);
    if (file.includes(`${path.sep}prebuilds${path.sep}`)) {
      require(file);
      log(`using the prebuilt binary ${path.relative(root, file)}`);
      process.exit(0);
    }
  } catch {
    /* no prebuild for this platform, or it does not load: build below */
  }
}

function run(cmd, args) {
  log(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: false });
  return r.status === 0;
}

const hasCmake = spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
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
log('could not build the native addon. The pure-TypeScript backends (reference, tfjs) still work.');
log('Needs: a C++17 compiler, CMake >= 3.18 (or node-gyp + python3), optionally libopenblas-dev and nvcc.');
process.exit(1);
