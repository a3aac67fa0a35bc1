/**
 * Log-domain Sinkhorn and the OT correction written with TensorFlow.js ops
 * (a plain `logSumExp` loop), run on the tfjs `wasm` or `cpu` backend. This is
 * the path a user would write by hand in tfjs; it exists as `backend: 'tfjs'`
 * and as the benchmark's peer. Float32 throughout (tfjs has no float64).
 *
 * Conventions are the engine's (native/core/include/otlm/otlm.h):
 *   Y_ij = exp((f_i + g_j − M_ij)/λ),
 *   f_i = λ log r_i − λ LSE_j((g_j − M_ij)/λ),   g_j = λ log c_j − λ LSE_i((f_i − M_ij)/λ),
 * one iteration = an f update then (unless it is the last) a g update; the loop
 * stops right after an f update, so the rows of the plan are exact, and
 * `error` = Σ_j |(Yᵀ1)_j − c_j| / Σ_i r_i is the column error of that plan.
 */
import type { Matrix } from '../../api/types.js';
import { checkMatrix, checkNumber, describe, normalizePrior } from '../../api/validate.js';
import type { NativeSinkhornResult } from '../../native/binding.js';
import { withTf, type TfBackendName } from './load.js';

export interface TfjsSinkhornOptions {
  /** 'cost': x is the cost M; 'logits': x is Φ and M = −log_softmax(Φ) row-wise (paper Alg. 1). Default 'cost'. */
  inputKind?: 'cost' | 'logits';
  /** Entropic regularisation λ > 0. Default 1 (the paper uses λ ∈ [0.005, 2]). */
  lambda?: number;
  /** Iteration cap (≥ 1). Default 1000. */
  maxIter?: number;
  /** Stop when `error` < tol (≥ 0; 0 runs all maxIter). Default 1e-3 (the paper's Δ). */
  tol?: number;
  /** Check convergence every this many iterations (≥ 1). Default 1. */
  checkEvery?: number;
  /** Column marginal c (length K, entries > 0, Σc = Σr). Default: uniform, Σr/K each. */
  colMarginal?: ArrayLike<number>;
  /** Row marginal r (length N, entries > 0). Default: all ones. */
  rowMarginal?: ArrayLike<number>;
  /** Warm start: initial g (length K); f is recomputed from it first. Default 0. */
  g0?: ArrayLike<number>;
  /** Return the plan Y: true for a new Float32Array, or a Float32Array(N·K) to fill. Default false. */
  plan?: boolean | Float32Array;
  /** Return argmax_j Y_ij per row (first maximum on ties). Default false. */
  predictions?: boolean;
  /** Keep at most this many convergence-check errors in `trace`. Default 0. */
  traceCap?: number;
  /** TensorFlow.js backend: 'wasm' (SIMD; single-threaded under Node) or 'cpu' (plain JS). Default 'wasm'. */
  tfBackend?: TfBackendName;
  /** Cancels the solve between iterations (it rejects with the signal's reason, or an AbortError). */
  signal?: AbortSignal;
}

/** The native result's fields (f, g, iterations, error, converged, trace, plan, predictions…); mode is always ['log']. */
export interface TfjsSinkhornResult extends Omit<NativeSinkhornResult, 'backend'> {
  backend: 'tfjs';
  tfBackend: TfBackendName;
}

function vector(name: string, v: unknown, len: number): Float64Array {
  if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<number>).length !== 'number')
    throw new TypeError(`${name} must be an array of ${len} numbers, got ${describe(v)}`);
  const a = v as ArrayLike<number>;
  if (a.length !== len) throw new RangeError(`${name} must have length ${len}, got ${a.length}`);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const x = Number(a[i]);
    if (!Number.isFinite(x)) throw new RangeError(`${name}[${i}] must be finite, got ${a[i]}`);
    out[i] = x;
  }
  return out;
}

function positiveVector(name: string, v: unknown, len: number): Float64Array {
  const out = vector(name, v, len);
  for (let i = 0; i < len; i++) if (!(out[i] > 0)) throw new RangeError(`${name}[${i}] must be > 0, got ${out[i]}`);
  return out;
}

const f32 = (a: Float64Array): Float32Array => Float32Array.from(a);

type TF = typeof import('@tensorflow/tfjs');
type Tensor = import('@tensorflow/tfjs').Tensor;

/**
 * One Sinkhorn iteration's pieces in scaled potentials (u = f/λ, v = g/λ, S = −M/λ), shared by
 * this solver and the differentiable OTLM forward (./otlm.ts):
 * the row update u = log r − LSE_j(S + v), and LSE_i(S + u), which gives both the column sums
 * exp(v + LSE_i(S + u)) and the next v = log c − LSE_i(S + u).
 */
export function rowUpdate(tf: TF, S: Tensor, v: Tensor, logr?: Tensor): Tensor {
  const l = tf.logSumExp(tf.add(S, v), 1, true);
  return logr ? tf.sub(logr, l) : tf.neg(l);
}
export function columnLse(tf: TF, S: Tensor, u: Tensor): Tensor {
  return tf.logSumExp(tf.add(S, u), 0, true);
}
/** Σ_j |colsum_j − c_j| (a scalar tensor), the column error before dividing by the mass. */
export function columnError(tf: TF, v: Tensor, lseCol: Tensor, cT: Tensor): Tensor {
  return tf.sum(tf.abs(tf.sub(tf.exp(tf.add(v, lseCol)), cT)));
}

/**
 * Log-domain Sinkhorn with TensorFlow.js (see the module comment for the math).
 * Asynchronous only (tfjs is loaded lazily). Same result fields as the native solver.
 */
export async function tfjsSinkhorn(x: Matrix, opts: TfjsSinkhornOptions = {}): Promise<TfjsSinkhornResult> {
  checkMatrix('x', x);
  const n = x.rows;
  const k = x.cols;
  const inputKind = opts.inputKind ?? 'cost';
  if (inputKind !== 'cost' && inputKind !== 'logits')
    throw new TypeError(`inputKind must be 'cost' or 'logits', got ${String(inputKind)}`);
  const lambda = checkNumber('lambda', opts.lambda ?? 1, { min: 0, exclusiveMin: true });
  const maxIter = checkNumber('maxIter', opts.maxIter ?? 1000, { min: 1, integer: true });
  const tol = checkNumber('tol', opts.tol ?? 1e-3, { min: 0 });
  const checkEvery = checkNumber('checkEvery', opts.checkEvery ?? 1, { min: 1, integer: true });
  const traceCap = checkNumber('traceCap', opts.traceCap ?? 0, { min: 0, integer: true });
  const r = opts.rowMarginal === undefined ? undefined : positiveVector('rowMarginal', opts.rowMarginal, n);
  const rowMass = r ? r.reduce((s, v) => s + v, 0) : n;
  let c: Float64Array;
  if (opts.colMarginal === undefined) c = new Float64Array(k).fill(rowMass / k);
  else {
    c = positiveVector('colMarginal', opts.colMarginal, k);
    const colMass = c.reduce((s, v) => s + v, 0);
    if (Math.abs(colMass - rowMass) > 1e-6 * rowMass)
      throw new RangeError(`colMarginal must have the same mass as rowMarginal (rows sum to ${rowMass}, columns to ${colMass})`);
  }
  const g0 = opts.g0 === undefined ? undefined : vector('g0', opts.g0, k);
  let planOut: Float32Array | undefined;
  if (opts.plan instanceof Float32Array) {
    if (opts.plan.length !== n * k) throw new RangeError(`plan must have length N*K = ${n * k}, got ${opts.plan.length}`);
    planOut = opts.plan;
  } else if (opts.plan !== undefined && typeof opts.plan !== 'boolean') {
    throw new TypeError(`plan must be a boolean or a Float32Array(N*K), got ${describe(opts.plan)}`);
  }
  const wantPlan = planOut !== undefined || opts.plan === true;
  const tfBackend = opts.tfBackend ?? 'wasm';
  const signal = opts.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError(`signal must be an AbortSignal, got ${describe(signal)}`);
  const stopIfAborted = () => {
    if (signal?.aborted) throw signal.reason ?? new DOMException('tfjsSinkhorn: the operation was aborted', 'AbortError');
  };
  stopIfAborted();

  return withTf(tfBackend, async (tf) => {
    const t0 = performance.now();
    const invLam = 1 / lambda;
    // S = −M/λ; with logits, −M = log_softmax(Φ).
    const S = tf.tidy(() => {
      const X = tf.tensor2d(x.data, [n, k]);
      return inputKind === 'logits' ? tf.mul(tf.logSoftmax(X), invLam) : tf.mul(X, -invLam);
    });
    const logr = tf.tensor2d(r ? f32(r.map(Math.log)) : new Float32Array(n), [n, 1]);
    const logc = tf.tensor2d(f32(c.map(Math.log)), [1, k]);
    const cT = tf.tensor2d(f32(c), [1, k]);
    // Scaled potentials u = f/λ, v = g/λ.
    let v = tf.tensor2d(g0 ? f32(g0.map((g) => g * invLam)) : new Float32Array(k), [1, k]);
    let u: import('@tensorflow/tfjs').Tensor2D | undefined;
    const trace: number[] = [];
    let iterations = 0;
    let error = Number.NaN;
    let converged = false;
    try {
      for (let t = 1; t <= maxIter; t++) {
        if (signal) {
          // Each iteration is synchronous tfjs work: yield so an abort can be seen.
          await new Promise<void>((r) => setImmediate(r));
          stopIfAborted();
        }
        u?.dispose();
        u = tf.tidy(() => rowUpdate(tf, S, v, logr) as import('@tensorflow/tfjs').Tensor2D);
        iterations = t;
        const check = t % checkEvery === 0 || t === maxIter;
        const last = t === maxIter;
        // LSE_i(S_ij + u_i) serves both the column sums (error) and the next g update.
        const lseCol = tf.tidy(() => columnLse(tf, S, u!));
        try {
          if (check) {
            const errT = tf.tidy(() => columnError(tf, v, lseCol, cT));
            error = (await errT.data())[0] / rowMass;
            errT.dispose();
            if (!Number.isFinite(error))
              throw new RangeError(`tfjs sinkhorn: the column error became non-finite at iteration ${t} (lambda ${lambda} too small for float32?)`);
            if (trace.length < traceCap) trace.push(error);
            if (error < tol) {
              converged = true;
              break;
            }
          }
          if (last) break;
          const vNew = tf.sub(logc, lseCol) as import('@tensorflow/tfjs').Tensor2D;
          v.dispose();
          v = vNew;
        } finally {
          lseCol.dispose();
        }
      }
      const uu = u!;
      const f = Float64Array.from(await uu.data(), (a) => a * lambda);
      const g = Float64Array.from(await v.data(), (a) => a * lambda);
      if (!f.every(Number.isFinite) || !g.every(Number.isFinite))
        throw new RangeError(`tfjs sinkhorn: non-finite potentials after ${iterations} iterations (lambda ${lambda} too small for float32?)`);
      const out: TfjsSinkhornResult = {
        f, g, iterations, error, converged, mode: ['log'], logFallbacks: 0,
        trace: Float64Array.from(trace), seconds: 0, backend: 'tfjs', tfBackend,
      };
      if (wantPlan) {
        const Y = tf.tidy(() => tf.exp(tf.add(tf.add(S, uu), v)));
        const data = (await Y.data()) as Float32Array;
        Y.dispose();
        if (planOut) planOut.set(data);
        out.plan = planOut ?? data;
      }
      if (opts.predictions) {
        // f_i is constant along row i, so argmax_j Y_ij = argmax_j (S_ij + v_j).
        const P = tf.tidy(() => tf.argMax(tf.add(S, v), 1));
        out.predictions = Int32Array.from(await P.data());
        P.dispose();
      }
      out.seconds = (performance.now() - t0) / 1000;
      return out;
    } finally {
      tf.dispose([S, logr, logc, cT, v]);
      u?.dispose();
    }
  });
}

export interface TfjsOtCorrectOptions {
  /** λ > 0. Default 1 (λ = 1 makes the objective a KL projection). */
  lambda?: number;
  /** Target class prior μ on the evaluation set (counts or probabilities, every entry > 0). Default uniform. */
  targetPrior?: ArrayLike<number>;
  /** Default 1000. */
  maxIter?: number;
  /** Default 1e-3 (the paper's Δ). */
  tol?: number;
  /** Default 1. */
  checkEvery?: number;
  /** Return the corrected probabilities (the plan Y, rows sum to 1). Default true. */
  plan?: boolean | Float32Array;
  tfBackend?: TfBackendName;
}

/**
 * The paper's OT post-hoc correction (Algorithm 1) with tfjs: cost M = −log softmax(Φ),
 * row marginal 1, column marginal N·μ; returns the plan (corrected probabilities,
 * rows sum to 1), the predictions argmax_j Y_ij and the potentials.
 */
export async function tfjsOtCorrect(logits: Matrix, opts: TfjsOtCorrectOptions = {}): Promise<TfjsSinkhornResult> {
  checkMatrix('logits', logits);
  const k = logits.cols;
  const mu = opts.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior('targetPrior', opts.targetPrior, k);
  return tfjsSinkhorn(logits, {
    inputKind: 'logits',
    lambda: opts.lambda ?? 1,
    maxIter: opts.maxIter ?? 1000,
    tol: opts.tol ?? 1e-3,
    checkEvery: opts.checkEvery ?? 1,
    colMarginal: mu.map((m) => m * logits.rows),
    plan: opts.plan ?? true,
    predictions: true,
    tfBackend: opts.tfBackend,
  });
}
