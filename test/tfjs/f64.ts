/**
 * A small float64 log-domain Sinkhorn written independently of the code under
 * test (plain loops), with the engine's conventions: one iteration = f update then
 * (unless last) g update; stop after an f update; error = Σ_j |colsum_j − c_j| / Σr.
 */
import { mulberry32 } from '../../src/train/batches.js';

export interface F64Result {
  f: Float64Array;
  g: Float64Array;
  plan: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
}

export function sinkhornF64(x: ArrayLike<number>, n: number, k: number, o: {
  inputKind: 'cost' | 'logits'; lambda: number; maxIter: number; tol: number;
  col: ArrayLike<number>; row?: ArrayLike<number>; g0?: ArrayLike<number>;
}): F64Result {
  const M = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    if (o.inputKind === 'cost') for (let j = 0; j < k; j++) M[i * k + j] = x[i * k + j];
    else {
      let mx = -Infinity;
      for (let j = 0; j < k; j++) mx = Math.max(mx, x[i * k + j]);
      let s = 0;
      for (let j = 0; j < k; j++) s += Math.exp(x[i * k + j] - mx);
      const lse = mx + Math.log(s);
      for (let j = 0; j < k; j++) M[i * k + j] = lse - x[i * k + j];
    }
  }
  const lam = o.lambda;
  const r = Float64Array.from({ length: n }, (_, i) => (o.row ? o.row[i] : 1));
  const rs = r.reduce((a, b) => a + b, 0);
  const f = new Float64Array(n);
  const g = Float64Array.from({ length: k }, (_, j) => (o.g0 ? o.g0[j] : 0));
  const lseRow = (i: number) => {
    let mx = -Infinity;
    for (let j = 0; j < k; j++) mx = Math.max(mx, (g[j] - M[i * k + j]) / lam);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp((g[j] - M[i * k + j]) / lam - mx);
    return mx + Math.log(s);
  };
  const lseCol = (j: number) => {
    let mx = -Infinity;
    for (let i = 0; i < n; i++) mx = Math.max(mx, (f[i] - M[i * k + j]) / lam);
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp((f[i] - M[i * k + j]) / lam - mx);
    return mx + Math.log(s);
  };
  let it = 0;
  let error = NaN;
  let converged = false;
  for (let t = 1; t <= o.maxIter; t++) {
    for (let i = 0; i < n; i++) f[i] = lam * Math.log(r[i]) - lam * lseRow(i);
    it = t;
    error = 0;
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += Math.exp((f[i] + g[j] - M[i * k + j]) / lam);
      error += Math.abs(s - o.col[j]);
    }
    error /= rs;
    if (error < o.tol) { converged = true; break; }
    if (t === o.maxIter) break;
    for (let j = 0; j < k; j++) g[j] = lam * Math.log(o.col[j]) - lam * lseCol(j);
  }
  const plan = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) plan[i * k + j] = Math.exp((f[i] + g[j] - M[i * k + j]) / lam);
  return { f, g, plan, iterations: it, error, converged };
}

/** Seeded PRNG in [0, 1): the trainer's own mulberry32, so tests are reproducible. */
export const rng = mulberry32;

export function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export function argmaxRows(p: ArrayLike<number>, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let j = 1; j < k; j++) if (p[i * k + j] > p[i * k + b]) b = j;
    out[i] = b;
  }
  return out;
}
