#!/usr/bin/env node
// Builds prebuilds/<platform>-<arch>/: `npm run build:prebuilds`, and `prepack`, so that `npm pack`
// and `npm publish` ship them.
// - The addon: prebuildify (N-API, tagged with the libc) + node-gyp (binding.gyp) in a scratch copy of
//   the sources, so the CMake build in build/ is left alone. OTLM_PREBUILD=1 links OpenBLAS and
//   libstdc++ statically; the file is stripped.
// - The CUDA backend library: CMake in build-prebuild/ (incremental; every architecture of
//   OTLM_CUDA_ARCHS' default), stripped and placed beside the addon, where the addon looks for it.
//   Without nvcc the package gets the CPU addon only, with a warning (an error when
//   OTLM_PREBUILD_REQUIRE_CUDA=1).
// Then it checks what a user's machine will need (the files load; no shared library beyond glibc,
// libgcc_s and, for the CUDA library, libstdc++; no glibc symbol newer than MAX_GLIBC) and only then
// replaces prebuilds/<platform>-<arch>/ as a whole. Any failure exits non-zero.
// Usage: node scripts/prebuild.cjs [--out DIR] [--no-cuda]   (DIR defaults to the package root)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const outIdx = process.argv.indexOf('--out');
const outDir = outIdx > 0 ? path.resolve(process.argv[outIdx + 1]) : root;
const wantCuda = !process.argv.includes('--no-cuda');
const requireCuda = process.env.OTLM_PREBUILD_REQUIRE_CUDA === '1';
const jobs = String(os.availableParallelism?.() ?? os.cpus().length);
const platformDir = `${process.platform}-${process.arch}`;
// The newest glibc symbol version the binaries may need (Ubuntu 22.04, Debian 12, RHEL 9 have it);
// README.md states it. Older systems build from source.
const MAX_GLIBC = '2.34';
// The CUDA library keeps the system's libstdc++: GCC 11's suffices.
const MAX_GLIBCXX = '3.4.29';
const ALLOWED_LIBS = ['libc.so.6', 'libm.so.6', 'libgcc_s.so.1', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'ld-linux-x86-64.so.2'];

const log = (msg) => console.error(`otlm: ${msg}`);
const mb = (file) => `${(fs.statSync(file).size / 1e6).toFixed(1)} MB`;

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args[0] ?? ''} failed with exit code ${r.status}`);
  return r;
}

function output(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir || '.', cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

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

/** The addon, built by prebuildify in a scratch copy, into dest. */
function buildAddon(dest) {
  if (process.platform === 'linux' && !fs.existsSync('/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a'))
    log('WARNING: libopenblas.a not found (apt-get install libopenblas-dev): the prebuilt addon gets the builtin GEMM');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'otlm-prebuild-'));
  try {
    for (const f of ['package.json', 'binding.gyp']) fs.copyFileSync(path.join(root, f), path.join(scratch, f));
    fs.cpSync(path.join(root, 'native'), path.join(scratch, 'native'), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');
    // N-API binaries work on every Node >= the target; build against this Node's own headers
    // (nodedir) so that node-gyp downloads nothing.
    const nodedir = process.env.npm_config_nodedir || path.resolve(path.dirname(process.execPath), '..');
    const bin = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
    run(process.execPath, [bin, '--napi', '--strip', '--tag-libc', '--target', `node@${process.versions.node}`], {
      cwd: scratch,
      env: { ...process.env, PREBUILD_NODE_GYP: nodeGyp(), npm_config_nodedir: nodedir, OTLM_PREBUILD: '1', JOBS: jobs },
    });
    fs.cpSync(path.join(scratch, 'prebuilds', platformDir), dest, { recursive: true });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** nvcc, or null (after a warning) when the CUDA library cannot be built here. */
function findNvcc() {
  const nvcc = process.env.CUDACXX || which('nvcc');
  const missing = !nvcc ? 'nvcc' : !which('cmake') ? 'cmake' : null;
  if (!missing) return nvcc;
  if (requireCuda) throw new Error(`${missing} not found, and OTLM_PREBUILD_REQUIRE_CUDA=1 asks for the CUDA library`);
  log(`WARNING: ${missing} not found: the package gets no CUDA library (CPU backend only). OTLM_PREBUILD_REQUIRE_CUDA=1 makes this an error.`);
  return null;
}

/** libotlm_cuda.so into dest. */
function buildCuda(dest, nvcc) {
  const dir = path.join(root, 'build-prebuild');
  // -U: the default architecture list of CMakeLists.txt, whatever an earlier configure cached.
  run('cmake', ['-S', root, '-B', dir, '--log-level=WARNING', '-UOTLM_CUDA_ARCHS', '-DCMAKE_BUILD_TYPE=Release',
    '-DOTLM_CUDA=ON', '-DOTLM_CUDA_EMU=OFF', '-DOTLM_TESTS=OFF', '-DOTLM_BLAS=OFF', `-DCMAKE_CUDA_COMPILER=${nvcc}`]);
  run('cmake', ['--build', dir, '--target', 'otlm_cuda', '-j', jobs]);
  const lib = path.join(dest, 'libotlm_cuda.so');
  fs.copyFileSync(path.join(dir, 'Release', 'libotlm_cuda.so'), lib);
  run('strip', ['--strip-all', lib]);
}

const versionKey = (v) => v.split('.').map((n) => n.padStart(4, '0')).join('.');
const newest = (syms, prefix) =>
  [...syms.matchAll(new RegExp(`@${prefix}_([0-9.]+)`, 'g'))].map((m) => m[1]).sort((a, b) => (versionKey(a) < versionKey(b) ? 1 : -1))[0];

/** What a user's system must provide for file; throws when that is more than it should be. */
function checkLinux(file, { libstdcxx }) {
  const needed = [...output('readelf', ['-d', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const allowed = libstdcxx ? [...ALLOWED_LIBS, 'libstdc++.so.6'] : ALLOWED_LIBS;
  const extra = needed.filter((l) => !allowed.includes(l));
  if (extra.length) throw new Error(`${path.basename(file)} needs ${extra.join(', ')} at run time`);
  const syms = output('readelf', ['--dyn-syms', '-W', file]);
  const glibc = newest(syms, 'GLIBC');
  if (glibc && versionKey(glibc) > versionKey(MAX_GLIBC))
    throw new Error(`${path.basename(file)} needs glibc ${glibc} (at most ${MAX_GLIBC} allowed): ${syms.match(new RegExp(`\\S+@GLIBC_${glibc.replace(/\./g, '\\.')}`, 'g')).join(' ')}`);
  const glibcxx = newest(syms, 'GLIBCXX');
  if (glibcxx && versionKey(glibcxx) > versionKey(MAX_GLIBCXX))
    throw new Error(`${path.basename(file)} needs libstdc++ GLIBCXX_${glibcxx} (at most ${MAX_GLIBCXX} allowed)`);
  return glibc;
}

/** Loads the addon in a child process, as a user's Node would, and asks it about the CUDA library. */
function checkLoads(addon, withCuda) {
  const script = `const i = require(${JSON.stringify(addon)}).info(); console.log(JSON.stringify({ gemm: i.cpu?.gemm, cuda: i.cuda }));`;
  const env = { ...process.env };
  delete env.OTLM_CUDA_LIB;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`the prebuilt addon does not load: ${r.stderr.trim().split('\n')[0]}`);
  const info = JSON.parse(r.stdout);
  // The library ran its entry point (info is set) whether or not this machine has a GPU.
  if (withCuda && !info.cuda?.info) throw new Error(`the prebuilt addon does not load its CUDA library: ${info.cuda?.reason}`);
  return info;
}

function main() {
  const nvcc = wantCuda ? findNvcc() : null;
  const prebuilds = path.join(outDir, 'prebuilds');
  fs.mkdirSync(prebuilds, { recursive: true });
  // A run that was killed leaves its staging folder, which `files` would put in the tarball.
  for (const f of fs.readdirSync(prebuilds)) if (f.startsWith(`.${platformDir}-`)) fs.rmSync(path.join(prebuilds, f), { recursive: true, force: true });
  const staging = fs.mkdtempSync(path.join(prebuilds, `.${platformDir}-`));
  try {
    buildAddon(staging);
    const addon = fs.readdirSync(staging).find((f) => f.endsWith('.node'));
    if (!addon) throw new Error('prebuildify made no .node file');
    if (nvcc) buildCuda(staging, nvcc);
    const info = checkLoads(path.join(staging, addon), !!nvcc);
    let glibc = '';
    if (process.platform === 'linux') {
      const versions = [checkLinux(path.join(staging, addon), { libstdcxx: false })];
      if (nvcc) versions.push(checkLinux(path.join(staging, 'libotlm_cuda.so'), { libstdcxx: true }));
      glibc = `; needs glibc >= ${versions.filter(Boolean).sort((a, b) => (versionKey(a) < versionKey(b) ? 1 : -1))[0]}`;
    }
    const dest = path.join(prebuilds, platformDir);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(staging, dest);
    const files = fs.readdirSync(dest).map((f) => `${f} (${mb(path.join(dest, f))})`);
    log(`${path.relative(process.cwd(), dest) || dest}: ${files.join(', ')}; GEMM ${info.gemm}${glibc}`);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

try {
  main();
} catch (err) {
  log(`ERROR: no prebuilt binaries: ${err.message}`);
  process.exit(1);
}
