/** Argument checks for the public API: every error names the argument and what was expected. */
import type { Matrix } from './types.js';

export function isMatrix(m: unknown): m is Matrix {
  return typeof m === 'object' && m !== null && 'data' in m && 'rows' in m && 'cols' in m;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new RangeError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/**
 * Checks a Matrix: Float32Array data of length rows*cols, every value finite
 * (unless allowNonFinite). Returns it unchanged (no copy).
 */
/**
 * An onnxruntime Tensor (`{ data, dims, type }`) or a tfjs tensor (`{ shape, dtype, dataSync }`) as a
 * Matrix; anything else unchanged (checkMatrix says what is wrong with it).
 */
function fromTensor(name: string, m: unknown): unknown {
  if (typeof m !== 'object' || m === null || isMatrix(m)) return m;
  const t = m as Record<string, unknown>;
  const two = (dims: unknown, what: string): [number, number] => {
    const d = Array.isArray(dims) ? dims.map(Number) : [];
    if (d.length !== 2) throw new RangeError(`${name} must be a 2-D tensor [N, K], got ${what} ${JSON.stringify(dims)}`);
    return [d[0]!, d[1]!];
  };
  if ('dims' in t && 'type' in t && 'data' in t) {  // onnxruntime Tensor
    if (t.type !== 'float32') throw new TypeError(`${name}: an onnxruntime Tensor of type 'float32' is needed, got '${String(t.type)}'`);
    const [rows, cols] = two(t.dims, 'dims');
    return { data: t.data, rows, cols };
  }
  if ('shape' in t && 'dtype' in t && typeof t.dataSync === 'function') {  // tfjs Tensor
    if (t.dtype !== 'float32') throw new TypeError(`${name}: a tfjs tensor of dtype 'float32' is needed, got '${String(t.dtype)}'`);
    const [rows, cols] = two(t.shape, 'shape');
    let data: unknown;
    try {
      data = (t.dataSync as () => unknown).call(t);
    } catch (e) {
      throw new TypeError(`${name}: cannot read the tfjs tensor (disposed?): ${(e as Error).message}`, { cause: e });
    }
    return { data, rows, cols };
  }
  return m;
}

/** Checks a matrix argument and returns it as a Matrix (tensors converted, see MatrixInput). */
export function checkMatrix(name: string, input: unknown, opts: { cols?: number; rows?: number; allowNonFinite?: boolean } = {}): Matrix {
  const m = fromTensor(name, input);
  if (!isMatrix(m))
    throw new TypeError(`${name} must be a matrix { data: Float32Array, rows, cols }, an onnxruntime Tensor or a tfjs 2-D tensor, got ${describe(m)}`);
  if (!(m.data instanceof Float32Array))
    throw new TypeError(`${name}.data must be a Float32Array, got ${describe(m.data)}`);
  const rows = positiveInt(`${name}.rows`, m.rows);
  const cols = positiveInt(`${name}.cols`, m.cols);
  if (m.data.length !== rows * cols)
    throw new RangeError(`${name}.data has length ${m.data.length}, expected rows*cols = ${rows}*${cols} = ${rows * cols}`);
  if (opts.cols !== undefined && cols !== opts.cols)
    throw new RangeError(`${name} must have ${opts.cols} columns (classes), got ${cols}`);
  if (opts.rows !== undefined && rows !== opts.rows)
    throw new RangeError(`${name} must have ${opts.rows} rows, got ${rows}`);
  if (!opts.allowNonFinite) {
    const d = m.data;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i])) {
        throw new RangeError(
          `${name} has a non-finite value (${d[i]}) at row ${Math.floor(i / cols)}, column ${i % cols}`,
        );
      }
    }
  }
  return m;
}

/**
 * A class prior from counts or probabilities: length k, finite, every entry > 0
 * (log π and log μ must exist), normalised to sum to 1. Returned as float64.
 */
export function normalizePrior(name: string, v: unknown, k: number, opts: { allowZero?: boolean } = {}): Float64Array {
  if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<number>).length !== 'number')
    throw new TypeError(`${name} must be an array of ${k} numbers (counts or probabilities), got ${describe(v)}`);
  const a = v as ArrayLike<number>;
  if (a.length !== k) throw new RangeError(`${name} must have length ${k} (one entry per class), got ${a.length}`);
  const out = new Float64Array(k);
  let sum = 0;
  for (let j = 0; j < k; j++) {
    const x = Number(a[j]);
    if (!Number.isFinite(x)) throw new RangeError(`${name}[${j}] must be finite, got ${a[j]}`);
    if (x < 0 || (!opts.allowZero && x === 0))
      throw new RangeError(`${name}[${j}] must be ${opts.allowZero ? '>= 0' : '> 0'}, got ${x}`);
    out[j] = x;
    sum += x;
  }
  if (!(sum > 0)) throw new RangeError(`${name} must have a positive sum, got ${sum}`);
  for (let j = 0; j < k; j++) out[j] /= sum;
  return out;
}

/** Integer class labels in [0, k), one per row (k undefined: any int32 >= 0; the caller checks K). */
export function checkLabels(name: string, v: unknown, n: number, k?: number): Int32Array {
  if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<number>).length !== 'number')
    throw new TypeError(`${name} must be an array of integer labels, got ${describe(v)}`);
  const a = v as ArrayLike<number>;
  if (a.length !== n) throw new RangeError(`${name} has ${a.length} entries, expected ${n} (one per row)`);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    if (!Number.isInteger(x) || x < 0 || x >= (k ?? 2 ** 31))
      throw new RangeError(`${name}[${i}] must be an integer class index in [0, ${k ?? 2 ** 31}), got ${x}`);
    out[i] = x;
  }
  return out;
}

/** Bounds of a number: finite always; `integer`, `min`/`max` (inclusive unless `exclusiveMin`/`exclusiveMax`). */
export interface NumberRange { min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean; integer?: boolean }

export function checkNumber(name: string, v: unknown, opts: NumberRange = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`${name} must be a finite number, got ${String(v)}`);
  if (opts.integer && !Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  const low = opts.min !== undefined && (opts.exclusiveMin ? !(v > opts.min) : !(v >= opts.min));
  const high = opts.max !== undefined && (opts.exclusiveMax ? !(v < opts.max) : !(v <= opts.max));
  if (!low && !high) return v;
  // Both bounds: name the interval, e.g. "in [1, 2)"; one: the comparison, e.g. ">= 0".
  if (opts.min !== undefined && opts.max !== undefined)
    throw new RangeError(`${name} must be in ${opts.exclusiveMin ? '(' : '['}${opts.min}, ${opts.max}${opts.exclusiveMax ? ')' : ']'}, got ${v}`);
  if (low) throw new RangeError(`${name} must be ${opts.exclusiveMin ? '>' : '>='} ${opts.min}, got ${v}`);
  throw new RangeError(`${name} must be ${opts.exclusiveMax ? '<' : '<='} ${opts.max}, got ${v}`);
}

const INT32_MAX = 2 ** 31 - 1;
/** OTLM_MAX_THREADS (native/core/include/otlm/otlm.h): the most worker threads any native entry accepts. */
export const MAX_THREADS = 4096;

/**
 * The numeric hyper-parameters, each checked with this one range wherever it enters: the method
 * and OTLM options, model files (OTLM.load) and the CLI flags. Every range equals or is stricter
 * than the native check (native/core/src/validate.cpp, native/addon: counts are int32, threads
 * ≤ OTLM_MAX_THREADS), so nothing accepted here is refused by the engine later.
 */
export const HYPER = {
  lambda: { min: 0, exclusiveMin: true },
  tol: { min: 0 },
  maxIter: { integer: true, min: 1, max: INT32_MAX },
  checkEvery: { integer: true, min: 1, max: INT32_MAX },
  threads: { integer: true, min: 0, max: MAX_THREADS }, // 0 = all cores
  epsScaling: { min: 0, max: 1, exclusiveMax: true }, // 0 = off
  overrelax: { min: 1, max: 2, exclusiveMax: true },
  newtonIter: { integer: true, min: 1, max: INT32_MAX },
  tau: { min: 0 }, // τ < 0 would push predictions towards the head classes
  sinkhornIters: { integer: true, min: 1, max: INT32_MAX },
  lr: { min: 0, exclusiveMin: true },
  weightDecay: { min: 0 },
  momentum: { min: 0, max: 1, exclusiveMax: true },
  beta1: { min: 0, max: 1, exclusiveMax: true },
  beta2: { min: 0, max: 1, exclusiveMax: true },
  eps: { min: 0, exclusiveMin: true },
  batchSize: { integer: true, min: 1, max: INT32_MAX }, // rows travel as Int32Array
  iterations: { integer: true, min: 1, max: INT32_MAX },
  epochs: { integer: true, min: 1, max: INT32_MAX },
  seed: { integer: true, min: 0, max: 2 ** 32 - 1 }, // uint32
  patience: { integer: true, min: 1, max: INT32_MAX },
  minDelta: { min: 0 },
  scheduleEvery: { integer: true, min: 1, max: INT32_MAX },
  scheduleGamma: { min: 0, max: 1, exclusiveMin: true }, // a decay: lr·γ^s stays finite
} as const satisfies Record<string, NumberRange>;

export type HyperName = keyof typeof HYPER;

/** Checks hyper-parameter `key`, reported under `name` (e.g. 'options.threads', '--max-iter'). */
export function checkHyper(name: string, key: HyperName, v: unknown): number {
  return checkNumber(name, v, HYPER[key]);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as ArrayLike<number>).length})`;
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}
