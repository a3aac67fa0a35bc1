/**
 * OT post-hoc correction (the paper's Algorithm 1) and its online form.
 */
import type { Matrix, MatrixInput, PriorInput } from '../api/types.js';
import { checkHyper, checkMatrix, describe } from '../api/validate.js';
import type { SolveOutput, SolverOptions } from './common.js';
import type { PriorEstimate, PriorEstimateOptions } from '../prior/estimate.js';
import { resolveTargetPrior } from '../prior/resolve.js';
import { SOLVER_OPTION_KEYS, buildRequest, checkOptions, checkSignal, checkVector, overlaps, solve, solveSync } from './common.js';

export interface OtCorrectOptions extends SolverOptions {
  /**
   * Target class prior μ on the evaluation set (counts or probabilities; normalised; entries > 0).
   * Default uniform (the balanced test sets of the paper). `'estimate'` estimates μ from the
   * logits themselves (needs `trainPrior`; see `priorEstimation`, EM/MLLS by default).
   */
  targetPrior?: PriorInput | 'uniform' | 'estimate';
  /** Training class counts or prior π: needed by targetPrior 'estimate'. */
  trainPrior?: PriorInput;
  /** Options of the prior estimation for targetPrior 'estimate' (default EM/MLLS, no calibration). */
  priorEstimation?: PriorEstimateOptions;
  /** Write the corrected probabilities into this Float32Array (length N·K) instead of a new one. */
  out?: Float32Array;
  /**
   * Which corrected probabilities to return (the predictions are the same either way):
   * - 'plan' (default, the paper's): the rows of the plan, softmax((Φ_i + g)/λ). They are
   *   sharpened by 1/λ, so at the usual λ < 1 they are over-confident (ECE 10–50%).
   * - 'calibrated': softmax(Φ_i + g), the classifier's own probabilities shifted by the class
   *   offsets. They have the same argmax and keep the classifier's calibration. They are computed
   *   from the logits, so `out` must not be the logits array.
   */
  probabilities?: 'plan' | 'calibrated';
}

export interface OtCorrectAsyncOptions extends OtCorrectOptions {
  /** Cancels the solve; the Promise then rejects with an AbortError. */
  signal?: AbortSignal;
}

/** The result of a post-hoc correction (OT, DARP). */
export interface CorrectionResult {
  /** Corrected class probabilities, N×K; every row sums to 1 (the rows of the plan Y). */
  probabilities: Matrix;
  /** argmax of each row of `probabilities` (first maximum on ties). */
  predictions: Int32Array;
  /**
   * OT: the class offsets g (length K). Row i of Y is softmax((Φ_i + g)/λ) and its argmax is
   * argmax_j(Φ_ij + g_j), so `applyClassOffsets` corrects new samples exactly as the batch plan did
   * (the online mode). DARP: −ν (row i's log-probabilities are shifted by −ν_k / w_i).
   */
  classOffsets: Float64Array;
  /** OT: the row potentials f (length N); DARP: the log row scales. */
  f: Float64Array;
  iterations: number;
  /** Column-marginal error ‖Yᵀ1 − Nμ‖₁ / N of the returned probabilities. */
  error: number;
  converged: boolean;
  mode: Array<'scaling' | 'log'>;
  backend: SolveOutput['backend'];
  trace?: Float64Array;
  seconds: number;
  /** targetPrior 'estimate': the estimator's report (prior, method, converged, condition number…). */
  priorEstimate?: PriorEstimate;
  /** Set when the solve did not converge (maxIter reached), or the prior estimation warned. */
  warning?: string;
}

const KEYS = [...SOLVER_OPTION_KEYS, 'targetPrior', 'trainPrior', 'priorEstimation', 'out', 'probabilities'];

function checkExtras(fn: string, o: OtCorrectOptions, logits: Matrix): void {
  if (o.probabilities !== undefined && o.probabilities !== 'plan' && o.probabilities !== 'calibrated')
    throw new TypeError(`${fn}: probabilities must be 'plan' or 'calibrated', got ${describe(o.probabilities)}`);
  if (o.probabilities === 'calibrated' && o.out instanceof Float32Array && overlaps(o.out, logits.data))
    throw new RangeError(`${fn}: probabilities 'calibrated' are computed from the logits: out must not overlap them`);
  if (o.out !== undefined) {
    if (!(o.out instanceof Float32Array)) throw new TypeError(`${fn}: out must be a Float32Array, got ${describe(o.out)}`);
    const len = logits.rows * logits.cols;
    if (o.out.length !== len) throw new RangeError(`${fn}: out must have length rows*cols = ${len}, got ${o.out.length}`);
  }
}

/** softmax((Φ_i + g)/λ) of every row into `probs`, and its argmax into `pred` when given (float64 math). */
function shiftedSoftmax(logits: Matrix, g: ArrayLike<number>, lambda: number, probs: Float32Array, pred?: Int32Array): void {
  const { rows: n, cols: k, data } = logits;
  const z = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    let mx = -Infinity;
    let best = 0;
    for (let j = 0; j < k; j++) {
      z[j] = data[i * k + j] + g[j];
      if (z[j] > mx) {
        mx = z[j];
        best = j;
      }
    }
    let s = 0;
    for (let j = 0; j < k; j++) s += (z[j] = Math.exp((z[j] - mx) / lambda));
    for (let j = 0; j < k; j++) probs[i * k + j] = z[j] / s;
    if (pred) pred[i] = best;
  }
}

function toCorrection(logits: Matrix, r: SolveOutput, form: OtCorrectOptions['probabilities'] = 'plan'): CorrectionResult {
  // 'calibrated': softmax(Φ + g) over the plan's array (same predictions: f_i is constant along a row).
  if (form === 'calibrated') shiftedSoftmax(logits, r.g, 1, r.plan as Float32Array);
  const out: CorrectionResult = {
    probabilities: { data: r.plan as Float32Array, rows: logits.rows, cols: logits.cols },
    predictions: r.predictions as Int32Array,
    classOffsets: r.g,
    f: r.f,
    iterations: r.iterations,
    error: r.error,
    converged: r.converged,
    mode: r.mode,
    backend: r.backend,
    seconds: r.seconds,
  };
  if (r.trace) out.trace = r.trace;
  if (r.warning) out.warning = r.warning;
  return out;
}

function withPrior(r: CorrectionResult, tp: ReturnType<typeof resolveTargetPrior>): CorrectionResult {
  if (tp.estimate) r.priorEstimate = tp.estimate;
  if (tp.warning) r.warning = r.warning ? `${r.warning}; ${tp.warning}` : tp.warning;
  return r;
}

/**
 * OT post-hoc correction, the paper's Algorithm 1 (Eq. 9–11): with Z = softmax(Φ) and cost
 * M = −log Z, solve
 *
 *   min_Y ⟨M, Y⟩ + λ Σ Y log Y   s.t.  Y 1_K = 1_N,  Yᵀ 1_N = N·μ
 *
 * by log-domain Sinkhorn (the cost is formed on the fly from the logits, never materialised) and
 * return the rows of Y as corrected probabilities and their argmax as predictions.
 *
 * Defaults: lambda 1 (the paper sweeps λ ∈ [0.005, 2]), tol 1e-3 (the paper's Δ), maxIter 1000 (the
 * paper runs T from 7 to 200 iterations; a solve that hits maxIter reports converged: false and a
 * warning), μ uniform, backend 'auto'.
 *
 * @param logits Φ, N×K finite float32 logits of the classifier.
 */
export function otCorrectSync(input: MatrixInput, opts?: OtCorrectOptions): CorrectionResult {
  const fn = 'otCorrectSync';
  const o = checkOptions<OtCorrectOptions>(fn, opts, KEYS);
  const logits = checkMatrix('logits', input);
  checkExtras(fn, o, logits);
  const tp = resolveTargetPrior(logits, o.trainPrior, o.targetPrior, o.priorEstimation, fn);
  const req = buildRequest(fn, logits, 'logits', { ...o, targetPrior: tp.prior, plan: o.out ?? true, predictions: true }, { plan: true, predictions: true, planName: 'out' });
  return withPrior(toCorrection(logits, solveSync(req), o.probabilities), tp);
}

/** The Promise form of {@link otCorrectSync}; honours `signal`. */
export async function otCorrect(input: MatrixInput, opts?: OtCorrectAsyncOptions): Promise<CorrectionResult> {
  const fn = 'otCorrect';
  const o = checkOptions<OtCorrectAsyncOptions>(fn, opts, [...KEYS, 'signal']);
  const logits = checkMatrix('logits', input);
  checkExtras(fn, o, logits);
  const signal = checkSignal(fn, o.signal);
  const tp = resolveTargetPrior(logits, o.trainPrior, o.targetPrior, o.priorEstimation, fn);
  const req = buildRequest(fn, logits, 'logits', { ...o, targetPrior: tp.prior, plan: o.out ?? true, predictions: true }, { plan: true, predictions: true, planName: 'out' });
  return withPrior(toCorrection(logits, await solve(req, signal), o.probabilities), tp);
}

/**
 * The online mode: corrects logits with class offsets g from an earlier `otCorrect` solve
 * (`result.classOffsets`), row by row, without solving again:
 *
 *   probabilities_i = softmax((Φ_i + g) / λ),   prediction_i = argmax_j (Φ_ij + g_j)
 *
 * On the logits of the solve itself this reproduces its plan rows (docs/architecture.md). Float64 math.
 *
 * @param opts.lambda the λ of the solve that produced g (default 1).
 */
export function applyClassOffsets(
  input: MatrixInput,
  classOffsets: ArrayLike<number>,
  opts: { lambda?: number } = {},
): { probabilities: Matrix; predictions: Int32Array } {
  const fn = 'applyClassOffsets';
  const o = checkOptions<{ lambda?: number }>(fn, opts, ['lambda']);
  const logits = checkMatrix('logits', input);
  const { rows: n, cols: k } = logits;
  const g = checkVector(`${fn}: classOffsets`, classOffsets, k);
  const lambda = o.lambda === undefined ? 1 : checkHyper(`${fn}: lambda`, 'lambda', o.lambda);
  const probs = new Float32Array(n * k);
  const pred = new Int32Array(n);
  shiftedSoftmax(logits, g, lambda, probs, pred);
  return { probabilities: { data: probs, rows: n, cols: k }, predictions: pred };
}
