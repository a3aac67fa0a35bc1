/**
 * Logit Adjustment (Menon et al., ICLR 2021), post-hoc form.
 */
import type { Matrix, MatrixInput, PriorInput } from '../api/types.js';
import { checkHyper, checkMatrix, normalizePrior } from '../api/validate.js';
import { referenceArgmax, referenceLogitAdjust, referenceSoftmax } from '../paths/reference/la.js';
import { checkOptions } from './common.js';

export interface LogitAdjustOptions {
  /** Scaling τ of the training log-prior. Default 1 (Menon et al.'s post-hoc rule). */
  tau?: number;
  /** Target prior μ (counts or probabilities, entries > 0); default uniform (no extra term). */
  targetPrior?: PriorInput;
}

export interface LogitAdjustResult {
  /** Adjusted logits Φ' (float32). */
  logits: Matrix;
  /** softmax(Φ') row-wise. */
  probabilities: Matrix;
  /** argmax_j Φ'_ij (computed in float64; first maximum on ties). */
  predictions: Int32Array;
}

/**
 * Post-hoc Logit Adjustment:  Φ'_ij = Φ_ij − τ · log π_j + log μ_j
 * where π is the training prior (from `trainPrior`: class counts or probabilities, every entry > 0,
 * normalised) and μ the optional target prior (default uniform, whose term is a per-row constant and is
 * left out). Computed in float64; returned as float32.
 *
 * @param logits Φ, N×K finite float32.
 * @param trainPrior training class counts or probabilities, length K.
 */
export function logitAdjustSync(input: MatrixInput, trainPrior: PriorInput, opts?: LogitAdjustOptions): LogitAdjustResult {
  const fn = 'logitAdjust';
  const o = checkOptions<LogitAdjustOptions>(fn, opts, ['tau', 'targetPrior']);
  const logits = checkMatrix('logits', input);
  const { rows: n, cols: k } = logits;
  const pi = normalizePrior('trainPrior', trainPrior, k);
  const tau = o.tau === undefined ? 1 : checkHyper(`${fn}: tau`, 'tau', o.tau);
  const mu = o.targetPrior === undefined ? undefined : normalizePrior(`${fn}: targetPrior`, o.targetPrior, k);
  const adjusted = referenceLogitAdjust(logits.data, n, k, pi, tau, mu);
  return {
    logits: { data: Float32Array.from(adjusted), rows: n, cols: k },
    probabilities: { data: Float32Array.from(referenceSoftmax(adjusted, n, k)), rows: n, cols: k },
    predictions: referenceArgmax(adjusted, n, k),
  };
}

/** The Promise form of {@link logitAdjustSync} (same work, for symmetry with the other methods). */
export async function logitAdjust(logits: Matrix, trainPrior: PriorInput, opts?: LogitAdjustOptions): Promise<LogitAdjustResult> {
  return logitAdjustSync(logits, trainPrior, opts);
}
