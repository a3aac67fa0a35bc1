/**
 * Lazy loading of TensorFlow.js for the `backend: 'tfjs'` path.
 *
 * `@tensorflow/tfjs` (and, for the WebAssembly backend, `@tensorflow/tfjs-backend-wasm`)
 * are optional: they are imported with a dynamic `import()` the first time a tfjs
 * function runs, so `import 'otlm'` never pays for them.
 *
 * `@tensorflow/tfjs-node` is deliberately not used: its install script downloads a
 * libtensorflow binary, which fails on machines without internet access (such as
 * this project's build machines). The pure-JS `cpu` backend and the `wasm` backend
 * need no download.
 *
 * Threads: tfjs-backend-wasm 4.x turns WebAssembly threads off under Node.js
 * (its WASM_HAS_MULTITHREAD_SUPPORT flag returns false when IS_NODE, tfjs issue
 * #3830); forcing the flag on fails because the pthread workers are created from
 * a `blob:` URL, which Node's `worker_threads` rejects (ERR_WORKER_PATH). So in
 * Node the wasm backend runs SIMD on one thread; threads work in browsers.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

// Only type positions: erased at compile time, so nothing is loaded eagerly.
type TF = typeof import('@tensorflow/tfjs');

/** The TensorFlow.js backends this path supports. */
export type TfBackendName = 'wasm' | 'cpu';

export interface TfjsRuntimeInfo {
  backend: TfBackendName;
  simd: boolean;
  threads: number;
  version: string;
}

let tfPromise: Promise<TF> | undefined;
let wasmReady: Promise<void> | undefined;
let cpuReady: Promise<void> | undefined;
let wasmThreads = 1;
// tfjs keeps one global "current backend": serialise our calls so that two
// concurrent solves on different backends cannot switch it under each other.
let queue: Promise<unknown> = Promise.resolve();

function missing(pkg: string, cause: unknown): Error {
  const e = new Error(
    `backend 'tfjs' needs the optional package ${pkg}, which could not be loaded ` +
      `(install it with: npm install ${pkg}): ${(cause as Error)?.message ?? String(cause)}`,
    { cause },
  );
  (e as NodeJS.ErrnoException).code = 'OTLM_ENOTFJS';
  return e;
}

function pickNamespace<T extends object>(m: T & { default?: unknown }, probe: string): T {
  // A CommonJS package imported from ESM may expose its API on .default only.
  if (probe in m) return m;
  const d = m.default as T | undefined;
  return d && typeof d === 'object' && probe in d ? d : m;
}

/** Loads @tensorflow/tfjs once (dynamic import). */
export function loadTf(): Promise<TF> {
  tfPromise ??= import('@tensorflow/tfjs').then(
    (m) => pickNamespace(m as TF & { default?: unknown }, 'tensor2d'),
    (e: unknown) => {
      tfPromise = undefined;
      throw missing('@tensorflow/tfjs', e);
    },
  );
  return tfPromise;
}

async function initWasm(tf: TF): Promise<void> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = pickNamespace(
      (await import('@tensorflow/tfjs-backend-wasm')) as typeof import('@tensorflow/tfjs-backend-wasm') & { default?: unknown },
      'setWasmPaths',
    );
  } catch (e) {
    throw missing('@tensorflow/tfjs-backend-wasm', e);
  }
  // In Node the .wasm binaries are read from the package's dist/ folder by file path.
  const req = createRequire(import.meta.url);
  const dist = dirname(req.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(dist + '/');
  const ok = await tf.setBackend('wasm');
  if (!ok) throw new Error("backend 'tfjs': the TensorFlow.js wasm backend failed to initialise");
  await tf.ready();
  wasmThreads = wasm.getThreadsCount();
}

/**
 * Loads tfjs and makes `name` the current tfjs backend. Runs `fn` with exclusive
 * use of tfjs (calls are queued), restoring nothing afterwards: the last backend
 * used stays current.
 */
export function withTf<T>(name: TfBackendName, fn: (tf: TF) => Promise<T> | T): Promise<T> {
  if (name !== 'wasm' && name !== 'cpu')
    return Promise.reject(new TypeError(`tfBackend must be 'wasm' or 'cpu', got ${String(name)}`));
  const run = async (): Promise<T> => {
    const tf = await loadTf();
    if (name === 'wasm') {
      wasmReady ??= initWasm(tf).catch((e: unknown) => {
        wasmReady = undefined;
        throw e;
      });
      await wasmReady;
    } else {
      cpuReady ??= (async () => {
        // The cpu backend logs an "install tfjs-node" banner on its first write; a library
        // should not print, so silence tfjs' own logging just while it is first used.
        const env = tf.env();
        const prod = env.getBool('PROD');
        env.set('PROD', true);
        try {
          if (!(await tf.setBackend('cpu'))) throw new Error("backend 'tfjs': the TensorFlow.js cpu backend failed to initialise");
          tf.scalar(0).dispose(); // the banner is printed on the backend's first write
        } finally {
          env.set('PROD', prod);
        }
      })().catch((e: unknown) => {
        cpuReady = undefined;
        throw e;
      });
      await cpuReady;
    }
    if (tf.getBackend() !== name && !(await tf.setBackend(name)))
      throw new Error(`backend 'tfjs': cannot switch TensorFlow.js to the ${name} backend`);
    try {
      return await fn(tf);
    } catch (e) {
      throw explainWasmFailure(name, e);
    }
  };
  const p = queue.then(run, run);
  queue = p.catch(() => undefined);
  return p;
}

/**
 * The wasm backend reports an exhausted WebAssembly heap (wasm32: at most 4 GiB, less in practice
 * for tfjs' build) as a bare "memory access out of bounds" RuntimeError; say what it means.
 */
function explainWasmFailure(name: TfBackendName, e: unknown): unknown {
  const msg = (e as Error)?.message ?? '';
  if (name !== 'wasm' || !/memory access out of bounds|out of memory|Cannot enlarge memory|Aborted\(/i.test(msg)) return e;
  const err = new RangeError(
    `backend 'tfjs' (wasm): the WebAssembly heap is exhausted (${msg}); the problem is too large for ` +
      `tfjs-wasm's 32-bit heap: use the native backend, or tfBackend 'cpu'`,
    { cause: e },
  );
  (err as NodeJS.ErrnoException).code = 'OTLM_ENOMEM';
  return err;
}

/** Which tfjs backend features are active (for the benchmark and info()). */
export async function tfjsRuntimeInfo(name: TfBackendName): Promise<TfjsRuntimeInfo> {
  return withTf(name, async (tf) => ({
    backend: name,
    simd: name === 'wasm' ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : false,
    threads: name === 'wasm' ? wasmThreads : 1,
    version: tf.version.tfjs,
  }));
}
