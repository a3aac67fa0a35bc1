/**
 * Turning a method's `targetPrior` option into the prior μ a solve uses: a given prior (counts or
 * probabilities), uniform when absent, or `'estimate'` — estimated from the logits being corrected
 * with {@link estimatePrior} (EM/MLLS by default; BBSE or calibrated EM with a labeled validation split).
 */
import type { Matrix, PriorInput } from '../api/types.js';
import { describe, normalizePrior } from '../api/validate.js';
import { estimatePrior, type PriorEstimate, type PriorEstimateOptions } from './estimate.js';

/** What a method accepts as its target prior. */
export type TargetPriorSpec = PriorInput | 'estimate' | 'uniform';

/**
 * Smallest entry of an estimated prior handed to a solver, before renormalising. EM can drive a class to
 * (numerically) zero and BBSE clips negative weights to exactly zero, but a Sinkhorn column marginal must
 * be > 0 (log μ_j must exist); 1e-6 keeps such a class at essentially no mass.
 */
export const ESTIMATED_PRIOR_FLOOR = 1e-6;

export interface ResolvedTargetPrior {
  /** μ, length K, every entry > 0, sums to 1. */
  prior: Float64Array;
  /** Present when μ was estimated: the estimator's full report (converged, warning, condition number…). */
  estimate?: PriorEstimate;
  /** The estimator's warning prefixed with the calling function's name, when there is one. */
  warning?: string;
}

/** Clamps every entry to at least `floor` and renormalises to sum 1. */
export function floorPrior(p: ArrayLike<number>, floor = ESTIMATED_PRIOR_FLOOR): Float64Array {
  const out = Float64Array.from(p, (v) => Math.max(v, floor));
  const s = out.reduce((a, v) => a + v, 0);
  for (let j = 0; j < out.length; j++) out[j] /= s;
  return out;
}

/**
 * Resolves a target prior for a correction of `logits` (N×K, already checked by the caller):
 *
 * - `undefined` or `'uniform'` → μ_j = 1/K;
 * - counts or probabilities → normalised (every entry > 0, via `normalizePrior`);
 * - `'estimate'` → `estimatePrior(logits, trainPrior, estimation)` (default EM/MLLS from the unlabeled
 *   logits themselves), floored at {@link ESTIMATED_PRIOR_FLOOR} and renormalised. Needs `trainPrior`
 *   (the training class counts or prior π). A non-converged EM keeps its last iterate and sets `warning`;
 *   a singular BBSE confusion matrix throws.
 *
 * @param fn the public function's name, for error messages (e.g. 'otCorrect').
 */
export function resolveTargetPrior(
  logits: Matrix,
  trainPrior: PriorInput | undefined,
  spec: TargetPriorSpec | undefined,
  estimation: PriorEstimateOptions = {},
  fn = 'otCorrect',
): ResolvedTargetPrior {
  const k = logits.cols;
  if (spec === undefined || spec === 'uniform') return { prior: new Float64Array(k).fill(1 / k) };
  if (spec === 'estimate') {
    if (trainPrior === undefined)
      throw new TypeError(`${fn}: targetPrior 'estimate' needs trainPrior (the training class counts or prior π)`);
    const estimate = estimatePrior(logits, trainPrior, estimation);
    const out: ResolvedTargetPrior = { prior: floorPrior(estimate.prior), estimate };
    if (estimate.warning) out.warning = `${fn}: ${estimate.warning}`;
    return out;
  }
  if (typeof spec === 'string')
    throw new TypeError(`${fn}: targetPrior must be an array of ${k} numbers, 'uniform' or 'estimate', got '${spec}'`);
  if (typeof spec !== 'object' || spec === null)
    throw new TypeError(`${fn}: targetPrior must be an array of ${k} numbers, 'uniform' or 'estimate', got ${describe(spec)}`);
  return { prior: normalizePrior(`${fn}: targetPrior`, spec, k) };
}
