#!/usr/bin/env node
// `npm run build:prebuilds`: builds prebuilds/<platform>-<arch>/ with prebuildify (node-gyp,
// N-API) in a scratch copy of the sources, so the CMake build in build/ is left alone.
// The CUDA backend library, when built by CMake, is copied beside the addon.
// Usage: node scripts/prebuild.cjs [--out DIR]   (DIR defaults to the package root)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const outIdx = process.argv.indexOf('--out');
const outDir = outIdx > 0 ? path.resolve(process.argv[outIdx + 1]) : root;

function nodeGyp() {
  if (process.env.PREBUILD_NODE_GYP) return process.env.PREBUILD_NODE_GYP;
  const candidates = [
    () => require.resolve('node-gyp/bin/node-gyp.js'),
    () => path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) {
    try {
      const p = c();
      if (fs.existsSync(p)) return p;
    } catch {
      /* next */
    }
  }
  throw new Error('node-gyp not found: install it (npm i -g node-gyp) or set PREBUILD_NODE_GYP');
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'otlm-prebuild-'));
try {
  for (const f of ['package.json', 'binding.gyp']) fs.copyFileSync(path.join(root, f), path.join(scratch, f));
  fs.cpSync(path.join(root, 'native'), path.join(scratch, 'native'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');
  const gyp = nodeGyp();
  const bin = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
  // N-API binaries work on every Node >= the target; build against this Node's own
  // headers (nodedir) so node-gyp downloads nothing.
  const nodedir = process.env.npm_config_nodedir || path.resolve(path.dirname(process.execPath), '..');
  const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--target', `node@${process.versions.node}`], {
    cwd: scratch,
    stdio: 'inherit',
    env: { ...process.env, PREBUILD_NODE_GYP: gyp, npm_config_nodedir: nodedir },
  });
  if (r.status !== 0) throw new Error(`prebuildify failed with exit code ${r.status}`);
  const platformDir = `${process.platform}-${process.arch}`;
  const dest = path.join(outDir, 'prebuilds', platformDir);
  fs.mkdirSync(dest, { recursive: true });
  fs.cpSync(path.join(scratch, 'prebuilds', platformDir), dest, { recursive: true });
  const cudaLib = path.join(root, 'build', 'Release', 'libotlm_cuda.so');
  if (fs.existsSync(cudaLib)) fs.copyFileSync(cudaLib, path.join(dest, 'libotlm_cuda.so'));
  console.error(`otlm: prebuilt binaries in ${path.relative(process.cwd(), dest) || dest}: ${fs.readdirSync(dest).join(', ')}`);
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
