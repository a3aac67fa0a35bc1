/**
 * The float64 reference Sinkhorn: plain loops, written to be read. It is the oracle of the tests
 * and the `backend: 'reference'` of the public API. It implements the native driver's algorithm
 * (docs/architecture.md, "Driver and passes"; native/core/src/driver.cpp): the same ε schedule,
 * the same acceleration strategies (./acceleration.ts), the same stopping rule, so its iteration
 * counts match the native backends'. Conventions (native/core/include/otlm/otlm.h):
 *
 *   min_Y ⟨M, Y⟩ + λ Σ_ij Y_ij log Y_ij   s.t.  Y 1 = r,  Yᵀ 1 = c     (Σr = Σc)
 *   Y_ij = exp((f_i + g_j − M_ij) / λ)
 *
 *   f_i = λ log r_i − λ LSE_j((g_j − M_ij) / λ)        (makes row i of Y sum to r_i exactly)
 *   g_j = λ log c_j − λ LSE_i((f_i − M_ij) / λ)        (makes column j sum to c_j exactly)
 *
 * One iteration = an f update, then (unless the solver stops) a g update: the solver always stops
 * right after an f update, so the rows of the returned plan are exact and
 * `error` = Σ_j |Σ_i Y_ij − c_j| / Σ_i r_i is the column error of that very plan.
 * The error is checked every `checkEvery` iterations and at the last one; the solve stops when
 * error < tol (`converged`), or after `maxIter` iterations.
 *
 * Input kind 'logits' means x holds logits Φ and the cost is M_ij = −log softmax(Φ_i)_j
 * = LSE_l(Φ_il) − Φ_ij (the paper's Algorithm 1), computed here in float64.
 */

import { makeAcceleration } from './acceleration.js';

export type InputKind = 'cost' | 'logits';

export interface ReferenceSinkhornInput {
  /** n×k row-major cost M or logits Φ (see inputKind). */
  x: ArrayLike<number>;
  n: number;
  k: number;
  inputKind?: InputKind;
  lambda: number;
  maxIter: number;
  tol: number;
  /** Check the column error every this many iterations (and at maxIter). Default 1. */
  checkEvery?: number;
  /** Row marginal r (length n, > 0); default all ones. */
  rowMarginal?: ArrayLike<number>;
  /** Column marginal c (length k, > 0, Σc = Σr). */
  colMarginal: ArrayLike<number>;
  /** Warm start: initial potentials (f0 is only a starting value: the first update overwrites it). */
  f0?: ArrayLike<number>;
  g0?: ArrayLike<number>;
  /**
   * ε-scaling factor in (0, 1), 0 = off. Stages λ_s = max(λ, λ0 · factor^s) with
   * λ0 = mean_i (max_j M_ij − min_j M_ij) (when above λ); a stage ends when its column error is
   * under max(tol, 1e-2) or after 50 iterations, and the potentials carry over. Convergence is
   * only declared at λ.
   */
  epsScaling?: number;
  /**
   * Acceleration when > 1 (in [1, 2)): damped Newton steps on the semi-dual in g for 2 ≤ k ≤ 64,
   * Anderson mixing of the g-updates with relaxation ω above. f updates stay plain, so the rows of
   * the plan keep summing to r and every pass counts as an iteration. Default 1 (plain Sinkhorn).
   */
  overrelax?: number;
  /** Return the plan: true → a new Float64Array; or a Float32Array/Float64Array of n·k to fill. */
  plan?: boolean | Float32Array | Float64Array;
  /** Return argmax_j Y_ij per row (first maximum on ties). */
  predictions?: boolean;
  /**
   * Called after every row pass with the iteration, f^t and the g^{t−1} that pass used (the
   * reference's counterpart of the native driver's hook; the OTLM reference records them there).
   */
  onRowPass?: (iteration: number, f: Float64Array, g: Float64Array) => void;
}

export interface ReferenceSinkhornResult {
  f: Float64Array;
  g: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
  /** The reference always works in the log domain. */
  mode: Array<'log'>;
  /** The column error at every check, in order. */
  trace: Float64Array;
  plan?: Float32Array | Float64Array;
  predictions?: Int32Array;
}

/** The cost M in float64: a copy of x, or −log_softmax(x) row-wise for logits. */
export function referenceCost(x: ArrayLike<number>, n: number, k: number, kind: InputKind): Float64Array {
  const m = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    if (kind === 'cost') {
      for (let j = 0; j < k; j++) m[o + j] = x[o + j];
      continue;
    }
    let mx = -Infinity;
    for (let j = 0; j < k; j++) mx = Math.max(mx, x[o + j]);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(x[o + j] - mx);
    const lse = mx + Math.log(s);
    for (let j = 0; j < k; j++) m[o + j] = lse - x[o + j];
  }
  return m;
}

/** ε-scaling: a stage ends under this column error (or tol, if larger) or after STAGE_CAP iterations. */
const STAGE_TOL = 1e-2;
const STAGE_CAP = 50;

/** Mean over rows of max_j M_ij − min_j M_ij: the ε schedule starts there. */
function meanRowRange(M: Float64Array, n: number, k: number): number {
  let range = 0;
  for (let i = 0; i < n; i++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < k; j++) {
      lo = Math.min(lo, M[i * k + j]);
      hi = Math.max(hi, M[i * k + j]);
    }
    range += hi - lo;
  }
  return range / n;
}

/** Newton's Laplacian partials of row i: W_jq += Y_ij Y_iq / r_i for j < q. */
function addLaplacian(W: Float64Array, fi: number, g: Float64Array, M: Float64Array, o: number, k: number, lam: number, ri: number): void {
  const y = Float64Array.from({ length: k }, (_, j) => Math.exp((fi + g[j] - M[o + j]) / lam));
  for (let j = 0; j < k; j++) for (let q = j + 1; q < k; q++) W[j * k + q] += (y[j] * y[q]) / ri;
}

function nonFinite(message: string): Error {
  return Object.assign(new Error(`sinkhorn: ${message}`), { code: 'OTLM_ENONFINITE' });
}

/** log Σ exp(v_t) over the values produced by `at(t)`, t < len, shifted by the maximum. */
export function logSumExp(len: number, at: (t: number) => number): number {
  let mx = -Infinity;
  for (let t = 0; t < len; t++) mx = Math.max(mx, at(t));
  if (mx === -Infinity) return -Infinity;
  let s = 0;
  for (let t = 0; t < len; t++) s += Math.exp(at(t) - mx);
  return mx + Math.log(s);
}

/**
 * The solver as a generator that yields after every iteration (so an async caller can interleave
 * other work and honour an AbortSignal) and returns the result. `referenceSinkhorn` drains it.
 */
export function* referenceSinkhornSteps(input: ReferenceSinkhornInput): Generator<number, ReferenceSinkhornResult> {
  const { n, k, lambda, maxIter, tol } = input;
  const checkEvery = input.checkEvery ?? 1;
  const M = referenceCost(input.x, n, k, input.inputKind ?? 'cost');
  const r = new Float64Array(n).fill(1);
  if (input.rowMarginal) for (let i = 0; i < n; i++) r[i] = input.rowMarginal[i];
  const c = Float64Array.from({ length: k }, (_, j) => input.colMarginal[j]);
  let mass = 0;
  for (let i = 0; i < n; i++) mass += r[i];

  const f = new Float64Array(n);
  const g = new Float64Array(k);
  if (input.f0) for (let i = 0; i < n; i++) f[i] = input.f0[i];
  if (input.g0) for (let j = 0; j < k; j++) g[j] = input.g0[j];

  const lambda0 = input.epsScaling ? Math.max(lambda, meanRowRange(M, n, k)) : lambda;
  const stageLambda = (stage: number) => Math.max(lambda, lambda0 * (input.epsScaling ?? 0) ** stage);
  const accel = makeAcceleration(input.overrelax ?? 1, k);

  const s = new Float64Array(k); // s_j = LSE_i((f_i − M_ij)/λ_t): log colsum_j = g_j/λ_t + s_j
  const colsum = new Float64Array(k);
  const resid = new Float64Array(k);
  const h = new Float64Array(k);
  const hprev = new Float64Array(k);
  const trace: number[] = [];
  let error = NaN;
  let converged = false;
  let it = 0;
  let stage = 0;
  let stageIt = 0;
  let lam = lambda0 > lambda ? stageLambda(0) : lambda;
  let newStage = true;
  while (it < maxIter) {
    it++;
    const first = it === 1;
    const last = it === maxIter;
    const atTarget = lam === lambda;
    const comparable = !newStage;
    if (newStage && accel) {
      for (let j = 0; j < k; j++) h[j] = g[j] / lam;
      accel.reset();
    }
    stageIt++;
    const hessian = accel?.wantsHessian() ? new Float64Array(k * k) : undefined;

    // Row pass: every f update is plain (rows of the plan exact), then the column sums of that plan.
    let dlse = 0; // Σ_i r_i (a_old − a_new), a = f/λ: the semi-dual's row part changes by this
    for (let i = 0; i < n; i++) {
      const o = i * k;
      const aOld = f[i] / lam;
      f[i] = lam * Math.log(r[i]) - lam * logSumExp(k, (j) => (g[j] - M[o + j]) / lam);
      dlse += r[i] * (aOld - f[i] / lam);
      if (hessian) addLaplacian(hessian, f[i], g, M, o, k, lam, r[i]);
    }
    input.onRowPass?.(it, f, g);
    let e = 0;
    for (let j = 0; j < k; j++) {
      s[j] = logSumExp(n, (i) => (f[i] - M[i * k + j]) / lam);
      colsum[j] = Math.exp(g[j] / lam + s[j]);
      e += Math.abs(colsum[j] - c[j]);
    }
    error = e / mass;
    let dF = Infinity;
    if (accel && comparable && !first) {
      dF = dlse;
      for (let j = 0; j < k; j++) dF -= c[j] * (h[j] - hprev[j]);
    }
    hprev.set(h);
    if (it % checkEvery === 0 || last) {
      trace.push(error);
      if (atTarget && error < tol) converged = true;
    }
    if (converged || last) break;

    // g step: plain, or the acceleration strategy's.
    for (let j = 0; j < k; j++) resid[j] = Math.log(c[j]) - (g[j] / lam + s[j]);
    if (!accel) {
      for (let j = 0; j < k; j++) g[j] = lam * Math.log(c[j]) - lam * s[j];
    } else {
      accel.step({ resid, colsum, c, hessian, error, dF, iteration: it }, h);
      for (let j = 0; j < k; j++) {
        if (!Number.isFinite(h[j])) throw nonFinite(`column potential g[${j}] became non-finite at iteration ${it} (lambda ${lam})`);
        g[j] = h[j] * lam;
      }
    }
    newStage = false;
    if (!atTarget && (error < Math.max(tol, STAGE_TOL) || stageIt >= STAGE_CAP)) {
      lam = stageLambda(++stage);
      stageIt = 0;
      newStage = true;
    }
    yield it;
  }

  const out: ReferenceSinkhornResult = {
    f, g, iterations: it, error, converged, mode: ['log'], trace: Float64Array.from(trace),
  };
  if (input.plan) {
    const plan = typeof input.plan === 'boolean' ? new Float64Array(n * k) : input.plan;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) plan[i * k + j] = Math.exp((f[i] + g[j] - M[i * k + j]) / lam);
    }
    out.plan = plan;
  }
  if (input.predictions) {
    // argmax_j Y_ij = argmax_j (g_j − M_ij), since f_i is constant along the row.
    const pred = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bv = -Infinity;
      for (let j = 0; j < k; j++) {
        const v = g[j] - M[i * k + j];
        if (v > bv) {
          bv = v;
          best = j;
        }
      }
      pred[i] = best;
    }
    out.predictions = pred;
  }
  return out;
}

/** Runs the reference solver to completion (synchronously). */
export function referenceSinkhorn(input: ReferenceSinkhornInput): ReferenceSinkhornResult {
  const steps = referenceSinkhornSteps(input);
  for (;;) {
    const s = steps.next();
    if (s.done) return s.value;
  }
}

/**
 * Runs the reference solver without blocking the event loop for long: it yields to the loop
 * about every 20 ms and stops with `shouldStop()` (checked at those points) by throwing `onStop()`.
 */
export async function referenceSinkhornAsync(
  input: ReferenceSinkhornInput,
  shouldStop: () => boolean,
  onStop: () => Error,
): Promise<ReferenceSinkhornResult> {
  const steps = referenceSinkhornSteps(input);
  let last = Date.now();
  for (;;) {
    if (shouldStop()) throw onStop();
    const s = steps.next();
    if (s.done) return s.value;
    if (Date.now() - last > 20) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      last = Date.now();
    }
  }
}
