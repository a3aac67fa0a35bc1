/**
 * Reference DARP (Kim et al., NeurIPS 2020, "Distribution Aligning Refinery of Pseudo-label"), float64.
 *
 * Given predicted class probabilities p_i (softmax of the logits) and per-sample weights w_i > 0,
 * DARP finds the refined labels X as the weighted KL projection
 *
 *   min_X  Σ_i w_i Σ_k X_ik log(X_ik / p_ik)
 *   s.t.   Σ_k X_ik = 1 (rows are distributions),  Σ_i X_ik = c_k (= N μ_k),  X ≥ 0.
 *
 * Stationarity of the Lagrangian, w_i (log(X_ik/p_ik) + 1) + α_i + ν_k = 0, gives
 *
 *   X_ik = p_ik · a_i · exp(−ν_k / w_i)          (a_i = exp(−1 − α_i / w_i))
 *
 * and the solver is exact block-coordinate ascent on the (concave) dual, as in the paper:
 *   1. rows:    a_i = 1 / Σ_k p_ik exp(−ν_k / w_i)                 (each row sums to 1)
 *   2. classes: for each k (independently, a_i fixed) solve the scalar equation
 *               h_k(ν) = log Σ_i p_ik a_i exp(−ν / w_i) − log c_k = 0
 *      by Newton's method. h_k is convex and strictly decreasing in ν, so Newton converges from any
 *      start (one step from the right of the root lands left of it; from the left it is monotone).
 * and repeat. The column error Σ_k |Σ_i X_ik − c_k| / N is measured after each row step; the solver
 * stops when it is below tol (converged) or after maxIter row steps. It always stops after a row step,
 * so rows of X sum to 1 exactly. Everything runs in log space (log p_ik = Φ_ik − LSE(Φ_i)), so no p_ik
 * is ever 0 and every column constraint stays feasible.
 *
 * Weights: the paper uses w_i = 1 / H(p_i) (H = entropy, confident samples move less); with all
 * w_i = 1 the problem is the λ = 1 entropic OT of the paper (the KL projection).
 */
export interface ReferenceDarpInput {
  logits: ArrayLike<number>;
  n: number;
  k: number;
  /** c_k > 0 with Σ c = n. */
  colMarginal: ArrayLike<number>;
  /** w_i > 0, length n. */
  weights: ArrayLike<number>;
  maxIter: number;
  tol: number;
  /** Newton iterations per class and sweep (each stops earlier at machine precision). Default 50. */
  newtonIter?: number;
}

export interface ReferenceDarpResult {
  /** Refined probabilities X (n×k, rows sum to 1). */
  x: Float64Array;
  /** log a_i. */
  logRowScale: Float64Array;
  /** ν_k (the column constraints' multipliers, in units of w). */
  nu: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
  trace: Float64Array;
}

/** The entropy weights of DARP: w_i = 1 / max(H(p_i), 1e-12), H from the log-probabilities. */
export function darpEntropyWeights(logits: ArrayLike<number>, n: number, k: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const lse = rowLse(logits, i, k);
    let h = 0;
    for (let j = 0; j < k; j++) {
      const lp = logits[i * k + j] - lse;
      h -= Math.exp(lp) * lp;
    }
    w[i] = 1 / Math.max(h, 1e-12);
  }
  return w;
}

function rowLse(x: ArrayLike<number>, i: number, k: number): number {
  let mx = -Infinity;
  for (let j = 0; j < k; j++) mx = Math.max(mx, x[i * k + j]);
  let s = 0;
  for (let j = 0; j < k; j++) s += Math.exp(x[i * k + j] - mx);
  return mx + Math.log(s);
}

export function referenceDarp(input: ReferenceDarpInput): ReferenceDarpResult {
  const { n, k, weights: w, maxIter, tol } = input;
  const newtonIter = input.newtonIter ?? 50;
  const logp = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const lse = rowLse(input.logits, i, k);
    for (let j = 0; j < k; j++) logp[i * k + j] = input.logits[i * k + j] - lse;
  }
  const logc = Float64Array.from({ length: k }, (_, j) => Math.log(input.colMarginal[j]));
  const nu = new Float64Array(k);
  const logA = new Float64Array(n);
  const z = new Float64Array(n); // z_i = log p_ik + log a_i − ν/w_i for the class being solved
  const trace: number[] = [];
  let error = NaN;
  let converged = false;
  let it = 0;

  while (it < maxIter) {
    it++;
    // 1. Row step: a_i normalises row i.
    for (let i = 0; i < n; i++) {
      let mx = -Infinity;
      for (let j = 0; j < k; j++) mx = Math.max(mx, logp[i * k + j] - nu[j] / w[i]);
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(logp[i * k + j] - nu[j] / w[i] - mx);
      logA[i] = -(mx + Math.log(s));
    }
    let e = 0;
    for (let j = 0; j < k; j++) {
      let col = 0;
      for (let i = 0; i < n; i++) col += Math.exp(logp[i * k + j] + logA[i] - nu[j] / w[i]);
      e += Math.abs(col - input.colMarginal[j]);
    }
    error = e / n;
    trace.push(error);
    if (error < tol) {
      converged = true;
      break;
    }
    if (it === maxIter) break;

    // 2. Class step: Newton on h_k(ν) = LSE_i(log p_ik + log a_i − ν/w_i) − log c_k.
    for (let j = 0; j < k; j++) {
      let v = nu[j];
      for (let t = 0; t < newtonIter; t++) {
        let mx = -Infinity;
        for (let i = 0; i < n; i++) mx = Math.max(mx, (z[i] = logp[i * k + j] + logA[i] - v / w[i]));
        let s = 0;
        let ds = 0; // Σ_i e^{z_i − mx} / w_i
        for (let i = 0; i < n; i++) {
          const q = Math.exp(z[i] - mx);
          s += q;
          ds += q / w[i];
        }
        const h = mx + Math.log(s) - logc[j];
        const dh = -ds / s; // h'(ν) = −Σ_i softmax(z)_i / w_i < 0
        const step = h / dh;
        v -= step;
        if (Math.abs(h) < 1e-15 || Math.abs(step) <= 1e-15 * (1 + Math.abs(v))) break;
      }
      nu[j] = v;
    }
  }

  const x = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) x[i * k + j] = Math.exp(logp[i * k + j] + logA[i] - nu[j] / w[i]);
  }
  return { x, logRowScale: logA, nu, iterations: it, error, converged, trace: Float64Array.from(trace) };
}
