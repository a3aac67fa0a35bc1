// otCorrect beyond the solver: the online identity through applyClassOffsets, options, and a real
// long-tailed data set (Fashion-MNIST-LT logits in data/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import type { Backend } from '../../src/api/types.js';
import { readLabels, readMatrix, readVector } from '../../src/io/index.js';
import { metrics } from '../../src/metrics.js';
import { applyClassOffsets, otCorrect, otCorrectSync } from '../../src/methods/ot.js';
import { estimatePrior } from '../../src/prior/estimate.js';
import { floorPrior } from '../../src/prior/resolve.js';
import { longTailedLogits, nativeSinkhornUnavailable } from './native-status.js';

const noNative = nativeSinkhornUnavailable();
if (noNative) console.warn(`[skip] native tests in test/methods/ot.test.ts: ${noNative}`);
const backends: Backend[] = noNative ? ['reference'] : ['reference', 'cpu'];

describe('online mode: applyClassOffsets reproduces the batch plan', () => {
  for (const backend of backends) {
    for (const lambda of [1, 0.1]) {
      it(`${backend}, lambda ${lambda}`, () => {
        const n = 300;
        const k = 17;
        const data = longTailedLogits(123, n, k);
        const r = otCorrectSync({ data, rows: n, cols: k }, { backend, lambda, tol: 1e-6 });
        // Correct a subset of the rows one sample at a time, as new data would be.
        for (const i of [0, 1, 57, 299]) {
          const one = applyClassOffsets({ data: data.slice(i * k, i * k + k), rows: 1, cols: k }, r.classOffsets, { lambda });
          for (let j = 0; j < k; j++) expect(Math.abs(one.probabilities.data[j] - r.probabilities.data[i * k + j])).toBeLessThan(2e-6);
          expect(one.predictions[0]).toBe(r.predictions[i]);
        }
        const all = applyClassOffsets({ data, rows: n, cols: k }, r.classOffsets, { lambda });
        let agree = 0;
        for (let i = 0; i < n; i++) agree += all.predictions[i] === r.predictions[i] ? 1 : 0;
        expect(agree).toBe(n);
      });
    }
  }
});

describe('otCorrect options', () => {
  const logits = { data: longTailedLogits(1, 50, 4), rows: 50, cols: 4 };
  it("targetPrior 'estimate' needs trainPrior and solves with the EM estimate", async () => {
    expect(() => otCorrectSync(logits, { targetPrior: 'estimate' })).toThrow(/targetPrior 'estimate' needs trainPrior/);
    const trainPrior = [40, 30, 20, 10];
    const est = estimatePrior(logits, trainPrior);
    const a = await otCorrect(logits, { backend: 'reference', targetPrior: 'estimate', trainPrior, tol: 1e-9 });
    const b = await otCorrect(logits, { backend: 'reference', targetPrior: floorPrior(est.prior), tol: 1e-9 });
    expect(Array.from(a.priorEstimate!.prior)).toEqual(Array.from(est.prior));
    expect(Array.from(a.probabilities.data)).toEqual(Array.from(b.probabilities.data));
    expect(() => otCorrectSync(logits, { targetPrior: 'guess' as 'estimate' })).toThrow(/targetPrior/);
  });
  it("backend 'tfjs' agrees with the float64 reference; its sync form says to use the Promise", async () => {
    expect(() => otCorrectSync(logits, { backend: 'tfjs' })).toThrow(/backend 'tfjs' is asynchronous only/);
    await expect(otCorrect(logits, { backend: 'tfjs', overrelax: 1.5 })).rejects.toThrow(/does not support overrelax/);
    const t = await otCorrect(logits, { backend: 'tfjs', tol: 1e-6 });
    const r = await otCorrect(logits, { backend: 'reference', tol: 1e-6 });
    expect(t.backend).toBe('tfjs');
    expect(Array.from(t.predictions)).toEqual(Array.from(r.predictions));
    let worst = 0;
    for (let i = 0; i < r.probabilities.data.length; i++) worst = Math.max(worst, Math.abs(t.probabilities.data[i] - r.probabilities.data[i]));
    expect(worst).toBeLessThan(1e-4);
  });
  it('target prior counts and probabilities give the same result; columns follow N·μ', async () => {
    const a = await otCorrect(logits, { backend: 'reference', targetPrior: [10, 20, 30, 40], tol: 1e-8 });
    const b = await otCorrect(logits, { backend: 'reference', targetPrior: [0.1, 0.2, 0.3, 0.4], tol: 1e-8 });
    expect(Array.from(a.probabilities.data)).toEqual(Array.from(b.probabilities.data));
    for (let j = 0; j < 4; j++) {
      let s = 0;
      for (let i = 0; i < 50; i++) s += a.probabilities.data[i * 4 + j];
      expect(s).toBeCloseTo(50 * (j + 1) / 10, 4);
    }
  });
});

const dataDir = fileURLToPath(new URL('../../data/fmnist-lt/', import.meta.url));
describe.skipIf(!existsSync(`${dataDir}test_logits.npy`))('real data: Fashion-MNIST-LT test logits', () => {
  it('OT with a uniform target raises balanced accuracy and shrinks KL(predicted ‖ uniform)', async () => {
    const logits = readMatrix(`${dataDir}test_logits.npy`);
    const labels = readLabels(`${dataDir}test_labels.npy`);
    const counts = readVector(`${dataDir}train_counts.npy`);
    const n = logits.rows;
    const k = logits.cols;
    const raw = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (logits.data[i * k + j] > logits.data[i * k + best]) best = j;
      raw[i] = best;
    }
    const before = metrics(raw, labels, counts);
    const r = await otCorrect(logits, { backend: backends[backends.length - 1], lambda: 1 });
    expect(r.converged).toBe(true);
    const after = metrics(r.predictions, labels, counts, { probabilities: r.probabilities });
    expect(after.balancedAccuracy).toBeGreaterThan(before.balancedAccuracy);
    expect(after.klMarginal).toBeLessThan(before.klMarginal);
    console.log(`fmnist-lt test: balanced accuracy ${before.balancedAccuracy.toFixed(4)} -> ${after.balancedAccuracy.toFixed(4)}, ` +
      `KL ${before.klMarginal.toFixed(4)} -> ${after.klMarginal.toFixed(4)}, ${r.iterations} iterations on ${r.backend}`);
  });

  it("probabilities 'calibrated': softmax(Φ + g), the plan's predictions, and an ECE near the classifier's own", () => {
    const logits = readMatrix(`${dataDir}test_logits.npy`);
    const labels = readLabels(`${dataDir}test_labels.npy`);
    const counts = readVector(`${dataDir}train_counts.npy`);
    const { rows: n, cols: k } = logits;
    for (const backend of backends) {
      const plan = otCorrectSync(logits, { backend, lambda: 0.1, tol: 1e-6 });
      const cal = otCorrectSync(logits, { backend, lambda: 0.1, tol: 1e-6, probabilities: 'calibrated' });
      expect(cal.predictions).toEqual(plan.predictions);
      // softmax(Φ_i + g) in float64, independently of the library
      for (const i of [0, 1, 777, n - 1]) {
        const z = Array.from({ length: k }, (_, j) => logits.data[i * k + j]! + cal.classOffsets[j]!);
        const m = Math.max(...z);
        const e = z.map((v) => Math.exp(v - m));
        const s = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < k; j++) expect(cal.probabilities.data[i * k + j]).toBeCloseTo(e[j]! / s, 6);
      }
      const raw = new Float32Array(n * k);
      for (let i = 0; i < n; i++) {
        const row = Array.from(logits.data.subarray(i * k, i * k + k));
        const m = Math.max(...row);
        const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
        for (let j = 0; j < k; j++) raw[i * k + j] = Math.exp(row[j]! - m) / s;
      }
      const pred = Int32Array.from({ length: n }, (_, i) => { let b = 0; for (let j = 1; j < k; j++) if (raw[i * k + j]! > raw[i * k + b]!) b = j; return b; });
      const eceCE = metrics(pred, labels, counts, { probabilities: { data: raw, rows: n, cols: k } }).ece!;
      const ecePlan = metrics(plan.predictions, labels, counts, { probabilities: plan.probabilities }).ece!;
      const eceCal = metrics(cal.predictions, labels, counts, { probabilities: cal.probabilities }).ece!;
      console.log(`fmnist-lt, λ = 0.1, ${backend}: ECE plan ${(100 * ecePlan).toFixed(2)}%, calibrated ${(100 * eceCal).toFixed(2)}%, CE ${(100 * eceCE).toFixed(2)}%`);
      expect(eceCal).toBeLessThan(ecePlan / 2);
      expect(Math.abs(eceCal - eceCE)).toBeLessThan(0.05);
    }
  });

  it("probabilities 'calibrated' refuses an out that overlaps the logits (they are computed from them)", () => {
    const data = longTailedLogits(3, 20, 4);
    expect(() => otCorrectSync({ data, rows: 20, cols: 4 }, { out: data, probabilities: 'calibrated' })).toThrow(/calibrated' are computed from the logits/);
    expect(() => otCorrectSync({ data, rows: 20, cols: 4 }, { probabilities: 'soft' as never })).toThrow(/probabilities must be 'plan' or 'calibrated'/);
  });
});
