// The browser build's stand-in for src/native/loader.ts (scripts/build-browser.mjs swaps it in):
// there is no native addon in a browser, so 'auto' goes on to the WebAssembly engine.
import type { NativeBinding } from '../native/binding.js';
import { NativeLoadError } from '../native/load-error.js';

export { NativeLoadError };

const error = new NativeLoadError('otlm: no native addon in a browser; the WebAssembly engine runs (call init() first)', []);

export function loadNative(): NativeBinding {
  throw error;
}
export function tryLoadNative(): NativeBinding | undefined {
  return undefined;
}
export function nativeLoadError(): Error | undefined {
  return error;
}
export function nativeLoadedFrom(): undefined {
  return undefined;
}
