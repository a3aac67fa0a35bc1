/**
 * The OTLM model file: a NumPy `.npz` archive (np.savez layout, uncompressed) with
 *
 *   W             float32 (K, K)   the learned map, A = Φ W + b
 *   b             float32 (K,)     the fixed bias (zeros when the model has none)
 *   target_prior  float64 (K,)     μ, sums to 1
 *   meta          uint8   (n,)     UTF-8 JSON: { format: "otlm-model", version: 1, library, k,
 *                                  trainedSteps, options: { hyper-parameters } }
 *
 * Python:  z = np.load(path); W, b, mu = z["W"], z["b"], z["target_prior"]
 *          meta = json.loads(z["meta"].tobytes().decode("utf-8"))
 *          corrected_logits = phi @ W + b   # then the OT correction with cost -log_softmax
 */
import * as fs from 'node:fs';
import { badInput, IoError } from '../io/errors.js';
import { readNpzAll, encodeNpz } from '../io/npz.js';
import { npyToFloat32, npyToFloat64, type NpyArray } from '../io/npy.js';
import { writeFileAtomic } from '../io/atomic.js';

import { MODEL_FORMAT, MODEL_VERSION } from './model-format.js';

export { MODEL_FORMAT, MODEL_VERSION };

export interface ModelMeta {
  format: typeof MODEL_FORMAT;
  version: number;
  library: string;
  k: number;
  trainedSteps: number;
  options: Record<string, unknown>;
}

export interface ModelArrays {
  w: Float32Array;
  b: Float32Array;
  targetPrior: Float64Array;
  meta: ModelMeta;
}

export function encodeModel(m: ModelArrays): Uint8Array {
  const k = m.meta.k;
  return encodeNpz(
    {
      W: { data: m.w, shape: [k, k] },
      b: { data: m.b, shape: [k] },
      target_prior: { data: m.targetPrior, shape: [k] },
      meta: new TextEncoder().encode(JSON.stringify(m.meta)),
    },
  );
}

/** Writes the model atomically: a failed write leaves no file (and never a half-written one). */
export function writeModel(file: string, m: ModelArrays, force: boolean): void {
  writeFileAtomic(file, encodeModel(m), { force });
}

function need(arrays: Map<string, NpyArray>, file: string, name: string): NpyArray {
  const a = arrays.get(name);
  if (!a) throw badInput(file, `not an OTLM model: no array '${name}' (it has: ${[...arrays.keys()].join(', ') || 'none'})`);
  return a;
}

/** Reads and validates a model file; every problem is an IoError naming the file and what is wrong. */
export function readModel(file: string): ModelArrays {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new IoError(code === 'ENOENT' ? 'not-found' : 'io', file, `${file}: cannot read the model file: ${(e as Error).message}`, { cause: e });
  }
  const arrays = readNpzAll(bytes, file);
  const metaA = need(arrays, file, 'meta');
  if (metaA.kind !== 'u' || metaA.itemSize !== 1 || metaA.shape.length !== 1)
    throw badInput(file, `'meta' must be a 1-D uint8 array of UTF-8 JSON, got ${metaA.descr} of shape (${metaA.shape.join(', ')})`);
  let meta: ModelMeta;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(metaA.data));
  } catch (e) {
    throw badInput(file, `'meta' is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof meta !== 'object' || meta === null || meta.format !== MODEL_FORMAT)
    throw badInput(file, `not an OTLM model: meta.format is ${JSON.stringify((meta as { format?: unknown })?.format)}, expected "${MODEL_FORMAT}"`);
  if (meta.version !== MODEL_VERSION)
    throw badInput(file, `unsupported OTLM model version ${JSON.stringify(meta.version)}; this library reads version ${MODEL_VERSION}`);
  if (typeof meta.options !== 'object' || meta.options === null) throw badInput(file, `meta.options must be an object`);

  const wA = need(arrays, file, 'W');
  if (wA.kind !== 'f' || wA.shape.length !== 2 || wA.shape[0] !== wA.shape[1] || wA.shape[0] < 1)
    throw badInput(file, `W must be a square float matrix (K, K), got ${wA.descr} of shape (${wA.shape.join(', ')})`);
  const k = wA.shape[0];
  if (meta.k !== k) throw badInput(file, `meta.k = ${JSON.stringify(meta.k)} but W is ${k}×${k}`);
  const bA = need(arrays, file, 'b');
  if (bA.kind !== 'f' || bA.shape.length !== 1 || bA.shape[0] !== k)
    throw badInput(file, `b must be a float vector of shape (${k},) to match W, got ${bA.descr} of shape (${bA.shape.join(', ')})`);
  const pA = need(arrays, file, 'target_prior');
  if (pA.kind !== 'f' || pA.shape.length !== 1 || pA.shape[0] !== k)
    throw badInput(file, `target_prior must be a float vector of shape (${k},) to match W, got ${pA.descr} of shape (${pA.shape.join(', ')})`);

  const w = npyToFloat32(wA);
  const b = npyToFloat32(bA);
  const targetPrior = npyToFloat64(pA);
  for (let q = 0; q < w.length; q++)
    if (!Number.isFinite(w[q])) throw badInput(file, `W[${Math.floor(q / k)}, ${q % k}] is not finite (${w[q]})`);
  for (let j = 0; j < k; j++) if (!Number.isFinite(b[j])) throw badInput(file, `b[${j}] is not finite (${b[j]})`);
  let s = 0;
  for (let j = 0; j < k; j++) {
    if (!(targetPrior[j] > 0) || !Number.isFinite(targetPrior[j])) throw badInput(file, `target_prior[${j}] must be finite and > 0, got ${targetPrior[j]}`);
    s += targetPrior[j];
  }
  if (Math.abs(s - 1) > 1e-6) throw badInput(file, `target_prior must sum to 1, sums to ${s}`);
  return { w, b, targetPrior, meta };
}
