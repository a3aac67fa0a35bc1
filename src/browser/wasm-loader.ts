// The browser build's stand-in for src/native/wasm-node.ts: the engine is the one init() compiled
// (src/browser/index.ts); before that, backend 'wasm' throws and 'auto' runs the reference path.
import type { WasmBinding } from '../native/wasm.js';

let binding: WasmBinding | undefined;

export function setWasm(b: WasmBinding): void {
  binding = b;
}

export function loadWasm(): WasmBinding {
  if (binding) return binding;
  throw Object.assign(new Error("otlm: the WebAssembly engine is not initialised: `await init()` first"), { code: 'OTLM_ENOWASM' });
}

export function tryLoadWasm(): WasmBinding | undefined {
  return binding;
}
