/**
 * otlm in the browser (`import … from 'otlm/browser'`, or 'otlm' under a bundler's `browser`
 * condition): the same typed API as the Node entry minus the file-system parts (readMatrix,
 * OTLM.save/load, the report, the CLI) and the tfjs path, running on the WebAssembly engine
 * (lib/wasm/otlm.wasm). Call `await init()` once first; until then 'auto' runs the float64
 * reference path. Built by scripts/build-browser.mjs into lib/otlm.browser.js.
 */
import type { NativeBinding } from '../native/binding.js';
import { instantiateWasm, wasmBindingFromInstance } from '../native/wasm.js';
import { setWasm, tryLoadWasm } from './wasm-loader.js';

export * from '../core.js';

/** Where the engine's bytes come from: a URL, a fetch Response, the bytes, or a compiled module. */
export type WasmSource = string | URL | Response | ArrayBuffer | ArrayBufferView | WebAssembly.Module;

export interface BrowserInfo {
  /** What `backend: 'auto'` runs on: 'wasm' after init(), else 'reference'. */
  active: 'wasm' | 'reference';
  backends: Array<'wasm' | 'reference'>;
  wasm: { available: boolean; simd?: string; gemm?: string; threads?: number; reason?: string };
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

/**
 * Loads the WebAssembly engine (once; later calls return the first call's result). By default
 * the file beside this module (lib/wasm/otlm.wasm; bundlers that understand
 * `new URL(…, import.meta.url)` copy it); pass `wasm` to serve it from elsewhere.
 */
export function init(opts: { wasm?: WasmSource } = {}): Promise<BrowserInfo> {
  pending ??= (async () => {
    const module = await compile(opts.wasm ?? new URL('./wasm/otlm.wasm', import.meta.url));
    setWasm(wasmBindingFromInstance(await instantiateWasm(module)));
    return info();
  })();
  pending.catch(() => {
    pending = undefined; // a failed load may be retried (e.g. with another URL)
  });
  return pending;
}

/** What runs here: the WebAssembly engine once init() has loaded it, else the reference path. */
export function info(): BrowserInfo {
  const b: NativeBinding | undefined = tryLoadWasm();
  if (!b) return { active: 'reference', backends: ['reference'], wasm: { available: false, reason: 'init() has not loaded it' } };
  const cpu = b.info().cpu;
  return { active: 'wasm', backends: ['wasm', 'reference'], wasm: { available: true, simd: cpu.simd, gemm: cpu.gemm, threads: cpu.threads } };
}
