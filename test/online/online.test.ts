/**
 * OnlineCorrector: the g identity (a stream of single samples gets exactly the batch plan's predictions
 * and rows), drifting streams, persistence and bad input. The batch plan comes from otCorrect (the
 * native engine, or the float64 reference path), never from the corrector itself.
 */
import { describe, expect, it } from 'vitest';
import type { Matrix } from '../../src/api/types.js';
import { otCorrectSync } from '../../src/methods/ot.js';
import { OnlineCorrector } from '../../src/online.js';
import { accuracy, l1, loadFmnist, ltCounts, predictedMarginal, resample, rng, subset } from '../prior/shift.js';

const { test: testSplit, val, trainCounts } = loadFmnist();

function randomLogits(n: number, k: number, seed: number, scale: number): Matrix {
  const r = rng(seed);
  return { data: Float32Array.from({ length: n * k }, () => scale * (2 * r() - 1)), rows: n, cols: k };
}

/** Streams the rows of `m` one at a time through the corrector; checks them against the batch result. */
function checkStream(oc: OnlineCorrector, m: Matrix, batch: { predictions: Int32Array; probabilities: Matrix }) {
  const k = m.cols;
  let mismatches = 0;
  let maxDiff = 0;
  for (let i = 0; i < m.rows; i++) {
    const row = m.data.subarray(i * k, (i + 1) * k);
    const r = oc.correct(row);
    expect(r.probabilities.rows).toBe(1);
    if (r.predictions[0] !== batch.predictions[i]) mismatches++;
    for (let j = 0; j < k; j++) maxDiff = Math.max(maxDiff, Math.abs(r.probabilities.data[j]! - batch.probabilities.data[i * k + j]!));
  }
  return { mismatches, maxDiff };
}

describe('OnlineCorrector: single samples reproduce the batch plan (g identity)', () => {
  it('real Fashion-MNIST-LT test logits, uniform μ, λ = 1', () => {
    const oc = new OnlineCorrector({ lambda: 1, tol: 1e-6 });
    const fit = oc.fitSync(testSplit.logits);
    // The batch plan, solved independently of the corrector with the same settings.
    const plan = otCorrectSync(testSplit.logits, { lambda: 1, tol: 1e-6 });
    expect(fit.converged).toBe(true);
    const { mismatches, maxDiff } = checkStream(oc, testSplit.logits, plan);
    expect(mismatches).toBe(0);
    expect(maxDiff).toBeLessThan(1e-5);
    // The corrector's offsets alone carry the column marginal: Σ_i softmax(Φ_i + g) ≈ N μ.
    const all = oc.correct(testSplit.logits);
    const cols = new Float64Array(10);
    for (let i = 0; i < all.probabilities.rows; i++) for (let j = 0; j < 10; j++) cols[j] += all.probabilities.data[i * 10 + j]!;
    expect(l1(cols.map((c) => c / testSplit.logits.rows), new Float64Array(10).fill(0.1))).toBeLessThan(1e-5);
    expect(Array.from(all.predictions)).toEqual(Array.from(plan.predictions));
  });

  it('random logits, non-uniform μ, λ = 0.3, float64 reference backend', () => {
    const m = randomLogits(800, 7, 99, 4);
    const mu = [5, 1, 2, 3, 1, 4, 2];
    const oc = new OnlineCorrector({ lambda: 0.3, targetPrior: mu, tol: 1e-7, maxIter: 20000, backend: 'reference' });
    oc.fitSync(m);
    const plan = otCorrectSync(m, { lambda: 0.3, targetPrior: mu, tol: 1e-7, maxIter: 20000, backend: 'reference' });
    const { mismatches, maxDiff } = checkStream(oc, m, plan);
    expect(mismatches).toBe(0);
    expect(maxDiff).toBeLessThan(1e-5);
    const s = oc.classOffsets.reduce((a, v) => a + v, 0);
    expect(Math.abs(s)).toBeLessThan(1e-9); // stored in the gauge Σ g = 0
  });

  it('random logits on the native backend, any λ: identical argmax and rows', async () => {
    for (const [lambda, seed] of [[1, 1], [0.1, 2], [2, 3]] as const) {
      const m = randomLogits(2000, 12, seed, 3);
      const oc = new OnlineCorrector({ lambda, tol: 1e-5, maxIter: 20000 });
      const fit = await oc.fit(m);
      // fit's own plan rows are the batch plan of the very solve that produced g.
      const { mismatches, maxDiff } = checkStream(oc, m, fit);
      expect(mismatches).toBe(0);
      expect(maxDiff).toBeLessThan(1e-5);
    }
  });
});

describe('OnlineCorrector: drifting stream', () => {
  // Eight chunks whose class prior moves from the forward long tail (class 0 = head) to the backward one.
  const K = 10;
  const fwd = ltCounts(K, 500, 10, 'forward');
  const bwd = ltCounts(K, 500, 10, 'backward');
  const chunks = Array.from({ length: 8 }, (_, t) => {
    const a = t / 7;
    const counts = fwd.map((f, c) => Math.round(0.6 * ((1 - a) * f + a * bwd[c]!)));
    return resample(testSplit, counts, 1000 + t);
  });

  it('update (re-estimated prior, warm start, decay) tracks the shift; a frozen fit does not', () => {
    const opts = { lambda: 1, tol: 1e-6, targetPrior: 'estimate' as const, trainPrior: trainCounts, priorEstimation: { validation: val } };
    const frozen = new OnlineCorrector(opts);
    const tracking = new OnlineCorrector({ ...opts, decay: 0.3 });
    frozen.fitSync(chunks[0]!.logits);
    tracking.fitSync(chunks[0]!.logits);
    const table: string[] = [];
    let accF = 0;
    let accT = 0;
    let margF = 0;
    let margT = 0;
    // Prequential: chunk t is corrected with the offsets learned from chunks < t, then fed to update.
    for (let t = 1; t < chunks.length; t++) {
      const c = chunks[t]!;
      const pf = frozen.correct(c.logits).predictions;
      const pt = tracking.correct(c.logits).predictions;
      const row = {
        accF: accuracy(pf, c.labels), accT: accuracy(pt, c.labels),
        margF: l1(predictedMarginal(pf, K), c.truePrior), margT: l1(predictedMarginal(pt, K), c.truePrior),
      };
      table.push(`| ${t} | ${(100 * row.accF).toFixed(1)} | ${(100 * row.accT).toFixed(1)} | ${row.margF.toFixed(3)} | ${row.margT.toFixed(3)} |`);
      if (t >= 4) {
        accF += row.accF / 4;
        accT += row.accT / 4;
        margF += row.margF / 4;
        margT += row.margT / 4;
      }
      const rep = tracking.updateSync(c.logits);
      expect(rep.priorEstimate!.converged).toBe(true);
    }
    console.log(
      '\nDrifting stream (prior moves forward → backward long tail over 8 chunks; chunk t corrected with offsets from chunks < t):\n' +
        '| chunk | acc frozen % | acc update % | L1(pred. marginal, true) frozen | update |\n|---:|---:|---:|---:|---:|\n' +
        table.join('\n') + `\nmean over chunks 4–7: acc ${(100 * accF).toFixed(1)} vs ${(100 * accT).toFixed(1)}, marginal L1 ${margF.toFixed(3)} vs ${margT.toFixed(3)}\n`,
    );
    expect(accT).toBeGreaterThan(accF + 0.02);
    expect(margT).toBeLessThan(margF * 0.6);
    expect(tracking.stats).toEqual({ updates: 8, samples: chunks.reduce((a, c) => a + c.labels.length, 0) });
  });

  it('update blends exactly g ← decay·g + (1 − decay)·g_batch, and the warm start saves iterations', () => {
    const half1 = subset(testSplit, Array.from({ length: 2500 }, (_, i) => i));
    const half2 = subset(testSplit, Array.from({ length: 2500 }, (_, i) => 2500 + i));
    const oc = new OnlineCorrector({ lambda: 0.5, tol: 1e-5, maxIter: 20000, decay: 0.25 });
    oc.fitSync(half1.logits);
    const before = oc.classOffsets;
    const rep = oc.updateSync(half2.logits);
    expect(rep.converged).toBe(true);
    for (let j = 0; j < 10; j++) expect(rep.classOffsets[j]).toBeCloseTo(0.25 * before[j]! + 0.75 * rep.batchOffsets[j]!, 12);
    expect(Array.from(oc.classOffsets)).toEqual(Array.from(rep.classOffsets));
    // The batch offsets are those of the batch's OT problem: compare with a cold solve converged much
    // further (Sinkhorn at λ = 0.5 is slow here: at tol 1e-5 the offsets are still ~5e-3 from the limit).
    const exact = otCorrectSync(half2.logits, { lambda: 0.5, tol: 1e-10, maxIter: 100000 });
    const mean = exact.classOffsets.reduce((a, v) => a + v, 0) / 10;
    for (let j = 0; j < 10; j++) expect(Math.abs(rep.batchOffsets[j]! - (exact.classOffsets[j]! - mean))).toBeLessThan(1e-2);
    const cold = otCorrectSync(half2.logits, { lambda: 0.5, tol: 1e-5, maxIter: 20000 });
    console.log(`warm-started update: ${rep.iterations} iterations; cold solve: ${cold.iterations}`);
    expect(rep.iterations).toBeLessThan(cold.iterations);
  });
});

describe('OnlineCorrector: persistence', () => {
  it('toJSON / fromJSON round-trips exactly (same predictions and probabilities)', () => {
    const oc = new OnlineCorrector({ lambda: 0.7, targetPrior: trainCounts, decay: 0.2, tol: 1e-5 });
    oc.fitSync(testSplit.logits);
    const text = JSON.stringify(oc);
    const back = OnlineCorrector.fromJSON(text);
    expect(Array.from(back.classOffsets)).toEqual(Array.from(oc.classOffsets));
    expect(back.lambda).toBe(0.7);
    expect(back.decay).toBe(0.2);
    expect(back.stats).toEqual(oc.stats);
    const a = oc.correct(val.logits);
    const b = back.correct(val.logits);
    expect(Array.from(b.predictions)).toEqual(Array.from(a.predictions));
    expect(Array.from(b.probabilities.data)).toEqual(Array.from(a.probabilities.data));
    expect(JSON.stringify(back)).toBe(text);
  });

  it('fromJSON rejects what toJSON did not make', () => {
    const good = (() => {
      const oc = new OnlineCorrector();
      oc.fitSync(randomLogits(50, 3, 5, 1));
      return oc.toJSON();
    })();
    expect(() => OnlineCorrector.fromJSON('{')).toThrow(/not valid JSON/);
    expect(() => OnlineCorrector.fromJSON({ ...good, format: 'x' } as never)).toThrow(/format must be 'otlm-online-corrector'/);
    expect(() => OnlineCorrector.fromJSON({ ...good, version: 2 } as never)).toThrow(/unsupported version 2/);
    expect(() => OnlineCorrector.fromJSON({ ...good, classOffsets: [0, 1] })).toThrow(/classOffsets must be an array of 3 numbers/);
    expect(() => OnlineCorrector.fromJSON({ ...good, classOffsets: [0, NaN, 1] })).toThrow(/classOffsets\[1\] must be a finite number/);
    expect(() => OnlineCorrector.fromJSON({ ...good, lambda: -1 })).toThrow(/lambda must be > 0/);
    expect(() => OnlineCorrector.fromJSON({ ...good, targetPrior: [1, 1] })).toThrow(/classes is 3 but the priors have 2 entries/);
  });
});

describe('OnlineCorrector: bad input', () => {
  const m = randomLogits(100, 4, 8, 2);
  it('correct (and classOffsets, toJSON) before fit is a clear error', () => {
    const oc = new OnlineCorrector();
    expect(oc.fitted).toBe(false);
    expect(() => oc.correct(new Float32Array(4))).toThrow(/OnlineCorrector.correct: call fit\(batch\) first/);
    expect(() => oc.classOffsets).toThrow(/call fit\(batch\) first/);
    expect(() => oc.toJSON()).toThrow(/call fit\(batch\) first/);
  });
  it('K mismatch is a clear error', () => {
    const oc = new OnlineCorrector();
    oc.fitSync(m);
    expect(() => oc.correct(new Float32Array(5))).toThrow(/sample has 5 logits but the corrector has 4 classes/);
    expect(() => oc.correct(randomLogits(3, 5, 1, 1))).toThrow(/sample has 5 columns but the corrector has 4 classes/);
    expect(() => oc.updateSync(randomLogits(30, 5, 1, 1))).toThrow(/batch has 5 columns but the corrector has 4 classes/);
    const withPrior = new OnlineCorrector({ targetPrior: [1, 2, 3] });
    expect(() => withPrior.fitSync(m)).toThrow(/batch has 4 columns but the corrector has 3 classes/);
    expect(() => new OnlineCorrector({ targetPrior: [1, 2, 3], trainPrior: [1, 2] })).toThrow(/trainPrior has length 2 but targetPrior has 3/);
  });
  it('NaN samples and batches are rejected, naming the position', () => {
    const oc = new OnlineCorrector();
    oc.fitSync(m);
    expect(() => oc.correct(new Float32Array([0, NaN, 1, 2]))).toThrow(/sample\[1\] must be a finite number, got NaN/);
    expect(() => oc.correct([0, 1, Infinity, 2])).toThrow(/sample\[2\] must be a finite number/);
    const bad = { data: Float32Array.from(m.data), rows: 100, cols: 4 };
    bad.data[9] = NaN;
    expect(() => oc.correct(bad)).toThrow(/sample has a non-finite value \(NaN\) at row 2, column 1/);
    expect(() => oc.updateSync(bad)).toThrow(/batch has a non-finite value/);
    expect(() => oc.correct('x' as never)).toThrow(/sample must be a row of 4 logits or a Matrix/);
  });
  it('checks its options', () => {
    expect(() => new OnlineCorrector({ decay: 1 })).toThrow(/decay must be in \[0, 1\)/);
    expect(() => new OnlineCorrector({ lambda: 0 })).toThrow(/lambda must be > 0/);
    expect(() => new OnlineCorrector({ targetPrior: 'estimate' })).toThrow(/needs trainPrior/);
    expect(() => new OnlineCorrector({ targetPrior: 'guess' as 'estimate' })).toThrow(/targetPrior must be/);
    expect(() => new OnlineCorrector({ backend: 'gpu' as 'cpu' })).toThrow(/backend must be/);
    expect(() => new OnlineCorrector({ lamda: 1 } as never)).toThrow(/unknown option 'lamda'/);
    const oc = new OnlineCorrector();
    expect(() => oc.fitSync(m, { prior: [1] } as never)).toThrow(/unknown option 'prior'/);
  });
  it('a non-converging solve is reported, not hidden', () => {
    const oc = new OnlineCorrector({ lambda: 0.01, maxIter: 3, tol: 1e-9 });
    const r = oc.fitSync(m);
    expect(r.converged).toBe(false);
    expect(r.warning).toMatch(/did not converge/);
    expect(oc.classOffsets.every(Number.isFinite)).toBe(true);
  });
});
