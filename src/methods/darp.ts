/**
 * DARP (Kim et al., NeurIPS 2020): the paper's other baseline, a weighted KL projection of the
 * predicted probabilities onto the target marginals. The math is in paths/reference/darp.ts; the
 * native CPU engine runs the same iteration (native/cpu/darp.cpp).
 */
import type { Backend, Matrix, MatrixInput, PriorInput } from '../api/types.js';
import { checkHyper, checkMatrix, describe, normalizePrior } from '../api/validate.js';
import { isBackend, nativeOrReference } from '../native/backend.js';
import type { NativeBinding, NativeDarpArgs, NativeDarpResult } from '../native/binding.js';
import { darpEntropyWeights, referenceDarp } from '../paths/reference/darp.js';
import { abortError, cancelFlag, checkOptions, checkSignal, checkVector } from './common.js';
import type { CorrectionResult } from './ot.js';

export interface DarpOptions {
  /** Target prior μ (counts or probabilities, entries > 0); column sums become N·μ. Default uniform. */
  targetPrior?: PriorInput;
  /**
   * Per-sample weights w_i of the KL terms: 'entropy' (default, the paper: w_i = 1/H(softmax(Φ_i)),
   * confident samples move less; H floored at 1e-12), 'uniform' (all 1: the λ = 1 OT projection), or
   * N positive numbers.
   */
  weights?: 'entropy' | 'uniform' | ArrayLike<number>;
  /** Maximum number of (row step, class step) sweeps, integer ≥ 1. Default 1000. */
  maxIter?: number;
  /** Stop when the column error ‖Xᵀ1 − Nμ‖₁ / N < tol. Default 1e-6. */
  tol?: number;
  /** Newton iterations per class and sweep (integer ≥ 1; each stops early at machine precision). Default 50. */
  newtonIter?: number;
  /** Worker threads of the native engine, 0 = all cores (default). Results are bit-identical for any count. */
  threads?: number;
  /**
   * Where to run: 'auto' (default: the native CPU engine, else the WebAssembly engine, else the
   * float64 reference path with a one-time warning), 'cpu', 'wasm', 'reference' (the float64 TypeScript path,
   * the tests' oracle). DARP has no CUDA kernel: 'cuda' runs the native CPU engine and the result's
   * `backend` says 'cpu'. 'tfjs' is refused (OTLM_ENOTSUP).
   */
  backend?: Backend;
}

export interface DarpAsyncOptions extends DarpOptions {
  /** Cancels the solve (native: checked after every sweep); the Promise then rejects with an AbortError. */
  signal?: AbortSignal;
}

const KEYS = ['targetPrior', 'weights', 'maxIter', 'tol', 'newtonIter', 'threads', 'backend'];

/** A checked DARP request. */
interface DarpRequest {
  fn: string;
  logits: Matrix;
  n: number;
  k: number;
  /** c = N·μ. */
  colMarginal: Float64Array;
  maxIter: number;
  tol: number;
  newtonIter: number;
  /** 'entropy' stays symbolic until the path that runs computes it. */
  weights: 'entropy' | 'uniform' | Float64Array;
  threads: number;
  backend: Backend;
}

function buildDarp(fn: string, input: MatrixInput, o: Partial<DarpOptions>): DarpRequest {
  const logits = checkMatrix('logits', input);
  const { rows: n, cols: k } = logits;
  const mu = o.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior(`${fn}: targetPrior`, o.targetPrior, k);
  const maxIter = o.maxIter === undefined ? 1000 : checkHyper(`${fn}: maxIter`, 'maxIter', o.maxIter);
  const tol = o.tol === undefined ? 1e-6 : checkHyper(`${fn}: tol`, 'tol', o.tol);
  const newtonIter = o.newtonIter === undefined ? 50 : checkHyper(`${fn}: newtonIter`, 'newtonIter', o.newtonIter);
  let weights: DarpRequest['weights'];
  const w = o.weights ?? 'entropy';
  if (w === 'entropy' || w === 'uniform') weights = w;
  else if (typeof w === 'string') throw new TypeError(`${fn}: weights must be 'entropy', 'uniform' or ${n} positive numbers, got '${w}'`);
  else if (typeof w !== 'object' || w === null) throw new TypeError(`${fn}: weights must be 'entropy', 'uniform' or ${n} positive numbers, got ${describe(w)}`);
  else weights = checkVector(`${fn}: weights`, w, n, true);
  const threads = o.threads === undefined ? 0 : checkHyper(`${fn}: threads`, 'threads', o.threads);
  const backend = o.backend ?? 'auto';
  if (!isBackend(backend))
    throw new TypeError(`${fn}: backend must be 'auto', 'cpu', 'cuda', 'wasm', 'tfjs' or 'reference', got ${String(backend)}`);
  if (backend === 'tfjs') {
    const e = new Error(`${fn}: backend 'tfjs' has no DARP; use 'auto', 'cpu' or 'reference'`);
    (e as NodeJS.ErrnoException).code = 'OTLM_ENOTSUP';
    throw e;
  }
  return { fn, logits, n, k, colMarginal: mu.map((v) => v * n), maxIter, tol, newtonIter, weights, threads, backend };
}

/**
 * The engine for 'auto' | 'cpu' | 'cuda' | 'wasm' (DARP runs on the CPU engine, native or
 * WebAssembly), or undefined for the reference path ('reference', or 'auto' when no engine
 * loads: a one-time warning, shared with the other methods).
 */
function pickNative(req: DarpRequest): NativeBinding | undefined {
  if (req.backend === 'reference') return undefined;
  const picked = nativeOrReference(req.backend === 'auto' || req.backend === 'wasm' ? req.backend : 'cpu', 'DARP runs');
  if (picked === 'reference') return undefined;
  const native = picked.native;
  if (typeof native.darpSync !== 'function' || typeof native.darp !== 'function') {
    if (req.backend === 'auto') return undefined;
    const e = new Error(`${req.fn}: the loaded native addon predates native DARP; rebuild it (npm run build:native) or use backend 'reference'`);
    (e as NodeJS.ErrnoException).code = 'OTLM_ENOTSUP';
    throw e;
  }
  return native;
}

function nativeArgs(req: DarpRequest, cancel?: Int32Array): NativeDarpArgs {
  const args: NativeDarpArgs = {
    logits: req.logits.data, n: req.n, k: req.k, colMarginal: req.colMarginal, weights: req.weights,
    maxIter: req.maxIter, tol: req.tol, newtonIter: req.newtonIter, threads: req.threads,
  };
  if (cancel) args.cancel = cancel;
  return args;
}

function withWarning(req: DarpRequest, out: CorrectionResult): CorrectionResult {
  if (!out.converged)
    out.warning = `${req.fn}: did not converge in ${out.iterations} iterations (maxIter): column error ${out.error.toExponential(3)} is not below tol ${req.tol}`;
  return out;
}

function fromNative(req: DarpRequest, r: NativeDarpResult): CorrectionResult {
  return withWarning(req, {
    probabilities: { data: r.probabilities, rows: req.n, cols: req.k },
    predictions: r.predictions,
    classOffsets: r.nu.map((v) => -v),
    f: r.logRowScale,
    iterations: r.iterations,
    error: r.error,
    converged: r.converged,
    mode: ['log'],
    backend: r.backend ?? 'cpu',
    trace: r.trace,
    seconds: r.seconds,
  });
}

function runReference(req: DarpRequest): CorrectionResult {
  const { n, k } = req;
  const t0 = performance.now();
  const weights =
    req.weights === 'entropy' ? darpEntropyWeights(req.logits.data, n, k) : req.weights === 'uniform' ? new Float64Array(n).fill(1) : req.weights;
  const r = referenceDarp({ logits: req.logits.data, n, k, colMarginal: req.colMarginal, weights, maxIter: req.maxIter, tol: req.tol, newtonIter: req.newtonIter });
  const probs = Float32Array.from(r.x);
  const pred = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (r.x[i * k + j] > r.x[i * k + best]) best = j;
    pred[i] = best;
  }
  return withWarning(req, {
    probabilities: { data: probs, rows: n, cols: k },
    predictions: pred,
    classOffsets: r.nu.map((v) => -v),
    f: r.logRowScale,
    iterations: r.iterations,
    error: r.error,
    converged: r.converged,
    mode: ['log'],
    backend: 'reference',
    trace: r.trace,
    seconds: (performance.now() - t0) / 1000,
  });
}

/**
 * DARP refinement:
 *
 *   min_X Σ_i w_i KL(X_i ‖ p_i)   s.t.  Σ_k X_ik = 1,  Σ_i X_ik = N μ_k,   p_i = softmax(Φ_i)
 *
 * solved by block-coordinate ascent on the dual (row normalisation, then one Newton solve per class
 * for its multiplier ν_k), as in Kim et al.; the solution has the form X_ik ∝ p_ik exp(−ν_k / w_i).
 * Returns the same shape as `otCorrect`. A solve that reaches maxIter has converged: false and a warning.
 *
 * Backends: the native CPU engine ('auto', 'cpu'; multithreaded over rows and classes, float64,
 * bit-identical for any thread count) runs the same iteration as the float64 TypeScript reference
 * ('reference') and agrees with it to ~1e-13: same predictions, same iteration counts. DARP has no
 * CUDA kernel, so 'cuda' runs the native CPU engine and reports backend 'cpu'; 'tfjs' is refused.
 * Where the reference would carry on with a non-finite column error (weights so extreme that ν/w
 * overflows), the native engine throws (code OTLM_ENONFINITE).
 */
export function darpSync(logits: MatrixInput, opts?: DarpOptions): CorrectionResult {
  const fn = 'darp';
  const o = checkOptions<DarpOptions>(fn, opts, KEYS);
  const req = buildDarp(fn, logits, o);
  const native = pickNative(req);
  if (!native) return runReference(req);
  return fromNative(req, (native.darpSync as NonNullable<NativeBinding['darpSync']>)(nativeArgs(req)));
}

/**
 * The Promise form of {@link darpSync}: the native engine runs on the libuv pool (the input is
 * snapshotted at the call, docs/architecture.md "Memory contract"); `signal` cancels it. The
 * reference path runs on the calling thread.
 */
export async function darp(logits: MatrixInput, opts?: DarpAsyncOptions): Promise<CorrectionResult> {
  const fn = 'darp';
  const o = checkOptions<DarpAsyncOptions>(fn, opts, [...KEYS, 'signal']);
  const signal = checkSignal(fn, o.signal);
  const req = buildDarp(fn, logits, o);
  if (signal?.aborted) throw abortError(fn, signal);
  const native = pickNative(req);
  if (!native) return runReference(req);
  const cancel = cancelFlag(); // read by the engine in place
  const onAbort = () => Atomics.store(cancel, 0, 1);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return fromNative(req, await (native.darp as NonNullable<NativeBinding['darp']>)(nativeArgs(req, cancel)));
  } catch (e) {
    if (signal && (e as NodeJS.ErrnoException)?.code === 'OTLM_EABORTED') throw abortError(fn, signal, e);
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
