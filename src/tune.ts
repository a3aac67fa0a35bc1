/**
 * Which correction, with which λ or τ? `tune` answers on labeled validation logits by k-fold
 * cross-validation. Every candidate is run on each held-out fold alone: OT solves its marginal
 * constraint on the fold's rows, and OTLM is fitted on the other folds' logits, unlabeled. It is scored
 * by the fold's balanced accuracy. The candidate with the best mean score wins; ties go to the earlier
 * row, i.e. the simpler method and the smaller parameter.
 */
import { checkHyper, checkLabels, checkMatrix, checkNumber, describe, normalizePrior } from './api/validate.js';
import type { Backend, Matrix, MatrixInput, PriorInput } from './api/types.js';
import { logitAdjust } from './methods/la.js';
import { otCorrect } from './methods/ot.js';
import { metrics } from './metrics.js';
import { estimatePrior } from './prior/estimate.js';
import { mulberry32 } from './train/batches.js';
import { OTLM, OTLM_PRESETS, type OtlmPreset } from './train/otlm.js';

export type TuneMethod = 'CE' | 'LA' | 'OT' | 'OTLM';

export interface TuneOptions {
  /** Candidates: 'CE' (no correction), 'LA' (τ grid), 'OT' (λ grid), 'OTLM' (presets; slow: one fit per fold and preset). Default CE, LA, OT. */
  methods?: TuneMethod[];
  /** τ grid of LA. Default 0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2. */
  tauGrid?: number[];
  /** λ grid of OT. Default 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2. */
  lambdaGrid?: number[];
  /** OTLM presets tried. Default ['cifar100-lt']. */
  presets?: OtlmPreset[];
  /** Number of folds, ≥ 2. Default 5. */
  folds?: number;
  /** Seed of the fold assignment. Default 1. */
  seed?: number;
  /** The target prior μ: counts or probabilities, 'uniform' (default) or 'estimate' (EM on each fold's logits). */
  targetPrior?: PriorInput | 'uniform' | 'estimate';
  backend?: Backend;
}

export interface TuneRow {
  method: TuneMethod;
  params: Record<string, number | string>;
  /** Mean balanced accuracy over the folds. */
  cvScore: number;
  /** Its standard deviation over the folds. */
  cvStd: number;
  folds: number[];
}

export interface TuneResult {
  method: TuneMethod;
  params: Record<string, number | string>;
  cvScore: number;
  /** Every candidate, in the order tried; `table[chosen]` is the winner. */
  table: TuneRow[];
  chosen: number;
}

const DEFAULT_TAUS = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2];
const DEFAULT_LAMBDAS = [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2];

function rowsOf(m: Matrix, idx: Int32Array): Matrix {
  const k = m.cols;
  const data = new Float32Array(idx.length * k);
  for (let r = 0; r < idx.length; r++) data.set(m.data.subarray(idx[r]! * k, idx[r]! * k + k), r * k);
  return { data, rows: idx.length, cols: k };
}

function argmaxRows(m: Matrix): Int32Array {
  const { rows: n, cols: k, data } = m;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let j = 1; j < k; j++) if (data[i * k + j]! > data[i * k + b]!) b = j;
    out[i] = b;
  }
  return out;
}

/**
 * Cross-validated choice of the correction and its parameters on labeled validation logits.
 *
 * @param logits validation logits, N×K.
 * @param labels their labels (N integers in [0, K)).
 * @param trainCounts training class counts or prior π (LA's −τ·log π, OTLM's bias, the estimate's source prior).
 */
export async function tune(logits: MatrixInput, labels: ArrayLike<number>, trainCounts: PriorInput, opts: TuneOptions = {}): Promise<TuneResult> {
  const fn = 'tune';
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`${fn}: options must be an object, got ${describe(opts)}`);
  const val = checkMatrix('logits', logits);
  const { rows: n, cols: k } = val;
  const y = checkLabels('labels', labels, n, k);
  const pi = normalizePrior('trainCounts', trainCounts, k);
  const methods = opts.methods ?? ['CE', 'LA', 'OT'];
  for (const m of methods) if (!['CE', 'LA', 'OT', 'OTLM'].includes(m)) throw new RangeError(`${fn}: unknown method '${String(m)}'; expected CE, LA, OT or OTLM`);
  if (!methods.length) throw new RangeError(`${fn}: methods must name at least one method`);
  const grid = (name: string, v: number[] | undefined, def: number[], key: 'tau' | 'lambda') => {
    const g = v ?? def;
    if (!Array.isArray(g) || !g.length) throw new TypeError(`${fn}: ${name} must be a non-empty array of numbers`);
    return g.map((x, i) => checkHyper(`${fn}: ${name}[${i}]`, key, x));
  };
  const taus = grid('tauGrid', opts.tauGrid, DEFAULT_TAUS, 'tau');
  const lambdas = grid('lambdaGrid', opts.lambdaGrid, DEFAULT_LAMBDAS, 'lambda');
  const presets = opts.presets ?? ['cifar100-lt'];
  for (const p of presets) if (!(p in OTLM_PRESETS)) throw new RangeError(`${fn}: unknown preset '${String(p)}'; expected ${Object.keys(OTLM_PRESETS).join(', ')}`);
  const folds = opts.folds === undefined ? 5 : checkNumber(`${fn}: folds`, opts.folds, { integer: true, min: 2, max: n });
  const seed = opts.seed === undefined ? 1 : checkHyper(`${fn}: seed`, 'seed', opts.seed);
  const backend = opts.backend ?? 'auto';
  const tp = opts.targetPrior ?? 'uniform';
  const given = tp === 'uniform' || tp === 'estimate' ? undefined : normalizePrior(`${fn}: targetPrior`, tp, k);

  // A seeded permutation cut into `folds` near-equal parts.
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const u = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const parts = Array.from({ length: folds }, (_, f) => perm.slice(Math.floor((f * n) / folds), Math.floor(((f + 1) * n) / folds)));
  const fold = parts.map((idx, f) => {
    const test = rowsOf(val, idx);
    const rest = Int32Array.from(parts.flatMap((p, g) => (g === f ? [] : Array.from(p))));
    const mu = given ?? (tp === 'estimate' ? estimatePrior(test, pi).prior : new Float64Array(k).fill(1 / k));
    return { test, labels: Int32Array.from(idx, (i) => y[i]!), rest, mu };
  });

  const table: TuneRow[] = [];
  const run = async (method: TuneMethod, params: Record<string, number | string>, predict: (f: (typeof fold)[number]) => Promise<Int32Array>) => {
    const scores: number[] = [];
    for (const f of fold) scores.push(metrics(await predict(f), f.labels, pi).balancedAccuracy);
    const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / scores.length);
    table.push({ method, params, cvScore: mean, cvStd: std, folds: scores });
  };
  if (methods.includes('CE')) await run('CE', {}, async (f) => argmaxRows(f.test));
  if (methods.includes('LA'))
    for (const tau of taus) await run('LA', { tau }, async (f) => (await logitAdjust(f.test, pi, { tau, targetPrior: f.mu })).predictions);
  if (methods.includes('OT'))
    for (const lambda of lambdas) await run('OT', { lambda }, async (f) => (await otCorrect(f.test, { lambda, targetPrior: f.mu, backend })).predictions);
  if (methods.includes('OTLM'))
    for (const preset of presets)
      await run('OTLM', { preset }, async (f) => {
        const model = OTLM.preset(preset, { trainPrior: pi, targetPrior: f.mu, backend: backend === 'tfjs' ? 'auto' : backend });
        await model.fit(rowsOf(val, f.rest));
        return (await model.correct(f.test)).predictions;
      });
  let chosen = 0;
  for (let r = 1; r < table.length; r++) if (table[r]!.cvScore > table[chosen]!.cvScore) chosen = r;
  const best = table[chosen]!;
  return { method: best.method, params: best.params, cvScore: best.cvScore, table, chosen };
}
