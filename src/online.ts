/**
 * Online OT correction: the answer to the paper's remark that OT needs a large batch and has no
 * online mode.
 *
 * Why it is exact. With Z = softmax(Φ) and cost M = −log Z, the OT plan is
 * Y_ij = exp((f_i + g_j − M_ij)/λ) = exp((f_i − LSE(Φ_i))/λ) · exp((Φ_ij + g_j)/λ). The first factor is
 * constant along row i, and the rows of the returned plan sum to 1 exactly (the solver stops right after
 * an f update), so
 *
 *   Y_i = softmax((Φ_i + g)/λ),     argmax_j Y_ij = argmax_j (Φ_ij + g_j).
 *
 * Row i depends on the batch only through the K class offsets g. After one solve on a batch, g corrects
 * any later sample x by softmax((Φ(x) + g)/λ) with no solve, in O(K): on the batch itself this reproduces
 * the plan row for row, and on new samples from the same distribution it applies the same correction.
 * g is defined up to an additive constant (f absorbs it); it is stored in the gauge Σ_j g_j = 0.
 *
 * Drifting streams. `update(batch)` solves OT on the new batch, warm-started from the current g, and
 * blends the offsets: g ← decay · g + (1 − decay) · g_batch (both in the gauge Σ g = 0). `decay` = 0
 * follows the newest batch only; values near 1 change slowly. Since g_j ≈ λ log μ_j − λ log(mean posterior
 * mass of class j) + const, the blend is a geometric average of the implied target priors. With
 * `targetPrior: 'estimate'` every solve re-estimates μ on its batch (EM/MLLS or BBSE, see estimatePrior),
 * which is what lets the corrector follow a shift of the class prior.
 */
import type { Backend, Matrix, MatrixInput, PriorInput } from './api/types.js';
import { checkHyper, checkMatrix, checkNumber, describe, isMatrix, normalizePrior } from './api/validate.js';
import { checkOptions } from './methods/common.js';
import { isBackend } from './native/backend.js';
import { applyClassOffsets, otCorrect, otCorrectSync, type CorrectionResult, type OtCorrectOptions } from './methods/ot.js';
import type { PriorEstimate, PriorEstimateOptions } from './prior/estimate.js';
import { resolveTargetPrior, type TargetPriorSpec } from './prior/resolve.js';

export interface OnlineCorrectorOptions {
  /** Entropic regularisation λ > 0 of the solves and of the correction softmax((Φ + g)/λ). Default 1. */
  lambda?: number;
  /**
   * Target prior μ of the solves: counts or probabilities, `'uniform'` (default), or `'estimate'`
   * (re-estimated on every fitted batch from its logits; needs `trainPrior`).
   */
  targetPrior?: TargetPriorSpec;
  /** Training class counts or prior π; required by `targetPrior: 'estimate'`. */
  trainPrior?: PriorInput;
  /** Options of the prior estimation (method, validation split, calibration); default EM without calibration. */
  priorEstimation?: PriorEstimateOptions;
  /** Solver backend. Default 'auto'. */
  backend?: Backend;
  /** Solver iteration cap. Default 1000 (as otCorrect). */
  maxIter?: number;
  /** Solver tolerance on the column-marginal error. Default 1e-3 (the paper's Δ, as otCorrect). */
  tol?: number;
  /** Weight of the old offsets in `update`: g ← decay·g + (1 − decay)·g_batch, in [0, 1). Default 0.5. */
  decay?: number;
}

/** What one solve of `fit` or `update` did. */
export interface OnlineSolveReport {
  /** The offsets of this batch's solve alone (gauge Σ g = 0). */
  batchOffsets: Float64Array;
  /** The corrector's offsets after this call (= batchOffsets for `fit`). */
  classOffsets: Float64Array;
  /** The target prior μ the solve enforced. */
  targetPrior: Float64Array;
  /** Present with targetPrior 'estimate'. */
  priorEstimate?: PriorEstimate;
  iterations: number;
  error: number;
  converged: boolean;
  backend: CorrectionResult['backend'];
  /** The batch's own corrected predictions and probabilities (the plan rows). */
  predictions: Int32Array;
  probabilities: Matrix;
  /** Non-convergence of the solve or of the prior estimation. */
  warning?: string;
}

/** The persisted form (`toJSON`). Validation matrices of `priorEstimation` are not persisted. */
export interface OnlineCorrectorJSON {
  format: 'otlm-online-corrector';
  version: 1;
  classes: number;
  lambda: number;
  decay: number;
  targetPrior: number[] | 'uniform' | 'estimate';
  trainPrior?: number[];
  maxIter: number;
  tol: number;
  backend: Backend;
  classOffsets: number[];
  updates: number;
  samples: number;
}

const OPTION_KEYS = ['lambda', 'targetPrior', 'trainPrior', 'priorEstimation', 'backend', 'maxIter', 'tol', 'decay'] as const;

/** Shifts g to the gauge Σ_j g_j = 0 (softmax and argmax are unchanged by a constant). */
function gauge(g: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(g);
  const mean = out.reduce((a, v) => a + v, 0) / out.length;
  for (let j = 0; j < out.length; j++) out[j] -= mean;
  return out;
}

/**
 * Corrects a stream of samples with the class offsets g of OT solves (see the module comment for the
 * identity Y_i = softmax((Φ_i + g)/λ) that makes this exact).
 *
 * ```ts
 * const oc = new OnlineCorrector({ lambda: 1 });
 * await oc.fit(batchLogits);                  // one OT solve
 * const { predictions } = oc.correct(row);    // any later sample, no solve
 * await oc.update(nextBatch);                 // drifting stream: warm-started solve + blend
 * ```
 */
export class OnlineCorrector {
  readonly lambda: number;
  readonly decay: number;
  readonly maxIter: number;
  readonly tol: number;
  readonly backend: Backend;
  #targetPrior: TargetPriorSpec;
  #trainPrior: Float64Array | undefined;
  #priorEstimation: PriorEstimateOptions;
  #k: number | undefined;
  #g: Float64Array | undefined;
  #updates = 0;
  #samples = 0;

  constructor(opts: OnlineCorrectorOptions = {}) {
    const fn = 'OnlineCorrector';
    const o = checkOptions<OnlineCorrectorOptions>(fn, opts, OPTION_KEYS);
    this.lambda = o.lambda === undefined ? 1 : checkHyper(`${fn}: lambda`, 'lambda', o.lambda);
    this.decay = o.decay === undefined ? 0.5 : checkNumber(`${fn}: decay`, o.decay, { min: 0 });
    if (!(this.decay < 1)) throw new RangeError(`${fn}: decay must be in [0, 1), got ${this.decay}`);
    this.maxIter = o.maxIter === undefined ? 1000 : checkHyper(`${fn}: maxIter`, 'maxIter', o.maxIter);
    this.tol = o.tol === undefined ? 1e-3 : checkHyper(`${fn}: tol`, 'tol', o.tol);
    this.backend = o.backend ?? 'auto';
    if (!isBackend(this.backend))
      throw new TypeError(`${fn}: backend must be 'auto', 'cpu', 'cuda', 'wasm', 'tfjs' or 'reference', got ${String(this.backend)}`);
    const tp = o.targetPrior ?? 'uniform';
    if (typeof tp === 'string') {
      if (tp !== 'uniform' && tp !== 'estimate')
        throw new TypeError(`${fn}: targetPrior must be counts/probabilities, 'uniform' or 'estimate', got '${tp}'`);
    } else if (typeof tp !== 'object' || tp === null || typeof (tp as ArrayLike<number>).length !== 'number') {
      throw new TypeError(`${fn}: targetPrior must be counts/probabilities, 'uniform' or 'estimate', got ${describe(tp)}`);
    }
    if (typeof tp !== 'string') {
      const p = normalizePrior(`${fn}: targetPrior`, tp, (tp as ArrayLike<number>).length);
      this.#k = p.length;
      this.#targetPrior = p;
    } else {
      this.#targetPrior = tp;
    }
    if (o.trainPrior !== undefined) {
      const len = (o.trainPrior as ArrayLike<number>)?.length;
      if (typeof len !== 'number') throw new TypeError(`${fn}: trainPrior must be an array of counts or probabilities, got ${describe(o.trainPrior)}`);
      if (this.#k !== undefined && len !== this.#k)
        throw new RangeError(`${fn}: trainPrior has length ${len} but targetPrior has ${this.#k} classes`);
      this.#trainPrior = normalizePrior(`${fn}: trainPrior`, o.trainPrior, len);
      this.#k ??= len;
    }
    if (this.#targetPrior === 'estimate' && !this.#trainPrior)
      throw new TypeError(`${fn}: targetPrior 'estimate' needs trainPrior (the training class counts or prior π)`);
    this.#priorEstimation = o.priorEstimation ?? {};
  }

  /** Whether `fit` (or `update`) has run, so `correct` can be used. */
  get fitted(): boolean {
    return this.#g !== undefined;
  }

  /** The number of classes K (known from the priors or the first batch; undefined before). */
  get classes(): number | undefined {
    return this.#k;
  }

  /** A copy of the current class offsets g (gauge Σ g = 0). Throws before `fit`. */
  get classOffsets(): Float64Array {
    return Float64Array.from(this.#offsets('classOffsets'));
  }

  /** Solves + blends done so far (fit counts as 1) and the rows they saw. */
  get stats(): { updates: number; samples: number } {
    return { updates: this.#updates, samples: this.#samples };
  }

  #offsets(fn: string): Float64Array {
    if (!this.#g) throw new Error(`OnlineCorrector.${fn}: call fit(batch) first: the corrector has no class offsets yet`);
    return this.#g;
  }

  #prepare(fn: string, input: MatrixInput, override: { targetPrior?: TargetPriorSpec } | undefined, warm: boolean) {
    const batch = checkMatrix(`${fn}: batch`, input);
    const k = batch.cols;
    if (this.#k !== undefined && k !== this.#k)
      throw new RangeError(`OnlineCorrector.${fn}: batch has ${k} columns but the corrector has ${this.#k} classes`);
    const o = checkOptions<{ targetPrior?: TargetPriorSpec }>(`OnlineCorrector.${fn}`, override, ['targetPrior']);
    const spec = o.targetPrior ?? this.#targetPrior;
    const resolved = resolveTargetPrior(batch, this.#trainPrior, spec, this.#priorEstimation, `OnlineCorrector.${fn}`);
    const solveOpts: OtCorrectOptions = {
      lambda: this.lambda, maxIter: this.maxIter, tol: this.tol, backend: this.backend, targetPrior: resolved.prior,
    };
    // The first f update overwrites f, so only g carries information into the warm start.
    if (warm && this.#g) solveOpts.warmStart = { f: new Float64Array(batch.rows), g: this.#g };
    return { batch, k, resolved, solveOpts };
  }

  #commit(
    batch: Matrix, k: number, resolved: ReturnType<typeof resolveTargetPrior>, r: CorrectionResult, blend: boolean,
  ): OnlineSolveReport {
    const batchOffsets = gauge(r.classOffsets);
    let g: Float64Array;
    if (blend && this.#g) {
      g = new Float64Array(k);
      for (let j = 0; j < k; j++) g[j] = this.decay * this.#g[j] + (1 - this.decay) * batchOffsets[j];
      this.#updates++;
      this.#samples += batch.rows;
    } else {
      g = Float64Array.from(batchOffsets);
      this.#updates = 1;
      this.#samples = batch.rows;
    }
    this.#g = g;
    this.#k = k;
    const report: OnlineSolveReport = {
      batchOffsets, classOffsets: Float64Array.from(g), targetPrior: resolved.prior, iterations: r.iterations,
      error: r.error, converged: r.converged, backend: r.backend, predictions: r.predictions, probabilities: r.probabilities,
    };
    if (resolved.estimate) report.priorEstimate = resolved.estimate;
    const warnings = [resolved.warning, r.warning].filter((w): w is string => !!w);
    if (warnings.length) report.warning = warnings.join('; ');
    return report;
  }

  /**
   * One OT solve on `batch` (N×K logits; `otCorrect` with this corrector's λ, μ, tol, maxIter, backend);
   * stores its class offsets g, replacing any earlier state. `opts.targetPrior` overrides the
   * constructor's prior for this call (e.g. a known prior of this batch).
   */
  async fit(batch: MatrixInput, opts?: { targetPrior?: TargetPriorSpec }): Promise<OnlineSolveReport> {
    const { batch: m, k, resolved, solveOpts } = this.#prepare('fit', batch, opts, false);
    return this.#commit(m, k, resolved, await otCorrect(m, solveOpts), false);
  }

  /** The synchronous form of {@link fit}. */
  fitSync(batch: MatrixInput, opts?: { targetPrior?: TargetPriorSpec }): OnlineSolveReport {
    const { batch: m, k, resolved, solveOpts } = this.#prepare('fitSync', batch, opts, false);
    return this.#commit(m, k, resolved, otCorrectSync(m, solveOpts), false);
  }

  /**
   * For drifting streams: an OT solve on `batch` warm-started from the current g, then
   * g ← decay·g + (1 − decay)·g_batch (gauge Σ g = 0). Before any `fit`, this is `fit`.
   */
  async update(batch: MatrixInput, opts?: { targetPrior?: TargetPriorSpec }): Promise<OnlineSolveReport> {
    const { batch: m, k, resolved, solveOpts } = this.#prepare('update', batch, opts, true);
    return this.#commit(m, k, resolved, await otCorrect(m, solveOpts), true);
  }

  /** The synchronous form of {@link update}. */
  updateSync(batch: MatrixInput, opts?: { targetPrior?: TargetPriorSpec }): OnlineSolveReport {
    const { batch: m, k, resolved, solveOpts } = this.#prepare('updateSync', batch, opts, true);
    return this.#commit(m, k, resolved, otCorrectSync(m, solveOpts), true);
  }

  /**
   * Corrects one sample (a row of K logits: Float32Array, Float64Array or number[]) or a Matrix of rows
   * from the stored offsets alone, no solve: probabilities_i = softmax((Φ_i + g)/λ) (float32 out,
   * float64 math), predictions_i = argmax_j (Φ_ij + g_j) (first maximum on ties).
   */
  correct(sample: Matrix | Float32Array | Float64Array | ArrayLike<number>): { predictions: Int32Array; probabilities: Matrix } {
    const fn = 'OnlineCorrector.correct';
    const g = this.#offsets('correct');
    const k = g.length;
    let m: Matrix;
    if (isMatrix(sample)) {
      checkMatrix(`${fn}: sample`, sample);
      if (sample.cols !== k) throw new RangeError(`${fn}: sample has ${sample.cols} columns but the corrector has ${k} classes`);
      m = sample;
    } else {
      if (typeof sample !== 'object' || sample === null || typeof (sample as ArrayLike<number>).length !== 'number')
        throw new TypeError(`${fn}: sample must be a row of ${k} logits or a Matrix, got ${describe(sample)}`);
      const row = sample as ArrayLike<number>;
      if (row.length !== k) throw new RangeError(`${fn}: sample has ${row.length} logits but the corrector has ${k} classes`);
      const data = new Float32Array(k);
      for (let j = 0; j < k; j++) {
        const v = row[j];
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new RangeError(`${fn}: sample[${j}] must be a finite number, got ${String(v)}`);
        data[j] = v;
      }
      m = { data, rows: 1, cols: k };
    }
    return applyClassOffsets(m, g, { lambda: this.lambda });
  }

  /** A JSON-safe snapshot (numbers round-trip exactly). `priorEstimation` (it may hold a validation split) is not included. */
  toJSON(): OnlineCorrectorJSON {
    const g = this.#offsets('toJSON');
    const out: OnlineCorrectorJSON = {
      format: 'otlm-online-corrector', version: 1, classes: g.length, lambda: this.lambda, decay: this.decay,
      targetPrior: typeof this.#targetPrior === 'string' ? this.#targetPrior : Array.from(this.#targetPrior as Float64Array),
      maxIter: this.maxIter, tol: this.tol, backend: this.backend, classOffsets: Array.from(g),
      updates: this.#updates, samples: this.#samples,
    };
    if (this.#trainPrior) out.trainPrior = Array.from(this.#trainPrior);
    return out;
  }

  /**
   * Restores a corrector from `toJSON()` output (an object or its JSON text). `priorEstimation` can be
   * supplied again (it is not persisted).
   */
  static fromJSON(json: OnlineCorrectorJSON | string, extra: { priorEstimation?: PriorEstimateOptions } = {}): OnlineCorrector {
    const fn = 'OnlineCorrector.fromJSON';
    let j: unknown = json;
    if (typeof json === 'string') {
      try {
        j = JSON.parse(json);
      } catch (e) {
        throw new TypeError(`${fn}: not valid JSON: ${(e as Error).message}`);
      }
    }
    if (typeof j !== 'object' || j === null) throw new TypeError(`${fn}: expected an object from toJSON(), got ${describe(j)}`);
    const s = j as Partial<OnlineCorrectorJSON>;
    if (s.format !== 'otlm-online-corrector') throw new TypeError(`${fn}: format must be 'otlm-online-corrector', got ${String(s.format)}`);
    if (s.version !== 1) throw new RangeError(`${fn}: unsupported version ${String(s.version)} (this otlm reads version 1)`);
    const k = checkNumber(`${fn}: classes`, s.classes, { min: 1, integer: true });
    if (!Array.isArray(s.classOffsets) || s.classOffsets.length !== k)
      throw new RangeError(`${fn}: classOffsets must be an array of ${k} numbers`);
    const g = Float64Array.from(s.classOffsets, (v, i) => checkNumber(`${fn}: classOffsets[${i}]`, v));
    const oc = new OnlineCorrector({
      lambda: s.lambda, decay: s.decay, targetPrior: s.targetPrior, trainPrior: s.trainPrior, maxIter: s.maxIter,
      tol: s.tol, backend: s.backend, priorEstimation: extra.priorEstimation,
    });
    if (oc.#k !== undefined && oc.#k !== k) throw new RangeError(`${fn}: classes is ${k} but the priors have ${oc.#k} entries`);
    oc.#k = k;
    oc.#g = g; // already in the gauge; re-centring would change the last bits
    // The constructor checked the priors; keep the stored values bit for bit (renormalising may not).
    if (Array.isArray(s.targetPrior)) oc.#targetPrior = Float64Array.from(s.targetPrior);
    if (Array.isArray(s.trainPrior)) oc.#trainPrior = Float64Array.from(s.trainPrior);
    oc.#updates = checkNumber(`${fn}: updates`, s.updates ?? 1, { min: 0, integer: true });
    oc.#samples = checkNumber(`${fn}: samples`, s.samples ?? 0, { min: 0, integer: true });
    return oc;
  }
}
