import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { NativeBinding } from './binding.js';
import { packageRoot } from './package-root.js';
import { instantiateWasmSync, wasmBindingFromInstance } from './wasm.js';

let binding: NativeBinding | undefined;
let loadError: Error | undefined;

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
    const module = new WebAssembly.Module(readFileSync(path));
    binding = wasmBindingFromInstance(instantiateWasmSync(module));
    return binding;
  } catch (e) {
    loadError = Object.assign(new Error(`otlm: the WebAssembly engine did not load: ${(e as Error).message}`, { cause: e }), {
      code: 'OTLM_ENOWASM',
    });
    throw loadError;
  }
}

export function tryLoadWasm(): NativeBinding | undefined {
  try {
    return loadWasm();
  } catch {
    return undefined;
  }
}

export function wasmLoadError(): Error | undefined {
  return loadError;
}
