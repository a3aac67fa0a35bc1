/**
 * Prior estimation on a simulated label shift built from the REAL Fashion-MNIST-LT logits: the balanced
 * test split (500 per class) resampled, seeded, to a forward long-tailed set (same order as training,
 * class 0 = head) and a backward one (reversed), imbalance ρ = 10 and 20. The labeled validation split
 * (balanced) is the BBSE / calibration split; train_counts.npy is π. The true prior is the resampled
 * set's class proportions, known by construction.
 *
 * Printed table: L1 error of each estimate vs the true prior, and the top-1 accuracy of OT (λ = 1) with
 * the estimated prior, the true prior and a uniform μ.
 */
import { describe, expect, it } from 'vitest';
import { otCorrectSync } from '../../src/methods/ot.js';
import { estimatePrior, type PriorEstimateOptions } from '../../src/prior/estimate.js';
import { resolveTargetPrior } from '../../src/prior/resolve.js';
import { accuracy, argmaxRows, l1, loadFmnist, ltCounts, resample } from './shift.js';

const { test: testSplit, val, trainCounts } = loadFmnist();
const OT = { lambda: 1, tol: 1e-6, maxIter: 5000 } as const;
const SEEDS = [1, 2, 3, 4, 5];

const estimators: Array<[string, PriorEstimateOptions]> = [
  ['EM', { method: 'em', calibration: 'none' }],
  ['EM+BCTS', { method: 'em', calibration: 'bcts', validation: val }],
  ['BBSE', { method: 'bbse', validation: val }],
];

interface Row {
  set: string;
  n: number;
  raw: number;
  uniform: number;
  truth: number;
  est: Record<string, { l1: number; acc: number; iterations: number; converged: boolean }>;
}

const rows: Row[] = [];

describe('prior estimation under a simulated label shift of the Fashion-MNIST-LT test logits', () => {
  for (const rho of [10, 20]) {
    for (const order of ['forward', 'backward'] as const) {
      it(`${order} long tail, ρ = ${rho} (mean over ${SEEDS.length} seeded resamples)`, () => {
        const row: Row = { set: `${order} ρ=${rho}`, n: 0, raw: 0, uniform: 0, truth: 0, est: {} };
        for (const [name] of estimators) row.est[name] = { l1: 0, acc: 0, iterations: 0, converged: true };
        for (const seed of SEEDS) {
          const s = resample(testSplit, ltCounts(10, 500, rho, order), seed);
          const acc = (prior: ArrayLike<number> | undefined) =>
            accuracy(otCorrectSync(s.logits, { ...OT, targetPrior: prior }).predictions, s.labels);
          const m = 1 / SEEDS.length;
          row.n = s.labels.length;
          row.raw += m * accuracy(argmaxRows(s.logits), s.labels);
          row.uniform += m * acc(undefined);
          row.truth += m * acc(s.truePrior);
          for (const [name, opts] of estimators) {
            const e = estimatePrior(s.logits, trainCounts, opts);
            expect(e.prior.every(Number.isFinite)).toBe(true);
            expect(e.converged).toBe(true);
            // The prior handed to OT is the one resolveTargetPrior makes (floored), as otCorrect's 'estimate' does.
            const mu = resolveTargetPrior(s.logits, trainCounts, 'estimate', opts).prior;
            const r = row.est[name]!;
            r.l1 += m * l1(e.prior, s.truePrior);
            r.acc += m * acc(mu);
            r.iterations = Math.max(r.iterations, e.iterations);
          }
        }
        rows.push(row);

        // A calibrated estimate is good: mean L1 < 0.1 for EM+BCTS; BBSE (hard confusion counts) is noisier.
        expect(row.est['EM+BCTS']!.l1).toBeLessThan(0.1);
        expect(row.est['BBSE']!.l1).toBeLessThan(0.13);
        // Calibration is what makes EM work on an over-confident network.
        expect(row.est['EM+BCTS']!.l1).toBeLessThan(row.est['EM']!.l1);
        // OT with the estimated prior is close to OT with the true prior, and far better than uniform μ.
        for (const name of ['EM+BCTS', 'BBSE']) {
          expect(Math.abs(row.est[name]!.acc - row.truth)).toBeLessThan(0.015);
          expect(row.est[name]!.acc).toBeGreaterThan(row.uniform + 0.1);
        }
        expect(row.truth).toBeGreaterThan(row.uniform + 0.1);
      });
    }
  }

  it('prints the table', () => {
    expect(rows.length).toBe(4);
    const pct = (v: number) => (100 * v).toFixed(1).padStart(5);
    const lines = [
      '| test set (5 resamples) | N | L1 EM | L1 EM+BCTS | L1 BBSE | acc raw | OT μ uniform | OT μ true | OT μ EM | OT μ EM+BCTS | OT μ BBSE |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows.map(
        (r) =>
          `| ${r.set} | ${r.n} | ${r.est['EM']!.l1.toFixed(3)} | ${r.est['EM+BCTS']!.l1.toFixed(3)} | ${r.est['BBSE']!.l1.toFixed(3)} | ` +
          `${pct(r.raw)} | ${pct(r.uniform)} | ${pct(r.truth)} | ${pct(r.est['EM']!.acc)} | ${pct(r.est['EM+BCTS']!.acc)} | ${pct(r.est['BBSE']!.acc)} |`,
      ),
    ];
    console.log(`\nPrior estimation on Fashion-MNIST-LT test logits resampled to a long tail (OT λ = 1, tol 1e-6; accuracies in %):\n${lines.join('\n')}\n`);
  });
});
