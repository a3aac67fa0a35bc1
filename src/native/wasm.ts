/**
 * The WebAssembly engine (backend 'wasm'): the CPU backend's C++ compiled to lib/wasm/otlm.wasm
 * (scripts/build-wasm.sh, native/wasm/exports.cpp), wrapped here as a NativeBinding so every
 * method runs on it unchanged. Platform-neutral (no node: imports): Node loads the bytes in
 * wasm-node.ts, browsers in browser.ts.
 *
 * Memory: every input is copied into the module's memory at the call and every output copied
 * out before the call returns, so no JavaScript array is ever read or written later (the
 * addon's async memory contract holds trivially). Two builds: otlm.wasm runs on one thread;
 * otlm-mt.wasm runs on a shared memory with a pool of worker instances of the same module
 * (threadedWasm below; the host supplies the workers). Here the async twins run on the calling
 * thread and settle on a later turn (the browser entry's case); under Node wasm-node.ts moves them
 * to a worker thread (docs/architecture.md, "WebAssembly engine").
 */
import type {
  NativeBinding,
  NativeDarpArgs,
  NativeDarpResult,
  NativeGemmArgs,
  NativeInfo,
  NativeLossGradArgs,
  NativeLossGradResult,
  NativeSinkhornArgs,
  NativeSinkhornResult,
  NativeStepReport,
  NativeTrainer,
  NativeTrainerArgs,
  NativeTrainParams,
} from './binding.js';

/** ABI of native/core/include/otlm/otlm.h this code was written for (as loader.ts). */
const WASM_ABI = 2;

interface Exports {
  /** Exported by otlm.wasm; otlm-mt.wasm imports its (shared) memory instead. */
  memory?: WebAssembly.Memory;
  _initialize(): void;
  stackRestore(sp: number): void;
  malloc(n: number): number;
  free(p: number): void;
  otlm_wasm_abi(): number;
  otlm_wasm_err_size(): number;
  otlm_wasm_info(simd: number, gemm: number, compiler: number): number;
  otlm_wasm_sinkhorn(...a: number[]): number;
  otlm_wasm_loss_grad(...a: number[]): number;
  otlm_wasm_trainer_create(...a: number[]): number;
  otlm_wasm_trainer_step(t: number, rows: number, b: number, lr: number, rep: number, err: number): number;
  otlm_wasm_trainer_weights(t: number, w: number, set: number, err: number): number;
  otlm_wasm_trainer_destroy(t: number): void;
  otlm_wasm_gemm(...a: number[]): number;
  otlm_wasm_darp(...a: number[]): number;
  // otlm-mt.wasm only (native/wasm/threads.cpp)
  otlm_wasm_tls_size?(): number;
  otlm_wasm_tls_align?(): number;
  otlm_wasm_worker_run?(tls: number): void;
  otlm_wasm_thread_init?(tls: number): void;
  otlm_wasm_set_threads?(n: number): void;
  otlm_wasm_set_blocking?(mayBlock: number): void;
  otlm_wasm_workers?(): number;
  otlm_wasm_quit?(): void;
  otlm_wasm_worker_tasks?(): number;
  otlm_wasm_worker_failed?(): void;
  otlm_wasm_test_trap?(): void;
}

/** Which build runs and on how many threads (info().wasm). */
export interface WasmVariantInfo {
  /** 'threads': otlm-mt.wasm with a pool of workers; 'single': otlm.wasm. */
  variant: 'threads' | 'single';
  /** Threads a call uses by default (the caller's included); a call's `threads` option can lower it. */
  threads: number;
  /** Why the single-threaded build runs, where threads were not possible or not wanted. */
  reason?: string;
  /** Threaded build: workers inside the pool now, and the tasks they have run so far. */
  workers?: number;
  workerTasks?: number;
}

/** A NativeBinding over the WebAssembly engine, with what runs and a way to stop its workers. */
export interface WasmBinding extends NativeBinding {
  variant(): WasmVariantInfo;
  /** Stops the pool's workers (threaded build); later calls run on the calling thread alone. */
  close(): void;
  /** Tests only (threaded build): the next task a pool worker takes traps, as a bug in a kernel would. */
  trapNextWorkerTask?(): void;
}

const STATUS = ['OTLM_OK', 'OTLM_EINVAL', 'OTLM_ENOMEM', 'OTLM_EDEVICE', 'OTLM_ENOTSUP', 'OTLM_EINTERNAL', 'OTLM_EABORTED', 'OTLM_ENONFINITE'];

/** An engine status as the addon reports it: RangeError for bad arguments, Error otherwise, `code` = the status name. */
function engineError(status: number, message: string): Error {
  const e = status === 1 ? new RangeError(message) : new Error(message);
  return Object.assign(e, { code: STATUS[status] ?? 'OTLM_EINTERNAL' });
}

/** Imports of the standalone module: the few WASI calls libc makes, with no environment and no files. */
function imports(mem: () => WebAssembly.Memory, shared?: WebAssembly.Memory): WebAssembly.Imports {
  const now = typeof performance !== 'undefined' ? () => performance.now() : () => Date.now();
  return {
    env: shared ? { memory: shared, emscripten_notify_memory_growth: () => {} } : { emscripten_notify_memory_growth: () => {} },
    wasi_snapshot_preview1: {
      clock_time_get: (_id: number, _precision: bigint, out: number) => {
        new DataView(mem().buffer).setBigUint64(out, BigInt(Math.round(now() * 1e6)), true);
        return 0;
      },
      environ_sizes_get: (count: number, size: number) => {
        const v = new DataView(mem().buffer);
        v.setUint32(count, 0, true);
        v.setUint32(size, 0, true);
        return 0;
      },
      environ_get: () => 0,
      proc_exit: (code: number) => {
        throw new Error(`otlm wasm: the engine exited (${code})`);
      },
    },
  };
}

/** The binding checks lengths as the addon does (the module would read past a short array). */
function need(name: string, v: ArrayLike<number> | undefined, len: number, optional = false): void {
  if (v === undefined && optional) return;
  if (!v || v.length !== len) throw new RangeError(`'${name}' must have length ${len}, got ${v ? v.length : 'nothing'}`);
}

type Typed = Float32Array | Float64Array | Int32Array;
type TypedCtor<T extends Typed> = { new (b: ArrayBufferLike, off: number, len: number): T; BYTES_PER_ELEMENT: number };

/** Builds the binding from an instance of otlm.wasm (the single-threaded build). */
export function wasmBindingFromInstance(instance: WebAssembly.Instance, reason?: string): WasmBinding {
  const ex = instance.exports as unknown as Exports;
  ex._initialize();
  checkAbi(ex);
  return new WasmEngine(ex, ex.memory!, () => ({ variant: 'single', threads: 1, ...(reason ? { reason } : {}) })).binding();
}

function checkAbi(ex: Exports): void {
  if (ex.otlm_wasm_abi() !== WASM_ABI) throw new Error(`otlm wasm: module ABI ${ex.otlm_wasm_abi()} does not match ${WASM_ABI} (stale build)`);
}

// ------------------------------------------------------------------ the threaded build
// otlm-mt.wasm (native/wasm/threads.cpp, thread_pool.cpp's OTLM_WASM_THREADS part) imports a shared
// memory. The calling thread's instance initialises it (data, constructors) and allocates, for
// each worker, a stack and a TLS block; each worker instantiates the same module on the same
// memory (its start function sees the data already in place), points its stack pointer at its
// stack and enters otlm_wasm_worker_run, which waits (memory.atomic.wait32) for the jobs that the
// caller's parallel_for publishes. docs/architecture.md, "WebAssembly engine".

/** What a pool worker gets (structured-cloneable: a module, a shared memory, numbers). */
export interface PoolWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  stackTop: number;
  tls: number;
  /** [0] becomes 1 when the worker fails before it joins the pool (so a blocked caller stops waiting). */
  failed: Int32Array;
}

/** Starts one pool worker running poolWorkerMain(data); `terminate` ends it by force. */
export type PoolSpawner = (data: PoolWorkerData, onError: (e: Error) => void) => { terminate(): void };

/**
 * The body of a pool worker, self-contained so that hosts can run its source text
 * (`(${poolWorkerMain})(data)`): Node's eval workers and a browser's Blob-URL worker. Returns when
 * the pool is closed.
 */
export function poolWorkerMain(d: PoolWorkerData): void {
  const mem = d.memory;
  const now = typeof performance !== 'undefined' ? () => performance.now() : () => Date.now();
  let inst: WebAssembly.Instance;
  try {
    inst = new WebAssembly.Instance(d.module, {
      env: { memory: mem, emscripten_notify_memory_growth: () => {} },
      wasi_snapshot_preview1: {
        clock_time_get: (_id: number, _precision: bigint, out: number) => {
          new DataView(mem.buffer).setBigUint64(out, BigInt(Math.round(now() * 1e6)), true);
          return 0;
        },
        environ_sizes_get: (count: number, size: number) => {
          const v = new DataView(mem.buffer);
          v.setUint32(count, 0, true);
          v.setUint32(size, 0, true);
          return 0;
        },
        environ_get: () => 0,
        proc_exit: (code: number) => {
          throw new Error(`otlm wasm: a pool worker exited (${code})`);
        },
      },
    });
  } catch (e) {
    Atomics.store(d.failed, 0, 1);
    throw e;
  }
  const ex = inst.exports as unknown as {
    stackRestore(sp: number): void;
    otlm_wasm_worker_run(tls: number): void;
    otlm_wasm_worker_failed(): void;
  };
  ex.stackRestore(d.stackTop);
  try {
    ex.otlm_wasm_worker_run(d.tls);
  } catch (e) {
    // A trap inside a job: leave the pool so that the job's caller, which may be blocked in it,
    // stops waiting and fails its call (thread_pool.cpp) rather than hang.
    Atomics.store(d.failed, 0, 1);
    ex.otlm_wasm_worker_failed();
    throw e;
  }
}

/** Each worker's stack (the caller's is the module's own 1 MiB). */
const WORKER_STACK = 1 << 20;

/** A shared memory for otlm-mt.wasm (it declares 16 MiB initial, 4 GiB maximum); smaller maxima where 4 GiB cannot be reserved. */
function sharedMemory(): WebAssembly.Memory {
  let err: unknown;
  for (const maximum of [65536, 32768, 16384]) {
    try {
      return new (WebAssembly.Memory as unknown as new (d: { initial: number; maximum: number; shared: boolean }) => WebAssembly.Memory)({
        initial: 256,
        maximum,
        shared: true,
      });
    } catch (e) {
      err = e;
    }
  }
  throw err;
}

export interface ThreadedWasm {
  binding: WasmBinding;
  /** Workers inside the pool loop now. */
  ready(): number;
  /** Workers started. */
  workers: number;
  /** Blocks (Atomics.wait; not on a browser's main thread) until every worker is in, or `ms` pass. */
  waitReady(ms: number): void;
  /** Resolves when every worker is in, or after `ms`. */
  readyAsync(ms: number): Promise<void>;
}

/**
 * The threaded engine: an instance of otlm-mt.wasm on a new shared memory for the calling thread,
 * and `threads - 1` workers started by `spawn`. `callerMayBlock`: the calling thread may sleep in
 * memory.atomic.wait for its workers (not a browser's main thread). `beforeCall` runs before each
 * engine call (Node uses it to let the first call wait for the workers).
 */
export function threadedWasm(
  module: WebAssembly.Module,
  threads: number,
  spawn: PoolSpawner,
  callerMayBlock: boolean,
  beforeCall?: () => void,
): ThreadedWasm {
  const memory = sharedMemory();
  const inst = new WebAssembly.Instance(module, imports(() => memory, memory));
  const ex = inst.exports as unknown as Exports;
  if (!ex.otlm_wasm_worker_run || !ex.otlm_wasm_workers || !ex.otlm_wasm_set_threads || !ex.otlm_wasm_quit)
    throw new Error('otlm wasm: the threaded module lacks its pool exports (stale build)');
  ex._initialize();
  checkAbi(ex);
  const workersAt = ex.otlm_wasm_workers() >> 2;
  const ready = () => Atomics.load(new Int32Array(memory.buffer), workersAt);
  const want = Math.max(1, Math.floor(threads));
  const handles: Array<{ terminate(): void }> = [];
  const tlsSize = ex.otlm_wasm_tls_size!(), tlsAlign = Math.max(16, ex.otlm_wasm_tls_align!());
  const tlsBlock = (): number => {
    const raw = ex.malloc(tlsSize + tlsAlign);
    if (!raw) throw new Error('otlm wasm: cannot allocate a thread-local block');
    const tls = Math.ceil(raw / tlsAlign) * tlsAlign;
    new Uint8Array(memory.buffer, tls, tlsSize).fill(0);
    return tls;
  };
  ex.otlm_wasm_thread_init?.(tlsBlock());
  let failed: string | undefined;
  const failedFlag = new Int32Array(new SharedArrayBuffer(4));
  const anyFailed = () => failed !== undefined || Atomics.load(failedFlag, 0) !== 0;
  for (let i = 1; i < want; i++) {
    const stack = ex.malloc(WORKER_STACK);
    if (!stack) throw new Error('otlm wasm: cannot allocate the pool workers\' stacks');
    const tls = tlsBlock();
    handles.push(spawn({ module, memory, stackTop: (stack + WORKER_STACK) & ~15, tls, failed: failedFlag }, (e) => {
      failed ??= e.message;
    }));
  }
  ex.otlm_wasm_set_threads(want);
  ex.otlm_wasm_set_blocking?.(callerMayBlock ? 1 : 0);
  let closed = false;
  const engine = new WasmEngine(ex, memory, () =>
    closed
      ? { variant: 'threads', threads: 1, reason: 'the pool was closed' }
      : {
          variant: 'threads',
          threads: want,
          workers: ready(),
          workerTasks: ex.otlm_wasm_worker_tasks!(),
          ...(anyFailed() ? { reason: `a pool worker failed${failed ? `: ${failed}` : ''}; the others run` } : {}),
        },
    beforeCall);
  const binding = engine.binding();
  binding.trapNextWorkerTask = () => ex.otlm_wasm_test_trap!();
  binding.close = () => {
    if (closed) return;
    closed = true;
    ex.otlm_wasm_set_threads!(1);
    ex.otlm_wasm_quit!(); // workers leave their loop and end
  };
  return {
    binding,
    ready,
    workers: want - 1,
    waitReady(ms: number) {
      const deadline = Date.now() + ms;
      const view = new Int32Array(memory.buffer);
      for (let n; (n = Atomics.load(view, workersAt)) < want - 1 && !anyFailed(); ) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        Atomics.wait(view, workersAt, n, Math.min(left, 50));
      }
    },
    async readyAsync(ms: number) {
      const deadline = Date.now() + ms;
      while (ready() < want - 1 && !anyFailed() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    },
  };
}

/** Whether a compiled module is the threaded build (it imports its memory). */
export function isThreadedModule(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) => i.kind === 'memory');
}

export async function instantiateWasm(module: WebAssembly.Module): Promise<WebAssembly.Instance> {
  let memory: WebAssembly.Memory | undefined;
  const inst = await WebAssembly.instantiate(module, imports(() => memory!));
  memory = (inst.exports as unknown as Exports).memory;
  return inst;
}

export function instantiateWasmSync(module: WebAssembly.Module): WebAssembly.Instance {
  let memory: WebAssembly.Memory | undefined;
  const inst = new WebAssembly.Instance(module, imports(() => memory!));
  memory = (inst.exports as unknown as Exports).memory;
  return inst;
}

/** Largest total the module may allocate for one call (wasm32 memory is at most 4 GiB). */
const MAX_CALL_BYTES = 3.5 * 2 ** 30;

class WasmEngine {
  private readonly errSize: number;
  constructor(
    private readonly ex: Exports,
    private readonly memory: WebAssembly.Memory,
    private readonly variant: () => WasmVariantInfo,
    private readonly beforeCall?: () => void,
  ) {
    this.errSize = ex.otlm_wasm_err_size();
  }

  /** Allocations of one call, freed together. */
  private frame() {
    const ex = this.ex;
    const ptrs: number[] = [];
    const alloc = (bytes: number): number => {
      const p = ex.malloc(Math.max(8, bytes));
      if (!p) throw engineError(2, `otlm wasm: cannot allocate ${bytes} bytes in the module's memory (4 GiB at most)`);
      ptrs.push(p);
      return p;
    };
    const memory = this.memory;
    const view = <T extends Typed>(C: TypedCtor<T>, p: number, len: number): T => new C(memory.buffer, p, len);
    return {
      alloc,
      view,
      /** Copies `src` in (or allocates `len` zeroed elements); 0 for an absent optional input. */
      put<T extends Typed>(C: TypedCtor<T>, src: ArrayLike<number> | undefined, len = src?.length ?? 0): number {
        if (!src && len === 0) return 0;
        const p = alloc(len * C.BYTES_PER_ELEMENT);
        const v = view(C, p, len);
        if (src) v.set(src as ArrayLike<number>);
        else v.fill(0);
        return p;
      },
      /** A copy of `len` elements at `p`, out of the module's memory. */
      take<T extends Typed>(C: TypedCtor<T>, p: number, len: number): T {
        return view(C, p, len).slice() as T;
      },
      err: alloc(this.errSize),
      text(p: number, max: number): string {
        const b = new Uint8Array(memory.buffer, p, max);
        const end = b.indexOf(0);
        return new TextDecoder().decode(b.slice(0, end < 0 ? max : end));
      },
      free() {
        for (const p of ptrs) ex.free(p);
        ptrs.length = 0;
      },
    };
  }

  private check(status: number, f: ReturnType<WasmEngine['frame']>): void {
    if (status !== 0) throw engineError(status, f.text(f.err, this.errSize) || 'engine failed');
  }

  private static budget(what: string, bytes: number): void {
    if (!(bytes <= MAX_CALL_BYTES))
      throw engineError(2, `${what}: needs ${(bytes / 2 ** 30).toFixed(2)} GiB in the WebAssembly engine's memory, which holds at most 4 GiB; use the native backend`);
  }

  info(): NativeInfo {
    const f = this.frame();
    try {
      const simd = f.alloc(16), gemm = f.alloc(32), compiler = f.alloc(128);
      const threads = Math.min(this.ex.otlm_wasm_info(simd, gemm, compiler), this.variant().threads);
      return {
        abi: this.ex.otlm_wasm_abi(),
        napi: 0,
        cpu: {
          simd: f.text(simd, 16) as NativeInfo['cpu']['simd'],
          threads,
          gemm: f.text(gemm, 32),
          compiler: f.text(compiler, 128),
        },
        cuda: { path: '', built: false, usable: false, reason: 'the WebAssembly engine has no CUDA backend', info: null },
      };
    } finally {
      f.free();
    }
  }

  sinkhorn(a: NativeSinkhornArgs): NativeSinkhornResult {
    const { n, k } = a;
    if (a.cancel && Atomics.load(a.cancel, 0) !== 0) throw engineError(6, 'sinkhorn: cancelled');
    const nk = n * k;
    const wantPlan = a.plan instanceof Float32Array || a.plan === true;
    WasmEngine.budget('sinkhorn', nk * 4 * (wantPlan ? 2 : 1) + (n + k) * 32);
    need('x', a.x, nk);
    need('colMarginal', a.colMarginal, k);
    need('rowMarginal', a.rowMarginal, n, true);
    need('f0', a.f0, n, true);
    need('g0', a.g0, k, true);
    if (a.plan instanceof Float32Array) need('plan', a.plan, nk);
    const f = this.frame();
    try {
      const x = f.put(Float32Array, a.x);
      const r = f.put(Float64Array, a.rowMarginal);
      const c = f.put(Float64Array, a.colMarginal);
      const warm = a.f0 !== undefined;
      const fp = f.put(Float64Array, a.f0, n);
      const gp = f.put(Float64Array, a.g0, k);
      const plan = wantPlan ? f.alloc(nk * 4) : 0;
      const pred = a.predictions ? f.alloc(n * 4) : 0;
      const cap = a.traceCap ?? 0;
      const trace = cap ? f.alloc(cap * 8) : 0;
      const rep = f.alloc(7 * 8);
      const s = this.ex.otlm_wasm_sinkhorn(
        x, n, k, a.inputKind === 'logits' ? 1 : 0, a.lambda, a.maxIter, a.tol, a.checkEvery ?? 1, a.threads ?? 0,
        warm ? 1 : 0, a.epsScaling ?? 0, a.overrelax ?? 1, r, c, fp, gp, plan, pred, trace, cap, rep, f.err);
      this.check(s, f);
      const rv = f.view(Float64Array, rep, 7);
      const mode: Array<'scaling' | 'log'> = [];
      if (rv[3] & 1) mode.push('scaling');
      if (rv[3] & 2) mode.push('log');
      const out: NativeSinkhornResult = {
        f: f.take(Float64Array, fp, n),
        g: f.take(Float64Array, gp, k),
        iterations: rv[0],
        error: rv[1],
        converged: rv[2] !== 0,
        mode,
        logFallbacks: rv[4],
        trace: f.take(Float64Array, trace, rv[5]),
        seconds: rv[6],
        backend: 'wasm',
      };
      if (a.plan instanceof Float32Array) {
        a.plan.set(f.view(Float32Array, plan, nk));
        out.plan = a.plan;
      } else if (a.plan === true) out.plan = f.take(Float32Array, plan, nk);
      if (pred) out.predictions = f.take(Int32Array, pred, n);
      return out;
    } finally {
      f.free();
    }
  }

  private static trainParams(p: NativeTrainParams): number[] {
    return [
      p.k, p.lambda, p.sinkhornIters, p.tol ?? 0, p.grad === 'envelope' ? 1 : 0,
      p.optimizer === 'adamw' ? 1 : p.optimizer === 'sgd' ? 2 : 0,
      p.beta1 ?? 0.9, p.beta2 ?? 0.999, p.eps ?? 1e-8, p.weightDecay ?? 0, p.momentum ?? 0, p.nesterov ? 1 : 0, p.threads ?? 0,
    ];
  }

  private static stepReport(rv: Float64Array): NativeStepReport {
    return { loss: rv[0], marginalError: rv[1], sinkhornIters: rv[2], gradNorm: rv[3], seconds: rv[4] };
  }

  lossGrad(a: NativeLossGradArgs): NativeLossGradResult {
    const k = a.k;
    WasmEngine.budget('lossGrad', a.b * k * 4 * 6 + k * k * 12);
    need('phi', a.phi, a.b * k);
    need('w', a.w, k * k);
    need('bias', a.bias, k, true);
    need('targetPrior', a.targetPrior, k);
    const f = this.frame();
    try {
      const params = f.put(Float64Array, WasmEngine.trainParams(a));
      const phi = f.put(Float32Array, a.phi);
      const w = f.put(Float32Array, a.w);
      const bias = f.put(Float32Array, a.bias);
      const prior = f.put(Float64Array, a.targetPrior);
      const grad = a.wantGrad === false ? 0 : f.alloc(k * k * 4);
      const rep = f.alloc(5 * 8);
      this.check(this.ex.otlm_wasm_loss_grad(params, phi, a.b, w, bias, prior, grad, rep, f.err), f);
      const out: NativeLossGradResult = WasmEngine.stepReport(f.view(Float64Array, rep, 5));
      if (grad) out.gradW = f.take(Float32Array, grad, k * k);
      return out;
    } finally {
      f.free();
    }
  }

  trainer(a: NativeTrainerArgs): NativeTrainer {
    const ex = this.ex;
    const k = a.k;
    WasmEngine.budget('Trainer', a.n * k * 4 * 2 + k * k * 40);
    need('phi', a.phi, a.n * k);
    need('bias', a.bias, k, true);
    need('targetPrior', a.targetPrior, k);
    const f = this.frame();
    let t = 0;
    try {
      const params = f.put(Float64Array, WasmEngine.trainParams(a));
      const phi = f.put(Float32Array, a.phi);
      const bias = f.put(Float32Array, a.bias);
      const prior = f.put(Float64Array, a.targetPrior);
      t = ex.otlm_wasm_trainer_create(params, phi, a.n, bias, prior, f.err);
      if (!t) throw engineError(1, f.text(f.err, this.errSize) || 'Trainer: engine failed');
    } finally {
      f.free();
    }
    const engine = this;
    let handle = t;
    const live = (what: string) => {
      if (!handle) throw new Error(`Trainer.${what}: the trainer is closed`);
      return handle;
    };
    const step = (rows: Int32Array, lr: number): NativeStepReport => {
      const h = live('step');
      const g = engine.frame();
      try {
        if (!(rows instanceof Int32Array)) throw new TypeError("'rows' must be an Int32Array");
        const rp = g.put(Int32Array, rows);
        const rep = g.alloc(5 * 8);
        engine.check(ex.otlm_wasm_trainer_step(h, rp, rows.length, lr, rep, g.err), g);
        return WasmEngine.stepReport(g.view(Float64Array, rep, 5));
      } finally {
        g.free();
      }
    };
    const weights = (w: Float32Array | undefined): Float32Array => {
      const h = live(w ? 'setWeights' : 'getWeights');
      const g = engine.frame();
      try {
        if (w && w.length !== k * k) throw new RangeError(`'w' must have length k*k = ${k * k}, got ${w.length}`);
        const p = w ? g.put(Float32Array, w) : g.alloc(k * k * 4);
        engine.check(ex.otlm_wasm_trainer_weights(h, p, w ? 1 : 0, g.err), g);
        return w ?? g.take(Float32Array, p, k * k);
      } finally {
        g.free();
      }
    };
    return {
      step: (rows, lr) => later(() => step(rows, lr)),
      stepSync: step,
      getWeights: () => weights(undefined),
      setWeights: (w) => void weights(w),
      close: () => {
        if (handle) ex.otlm_wasm_trainer_destroy(handle);
        handle = 0;
      },
    };
  }

  gemm(a: NativeGemmArgs): Float32Array {
    const { m, n, kk } = a;
    WasmEngine.budget('gemm', (m * kk + kk * n + m * n + n) * 4);
    need('a', a.a, m * kk);
    need('b', a.b, kk * n);
    need('bias', a.bias, n, true);
    const f = this.frame();
    try {
      const ap = f.put(Float32Array, a.a);
      const bp = f.put(Float32Array, a.b);
      const bias = f.put(Float32Array, a.bias);
      const c = f.alloc(m * n * 4);
      this.check(this.ex.otlm_wasm_gemm(m, n, kk, ap, bp, bias, c, a.threads ?? 0, f.err), f);
      return f.take(Float32Array, c, m * n);
    } finally {
      f.free();
    }
  }

  darp(a: NativeDarpArgs): NativeDarpResult {
    const { n, k } = a;
    if (a.cancel && Atomics.load(a.cancel, 0) !== 0) throw engineError(6, 'darp: cancelled');
    WasmEngine.budget('darp', n * k * 8 + n * 24 + k * 16);
    need('logits', a.logits, n * k);
    need('colMarginal', a.colMarginal, k);
    if (a.weights instanceof Float64Array) need('weights', a.weights, n);
    const maxIter = a.maxIter ?? 1000;
    const f = this.frame();
    try {
      const logits = f.put(Float32Array, a.logits);
      const c = f.put(Float64Array, a.colMarginal);
      const given = a.weights instanceof Float64Array;
      const w = given ? f.put(Float64Array, a.weights as Float64Array) : 0;
      const mode = given ? 2 : a.weights === 'uniform' ? 1 : 0;
      const probs = f.alloc(n * k * 4);
      const pred = f.alloc(n * 4);
      const logRow = f.alloc(n * 8);
      const nu = f.alloc(k * 8);
      const cap = Math.min(Math.max(maxIter, 1), 1 << 24);
      const trace = f.alloc(cap * 8);
      const rep = f.alloc(5 * 8);
      this.check(
        this.ex.otlm_wasm_darp(logits, n, k, c, mode, w, maxIter, a.tol ?? 1e-6, a.newtonIter ?? 50, a.threads ?? 0,
          probs, pred, logRow, nu, trace, cap, rep, f.err),
        f,
      );
      const rv = f.view(Float64Array, rep, 5);
      return {
        probabilities: f.take(Float32Array, probs, n * k),
        predictions: f.take(Int32Array, pred, n),
        logRowScale: f.take(Float64Array, logRow, n),
        nu: f.take(Float64Array, nu, k),
        iterations: rv[0],
        error: rv[1],
        converged: rv[2] !== 0,
        seconds: rv[3],
        trace: f.take(Float64Array, trace, rv[4]),
        backend: 'wasm',
      };
    } finally {
      f.free();
    }
  }

  binding(): WasmBinding {
    const self = this;
    const pre = this.beforeCall ?? (() => {});
    return {
      info: () => self.info(),
      variant: () => self.variant(),
      close: () => {},
      sinkhorn: (a) => later(() => (pre(), self.sinkhorn(a))),
      sinkhornSync: (a) => (pre(), self.sinkhorn(a)),
      lossGrad: (a) => later(() => (pre(), self.lossGrad(a))),
      lossGradSync: (a) => (pre(), self.lossGrad(a)),
      Trainer: function Trainer(a: NativeTrainerArgs) {
        pre();
        return self.trainer(a);
      } as unknown as NativeBinding['Trainer'],
      gemm: (a) => later(() => (pre(), self.gemm(a))),
      gemmSync: (a) => (pre(), self.gemm(a)),
      darp: (a) => later(() => (pre(), self.darp(a))),
      darpSync: (a) => (pre(), self.darp(a)),
    };
  }
}

/**
 * The async twins: the work runs now, on this thread (the module is single-threaded and holds no
 * reference to the caller's arrays afterwards); the promise settles on a later turn.
 */
function later<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}
