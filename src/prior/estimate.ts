/**
 * Estimating an unknown target class prior μ (the paper's open problem, §3.1 Remark):
 * OT needs the test marginal; under label shift (p(x|y) fixed, p(y) changed) it can be
 * estimated from the classifier's own outputs.
 *
 * - `em` — EM / MLLS (Saerens, Latinne & Decaestecker 2002). With posteriors p_ij calibrated
 *   to a source prior s, iterate  w = μ/s,  p'_ij = p_ij w_j / Σ_l p_il w_l,  μ_j = mean_i p'_ij
 *   (from μ = s, until ‖Δμ‖₁ < tol). Each step increases the target log-likelihood
 *   Σ_i log Σ_j p_ij μ_j / s_j. The E-step is a prior re-weighting of each row, which is what OT at
 *   λ = 1 does to the rows too (row i of the plan is softmax(Φ_i + g)); EM picks μ, OT then enforces it.
 *   Neural networks are over-confident, so calibrating first (Alexandari, Kundaje & Shrikumar 2020)
 *   matters: `calibration: 'bcts'` fits softmax(Φ/T + b) on a labeled validation split, whose label
 *   distribution then becomes the source prior s (at the BCTS optimum the mean calibrated posterior on
 *   that split equals its label distribution exactly). `'ts'` (T only) assumes the validation split
 *   follows the training label distribution; with a balanced split of a long-tailed model use 'bcts'.
 * - `bbse` — Black-Box Shift Estimation (Lipton, Wang & Smola 2018). On a labeled validation
 *   split from the source, C_ab = P(ŷ = a, y = b); on the target, q_a = P(ŷ = a). Solve
 *   C w = q for importance weights w_b = μ_b / s_b (negatives clipped to 0), μ ∝ w ⊙ s.
 *   The condition number of C is reported: large values mean an unreliable estimate.
 */
import type { Matrix, MatrixInput, PriorInput } from '../api/types.js';
import { checkHyper, checkLabels, checkMatrix, describe, normalizePrior } from '../api/validate.js';
import { checkOptions } from '../methods/common.js';

export interface PriorEstimateOptions {
  /** 'em' (default; unlabeled target logits only) or 'bbse' (needs `validation`). */
  method?: 'em' | 'bbse';
  /**
   * A labeled split from the source distribution (the distribution the classifier's
   * validation data follows). Required by 'bbse'; used by 'em' for calibration.
   */
  validation?: { logits: Matrix; labels: ArrayLike<number> };
  /** EM only: 'none' (default without validation), 'ts' (temperature), 'bcts' (temperature + class bias; default with validation). */
  calibration?: 'none' | 'ts' | 'bcts';
  /** EM: maximum iterations (default 1000) and L1 tolerance on μ between iterations (default 1e-8). */
  maxIter?: number;
  tol?: number;
}

export interface PriorEstimate {
  /** Estimated target prior μ (sums to 1). */
  prior: Float64Array;
  method: 'em' | 'bbse';
  /** EM iterations run (0 for BBSE). */
  iterations: number;
  converged: boolean;
  /** The source prior the estimate is relative to (training prior, or the validation label distribution). */
  sourcePrior: Float64Array;
  /** Calibration fitted for EM: temperature T and class bias b (zeros without 'bcts'). */
  calibration?: { temperature: number; bias: Float64Array; nll: number; iterations: number };
  /** BBSE: condition number of the confusion matrix (2-norm estimate). */
  conditionNumber?: number;
  /** EM: the L1 change of μ at the last iteration (below `tol` when converged). */
  finalChange?: number;
  /** BBSE: how many negative importance weights were clipped to 0. */
  clipped?: number;
  /** Set when the estimate is unreliable (not converged, ill-conditioned, clipped weights). */
  warning?: string;
}

/** Row softmax of (Φ_i / T + b), float64. */
function softmaxRows(x: Matrix, temperature = 1, bias?: Float64Array): Float64Array {
  const { rows: n, cols: k, data } = x;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = data[i * k + j] / temperature + (bias ? bias[j] : 0);
      out[i * k + j] = v;
      if (v > max) max = v;
    }
    let sum = 0;
    for (let j = 0; j < k; j++) sum += out[i * k + j] = Math.exp(out[i * k + j] - max);
    for (let j = 0; j < k; j++) out[i * k + j] /= sum;
  }
  return out;
}

function labelDistribution(labels: Int32Array, k: number): Float64Array {
  const d = new Float64Array(k);
  for (const y of labels) d[y] += 1;
  for (let j = 0; j < k; j++) d[j] /= labels.length;
  return d;
}

/**
 * Fits the calibration map z = Φ/T + b by minimising the validation NLL −(1/n) Σ_i log softmax(z_i)_{y_i}
 * ('ts': b = 0; 'bcts': b free, with the gauge Σ_j b_j = 0). The NLL is convex in (a = 1/T, b), so damped
 * Newton with a backtracking line search finds the optimum in a few steps; float64. Throws when the
 * optimum has a ≤ 0 (the logits anti-correlate with the labels) or the iteration does not settle.
 */
export function fitCalibration(
  logits: Matrix, labels: Int32Array, kind: 'ts' | 'bcts',
): { temperature: number; bias: Float64Array; nll: number; iterations: number } {
  const { rows: n, cols: k, data } = logits;
  const d = kind === 'bcts' ? k + 1 : 1; // θ = (a, b_0..b_{K−1})
  const theta = new Float64Array(d);
  theta[0] = 1;
  const z = new Float64Array(k);
  // NLL, and optionally its gradient and Hessian, at θ.
  const evaluate = (t: Float64Array, grad?: Float64Array, hess?: Float64Array): number => {
    let nll = 0;
    grad?.fill(0);
    hess?.fill(0);
    for (let i = 0; i < n; i++) {
      const o = i * k;
      let mx = -Infinity;
      for (let j = 0; j < k; j++) {
        z[j] = t[0] * data[o + j] + (d > 1 ? t[1 + j] : 0);
        if (z[j] > mx) mx = z[j];
      }
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(z[j] - mx);
      const lse = mx + Math.log(s);
      const y = labels[i];
      nll += lse - z[y];
      if (!grad || !hess) continue;
      // p = softmax(z); dNLL/dz = p − e_y; d²NLL/dz² = diag(p) − ppᵀ; dz/da = Φ_i, dz/db = I.
      let pPhi = 0;
      let pPhi2 = 0;
      for (let j = 0; j < k; j++) {
        const p = (z[j] = Math.exp(z[j] - lse));
        pPhi += p * data[o + j];
        pPhi2 += p * data[o + j] * data[o + j];
      }
      grad[0] += pPhi - data[o + y];
      hess[0] += pPhi2 - pPhi * pPhi;
      if (d === 1) continue;
      for (let j = 0; j < k; j++) {
        const p = z[j];
        grad[1 + j] += p - (j === y ? 1 : 0);
        const hab = p * (data[o + j] - pPhi);
        hess[1 + j] += hab;
        hess[(1 + j) * d] += hab;
        for (let l = 0; l < k; l++) hess[(1 + j) * d + 1 + l] += (j === l ? p : 0) - p * z[l];
      }
    }
    if (grad && hess) {
      for (let q = 0; q < d; q++) grad[q] /= n;
      for (let q = 0; q < d * d; q++) hess[q] /= n;
    }
    return nll / n;
  };
  const grad = new Float64Array(d);
  const hess = new Float64Array(d * d);
  let cur = evaluate(theta, grad, hess);
  let iterations = 0;
  let settled = false;
  for (; iterations < 100; iterations++) {
    let gnorm = 0;
    for (let q = 0; q < d; q++) gnorm += grad[q] * grad[q];
    if (Math.sqrt(gnorm) < 1e-10) {
      settled = true;
      break;
    }
    // Ridge: the bias has a flat direction (b + c·1); its gradient component is 0, so the ridge only fixes it.
    let tr = 0;
    for (let q = 0; q < d; q++) tr += hess[q * d + q];
    for (let q = 0; q < d; q++) hess[q * d + q] += 1e-10 * (tr / d) + 1e-300;
    const step = solve(hess, grad, d);
    if (!step) break;
    let t = 1;
    let accepted = false;
    const trial = new Float64Array(d);
    let slope = 0;
    for (let q = 0; q < d; q++) slope += grad[q] * step[q];
    // Newton decrement: slope/2 estimates NLL − min; below 1e-13 the remaining gain is rounding noise.
    if (slope / 2 < 1e-13 * (1 + Math.abs(cur))) {
      settled = true;
      break;
    }
    for (let tries = 0; tries < 50; tries++, t /= 2) {
      for (let q = 0; q < d; q++) trial[q] = theta[q] - t * step[q];
      const val = evaluate(trial);
      if (val <= cur - 1e-4 * t * slope) {
        theta.set(trial);
        accepted = true;
        break;
      }
    }
    if (!accepted) {
      settled = true; // no decrease possible at float64 precision: at the optimum
      break;
    }
    cur = evaluate(theta, grad, hess);
  }
  if (!settled) throw new Error(`estimatePrior: ${kind} calibration did not converge in 100 Newton steps`);
  if (!(theta[0] > 0))
    throw new RangeError(`estimatePrior: ${kind} calibration found a non-positive inverse temperature (${theta[0]}): the validation logits do not predict the labels`);
  const bias = new Float64Array(k);
  if (d > 1) {
    let mean = 0;
    for (let j = 0; j < k; j++) mean += theta[1 + j] / k;
    for (let j = 0; j < k; j++) bias[j] = theta[1 + j] - mean;
  }
  return { temperature: 1 / theta[0], bias, nll: cur, iterations };
}

/**
 * Estimates the target class prior μ from unlabeled target logits (label shift: p(x|y) as in the
 * source, p(y) unknown). See the module comment for the math of 'em' and 'bbse'.
 *
 * Defaults: method 'em'; calibration 'bcts' when `validation` is given, else 'none' (then the
 * source prior is `trainPrior`); maxIter 1000; tol 1e-8. With calibration (or BBSE) the source prior
 * is the validation split's label distribution, so every class must occur in it.
 *
 * Failure policy: EM that does not reach `tol` returns `converged: false` and a `warning` (the last
 * iterate is still a valid prior); a singular BBSE confusion matrix throws a RangeError. Never NaN.
 *
 * @param logits target (test) logits, N×K
 * @param trainPrior training class counts or prior π (the source prior of uncalibrated EM)
 */
export function estimatePrior(input: MatrixInput, trainPrior: PriorInput, opts: PriorEstimateOptions = {}): PriorEstimate {
  const o = checkOptions<PriorEstimateOptions>('estimatePrior', opts, ['method', 'validation', 'calibration', 'maxIter', 'tol']);
  const logits = checkMatrix('logits', input);
  const k = logits.cols;
  const pi = normalizePrior('trainPrior', trainPrior, k);
  const method = o.method ?? 'em';
  if (method !== 'em' && method !== 'bbse') throw new RangeError(`estimatePrior: method must be 'em' or 'bbse', got ${String(method)}`);
  let val: { logits: Matrix; labels: Int32Array } | undefined;
  if (o.validation !== undefined) {
    const v = o.validation as unknown;
    if (typeof v !== 'object' || v === null || !('logits' in v) || !('labels' in v))
      throw new TypeError(`validation must be { logits: Matrix, labels }, got ${describe(v)}`);
    const vl = checkMatrix('validation.logits', o.validation.logits, { cols: k });
    val = { logits: vl, labels: checkLabels('validation.labels', o.validation.labels, vl.rows, k) };
  }
  const calibration = o.calibration ?? (val ? 'bcts' : 'none');
  if (calibration !== 'none' && calibration !== 'ts' && calibration !== 'bcts')
    throw new RangeError(`estimatePrior: calibration must be 'none', 'ts' or 'bcts', got ${String(calibration)}`);
  const maxIter = checkHyper('maxIter', 'maxIter', o.maxIter ?? 1000);
  const tol = checkHyper('tol', 'tol', o.tol ?? 1e-8);
  if (method === 'bbse') {
    if (!val) throw new TypeError("estimatePrior: method 'bbse' needs a labeled validation split: { validation: { logits, labels } }");
    return bbse(logits, val.logits, val.labels);
  }
  if (calibration !== 'none' && !val)
    throw new TypeError(`estimatePrior: calibration '${calibration}' needs a labeled validation split: { validation: { logits, labels } }`);
  let posteriors: Float64Array;
  let source: Float64Array;
  let cal: PriorEstimate['calibration'];
  if (calibration === 'none') {
    posteriors = softmaxRows(logits);
    source = pi;
  } else {
    source = labelDistribution(val!.labels, k);
    for (let j = 0; j < k; j++) {
      if (source[j] === 0) throw new RangeError(`validation.labels has no example of class ${j}: cannot calibrate for it`);
    }
    cal = fitCalibration(val!.logits, val!.labels, calibration);
    posteriors = softmaxRows(logits, cal.temperature, cal.bias);
  }
  const mu = emIterate(posteriors, logits.rows, k, source, maxIter, tol);
  const out: PriorEstimate = {
    prior: mu.prior, method: 'em', iterations: mu.iterations, converged: mu.converged, sourcePrior: source,
    finalChange: mu.change,
  };
  if (cal) out.calibration = cal;
  if (!mu.converged) {
    out.warning =
      `estimatePrior (em): did not converge in ${maxIter} iterations: the last step changed the prior by ` +
      `${mu.change.toExponential(2)} (L1), not below tol ${tol}; the estimate may be inaccurate (raise maxIter or tol)`;
  }
  return out;
}

/**
 * The EM / MLLS fixed-point iteration on posteriors p (n×k, rows sum to 1) calibrated to the source
 * prior s:  w_j = μ_j / s_j,  p'_ij = p_ij w_j / Σ_l p_il w_l,  μ_j ← (1/n) Σ_i p'_ij,  from μ = s,
 * until ‖μ_new − μ‖₁ < tol. Every step keeps μ on the simplex; a class whose weight underflows keeps
 * μ_j = 0 (a boundary maximum of the likelihood), never NaN.
 */
function emIterate(
  p: Float64Array, n: number, k: number, source: Float64Array, maxIter: number, tol: number,
): { prior: Float64Array; iterations: number; converged: boolean; change: number } {
  let mu = Float64Array.from(source);
  const w = new Float64Array(k);
  const logw = new Float64Array(k);
  const next = new Float64Array(k);
  let iterations = 0;
  let converged = false;
  let change = Infinity;
  while (iterations < maxIter) {
    iterations++;
    for (let j = 0; j < k; j++) {
      w[j] = mu[j] / source[j];
      logw[j] = Math.log(w[j]);
    }
    next.fill(0);
    for (let i = 0; i < n; i++) {
      const o = i * k;
      let z = 0;
      for (let j = 0; j < k; j++) z += p[o + j] * w[j];
      if (z > 0 && Number.isFinite(z)) {
        for (let j = 0; j < k; j++) next[j] += (p[o + j] * w[j]) / z;
        continue;
      }
      // Every p_il·w_l underflowed (posteriors ~1e-300 on the classes still weighted): redo this row in
      // the log domain, where the normalisation is exact.
      let mx = -Infinity;
      for (let j = 0; j < k; j++) mx = Math.max(mx, Math.log(p[o + j]) + logw[j]);
      if (mx === -Infinity) continue; // the row puts all its mass on zero-weight classes: it votes for none
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(Math.log(p[o + j]) + logw[j] - mx);
      for (let j = 0; j < k; j++) next[j] += Math.exp(Math.log(p[o + j]) + logw[j] - mx) / s;
    }
    let total = 0;
    for (let j = 0; j < k; j++) total += next[j];
    if (!(total > 0) || !Number.isFinite(total)) {
      throw new Error(`estimatePrior (em): the iteration degenerated at step ${iterations} (no row supports any class left)`);
    }
    change = 0;
    for (let j = 0; j < k; j++) {
      next[j] /= total; // = /n unless rows were skipped; keeps μ exactly on the simplex
      change += Math.abs(next[j] - mu[j]);
    }
    mu = Float64Array.from(next);
    if (change < tol) {
      converged = true;
      break;
    }
  }
  return { prior: mu, iterations, converged, change };
}

function argmaxRows(x: Matrix): Int32Array {
  const { rows: n, cols: k, data } = x;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (data[i * k + j] > data[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/** Solves A x = b (A k×k, row-major) by Gaussian elimination with partial pivoting; null when singular. */
function solve(a: Float64Array, b: Float64Array, k: number): Float64Array | null {
  const m = Float64Array.from(a);
  const x = Float64Array.from(b);
  let scale = 0;
  for (const v of a) scale = Math.max(scale, Math.abs(v));
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(m[r * k + c]) > Math.abs(m[p * k + c])) p = r;
    if (Math.abs(m[p * k + c]) <= 1e-12 * scale) return null;
    if (p !== c) {
      for (let j = 0; j < k; j++) [m[c * k + j], m[p * k + j]] = [m[p * k + j], m[c * k + j]];
      [x[c], x[p]] = [x[p], x[c]];
    }
    for (let r = c + 1; r < k; r++) {
      const f = m[r * k + c] / m[c * k + c];
      for (let j = c; j < k; j++) m[r * k + j] -= f * m[c * k + j];
      x[r] -= f * x[c];
    }
  }
  for (let r = k - 1; r >= 0; r--) {
    let s = x[r];
    for (let j = r + 1; j < k; j++) s -= m[r * k + j] * x[j];
    x[r] = s / m[r * k + r];
  }
  return x;
}

/** 2-norm condition number of a k×k matrix from the eigenvalues of AᵀA (Jacobi sweeps). */
function conditionNumber(a: Float64Array, k: number): number {
  const s = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) for (let r = 0; r < k; r++) s[i * k + j] += a[r * k + i] * a[r * k + j];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < k; p++) for (let q = p + 1; q < k; q++) off += s[p * k + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < k; p++) {
      for (let q = p + 1; q < k; q++) {
        const apq = s[p * k + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (s[q * k + q] - s[p * k + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let r = 0; r < k; r++) {
          const srp = s[r * k + p], srq = s[r * k + q];
          s[r * k + p] = c * srp - sn * srq;
          s[r * k + q] = sn * srp + c * srq;
        }
        for (let r = 0; r < k; r++) {
          const spr = s[p * k + r], sqr = s[q * k + r];
          s[p * k + r] = c * spr - sn * sqr;
          s[q * k + r] = sn * spr + c * sqr;
        }
      }
    }
  }
  let lo = Infinity, hi = 0;
  for (let i = 0; i < k; i++) {
    const ev = Math.max(s[i * k + i], 0);
    lo = Math.min(lo, ev);
    hi = Math.max(hi, ev);
  }
  return lo > 0 ? Math.sqrt(hi / lo) : Infinity;
}

function bbse(target: Matrix, valLogits: Matrix, valLabels: Int32Array): PriorEstimate {
  const k = target.cols;
  const source = labelDistribution(valLabels, k);
  const valPred = argmaxRows(valLogits);
  const conf = new Float64Array(k * k); // conf[a, b] = P(ŷ = a, y = b) on the source
  for (let i = 0; i < valPred.length; i++) conf[valPred[i] * k + valLabels[i]] += 1 / valPred.length;
  const q = labelDistribution(argmaxRows(target), k);
  const cond = conditionNumber(conf, k);
  const w = solve(conf, q, k);
  if (!w || !Number.isFinite(cond)) {
    throw new RangeError(
      'estimatePrior (bbse): the validation confusion matrix is singular (some class is never predicted or never present); ' +
        "use method 'em' or a larger validation split",
    );
  }
  let clipped = 0;
  const mu = new Float64Array(k);
  let sum = 0;
  for (let j = 0; j < k; j++) {
    if (w[j] < 0) clipped++;
    mu[j] = Math.max(w[j], 0) * source[j];
    sum += mu[j];
  }
  if (!(sum > 0)) throw new RangeError('estimatePrior (bbse): every importance weight was negative; the estimate is meaningless');
  for (let j = 0; j < k; j++) mu[j] /= sum;
  const out: PriorEstimate = {
    prior: mu, method: 'bbse', iterations: 0, converged: true, sourcePrior: source, conditionNumber: cond, clipped,
  };
  const warnings: string[] = [];
  if (clipped) warnings.push(`${clipped} negative importance weight(s) clipped to 0`);
  if (cond > 1e3) warnings.push(`confusion matrix is ill-conditioned (condition number ${cond.toExponential(2)})`);
  if (warnings.length) out.warning = `estimatePrior (bbse): ${warnings.join('; ')}`;
  return out;
}
