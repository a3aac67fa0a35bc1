/**
 * DARP (Kim et al., NeurIPS 2020): the paper's other baseline, a weighted KL projection of the
 * predicted probabilities onto the target marginals. The math is in paths/reference/darp.ts.
 */
import type { Matrix, PriorInput } from '../api/types.js';
import { checkHyper, checkMatrix, describe, normalizePrior } from '../api/validate.js';
import { darpEntropyWeights, referenceDarp } from '../paths/reference/darp.js';
import { checkOptions, checkVector } from './common.js';
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
}

/**
 * DARP refinement:
 *
 *   min_X Σ_i w_i KL(X_i ‖ p_i)   s.t.  Σ_k X_ik = 1,  Σ_i X_ik = N μ_k,   p_i = softmax(Φ_i)
 *
 * solved by block-coordinate ascent on the dual (row normalisation, then one Newton solve per class
 * for its multiplier ν_k), as in Kim et al.; the solution has the form X_ik ∝ p_ik exp(−ν_k / w_i).
 * Float64, in TypeScript (K is small). Returns the same shape as `otCorrect`; `backend` is 'reference'.
 * A solve that reaches maxIter has converged: false and a warning.
 */
export function darpSync(logits: Matrix, opts?: DarpOptions): CorrectionResult {
  const fn = 'darp';
  const o = checkOptions<DarpOptions>(fn, opts, ['targetPrior', 'weights', 'maxIter', 'tol', 'newtonIter']);
  checkMatrix('logits', logits);
  const { rows: n, cols: k } = logits;
  const mu = o.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior(`${fn}: targetPrior`, o.targetPrior, k);
  const maxIter = o.maxIter === undefined ? 1000 : checkHyper(`${fn}: maxIter`, 'maxIter', o.maxIter);
  const tol = o.tol === undefined ? 1e-6 : checkHyper(`${fn}: tol`, 'tol', o.tol);
  const newtonIter = o.newtonIter === undefined ? 50 : checkHyper(`${fn}: newtonIter`, 'newtonIter', o.newtonIter);
  let weights: Float64Array;
  const w = o.weights ?? 'entropy';
  if (w === 'entropy') weights = darpEntropyWeights(logits.data, n, k);
  else if (w === 'uniform') weights = new Float64Array(n).fill(1);
  else if (typeof w === 'string') throw new TypeError(`${fn}: weights must be 'entropy', 'uniform' or ${n} positive numbers, got '${w}'`);
  else if (typeof w !== 'object' || w === null) throw new TypeError(`${fn}: weights must be 'entropy', 'uniform' or ${n} positive numbers, got ${describe(w)}`);
  else weights = checkVector(`${fn}: weights`, w, n, true);

  const t0 = performance.now();
  const r = referenceDarp({ logits: logits.data, n, k, colMarginal: mu.map((v) => v * n), weights, maxIter, tol, newtonIter });
  const probs = Float32Array.from(r.x);
  const pred = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (r.x[i * k + j] > r.x[i * k + best]) best = j;
    pred[i] = best;
  }
  const out: CorrectionResult = {
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
  };
  if (!r.converged)
    out.warning = `${fn}: did not converge in ${r.iterations} iterations (maxIter): column error ${r.error.toExponential(3)} is not below tol ${tol}`;
  return out;
}

/** The Promise form of {@link darpSync}. */
export async function darp(logits: Matrix, opts?: DarpOptions): Promise<CorrectionResult> {
  return darpSync(logits, opts);
}
