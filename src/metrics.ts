/**
 * The metrics long-tail papers report (docs/architecture.md).
 */
import type { MatrixInput, PriorInput } from './api/types.js';
import { checkLabels, checkMatrix, checkNumber, describe, normalizePrior } from './api/validate.js';
import { checkOptions } from './methods/common.js';

export interface MetricsOptions {
  /** μ for `klMarginal` (counts or probabilities, entries > 0). Default uniform (the balanced test sets of the paper). */
  targetPrior?: PriorInput;
  /** Many-shot classes have more than this many training samples. Default 100. */
  manyThreshold?: number;
  /** Few-shot classes have fewer than this many training samples. Default 20. */
  fewThreshold?: number;
  /** Class probabilities (N×K) for the expected calibration error; ECE is null without them. */
  probabilities?: MatrixInput;
  /** Number of equal-width confidence bins of the ECE. Default 15. */
  eceBins?: number;
  /**
   * Recall floor of the geometric mean, in [0, 1]. Default 1e-3, as is common in the long-tail
   * literature: one class with zero recall would otherwise zero the GM of every method on 100
   * classes. 0 gives the strict geometric mean.
   */
  gmFloor?: number;
}

export interface MetricsResult {
  /** Fraction of rows with prediction = label. */
  top1: number;
  /** Mean of the per-class recalls over the classes present in `labels`. */
  balancedAccuracy: number;
  /** Geometric mean of those recalls, each floored at `gmFloor` (default 1e-3). */
  geometricMeanRecall: number;
  /** Classes present in `labels` with recall 0 (the ones the GM floor lifts). */
  zeroRecallClasses: number;
  /** Mean recall over classes with training count > manyThreshold (and present in labels); null if there are none. */
  many: number | null;
  /** Mean recall over classes with fewThreshold ≤ training count ≤ manyThreshold; null if none. */
  medium: number | null;
  /** Mean recall over classes with training count < fewThreshold; null if none. */
  few: number | null;
  /** Recall of each class; NaN for a class with no row in `labels` (see `support`). */
  perClass: Float64Array;
  /** Number of rows of each class in `labels`. */
  support: Int32Array;
  /** Fraction of rows predicted as each class. */
  predictedMarginal: Float64Array;
  /**
   * KL(q ‖ μ) = Σ_k q_k log(q_k / μ_k), natural log, q = predictedMarginal (the paper's Table 4
   * compares the predicted label distribution with the true one). Classes never predicted contribute
   * 0 (0·log 0 = 0), so no smoothing is needed: μ_k > 0 always.
   */
  klMarginal: number;
  /**
   * Expected calibration error: rows binned by confidence c_i = max_j P_ij into `eceBins` equal-width
   * bins ((b−1)/B, b/B] (c = 0 falls in the first), ECE = Σ_b (n_b / N) |acc_b − conf_b|, where acc_b
   * is the accuracy of argmax_j P_ij in bin b. null when `probabilities` was not given.
   */
  ece: number | null;
}

/**
 * Top-1, balanced accuracy, geometric-mean recall, many/medium/few-shot accuracy, per-class recall,
 * KL(predicted marginal ‖ μ) and ECE.
 *
 * @param predictions predicted class per row (integers in [0, K)).
 * @param labels true class per row, same length.
 * @param trainCounts training samples per class (length K, finite, ≥ 0): fixes K and the shot groups.
 */
export function metrics(
  predictions: ArrayLike<number>,
  labels: ArrayLike<number>,
  trainCounts: ArrayLike<number>,
  opts?: MetricsOptions,
): MetricsResult {
  const fn = 'metrics';
  const o = checkOptions<MetricsOptions>(fn, opts, ['targetPrior', 'manyThreshold', 'fewThreshold', 'probabilities', 'eceBins', 'gmFloor']);
  if (typeof trainCounts !== 'object' || trainCounts === null || typeof trainCounts.length !== 'number' || trainCounts.length < 1)
    throw new TypeError(`trainCounts must be a non-empty array of per-class training counts, got ${describe(trainCounts)}`);
  const k = trainCounts.length;
  const counts = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    const c = trainCounts[j];
    if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) throw new RangeError(`trainCounts[${j}] must be a finite count >= 0, got ${String(c)}`);
    counts[j] = c;
  }
  if (typeof labels !== 'object' || labels === null || typeof labels.length !== 'number' || labels.length < 1)
    throw new TypeError(`labels must be a non-empty array of class indices, got ${describe(labels)}`);
  const n = labels.length;
  // K is trainCounts' length, so a class beyond it may as well be a short trainCounts: name both.
  const probs = o.probabilities === undefined ? undefined : checkMatrix('probabilities', o.probabilities, { rows: n });
  if (probs) {
    const c = probs.cols;
    if (c !== k)
      throw new RangeError(`trainCounts has length ${k} but probabilities has ${c} columns: trainCounts must have length ${c} (one entry per class), or probabilities must have ${k} columns`);
  }
  const y = checkLabels('labels', labels, n);
  const p = checkLabels('predictions', predictions, n);
  let top = -1;
  let first: string | undefined;
  for (let i = 0; i < n; i++) {
    if (first === undefined && (y[i] >= k || p[i] >= k)) first = y[i] >= k ? `labels[${i}]` : `predictions[${i}]`;
    top = Math.max(top, y[i], p[i]);
  }
  if (first !== undefined)
    throw new RangeError(`trainCounts has length ${k} but the classes go up to ${top}: trainCounts must have one entry per class (length >= ${top + 1}), or ${first} must be an integer class index in [0, ${k})`);
  const many = o.manyThreshold === undefined ? 100 : checkNumber(`${fn}: manyThreshold`, o.manyThreshold);
  const few = o.fewThreshold === undefined ? 20 : checkNumber(`${fn}: fewThreshold`, o.fewThreshold);
  if (few > many) throw new RangeError(`${fn}: fewThreshold (${few}) must be <= manyThreshold (${many})`);
  const mu = o.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior(`${fn}: targetPrior`, o.targetPrior, k);
  const bins = o.eceBins === undefined ? 15 : checkNumber(`${fn}: eceBins`, o.eceBins, { integer: true, min: 1 });
  const gmFloor = o.gmFloor === undefined ? 1e-3 : checkNumber(`${fn}: gmFloor`, o.gmFloor, { min: 0, max: 1 });

  const support = new Int32Array(k);
  const hits = new Int32Array(k);
  const predCount = new Float64Array(k);
  let correct = 0;
  for (let i = 0; i < n; i++) {
    support[y[i]]++;
    predCount[p[i]]++;
    if (p[i] === y[i]) {
      hits[y[i]]++;
      correct++;
    }
  }
  const perClass = new Float64Array(k);
  let present = 0;
  let recallSum = 0;
  let logRecallSum = 0;
  let zeroRecall = 0;
  const group = { many: [0, 0], medium: [0, 0], few: [0, 0] };
  for (let j = 0; j < k; j++) {
    if (support[j] === 0) {
      perClass[j] = NaN;
      continue;
    }
    const rec = hits[j] / support[j];
    perClass[j] = rec;
    present++;
    recallSum += rec;
    if (rec === 0) zeroRecall++;
    logRecallSum += Math.log(Math.max(rec, gmFloor));  // log 0 = −Infinity: the strict GM is 0
    const gname = counts[j] > many ? 'many' : counts[j] < few ? 'few' : 'medium';
    group[gname][0] += rec;
    group[gname][1]++;
  }
  const mean = (g: number[]) => (g[1] > 0 ? g[0] / g[1] : null);

  const predictedMarginal = predCount.map((c) => c / n);
  let kl = 0;
  for (let j = 0; j < k; j++) {
    const q = predictedMarginal[j];
    if (q > 0) kl += q * Math.log(q / mu[j]);
  }

  let ece: number | null = null;
  if (probs) {
    const P = probs.data;
    const cnt = new Float64Array(bins);
    const conf = new Float64Array(bins);
    const acc = new Float64Array(bins);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (P[i * k + j] > P[i * k + best]) best = j;
      const c = P[i * k + best];
      const b = Math.min(bins - 1, Math.max(0, Math.ceil(c * bins) - 1));
      cnt[b]++;
      conf[b] += c;
      if (best === y[i]) acc[b]++;
    }
    ece = 0;
    for (let b = 0; b < bins; b++) if (cnt[b] > 0) ece += Math.abs(acc[b] - conf[b]) / n;
  }

  return {
    top1: correct / n,
    balancedAccuracy: recallSum / present,
    geometricMeanRecall: Math.exp(logRecallSum / present),
    zeroRecallClasses: zeroRecall,
    many: mean(group.many),
    medium: mean(group.medium),
    few: mean(group.few),
    perClass,
    support,
    predictedMarginal,
    klMarginal: kl,
    ece,
  };
}
