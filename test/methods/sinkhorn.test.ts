// Public sinkhorn/otCorrect on the native engine and the reference path: against POT's fixtures, against
// the float64 reference, property tests over shapes, thread-count bit-identity, cancellation, views.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import type { Backend, Matrix } from '../../src/api/types.js';
import { otCorrectSync } from '../../src/methods/ot.js';
import { sinkhorn, sinkhornSync } from '../../src/methods/sinkhorn.js';
import { referenceCost, referenceSinkhorn } from '../../src/paths/reference/sinkhorn.js';
import { centredDiff, lse, maxAbs, potFixtures } from '../fixtures/pot.js';
import { longTailedLogits, nativeSinkhornUnavailable, rng } from './native-status.js';

const fixtures = potFixtures;

const noNative = nativeSinkhornUnavailable();
if (noNative) console.warn(`[skip] native tests in test/methods/sinkhorn.test.ts: ${noNative}`);
const backends: Backend[] = noNative ? ['reference'] : ['reference', 'cpu'];

describe.skipIf(noNative !== null)('native CPU vs POT sinkhorn_log fixtures (float32 engine)', () => {
  for (const c of fixtures.cases) {
    it(`${c.name} (${c.n}x${c.k}, lambda ${c.lambda})`, () => {
      const logits: Matrix = { data: Float32Array.from(c.logits), rows: c.n, cols: c.k };
      let warmStart: { f: Float64Array; g: number[] } | undefined;
      if (!c.converged) {
        const M = referenceCost(logits.data, c.n, c.k, 'logits');
        const g = c.mu.map((m, j) =>
          c.lambda * Math.log(m * c.n) - c.lambda * lse(Array.from({ length: c.n }, (_, i) => -M[i * c.k + j] / c.lambda)));
        warmStart = { f: new Float64Array(c.n), g };
      }
      const r = otCorrectSync(logits, {
        backend: 'cpu', lambda: c.lambda, targetPrior: c.mu, warmStart,
        maxIter: c.converged ? 200_000 : c.pot_iterations, tol: c.converged ? 1e-7 : 0,
      });
      expect(r.backend).toBe('cpu');
      expect(r.converged).toBe(c.converged);
      const P = r.probabilities.data;
      let d = 0;
      for (let t = 0; t < P.length; t++) d = Math.max(d, Math.abs(P[t] - c.plan[t]));
      expect(d / maxAbs(c.plan)).toBeLessThanOrEqual(1e-5);
      expect(centredDiff(r.classOffsets, c.g)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(c.g)));
      // Predictions equal, except on rows whose two largest plan entries tie to float32 precision
      // (e.g. the wide case, where whole columns go to one row and entries equal 1/11 exactly).
      for (let i = 0; i < c.n; i++) {
        const row = c.plan.slice(i * c.k, i * c.k + c.k).sort((a, b) => b - a);
        if (c.k === 1 || row[0] - row[1] > 1e-5 * row[0]) expect(r.predictions[i]).toBe(c.predictions[i]);
      }
    });
  }
});

describe.skipIf(noNative !== null)('native CPU vs the float64 reference on random problems', () => {
  const shapes: Array<[number, number, number]> = [[64, 10, 1], [200, 33, 0.1], [37, 100, 0.5], [500, 3, 0.05], [5, 257, 1]];
  for (const [n, k, lambda] of shapes) {
    it(`${n}x${k} lambda ${lambda}, same fixed iterations`, () => {
      const data = longTailedLogits(n * 31 + k, n, k);
      const u = rng(k);
      const mu = Array.from({ length: k }, () => 0.2 + u());
      const opts = { lambda, targetPrior: mu, maxIter: 40, tol: 0, plan: true, predictions: true } as const;
      // The engine's cost is float32-rounded logits; the reference uses the same float32 values.
      const cost = { data: Float32Array.from(referenceCost(data, n, k, 'logits')), rows: n, cols: k };
      const nat = sinkhornSync(cost, { ...opts, backend: 'cpu' });
      const ref = sinkhornSync(cost, { ...opts, backend: 'reference' });
      expect(nat.iterations).toBe(40);
      expect(ref.iterations).toBe(40);
      const scale = maxAbs(ref.plan as Float32Array);
      let d = 0;
      for (let t = 0; t < n * k; t++) d = Math.max(d, Math.abs((nat.plan as Float32Array)[t] - (ref.plan as Float32Array)[t]));
      expect(d / scale).toBeLessThanOrEqual(1e-5);
      expect(centredDiff(nat.g, ref.g)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(ref.g)));
      expect(Math.abs(nat.error - ref.error)).toBeLessThanOrEqual(1e-5 * Math.max(1, ref.error));
    });
  }
});

/** Checks the invariants of a converged solve; returns nothing, throws on failure. */
function checkInvariants(logits: Float32Array, n: number, k: number, mu: number[], tol: number, r: ReturnType<typeof sinkhornSync>, native: boolean) {
  const Y = r.plan as Float32Array;
  const rowTol = native ? 2e-5 * Math.max(1, Math.sqrt(k)) : 1e-6;
  const colSums = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) {
      const y = Y[i * k + j];
      expect(y).toBeGreaterThanOrEqual(0);
      s += y;
      colSums[j] += y;
    }
    expect(Math.abs(s - 1)).toBeLessThanOrEqual(rowTol);
  }
  let colErr = 0;
  for (let j = 0; j < k; j++) colErr += Math.abs(colSums[j] - n * mu[j]);
  expect(r.converged).toBe(true);
  expect(r.error).toBeLessThan(tol);
  // The float32 plan's own column error: tol plus float32 rounding of the entries.
  expect(colErr / n).toBeLessThanOrEqual(tol + (native ? 2e-5 * Math.max(1, Math.sqrt(k)) : 1e-6));
  // Online identity: argmax_j(Φ_ij + g_j) = prediction, except at numerical ties.
  const pred = r.predictions as Int32Array;
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: k }, (_, j) => logits[i * k + j] + r.g[j]);
    const best = z.indexOf(Math.max(...z));
    const sorted = [...z].sort((a, b) => b - a);
    const gap = k > 1 ? sorted[0] - sorted[1] : Infinity;
    if (gap > (native ? 1e-4 : 1e-9) * Math.max(1, Math.abs(sorted[0]))) expect(pred[i]).toBe(best);
  }
}

describe('property tests: plan ≥ 0, rows sum to 1, columns within tol, argmax(Φ + g) = predictions', () => {
  const shape = fc.oneof(
    fc.constantFrom<[number, number]>([1, 1], [1, 7], [9, 1], [17, 33], [33, 17], [500, 3], [3, 300], [16, 16], [15, 31]),
    fc.tuple(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 })),
  );
  for (const backend of backends) {
    it(`backend ${backend}`, () => {
      fc.assert(
        fc.property(shape, fc.integer({ min: 1, max: 1 << 30 }), fc.constantFrom(0.05, 0.1, 0.5, 1, 2), fc.boolean(), ([n, k], seed, lambda, uniform) => {
          const logits = longTailedLogits(seed, n, k, 1.2);
          const u = rng(seed + 7);
          const raw = Array.from({ length: k }, () => (uniform ? 1 : 0.2 + u()));
          const z = raw.reduce((s, v) => s + v, 0);
          const mu = raw.map((v) => v / z);
          const tol = 1e-4;
          const r = otCorrectSync({ data: logits, rows: n, cols: k }, { backend, lambda, targetPrior: mu, tol, maxIter: 100_000 });
          checkInvariants(logits, n, k, mu, tol, { ...r, plan: r.probabilities.data, g: r.classOffsets }, backend !== 'reference');
        }),
        { numRuns: backend === 'reference' ? 40 : 80, seed: 424242 },
      );
    });
  }
});

describe.skipIf(noNative !== null)('native determinism', () => {
  // Sizes past the engine's 64k-element row chunks (and 256-column merge blocks), so threads split work.
  for (const [n, k] of [[6007, 37], [701, 300]] as const) {
    it(`${n}x${k}: threads 1, 2, 3 give byte-identical plans, potentials and iteration counts`, () => {
      const logits = { data: longTailedLogits(n + k, n, k), rows: n, cols: k };
      const runs = [1, 2, 3].map((threads) => otCorrectSync(logits, { backend: 'cpu', threads, lambda: 0.2, tol: 1e-5 }));
      const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      expect(runs[0].iterations).toBeGreaterThan(3);
      for (const r of runs.slice(1)) {
        expect(r.iterations).toBe(runs[0].iterations);
        expect(bytes(r.probabilities.data).equals(bytes(runs[0].probabilities.data))).toBe(true);
        expect(bytes(r.predictions).equals(bytes(runs[0].predictions))).toBe(true);
        expect(bytes(r.classOffsets).equals(bytes(runs[0].classOffsets))).toBe(true);
        expect(bytes(r.f).equals(bytes(runs[0].f))).toBe(true);
      }
      const again = otCorrectSync(logits, { backend: 'cpu', threads: 2, lambda: 0.2, tol: 1e-5 });
      expect(bytes(again.probabilities.data).equals(bytes(runs[0].probabilities.data))).toBe(true);
    });
  }

  it('epsScaling and overrelax converge to the reference fixed point', () => {
    const n = 120;
    const k = 12;
    const logits = { data: longTailedLogits(77, n, k, 0.4), rows: n, cols: k };
    const opts = { lambda: 0.02, tol: 1e-6, maxIter: 100_000 };
    const ref = otCorrectSync(logits, { backend: 'reference', ...opts });
    const plain = otCorrectSync(logits, { backend: 'cpu', ...opts });
    expect(ref.converged && plain.converged).toBe(true);
    for (const extra of [{}, { epsScaling: 0.7 }, { overrelax: 1.8 }, { epsScaling: 0.7, overrelax: 1.5 }]) {
      const r = otCorrectSync(logits, { backend: 'cpu', ...opts, ...extra });
      expect(r.converged).toBe(true);
      let d = 0;
      for (let t = 0; t < n * k; t++) d = Math.max(d, Math.abs(r.probabilities.data[t] - ref.probabilities.data[t]));
      expect(d).toBeLessThan(1e-4);
    }
    expect(otCorrectSync(logits, { backend: 'cpu', ...opts, overrelax: 1.8 }).iterations).toBeLessThan(plain.iterations);
  });
});

describe('solver behaviour on every available backend', () => {
  for (const backend of backends) {
    it(`${backend}: maxIter reached → converged false with a warning`, () => {
      const logits = { data: longTailedLogits(5, 40, 6), rows: 40, cols: 6 };
      const r = otCorrectSync(logits, { backend, lambda: 0.01, maxIter: 3, tol: 1e-9 });
      expect(r.iterations).toBe(3);
      expect(r.converged).toBe(false);
      expect(r.warning).toMatch(/did not converge in 3 iterations/);
      const ok = otCorrectSync(logits, { backend, lambda: 1 });
      expect(ok.converged).toBe(true);
      expect(ok.warning).toBeUndefined();
    });

    it(`${backend}: subarray views with a byteOffset read the right elements`, () => {
      const n = 23;
      const k = 9;
      const data = longTailedLogits(11, n, k);
      const big = new Float32Array(n * k + 13).fill(1e30);
      big.set(data, 5);
      const view = big.subarray(5, 5 + n * k);
      expect(view.byteOffset).toBe(20);
      const a = otCorrectSync({ data: view, rows: n, cols: k }, { backend, lambda: 0.5 });
      const b = otCorrectSync({ data: Float32Array.from(data), rows: n, cols: k }, { backend, lambda: 0.5 });
      expect(Array.from(a.probabilities.data)).toEqual(Array.from(b.probabilities.data));
      const out = new Float32Array(n * k + 3).subarray(2, 2 + n * k);
      const c = otCorrectSync({ data: view, rows: n, cols: k }, { backend, lambda: 0.5, out });
      expect(c.probabilities.data).toBe(out);
      expect(Array.from(out)).toEqual(Array.from(b.probabilities.data));
    });

    it(`${backend}: warm start from a converged solve converges at once`, () => {
      const logits = { data: longTailedLogits(8, 60, 7), rows: 60, cols: 7 };
      const first = otCorrectSync(logits, { backend, lambda: 0.3, tol: 1e-6 });
      const second = otCorrectSync(logits, { backend, lambda: 0.3, tol: 1e-6, warmStart: { f: first.f, g: first.classOffsets } });
      expect(second.converged).toBe(true);
      expect(second.iterations).toBeLessThanOrEqual(2);
    });

    it(`${backend}: trace records the error at every check`, async () => {
      const logits = { data: longTailedLogits(9, 50, 5), rows: 50, cols: 5 };
      const r = await sinkhorn(
        { data: Float32Array.from(referenceCost(logits.data, 50, 5, 'logits')), rows: 50, cols: 5 },
        { backend, lambda: 0.2, tol: 1e-6, checkEvery: 3, trace: true },
      );
      expect(r.trace).toBeInstanceOf(Float64Array);
      expect(r.trace!.length).toBe(Math.ceil(r.iterations / 3));
      expect(r.trace![r.trace!.length - 1]).toBe(r.error);
    });
  }

  it('reference: an AbortSignal rejects with an AbortError (before and during the solve)', async () => {
    const logits = { data: longTailedLogits(3, 400, 50), rows: 400, cols: 50 };
    const cost = { data: Float32Array.from(referenceCost(logits.data, 400, 50, 'logits')), rows: 400, cols: 50 };
    const pre = new AbortController();
    pre.abort();
    await expect(sinkhorn(cost, { backend: 'reference', signal: pre.signal })).rejects.toMatchObject({ name: 'AbortError' });
    const ac = new AbortController();
    const p = sinkhorn(cost, { backend: 'reference', lambda: 0.001, tol: 0, maxIter: 1_000_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
  });

  it.skipIf(noNative !== null)('native: an AbortSignal cancels a running solve', async () => {
    const n = 2000;
    const k = 200;
    const cost = { data: Float32Array.from(referenceCost(longTailedLogits(4, n, k), n, k, 'logits')), rows: n, cols: k };
    const ac = new AbortController();
    const t0 = Date.now();
    const p = sinkhorn(cost, { backend: 'cpu', lambda: 0.001, tol: 0, maxIter: 10_000_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe('sinkhorn with cost input agrees with POT fixtures through the public API (reference backend)', () => {
  it('row/column marginals given explicitly', () => {
    const c = fixtures.cases.find((x) => x.name === 'nonuniform_lam0.1')!;
    const cost = { data: Float32Array.from(referenceCost(Float32Array.from(c.logits), c.n, c.k, 'logits')), rows: c.n, cols: c.k };
    // The cost was rounded to float32 here, so compare with the reference on the same cost, and with POT loosely.
    const r = sinkhornSync(cost, {
      backend: 'reference', lambda: c.lambda, rowMarginal: new Float64Array(c.n).fill(1),
      colMarginal: c.mu.map((m) => m * c.n), tol: 1e-12, maxIter: 100000, plan: true,
    });
    const ref = referenceSinkhorn({ x: cost.data, n: c.n, k: c.k, lambda: c.lambda, colMarginal: c.mu.map((m) => m * c.n), tol: 1e-12, maxIter: 100000, plan: true });
    expect(Array.from(r.plan!)).toEqual(Array.from(ref.plan as Float64Array, (v) => Math.fround(v)));
    let d = 0;
    for (let t = 0; t < c.plan.length; t++) d = Math.max(d, Math.abs(r.plan![t] - c.plan[t]));
    expect(d / maxAbs(c.plan)).toBeLessThan(1e-4);
  });
});
