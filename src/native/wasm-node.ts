import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

import type { NativeBinding, NativeSinkhornArgs } from './binding.js';
import { packageRoot } from './package-root.js';
import { instantiateWasmSync, wasmBindingFromInstance } from './wasm.js';

let binding: NativeBinding | undefined;
let loadError: Error | undefined;
let compiled: WebAssembly.Module | undefined;

/** lib/wasm/otlm.wasm in the package (scripts/build-wasm.sh; shipped in the tarball). */
export function wasmPath(): string {
  return join(packageRoot(), 'lib', 'wasm', 'otlm.wasm');
}

/** The WebAssembly engine under Node, loaded once (synchronously: the module is small). */
export function loadWasm(): NativeBinding {
  if (binding) return binding;
  if (loadError) throw loadError;
  const path = wasmPath();
  try {
    if (!existsSync(path)) throw new Error(`${path} not found (build it with \`npm run build:wasm\`, which needs Emscripten)`);
    if (typeof WebAssembly !== 'object') throw new Error('this JavaScript runtime has no WebAssembly');
    // The engine's own worker thread gets the main thread's compiled module (V8 shares its code,
    // and the optimised tier once the main thread has run it) and runs every call in place.
    const given = (workerData as { otlmWasmModule?: unknown } | null)?.otlmWasmModule;
    const engineThread = !isMainThread && given instanceof WebAssembly.Module;
    const module = engineThread ? (given as WebAssembly.Module) : new WebAssembly.Module(readFileSync(path));
    compiled = module;
    const local = wasmBindingFromInstance(instantiateWasmSync(module));
    binding = engineThread ? local : offThread(local);
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
  const worker = new Worker(join(packageRoot(), 'lib', 'native', 'wasm-thread.js'), { workerData: { otlmWasmModule: compiled } });
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
