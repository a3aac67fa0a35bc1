/**
 * otlm in the browser (`import … from 'otlm/browser'`, or 'otlm' under a bundler's `browser`
 * condition): the same typed API as the Node entry minus the file-system parts (readMatrix,
 * OTLM.save/load, the report, the CLI) and the tfjs path, running on the WebAssembly engine
 * (lib/wasm/otlm.wasm, or lib/wasm/otlm-mt.wasm with a pool of Web Workers on a page that is
 * cross-origin isolated). Call `await init()` once first; until then 'auto' runs the float64
 * reference path. Built by scripts/build-browser.mjs into lib/otlm.browser.js.
 */
import { instantiateWasm, poolWorkerMain, threadedWasm, type PoolSpawner, type WasmBinding, wasmBindingFromInstance } from '../native/wasm.js';
import { setWasm, tryLoadWasm } from './wasm-loader.js';

export * from '../core.js';

/** Where the engine's bytes come from: a URL, a fetch Response, the bytes, or a compiled module. */
export type WasmSource = string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module;

export interface BrowserInfo {
  /** What `backend: 'auto'` runs on: 'wasm' after init(), else 'reference'. */
  active: 'wasm' | 'reference';
  backends: Array<'wasm' | 'reference'>;
  wasm: {
    available: boolean;
    simd?: string;
    gemm?: string;
    /** 'threads': otlm-mt.wasm and a pool of Web Workers; 'single': otlm.wasm on the calling thread. */
    variant?: 'threads' | 'single';
    /** Threads a call uses by default. */
    threads?: number;
    /** Why the single-threaded build runs, when it does. */
    variantReason?: string;
    /** Threaded build: pool workers running now, and the tasks they have run so far. */
    workers?: number;
    workerTasks?: number;
    reason?: string;
  };
}

export interface InitOptions {
  /** The single-threaded build (default: wasm/otlm.wasm beside this module). */
  wasm?: WasmSource;
  /** The threaded build (default: wasm/otlm-mt.wasm beside this module); false: never use threads. */
  wasmThreads?: WasmSource | false;
  /** Threads in all, the calling thread's included (default: navigator.hardwareConcurrency). */
  threads?: number;
}

let pending: Promise<BrowserInfo> | undefined;

async function compile(src: WasmSource): Promise<WebAssembly.Module> {
  if (src instanceof WebAssembly.Module) return src;
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) return WebAssembly.compile(src);
  const res = typeof Response !== 'undefined' && src instanceof Response ? src : await fetch(src as string | URL);
  if (!res.ok) throw new Error(`otlm: cannot fetch the WebAssembly engine from ${res.url || String(src)}: HTTP ${res.status}`);
  // compileStreaming needs the application/wasm type; any other server still gets the bytes path.
  if (typeof WebAssembly.compileStreaming === 'function' && res.headers.get('content-type')?.startsWith('application/wasm'))
    return WebAssembly.compileStreaming(res);
  return WebAssembly.compile(await res.arrayBuffer());
}

// Pool workers: one Blob-URL script (the same function the Node workers run), started with the
// compiled module and the shared memory. They exist only where the page is cross-origin isolated.
interface WebWorker {
  postMessage(m: unknown): void;
  terminate(): void;
  onerror: ((e: { message?: string }) => void) | null;
}
let workerUrl: string | undefined;
const webSpawner: PoolSpawner = (data, onError) => {
  const W = (globalThis as unknown as { Worker: new (url: string, o?: { name?: string }) => WebWorker }).Worker;
  workerUrl ??= URL.createObjectURL(
    new Blob([`onmessage = (e) => { (${poolWorkerMain.toString()})(e.data); close(); };`], { type: 'text/javascript' }),
  );
  const w = new W(workerUrl, { name: 'otlm-wasm-pool' });
  w.onerror = (e) => onError(new Error(e.message || 'worker error'));
  w.postMessage(data);
  return { terminate: () => w.terminate() };
};

/** The threaded engine, or why not (then the single-threaded build runs). */
async function threaded(opts: InitOptions, threads: number): Promise<WasmBinding | string> {
  const g = globalThis as unknown as { crossOriginIsolated?: boolean; Worker?: unknown };
  if (opts.wasmThreads === false) return 'init({ wasmThreads: false })';
  if (threads <= 1) return 'one thread wanted';
  if (g.crossOriginIsolated !== true)
    return 'the page is not cross-origin isolated (COOP/COEP headers), so there is no shared memory for threads';
  if (typeof g.Worker !== 'function') return 'no Web Workers here';
  try {
    const module = await compile(opts.wasmThreads ?? new URL('./wasm/otlm-mt.wasm', import.meta.url));
    // A Web Worker's thread may block while its pool finishes a job; a page's main thread only spins.
    const inWorker = typeof (globalThis as unknown as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';
    const t = threadedWasm(module, threads, webSpawner, inWorker);
    await t.readyAsync(5000);
    if (t.ready() === 0) {
      t.binding.close();
      return 'no pool worker started';
    }
    return t.binding;
  } catch (e) {
    return `the threaded build did not start: ${(e as Error).message}`;
  }
}

/**
 * Loads the WebAssembly engine (once; later calls return the first call's result). By default
 * the files beside this module (lib/wasm/; bundlers that understand `new URL(…, import.meta.url)`
 * copy them): the threaded build where the page is cross-origin isolated (`crossOriginIsolated`,
 * served with COOP/COEP headers), else, or if it fails to start, the single-threaded one. Pass
 * `wasm` / `wasmThreads` to serve them from elsewhere.
 */
export function init(opts: InitOptions = {}): Promise<BrowserInfo> {
  pending ??= (async () => {
    const nav = (globalThis as unknown as { navigator?: { hardwareConcurrency?: number } }).navigator;
    const threads = Math.max(1, Math.floor(opts.threads ?? (nav?.hardwareConcurrency || 1)));
    const mt = await threaded(opts, threads);
    if (typeof mt !== 'string') setWasm(mt);
    else {
      const module = await compile(opts.wasm ?? new URL('./wasm/otlm.wasm', import.meta.url));
      setWasm(wasmBindingFromInstance(await instantiateWasm(module), mt));
    }
    return info();
  })();
  pending.catch(() => {
    pending = undefined; // a failed load may be retried (e.g. with another URL)
  });
  return pending;
}

/** What runs here: the WebAssembly engine once init() has loaded it, else the reference path. */
export function info(): BrowserInfo {
  const b = tryLoadWasm();
  if (!b) return { active: 'reference', backends: ['reference'], wasm: { available: false, reason: 'init() has not loaded it' } };
  const cpu = b.info().cpu;
  const v = b.variant();
  return {
    active: 'wasm',
    backends: ['wasm', 'reference'],
    wasm: {
      available: true,
      simd: cpu.simd,
      gemm: cpu.gemm,
      variant: v.variant,
      threads: v.threads,
      ...(v.reason ? { variantReason: v.reason } : {}),
      ...(v.workers !== undefined ? { workers: v.workers, workerTasks: v.workerTasks } : {}),
    },
  };
}
