// Logit Adjustment against the formula worked out independently in float64.
import { describe, expect, it } from 'vitest';

import { logitAdjust, logitAdjustSync } from '../../src/methods/la.js';
import { longTailedLogits } from './native-status.js';

describe('logitAdjust', () => {
  it('a hand-computed row: Φ − log π', () => {
    const r = logitAdjustSync({ data: Float32Array.from([1, 2, 3]), rows: 1, cols: 3 }, [5, 3, 2]);
    // π = [0.5, 0.3, 0.2]: 1 − ln 0.5 = 1.693147, 2 − ln 0.3 = 3.203973, 3 − ln 0.2 = 4.609438
    expect(r.logits.data[0]).toBeCloseTo(1.693147, 5);
    expect(r.logits.data[1]).toBeCloseTo(3.203973, 5);
    expect(r.logits.data[2]).toBeCloseTo(4.609438, 5);
    // softmax of those: exp differences relative to the max
    const e = [Math.exp(1.693147 - 4.609438), Math.exp(3.203973 - 4.609438), 1];
    const s = e[0] + e[1] + e[2];
    for (let j = 0; j < 3; j++) expect(r.probabilities.data[j]).toBeCloseTo(e[j] / s, 6);
    expect(r.predictions[0]).toBe(2);
  });

  it('flips a head prediction to a tail class when the prior gap exceeds the logit gap', () => {
    // Φ = [2, 1]: raw argmax 0; π = [0.9, 0.1]: 2 − ln 0.9 = 2.105 < 1 − ln 0.1 = 3.303.
    const r = logitAdjustSync({ data: Float32Array.from([2, 1]), rows: 1, cols: 2 }, [0.9, 0.1]);
    expect(r.predictions[0]).toBe(1);
    const half = logitAdjustSync({ data: Float32Array.from([2, 1]), rows: 1, cols: 2 }, [0.9, 0.1], { tau: 0.25 });
    // τ = 0.25: 2 + 0.0263 vs 1 + 0.5756: stays 0.
    expect(half.predictions[0]).toBe(0);
  });

  it('random matrices: τ and a target prior, against the formula in float64', async () => {
    const n = 41;
    const k = 13;
    const data = longTailedLogits(3, n, k);
    const counts = Array.from({ length: k }, (_, j) => Math.round(500 * Math.exp(-j / 3)) + 1);
    const mu = Array.from({ length: k }, (_, j) => 1 + (j % 3));
    const tau = 1.7;
    const r = await logitAdjust({ data, rows: n, cols: k }, counts, { tau, targetPrior: mu });
    const cs = counts.reduce((a, b) => a + b, 0);
    const ms = mu.reduce((a, b) => a + b, 0);
    for (let i = 0; i < n; i++) {
      const adj = Array.from({ length: k }, (_, j) => data[i * k + j] - tau * Math.log(counts[j] / cs) + Math.log(mu[j] / ms));
      const mx = Math.max(...adj);
      const ex = adj.map((v) => Math.exp(v - mx));
      const s = ex.reduce((a, b) => a + b, 0);
      for (let j = 0; j < k; j++) {
        expect(r.logits.data[i * k + j]).toBe(Math.fround(adj[j]));
        expect(Math.abs(r.probabilities.data[i * k + j] - ex[j] / s)).toBeLessThan(1e-7);
      }
      expect(r.predictions[i]).toBe(adj.indexOf(mx));
    }
  });
});
