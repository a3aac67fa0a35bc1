// The float64 reference Sinkhorn against POT's ot.bregman.sinkhorn_log (test/fixtures/pot, made by
// test/fixtures/make_pot_fixtures.py), plus its own conventions checked by direct computation.
import { describe, expect, it } from 'vitest';

import { referenceCost, referenceSinkhorn } from '../../src/paths/reference/sinkhorn.js';
import { centredDiff, lse, maxAbs, mean, potFixtures } from '../fixtures/pot.js';

const fixtures = potFixtures;

describe('reference Sinkhorn vs POT sinkhorn_log (float64)', () => {
  it('fixture file is the expected format', () => {
    expect(fixtures.format).toBe('pot-sinkhorn-v1');
    expect(fixtures.cases.length).toBeGreaterThanOrEqual(8);
  });

  for (const c of fixtures.cases) {
    it(`${c.name} (${c.n}x${c.k}, lambda ${c.lambda}${c.converged ? '' : `, ${c.pot_iterations} iterations`})`, () => {
      const x = Float32Array.from(c.logits);
      // The stored logits are float32 values: the float32 engine and POT saw the same numbers.
      for (let t = 0; t < x.length; t++) expect(x[t]).toBe(c.logits[t]);
      const colMarginal = c.mu.map((m) => m * c.n);
      let g0: number[] | undefined;
      if (!c.converged) {
        // Reproduce POT's iterate: its first v update (from u = 0) is our warm-start g.
        const M = referenceCost(x, c.n, c.k, 'logits');
        g0 = colMarginal.map((cj, j) => {
          const col = Array.from({ length: c.n }, (_, i) => -M[i * c.k + j] / c.lambda);
          return c.lambda * Math.log(cj) - c.lambda * lse(col);
        });
      }
      const r = referenceSinkhorn({
        x, n: c.n, k: c.k, inputKind: 'logits', lambda: c.lambda, colMarginal,
        maxIter: c.converged ? 1_000_000 : c.pot_iterations, tol: c.converged ? 1e-13 : 0,
        f0: g0 ? new Float64Array(c.n) : undefined, g0, plan: true, predictions: true,
      });
      expect(r.converged).toBe(c.converged);
      if (!c.converged) expect(r.iterations).toBe(c.pot_iterations);
      const plan = r.plan as Float64Array;
      const scale = maxAbs(c.plan);
      let d = 0;
      for (let t = 0; t < plan.length; t++) d = Math.max(d, Math.abs(plan[t] - c.plan[t]));
      expect(d / scale).toBeLessThanOrEqual(1e-9);
      // Potentials: same up to the additive constant (f + t, g − t).
      expect(centredDiff(r.g, c.g)).toBeLessThanOrEqual(1e-9 * Math.max(1, maxAbs(c.g)));
      if (c.k > 1) {
        const shift = mean(r.g) - mean(c.g);
        let df = 0;
        for (let i = 0; i < c.n; i++) df = Math.max(df, Math.abs(r.f[i] + shift - c.f[i]));
        expect(df).toBeLessThanOrEqual(1e-9 * Math.max(1, maxAbs(c.f)));
      }
      expect(Array.from(r.predictions as Int32Array)).toEqual(c.predictions);
    });
  }
});

describe('reference Sinkhorn conventions', () => {
  const n = 7;
  const k = 4;
  const x = Float32Array.from({ length: n * k }, (_, t) => Math.sin(t * 1.7) * 2);
  const c = [0.4, 0.3, 0.2, 0.1].map((m) => m * n);

  it('stops after an f update: rows are exact, error is the column L1 error / N of the returned plan', () => {
    const r = referenceSinkhorn({ x, n, k, inputKind: 'logits', lambda: 0.5, maxIter: 5, tol: 0, colMarginal: c, plan: true });
    expect(r.iterations).toBe(5);
    expect(r.converged).toBe(false);
    const Y = r.plan as Float64Array;
    let colErr = 0;
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += Y[i * k + j];
      colErr += Math.abs(s - c[j]);
    }
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += Y[i * k + j];
      expect(Math.abs(s - 1)).toBeLessThan(1e-14);
    }
    expect(r.error).toBeCloseTo(colErr / n, 14);
    expect(r.trace.length).toBe(5);
  });

  it('maxIter 1 from a warm start is a single f update against g0', () => {
    const g0 = [0.3, -0.2, 0.1, 0];
    const r = referenceSinkhorn({ x, n, k, inputKind: 'logits', lambda: 0.7, maxIter: 1, tol: 0, colMarginal: c, f0: new Float64Array(n), g0 });
    const M = referenceCost(x, n, k, 'logits');
    expect(Array.from(r.g)).toEqual(g0);
    for (let i = 0; i < n; i++) {
      const f = -0.7 * lse(g0.map((g, j) => (g - M[i * k + j]) / 0.7));
      expect(r.f[i]).toBeCloseTo(f, 13);
    }
  });

  it("'logits' input equals 'cost' input with M = −log softmax computed separately", () => {
    const M = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      const row = Array.from(x.subarray(i * k, i * k + k));
      const l = lse(row);
      for (let j = 0; j < k; j++) M[i * k + j] = l - row[j];
    }
    const a = referenceSinkhorn({ x, n, k, inputKind: 'logits', lambda: 0.3, maxIter: 50, tol: 0, colMarginal: c, plan: true });
    const b = referenceSinkhorn({ x: M, n, k, inputKind: 'cost', lambda: 0.3, maxIter: 50, tol: 0, colMarginal: c, plan: true });
    for (let t = 0; t < n * k; t++) expect((a.plan as Float64Array)[t]).toBeCloseTo((b.plan as Float64Array)[t], 12);
  });

  it('epsScaling and overrelax reach the same fixed point as plain Sinkhorn', () => {
    const base = { x, n, k, inputKind: 'logits' as const, lambda: 0.05, maxIter: 100000, tol: 1e-12, colMarginal: c, plan: true as const };
    const plain = referenceSinkhorn(base);
    const eps = referenceSinkhorn({ ...base, epsScaling: 0.5 });
    const over = referenceSinkhorn({ ...base, overrelax: 1.5 });
    expect(plain.converged && eps.converged && over.converged).toBe(true);
    for (let t = 0; t < n * k; t++) {
      expect(Math.abs((eps.plan as Float64Array)[t] - (plain.plan as Float64Array)[t])).toBeLessThan(1e-9);
      expect(Math.abs((over.plan as Float64Array)[t] - (plain.plan as Float64Array)[t])).toBeLessThan(1e-9);
    }
    expect(over.iterations).toBeLessThan(plain.iterations);
  });
});
