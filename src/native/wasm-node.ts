import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

import type { NativeBinding, NativeSinkhornArgs } from './binding.js';
import { packageRoot } from './package-root.js';
import {
  instantiateWasmSync,
  isThreadedModule,
  poolWorkerMain,
  threadedWasm,
  type PoolSpawner,
  type WasmBinding,
  type WasmVariantInfo,
  wasmBindingFromInstance,
} from './wasm.js';

let binding: NativeBinding | undefined;
let local: WasmBinding | undefined;
let loadError: Error | undefined;
let compiled: WebAssembly.Module | undefined;
let compiledThreads = 1;

/** lib/wasm/otlm.wasm in the package (scripts/build-wasm.sh; shipped in the tarball). */
export function wasmPath(): string {
  return join(packageRoot(), 'lib', 'wasm', 'otlm.wasm');
}

/** lib/wasm/otlm-mt.wasm: the threaded build (shared memory, a pool of worker instances). */
export function wasmThreadsPath(): string {
  return join(packageRoot(), 'lib', 'wasm', 'otlm-mt.wasm');
}

/** Threads the engine uses by default: OTLM_THREADS, else the cores (as the native engine). */
export function wasmDefaultThreads(): number {
  const env = Number.parseInt(process.env.OTLM_THREADS ?? '', 10);
  if (env > 0) return env;
  return typeof availableParallelism === 'function' ? availableParallelism() : cpus().length || 1;
}

/** Pool workers under Node: eval'd worker threads, unref'd (they never keep the process alive). */
const nodeSpawner: PoolSpawner = (data, onError) => {
  // A pool worker that dies says so on stderr at once (its 'error' event waits for the parent's
  // event loop, which a caller blocked in a job does not turn).
  const src = `const { workerData } = require('node:worker_threads');
try { (${poolWorkerMain.toString()})(workerData); } catch (e) {
  try { require('node:fs').writeSync(2, 'otlm wasm: a pool worker failed: ' + (e && e.stack || e) + '\\n'); } catch {}
  throw e;
}`;
  const w = new Worker(src, {
    eval: true,
    workerData: data,
    // Not the parent's flags: `node --input-type=module -e …` would make this script ESM.
    execArgv: [],
    name: 'otlm-wasm-pool',
  });
  w.on('error', onError);
  w.unref();
  return { terminate: () => void w.terminate() };
};

const modules = new Map<string, WebAssembly.Module>();
function compile(path: string): WebAssembly.Module {
  let m = modules.get(path);
  if (!m) {
    if (!existsSync(path)) throw new Error(`${path} not found (build it with \`npm run build:wasm\`, which needs Emscripten)`);
    m = new WebAssembly.Module(readFileSync(path));
    modules.set(path, m);
  }
  return m;
}

/** An engine on `module`: threaded (its pool started, the first call waiting up to 5 s for it) when it is otlm-mt.wasm and `threads` > 1. */
function engineOn(module: WebAssembly.Module, threads: number, reason?: string): WasmBinding {
  if (!isThreadedModule(module)) return wasmBindingFromInstance(instantiateWasmSync(module), reason);
  let waited = false;
  const t = threadedWasm(module, threads, nodeSpawner, true, () => {
    if (waited) return;
    waited = true;
    t.waitReady(5000);
  });
  return t.binding;
}

/**
 * A WebAssembly engine of the given build, not shared with loadWasm()'s (tests, benchmarks):
 * 'threads' runs otlm-mt.wasm with `threads` threads in all (default wasmDefaultThreads()).
 * Only its *Sync calls leave the calling thread's instance when threaded; close() stops its pool.
 */
export function createWasmEngine(variant: 'threads' | 'single', threads = wasmDefaultThreads()): WasmBinding {
  return variant === 'threads' ? engineOn(compile(wasmThreadsPath()), Math.max(1, threads)) : engineOn(compile(wasmPath()), 1);
}

/** Which build loadWasm() runs and on how many threads; undefined when it has not loaded. */
export function wasmVariant(): WasmVariantInfo | undefined {
  return local?.variant();
}

/**
 * The WebAssembly engine under Node, loaded once (synchronously: the module is small). The
 * threaded build runs where it was built and more than one thread is wanted (OTLM_THREADS, else
 * the cores); the single-threaded one otherwise, or when the threaded one cannot start.
 */
export function loadWasm(): NativeBinding {
  if (binding) return binding;
  if (loadError) throw loadError;
  try {
    if (typeof WebAssembly !== 'object') throw new Error('this JavaScript runtime has no WebAssembly');
    // The engine's own worker thread gets the main thread's compiled module (V8 shares its code,
    // and the optimised tier once the main thread has run it) and runs every call in place, with
    // a pool of its own when the module is the threaded build.
    const given = (workerData as { otlmWasmModule?: unknown; otlmWasmThreads?: number } | null) ?? {};
    const engineThread = !isMainThread && given.otlmWasmModule instanceof WebAssembly.Module;
    if (engineThread) {
      compiled = given.otlmWasmModule as WebAssembly.Module;
      compiledThreads = given.otlmWasmThreads ?? 1;
      local = engineOn(compiled, compiledThreads);
      binding = local;
      return binding;
    }
    const threads = wasmDefaultThreads();
    let why: string | undefined;
    if (threads <= 1) why = 'one thread wanted (OTLM_THREADS or a single core)';
    else if (!existsSync(wasmThreadsPath())) why = `${wasmThreadsPath()} not found`;
    else if (typeof SharedArrayBuffer !== 'function') why = 'no SharedArrayBuffer in this runtime';
    else {
      try {
        compiled = compile(wasmThreadsPath());
        compiledThreads = threads;
        local = engineOn(compiled, threads);
      } catch (e) {
        why = `the threaded build did not start: ${(e as Error).message}`;
      }
    }
    if (!local) {
      compiled = compile(wasmPath());
      compiledThreads = 1;
      local = engineOn(compiled, 1, why);
    }
    binding = offThread(local);
    return binding;
  } catch (e) {
    loadError = Object.assign(new Error(`otlm: the WebAssembly engine did not load: ${(e as Error).message}`, { cause: e }), {
      code: 'OTLM_ENOWASM',
    });
    throw loadError;
  }
}


// ------------------------------------------------------------------ async calls off the main thread
// The one-off async calls (sinkhorn, lossGrad, gemm, darp) run in a worker thread with its own
// instance of the module (src/native/wasm-thread.ts), one at a time, so their Promises do not block
// the event loop. Arguments are copied to it when the call is made (the memory contract); a
// caller-supplied `plan` is filled when the call settles, or the call rejects with OTLM_EDETACHED
// if the caller detached it meanwhile. A raised cancel flag (polled every 5 ms) terminates the
// worker, which is the only way to stop a running module, and rejects with OTLM_EABORTED; the next
// call starts a new one. The trainer's steps stay on the calling thread (its state lives there).
// With the threaded build the worker's engine has its own shared memory and pool of workers (its
// own threads: a terminated engine thread takes them with it).

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}
interface EngineThread {
  worker: Worker;
  pending: Map<number, Pending>;
}
let current: EngineThread | undefined;
let seq = 0;

function workerError(e: { name?: string; message: string; code?: string }): Error {
  const err = e.name === 'RangeError' ? new RangeError(e.message) : e.name === 'TypeError' ? new TypeError(e.message) : new Error(e.message);
  return e.code ? Object.assign(err, { code: e.code }) : err;
}

function startThread(): EngineThread {
  const worker = new Worker(join(packageRoot(), 'lib', 'native', 'wasm-thread.js'), {
    workerData: { otlmWasmModule: compiled, otlmWasmThreads: compiledThreads },
  });
  const t: EngineThread = { worker, pending: new Map() };
  const failAll = (e: Error) => {
    if (current === t) current = undefined;
    for (const p of t.pending.values()) p.reject(e);
    t.pending.clear();
  };
  t.worker.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: { name: string; message: string; code?: string } }) => {
    const p = t.pending.get(m.id);
    if (!p) return;
    t.pending.delete(m.id);
    if (t.pending.size === 0) t.worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject(workerError(m.error!));
  });
  t.worker.on('error', (e) => failAll(Object.assign(new Error(`otlm wasm: the engine's worker thread failed: ${e.message}`), { code: 'OTLM_EINTERNAL' })));
  t.worker.on('exit', (code) => failAll(Object.assign(new Error(`otlm wasm: the engine's worker thread exited (${code})`), { code: 'OTLM_EINTERNAL' })));
  t.worker.unref();
  return t;
}

function cancelled(op: string): Error {
  return Object.assign(new Error(`${op}: cancelled`), { code: 'OTLM_EABORTED' });
}

function inWorker<T>(op: string, args: object, cancel?: Int32Array): Promise<T> {
  if (cancel && Atomics.load(cancel, 0) !== 0) return Promise.reject(cancelled(op));
  const t = (current ??= startThread());
  const id = ++seq;
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setInterval> | undefined;
    const done = () => timer && clearInterval(timer);
    t.pending.set(id, { resolve: (v) => (done(), resolve(v as T)), reject: (e) => (done(), reject(e)) });
    if (cancel) {
      timer = setInterval(() => {
        if (Atomics.load(cancel, 0) === 0 || !t.pending.has(id)) return;
        t.pending.delete(id);
        done();
        reject(cancelled(op));
        if (current === t) current = undefined;
        void t.worker.terminate(); // calls queued behind it on this thread fail with the exit error
      }, 5);
      timer.unref();
    }
    t.worker.ref();
    try {
      // One copy per array: a compact slice, whose buffer is then moved (a clone of a subarray view
      // would copy its whole buffer). Views of a SharedArrayBuffer are shared as they are.
      const transfer: ArrayBuffer[] = [];
      const packed = Object.fromEntries(
        Object.entries(args).map(([key, v]) => {
          if (!ArrayBuffer.isView(v) || !(v.buffer instanceof ArrayBuffer)) return [key, v];
          const copy = (v as unknown as Float32Array).slice();
          transfer.push(copy.buffer as ArrayBuffer);
          return [key, copy];
        }),
      );
      t.worker.postMessage({ id, op, args: packed }, transfer);
    } catch (e) {
      t.pending.delete(id);
      done();
      reject(e as Error);
    }
  });
}

function offThread(local: NativeBinding): NativeBinding {
  const strip = <A extends { cancel?: Int32Array }>(a: A): A => {
    const { cancel: _c, ...rest } = a;
    return rest as A;
  };
  return {
    ...local,
    sinkhorn: async (a: NativeSinkhornArgs) => {
      const out = a.plan instanceof Float32Array ? a.plan : undefined;
      const r = await inWorker<Awaited<ReturnType<NativeBinding['sinkhorn']>>>('sinkhorn', { ...strip(a), plan: out ? true : a.plan }, a.cancel);
      if (out) {
        if (out.length !== r.plan!.length)
          throw Object.assign(new TypeError('sinkhorn: plan was detached or resized while the call ran; nothing was written'), { code: 'OTLM_EDETACHED' });
        out.set(r.plan!);
        r.plan = out;
      }
      return r;
    },
    lossGrad: (a) => inWorker('lossGrad', a),
    gemm: (a) => inWorker('gemm', a),
    darp: (a) => inWorker('darp', strip(a), a.cancel),
  };
}
