// DARP: optimality checked through its own KKT conditions and feasibility, the uniform-weight case
// against the λ = 1 OT projection (a different algorithm), and an objective comparison.
import { describe, expect, it } from 'vitest';

import { darp, darpSync } from '../../src/methods/darp.js';
import { otCorrectSync } from '../../src/methods/ot.js';
import { referenceDarp } from '../../src/paths/reference/darp.js';
import { longTailedLogits } from './native-status.js';

function logSoftmax(x: ArrayLike<number>, n: number, k: number): Float64Array {
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = Array.from({ length: k }, (_, j) => x[i * k + j]);
    const m = Math.max(...row);
    const l = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let j = 0; j < k; j++) out[i * k + j] = row[j] - l;
  }
  return out;
}

/** The paper's weights, computed here independently: 1 / entropy of softmax(Φ_i). */
function entropyWeights(logp: Float64Array, n: number, k: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let h = 0;
    for (let j = 0; j < k; j++) h -= Math.exp(logp[i * k + j]) * logp[i * k + j];
    w[i] = 1 / h;
  }
  return w;
}

function objective(x: ArrayLike<number>, logp: Float64Array, w: Float64Array, n: number, k: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) {
    const v = x[i * k + j];
    if (v > 0) s += w[i] * v * (Math.log(v) - logp[i * k + j]);
  }
  return s;
}

describe('DARP', () => {
  const n = 150;
  const k = 8;
  const logits = longTailedLogits(21, n, k);
  const logp = logSoftmax(logits, n, k);
  const w = entropyWeights(logp, n, k);
  const mu = Array.from({ length: k }, (_, j) => 1 + ((j * 7) % 5));
  const ms = mu.reduce((a, b) => a + b, 0);
  const c = mu.map((m) => (n * m) / ms);

  it('the float64 solution satisfies the KKT conditions and the marginals', () => {
    const r = referenceDarp({ logits, n, k, colMarginal: c, weights: w, maxIter: 1000, tol: 1e-12 });
    expect(r.converged).toBe(true);
    // Feasibility.
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += r.x[i * k + j];
      expect(Math.abs(s - 1)).toBeLessThan(1e-13);
    }
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += r.x[i * k + j];
      expect(Math.abs(s - c[j])).toBeLessThan(1e-10);
    }
    // Stationarity: w_i (log X_ik − log p_ik) = −w_i − α_i − ν_k, so D_ik − D_i0 must not depend on i.
    for (let j = 1; j < k; j++) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < n; i++) {
        const d = w[i] * (Math.log(r.x[i * k + j]) - logp[i * k + j]) - w[i] * (Math.log(r.x[i * k]) - logp[i * k]);
        lo = Math.min(lo, d);
        hi = Math.max(hi, d);
      }
      expect(hi - lo).toBeLessThan(1e-8);
    }
  });

  it('public darpSync: float32 probabilities match, rows sum to 1, columns follow N·μ, predictions = argmax', async () => {
    const def = await darp({ data: logits, rows: n, cols: k }, { targetPrior: mu });
    expect(def.converged).toBe(true);
    expect(def.error).toBeLessThan(1e-6); // the default tol
    const r = darpSync({ data: logits, rows: n, cols: k }, { targetPrior: mu, tol: 1e-11 });
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += r.probabilities.data[i * k + j];
      expect(Math.abs(s - 1)).toBeLessThan(1e-6);
    }
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += r.probabilities.data[i * k + j];
      expect(Math.abs(s - c[j])).toBeLessThan(1e-4);
    }
    const ref = referenceDarp({ logits, n, k, colMarginal: c, weights: w, maxIter: 1000, tol: 1e-12 });
    for (let t = 0; t < n * k; t++) expect(Math.abs(r.probabilities.data[t] - ref.x[t])).toBeLessThan(1e-6);
    for (let i = 0; i < n; i++) {
      const row = Array.from(ref.x.subarray(i * k, i * k + k));
      expect(r.predictions[i]).toBe(row.indexOf(Math.max(...row)));
    }
  });

  it('beats the (feasible) OT λ = 1 plan on its own objective, and equals it with uniform weights', () => {
    const d = darpSync({ data: logits, rows: n, cols: k }, { targetPrior: mu, tol: 1e-10 });
    const ot = otCorrectSync({ data: logits, rows: n, cols: k }, { backend: 'reference', lambda: 1, targetPrior: mu, tol: 1e-10, maxIter: 100000 });
    expect(objective(d.probabilities.data, logp, w, n, k)).toBeLessThan(objective(ot.probabilities.data, logp, w, n, k));
    const u = darpSync({ data: logits, rows: n, cols: k }, { targetPrior: mu, weights: 'uniform', tol: 1e-10 });
    for (let t = 0; t < n * k; t++) expect(Math.abs(u.probabilities.data[t] - ot.probabilities.data[t])).toBeLessThan(1e-6);
    // Explicit weights equal to the entropy weights reproduce the default.
    const e = darpSync({ data: logits, rows: n, cols: k }, { targetPrior: mu, weights: w, tol: 1e-10 });
    for (let t = 0; t < n * k; t++) expect(Math.abs(e.probabilities.data[t] - d.probabilities.data[t])).toBeLessThan(1e-6);
  });

  it('maxIter reached → converged false with a warning', () => {
    const r = darpSync({ data: logits, rows: n, cols: k }, { targetPrior: mu, maxIter: 1 });
    expect(r.converged).toBe(false);
    expect(r.iterations).toBe(1);
    expect(r.warning).toMatch(/did not converge/);
  });

  it('edge shapes: one row, one class', () => {
    const one = darpSync({ data: Float32Array.from([0.3, -1, 2]), rows: 1, cols: 3 }, { targetPrior: [1, 2, 1] });
    expect(Array.from(one.probabilities.data).map((v) => +v.toFixed(6))).toEqual([0.25, 0.5, 0.25]);
    const single = darpSync({ data: Float32Array.from([0.3, -1, 2]), rows: 3, cols: 1 });
    expect(Array.from(single.probabilities.data)).toEqual([1, 1, 1]);
    expect(single.converged).toBe(true);
  });
});
