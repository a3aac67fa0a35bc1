import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import type { NativeBinding } from './binding.js';
import { NativeLoadError } from './load-error.js';
import { packageRoot } from './package-root.js';

export { NativeLoadError };

const require = createRequire(import.meta.url);

/** OTLM_ABI_VERSION of native/core/include/otlm/otlm.h this code was written for. */
const NATIVE_ABI = 2;

export interface LoadOptions {
  /** Load this exact .node file (for bundlers); also read from OTLM_NATIVE_PATH. */
  nativePath?: string;
}

/** Where the native addon came from, for info(). */
export interface LoadedFrom {
  path: string;
  source: 'override' | 'build' | 'prebuild';
}

let binding: NativeBinding | undefined;
let loadedFrom: LoadedFrom | undefined;
let loadError: Error | undefined;


/**
 * Files to try, best first: node-gyp-build's choice (a local build, else the prebuild whose
 * tags match this platform, libc and N-API), then every other build or prebuild, so that a
 * failure can be explained file by file.
 */
function candidates(root: string): Array<{ path: string; source: LoadedFrom['source'] }> {
  const files: string[] = [];
  try {
    files.push((require('node-gyp-build') as { resolve(dir: string): string }).resolve(root));
  } catch {
    /* nothing matched: the list below says what exists */
  }
  for (const dir of ['build/Release', 'build/Debug']) files.push(join(root, dir, 'otlm.node'));
  const pre = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (existsSync(pre)) for (const f of readdirSync(pre).sort()) if (f.endsWith('.node')) files.push(join(pre, f));
  return [...new Set(files)].map((path) => ({ path, source: path.startsWith(join(root, 'prebuilds')) ? 'prebuild' : 'build' }));
}

function explain(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const msg = String(e?.message ?? e);
  if (/invalid ELF header|wrong ELF class|ELF load command|not a valid Win32|mach-o|file too short/i.test(msg))
    return `not a loadable library for ${process.platform}-${process.arch}: corrupt, truncated or built for another platform (${msg.split('\n')[0]})`;
  if (/NODE_MODULE_VERSION|was compiled against a different Node\.js version/i.test(msg))
    return `built for another Node.js ABI (${msg.split('\n')[0]})`;
  if (/GLIBC_|GLIBCXX_|musl/i.test(msg)) return `needs a newer C/C++ runtime than this system has (${msg.split('\n')[0]})`;
  if (/cannot open shared object file/.test(msg)) return `a library it links to is missing (${msg.split('\n')[0]})`;
  return msg.split('\n')[0];
}

/**
 * require() of the addon with OPENBLAS_NUM_THREADS=1 while it loads, then the variable as it was.
 * OpenBLAS, linked into the addon, reads it once as it loads and otherwise starts a thread per core
 * that spins about 0.1 s of CPU (measured: 0.1 s of system time per process here); the engine only
 * calls it single-threaded, from its own pool (native/cpu/gemm.cpp), so those threads never work.
 */
function requireWithOneBlasThread(path: string): unknown {
  const before = process.env.OPENBLAS_NUM_THREADS;
  process.env.OPENBLAS_NUM_THREADS = '1';
  try {
    return require(path);
  } finally {
    if (before === undefined) delete process.env.OPENBLAS_NUM_THREADS;
    else process.env.OPENBLAS_NUM_THREADS = before;
  }
}

/** Loads the addon once: an override path, then build/, then prebuilds/<platform>-<arch>/. */
export function loadNative(opts: LoadOptions = {}): NativeBinding {
  if (binding) return binding;
  if (loadError && !opts.nativePath) throw loadError;
  const override = opts.nativePath ?? process.env.OTLM_NATIVE_PATH;
  const tried: string[] = [];
  const list = override
    ? [{ path: override, source: 'override' as const }]
    : candidates(packageRoot());
  for (const c of list) {
    if (!existsSync(c.path)) {
      tried.push(`${c.path}: not found`);
      continue;
    }
    try {
      const mod = requireWithOneBlasThread(c.path) as Partial<NativeBinding>;
      if (typeof mod?.info !== 'function' || typeof mod.sinkhorn !== 'function')
        throw new Error('not an otlm addon (no info/sinkhorn exports)');
      const abi = mod.info().abi;
      if (abi !== NATIVE_ABI) throw new Error(`addon ABI ${abi} does not match this package's ABI ${NATIVE_ABI} (stale build)`);
      binding = mod as NativeBinding;
      loadedFrom = { path: c.path, source: c.source };
      return binding;
    } catch (err) {
      tried.push(`${c.path}: ${explain(err)}`);
    }
  }
  const platform = `${process.platform}-${process.arch}`;
  const hint = override
    ? `Check OTLM_NATIVE_PATH / nativePath (${override}).`
    : `No usable native addon for ${platform} (Node ${process.versions.node}, N-API ${process.versions.napi}).\n` +
      `Build it from source: \`npm run build:native\` (needs CMake >= 3.18 and a C++17 compiler; ` +
      `libopenblas-dev for a fast GEMM), or \`npx node-gyp rebuild\` without CMake.\n` +
      `If otlm is a dependency and npm skipped its install script (npm >= 11 blocks dependency install scripts ` +
      `by default), allow it: \`npm install-scripts approve otlm && npm rebuild otlm\`.\n` +
      `The pure-TypeScript paths still work: pass { backend: 'reference' }.`;
  loadError = new NativeLoadError(`otlm: cannot load the native addon.\nTried:\n  ${tried.join('\n  ') || '(nothing)'}\n${hint}`, tried);
  throw loadError;
}

/** The addon if it loads, else undefined (and the reason from nativeLoadError()). */
export function tryLoadNative(): NativeBinding | undefined {
  try {
    return loadNative();
  } catch {
    return undefined;
  }
}

export function nativeLoadError(): Error | undefined {
  return loadError;
}

export function nativeLoadedFrom(): LoadedFrom | undefined {
  return loadedFrom;
}
