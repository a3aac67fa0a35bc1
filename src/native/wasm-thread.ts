/**
 * The worker thread behind the WebAssembly engine's async calls under Node (src/native/wasm-node.ts):
 * its own instance of lib/wasm/otlm.wasm runs each request's synchronous twin and posts the result
 * back, its arrays transferred. Requests: { id, op: 'sinkhorn' | 'lossGrad' | 'gemm' | 'darp', args }.
 */
import { parentPort } from 'node:worker_threads';

import type { NativeBinding } from './binding.js';
import { loadWasm } from './wasm-node.js';

type Op = 'sinkhorn' | 'lossGrad' | 'gemm' | 'darp';
const port = parentPort!;
let engine: NativeBinding | undefined;

port.on('message', (m: { id: number; op: Op; args: never }) => {
  try {
    engine ??= loadWasm();
    const fn = engine[`${m.op}Sync`] as ((a: never) => unknown) | undefined;
    if (!fn) throw new Error(`otlm wasm worker: no operation ${m.op}`);
    const value = fn(m.args);
    const transfer: ArrayBuffer[] = [];
    const add = (v: unknown) => {
      if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer && !transfer.includes(v.buffer)) transfer.push(v.buffer);
    };
    if (ArrayBuffer.isView(value)) add(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(add);
    port.postMessage({ id: m.id, ok: true, value }, transfer);
  } catch (e) {
    const err = e as Error & { code?: string };
    port.postMessage({ id: m.id, ok: false, error: { name: err.name, message: err.message, code: err.code } });
  }
});
