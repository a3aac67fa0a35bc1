import type { Backend } from '../api/types.js';
import type { NativeBackendName, NativeBinding } from './binding.js';
import { loadNative, NativeLoadError } from './loader.js';
import { loadWasm } from './wasm-node.js';

let warned = false;

/** A one-line process warning (Node), or console.warn where there is no process (browsers); OTLM_QUIET silences it. */
function warn(message: string, code: string): void {
  if (typeof process === 'undefined' || typeof process.emitWarning !== 'function') {
    console.warn(message);
    return;
  }
  if (!process.env.OTLM_QUIET) process.emitWarning(message, { code });
}

/**
 * Resolves a public backend name to a native one. 'auto' → CUDA when usable, else the CPU:
 * silently when there is no CUDA driver (most machines; `info()` explains), with a one-time
 * process warning when a driver is there but CUDA still cannot run (a misconfiguration). An
 * explicit 'cuda' without a usable device throws with the reason.
 */
export function resolveNative(backend: Backend | undefined): { native: NativeBinding; name: NativeBackendName } {
  const want = backend ?? 'auto';
  if (want === 'wasm') return { native: loadWasm(), name: 'wasm' };
  const native = loadNative();
  if (want === 'cpu') return { native, name: 'cpu' };
  const cuda = native.info().cuda;
  if (want === 'cuda') {
    if (!cuda.usable) {
      const e = new Error(`backend 'cuda' is not available: ${cuda.reason}`);
      (e as NodeJS.ErrnoException).code = 'OTLM_ENODEVICE';
      throw e;
    }
    return { native, name: 'cuda' };
  }
  if (want === 'auto') {
    if (cuda.usable) return { native, name: 'cuda' };
    if (cuda.built && cuda.info?.driverVersion != null && !warned) {
      warned = true;
      warn(`otlm: CUDA backend not used, running on the CPU: ${cuda.reason}`, 'OTLM_CUDA_UNAVAILABLE');
    }
    return { native, name: 'cpu' };
  }
  throw new TypeError(`backend '${want}' is not a native backend`);
}

export function isBackend(v: unknown): v is Backend {
  return v === 'auto' || v === 'cpu' || v === 'cuda' || v === 'wasm' || v === 'tfjs' || v === 'reference';
}

let referenceWarned = false;

/**
 * An engine for 'auto' | 'cpu' | 'cuda' | 'wasm', or 'reference'. 'auto' without a loadable
 * addon runs on the WebAssembly engine (quietly: `info()` says why), and without that on the
 * float64 TypeScript path, which keeps every method working, slowly, with a one-time process
 * warning. `what` names the work in that warning.
 */
export function nativeOrReference(backend: Backend, what: string): ReturnType<typeof resolveNative> | 'reference' {
  if (backend === 'reference') return 'reference';
  try {
    return resolveNative(backend);
  } catch (e) {
    if (backend === 'auto' && e instanceof NativeLoadError) {
      try {
        return { native: loadWasm(), name: 'wasm' };
      } catch {
        /* no WebAssembly engine either: the reference path */
      }
      if (!referenceWarned) {
        referenceWarned = true;
        warn(`otlm: neither the native addon nor the WebAssembly engine loaded, ${what} on the (slow) float64 reference path: ${e.message}`,
          'OTLM_NATIVE_UNAVAILABLE');
      }
      return 'reference';
    }
    throw e;
  }
}
