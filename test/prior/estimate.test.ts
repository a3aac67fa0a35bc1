/**
 * estimatePrior / fitCalibration / resolveTargetPrior on synthetic data whose answer is known by
 * construction, a BBSE fixture computed with numpy, and the failure modes.
 */
import { describe, expect, it } from 'vitest';
import type { Matrix } from '../../src/api/types.js';
import { estimatePrior, fitCalibration } from '../../src/prior/estimate.js';
import { ESTIMATED_PRIOR_FLOOR, floorPrior, resolveTargetPrior } from '../../src/prior/resolve.js';
import { l1, rng } from './shift.js';

/** Standard normal by Box–Muller. */
function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/**
 * 1-D Gaussian classes (means 1.5·c, σ = 1) sampled with class prior `mu`; logits are the exact Bayes
 * log-posteriors under the source prior `s` (up to a row constant): Φ_ic = log s_c − (x − m_c)²/2,
 * optionally scaled by `scale` (an over-confident model: softmax(scale·Φ)).
 */
function gaussianLogits(mu: number[], s: number[], n: number, seed: number, scale = 1): { logits: Matrix; labels: Int32Array } {
  const k = mu.length;
  const rand = rng(seed);
  const data = new Float32Array(n * k);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let u = rand();
    let y = 0;
    while (y < k - 1 && u >= mu[y]!) u -= mu[y++]!;
    const x = 1.5 * y + gauss(rand);
    labels[i] = y;
    for (let c = 0; c < k; c++) data[i * k + c] = scale * (Math.log(s[c]!) - (x - 1.5 * c) ** 2 / 2);
  }
  return { logits: { data, rows: n, cols: k }, labels };
}

function logLikelihood(logits: Matrix, s: ArrayLike<number>, mu: ArrayLike<number>): number {
  const { rows: n, cols: k, data } = logits;
  let ll = 0;
  for (let i = 0; i < n; i++) {
    let mx = -Infinity;
    for (let j = 0; j < k; j++) mx = Math.max(mx, data[i * k + j]!);
    let z = 0;
    let w = 0;
    for (let j = 0; j < k; j++) {
      const p = Math.exp(data[i * k + j]! - mx);
      z += p;
      w += (p * mu[j]!) / s[j]!;
    }
    ll += Math.log(w / z);
  }
  return ll;
}

describe('estimatePrior: EM / MLLS', () => {
  const s = [0.6, 0.3, 0.1];
  const mu = [0.2, 0.3, 0.5];
  const target = gaussianLogits(mu, s, 20000, 7);

  it('recovers the prior of a label shift when the posteriors are calibrated (truth known by construction)', () => {
    const e = estimatePrior(target.logits, s);
    expect(e.method).toBe('em');
    expect(e.converged).toBe(true);
    expect(e.warning).toBeUndefined();
    expect(e.finalChange!).toBeLessThan(1e-8);
    expect(e.prior.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 12);
    // Sampling error of 20000 draws is ~0.01 in L1; the model is exact, so EM must be that close.
    expect(l1(e.prior, mu)).toBeLessThan(0.03);
    expect(Array.from(e.sourcePrior)).toEqual(s.map((v) => expect.closeTo(v, 12)));
  });

  it('returns a maximiser of the target likelihood Σ_i log Σ_j p_ij μ_j / s_j (perturbations on the simplex lower it)', () => {
    const e = estimatePrior(target.logits, s);
    const best = logLikelihood(target.logits, s, e.prior);
    for (const [a, b] of [[0, 1], [1, 2], [0, 2], [2, 0]] as const) {
      const p = Float64Array.from(e.prior);
      p[a] += 1e-3;
      p[b] -= 1e-3;
      expect(logLikelihood(target.logits, s, p)).toBeLessThan(best);
    }
  });

  it('is a fixed point of the EM map (recomputed here independently)', () => {
    const e = estimatePrior(target.logits, s, { tol: 1e-12, maxIter: 10000 });
    const { rows: n, cols: k, data } = target.logits;
    const next = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      const q = Array.from({ length: k }, (_, j) => (Math.exp(data[i * k + j]!) * e.prior[j]!) / s[j]!);
      const z = q.reduce((a, v) => a + v, 0);
      q.forEach((v, j) => (next[j] += v / z / n));
    }
    expect(l1(next, e.prior)).toBeLessThan(1e-10);
  });

  it('does not move the prior without a shift (target = source)', () => {
    const same = gaussianLogits(s, s, 20000, 11);
    expect(l1(estimatePrior(same.logits, s).prior, s)).toBeLessThan(0.03);
  });

  it('says so when it does not converge within maxIter: converged false, a warning, a valid prior (no NaN)', () => {
    const e = estimatePrior(target.logits, s, { maxIter: 2, tol: 1e-14 });
    expect(e.converged).toBe(false);
    expect(e.iterations).toBe(2);
    expect(e.warning).toMatch(/did not converge in 2 iterations/);
    expect(e.prior.every(Number.isFinite)).toBe(true);
    expect(e.prior.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 12);
  });

  it('never produces NaN on extreme logits (posteriors that underflow to 0)', () => {
    // Rows confident to 1e-400 in float64 terms: softmax puts exactly 0 on the other classes.
    const data = new Float32Array([1000, 0, 0, 0, 1000, 0, 0, 0, 1000, 1000, -1000, 0]);
    const e = estimatePrior({ data, rows: 4, cols: 3 }, [1, 1, 1], { maxIter: 5000 });
    expect(e.prior.every(Number.isFinite)).toBe(true);
    expect(l1(e.prior, [0.5, 0.25, 0.25])).toBeLessThan(1e-6);
  });

  it('calibration (BCTS on a labeled validation split) repairs an over-confident model', () => {
    // Scale 3 makes softmax(Φ) over-confident; uncalibrated EM is then biased.
    const over = gaussianLogits(mu, s, 20000, 7, 3);
    const val = gaussianLogits(s, s, 5000, 8, 3);
    const raw = estimatePrior(over.logits, s, { calibration: 'none' });
    const cal = estimatePrior(over.logits, s, { validation: val });
    expect(cal.calibration!.temperature).toBeCloseTo(3, 0);
    expect(l1(cal.prior, mu)).toBeLessThan(0.04);
    expect(l1(cal.prior, mu)).toBeLessThan(l1(raw.prior, mu));
  });
});

describe('fitCalibration', () => {
  const s = [0.6, 0.3, 0.1];
  const val = gaussianLogits([0.3, 0.3, 0.4], s, 4000, 21, 2.5);
  const nll = (T: number, b: ArrayLike<number>): number => {
    const { rows: n, cols: k, data } = val.logits;
    let out = 0;
    for (let i = 0; i < n; i++) {
      const z = Array.from({ length: k }, (_, j) => data[i * k + j]! / T + b[j]!);
      const mx = Math.max(...z);
      out += mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0)) - z[val.labels[i]!]!;
    }
    return out / n;
  };

  it('bcts: the NLL gradient is zero at the optimum (central finite differences) and it beats the identity map', () => {
    const c = fitCalibration(val.logits, val.labels, 'bcts');
    expect(c.nll).toBeCloseTo(nll(c.temperature, c.bias), 10);
    expect(c.nll).toBeLessThan(nll(1, [0, 0, 0]));
    const h = 1e-4;
    const dT = (nll(c.temperature * (1 + h), c.bias) - nll(c.temperature * (1 - h), c.bias)) / (2 * h);
    expect(Math.abs(dT)).toBeLessThan(1e-6);
    for (let j = 0; j < 3; j++) {
      const up = Float64Array.from(c.bias);
      const dn = Float64Array.from(c.bias);
      up[j] += h;
      dn[j] -= h;
      expect(Math.abs((nll(c.temperature, up) - nll(c.temperature, dn)) / (2 * h))).toBeLessThan(1e-6);
    }
    expect(c.bias.reduce((a, v) => a + v, 0)).toBeCloseTo(0, 12); // the gauge Σ b = 0
  });

  it('bcts: the mean calibrated posterior on the split equals its label distribution (optimality in b)', () => {
    const c = fitCalibration(val.logits, val.labels, 'bcts');
    const { rows: n, cols: k, data } = val.logits;
    const mean = new Float64Array(k);
    const freq = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      const z = Array.from({ length: k }, (_, j) => Math.exp(data[i * k + j]! / c.temperature + c.bias[j]!));
      const t = z.reduce((a, v) => a + v, 0);
      z.forEach((v, j) => (mean[j] += v / t / n));
      freq[val.labels[i]!] += 1 / n;
    }
    expect(l1(mean, freq)).toBeLessThan(1e-8);
  });

  it('ts: recovers the temperature of exact posteriors scaled by a known factor 2.5 (bias stays 0)', () => {
    // Drawn with the source prior s baked into the logits, so softmax(Φ/2.5) is the true posterior.
    const src = gaussianLogits(s, s, 20000, 22, 2.5);
    const c = fitCalibration(src.logits, src.labels, 'ts');
    expect(Array.from(c.bias)).toEqual([0, 0, 0]);
    expect(c.temperature).toBeCloseTo(2.5, 1);
    const c2 = fitCalibration(val.logits, val.labels, 'ts');
    const h = 1e-4;
    expect(Math.abs((nll(c2.temperature * (1 + h), [0, 0, 0]) - nll(c2.temperature * (1 - h), [0, 0, 0])) / (2 * h))).toBeLessThan(1e-6);
  });

  it('rejects logits that anti-predict the labels', () => {
    const data = new Float32Array([0, 5, 5, 0, 0, 5, 5, 0]);
    expect(() => fitCalibration({ data, rows: 4, cols: 2 }, Int32Array.from([0, 1, 0, 1]), 'ts')).toThrow(/non-positive inverse temperature/);
  });
});

describe('estimatePrior: BBSE', () => {
  // Validation rows with a prescribed confusion count matrix conf[pred][label] (one-hot logits).
  const conf = [
    [30, 5, 2],
    [4, 25, 6],
    [1, 5, 22],
  ];
  function split(predCounts: number[][]): { logits: Matrix; labels: Int32Array } {
    const rows: number[][] = [];
    const labels: number[] = [];
    predCounts.forEach((row, a) =>
      row.forEach((cnt, b) => {
        for (let t = 0; t < cnt; t++) {
          rows.push([0, 1, 2].map((j) => (j === a ? 4 : 0)));
          labels.push(b);
        }
      }),
    );
    return { logits: { data: Float32Array.from(rows.flat()), rows: rows.length, cols: 3 }, labels: Int32Array.from(labels) };
  }
  /** Target logits predicting class a counts[a] times. */
  function target(counts: number[]): Matrix {
    const rows = counts.flatMap((c, a) => Array.from({ length: c }, () => [0, 1, 2].map((j) => (j === a ? 3 : -1))));
    return { data: Float32Array.from(rows.flat()), rows: rows.length, cols: 3 };
  }
  const validation = split(conf);

  it('matches numpy: μ ∝ s ⊙ C⁻¹q, and cond₂(C) (fixture: np.linalg.solve / np.linalg.cond)', () => {
    const e = estimatePrior(target([250, 430, 320]), [1, 1, 1], { method: 'bbse', validation });
    // python3: C = conf/100; w = np.linalg.solve(C, q); μ = w*s/Σ; np.linalg.cond(C)
    const expected = [0.185836627140975, 0.4781949934123847, 0.3359683794466403];
    expected.forEach((v, j) => expect(e.prior[j]).toBeCloseTo(v, 12));
    expect(e.conditionNumber!).toBeCloseTo(1.945071469112598, 9);
    expect(e.clipped).toBe(0);
    expect(e.warning).toBeUndefined();
    expect(Array.from(e.sourcePrior)).toEqual([0.35, 0.35, 0.3].map((v) => expect.closeTo(v, 12)));
  });

  it('clips negative importance weights and says so (numpy fixture)', () => {
    const e = estimatePrior(target([700, 20, 280]), [1, 1, 1], { method: 'bbse', validation });
    [0.6774193548387096, 0, 0.32258064516129037].forEach((v, j) => expect(e.prior[j]).toBeCloseTo(v, 12));
    expect(e.clipped).toBe(1);
    expect(e.warning).toMatch(/^estimatePrior \(bbse\): 1 negative importance weight\(s\) clipped/);
  });

  it('a singular confusion matrix (a class never predicted on the validation split) is a clear error', () => {
    const never2 = split([
      [30, 5, 2],
      [5, 30, 28],
      [0, 0, 0],
    ]);
    expect(() => estimatePrior(target([250, 430, 320]), [1, 1, 1], { method: 'bbse', validation: never2 })).toThrow(
      /confusion matrix is singular/,
    );
  });

  it('warns when the confusion matrix is ill-conditioned', () => {
    const nearly = split([
      [2000, 1999, 0],
      [1999, 2000, 0],
      [1, 1, 100],
    ]);
    const e = estimatePrior(target([300, 300, 100]), [1, 1, 1], { method: 'bbse', validation: nearly });
    expect(e.conditionNumber!).toBeGreaterThan(1e3);
    expect(e.warning).toMatch(/ill-conditioned/);
  });

  it('needs a validation split', () => {
    expect(() => estimatePrior(target([1, 1, 1]), [1, 1, 1], { method: 'bbse' })).toThrow(/needs a labeled validation split/);
  });
});

describe('estimatePrior: argument checks', () => {
  const logits: Matrix = { data: new Float32Array([1, 0, 0, 1]), rows: 2, cols: 2 };
  it('names the bad argument', () => {
    expect(() => estimatePrior({ data: new Float32Array([1, NaN]), rows: 1, cols: 2 }, [1, 1])).toThrow(/logits has a non-finite value/);
    expect(() => estimatePrior(logits, [1, 1, 1])).toThrow(/trainPrior must have length 2/);
    expect(() => estimatePrior(logits, [1, 0])).toThrow(/trainPrior\[1\] must be > 0/);
    expect(() => estimatePrior(logits, [1, 1], { method: 'mlls' as 'em' })).toThrow(/method must be 'em' or 'bbse'/);
    expect(() => estimatePrior(logits, [1, 1], { calibration: 'platt' as 'ts' })).toThrow(/calibration must be/);
    expect(() => estimatePrior(logits, [1, 1], { calibration: 'bcts' })).toThrow(/needs a labeled validation split/);
    expect(() => estimatePrior(logits, [1, 1], { maxIter: 0 })).toThrow(/maxIter must be in \[1, 2147483647\], got 0/);
    expect(() => estimatePrior(logits, [1, 1], { tol: NaN })).toThrow(/tol must be a finite number/);
    expect(() => estimatePrior(logits, [1, 1], { maxiter: 5 } as never)).toThrow(/unknown option 'maxiter'/);
    expect(() => estimatePrior(logits, [1, 1], { validation: { logits, labels: [0, 2] } })).toThrow(/validation.labels\[1\]/);
    expect(() => estimatePrior(logits, [1, 1], { validation: { logits: { ...logits, cols: 1, data: new Float32Array(2) }, labels: [0, 1] } })).toThrow(
      /validation.logits must have 2 columns/,
    );
    expect(() => estimatePrior(logits, [1, 1], { validation: { logits, labels: [0, 0] } })).toThrow(/has no example of class 1/);
  });
});

describe('resolveTargetPrior', () => {
  const logits: Matrix = { data: new Float32Array([2, 0, 0, 0, 2, 0, 0, 0, 2, 2, 0, 0]), rows: 4, cols: 3 };
  it('uniform by default, a given prior normalised, an estimate floored', () => {
    expect(Array.from(resolveTargetPrior(logits, undefined, undefined).prior)).toEqual([1 / 3, 1 / 3, 1 / 3]);
    expect(Array.from(resolveTargetPrior(logits, undefined, 'uniform').prior)).toEqual([1 / 3, 1 / 3, 1 / 3]);
    expect(Array.from(resolveTargetPrior(logits, undefined, [2, 1, 1]).prior)).toEqual([0.5, 0.25, 0.25]);
    const r = resolveTargetPrior(logits, [1, 1, 1], 'estimate');
    expect(r.estimate!.method).toBe('em');
    expect(l1(r.prior, floorPrior(r.estimate!.prior))).toBe(0);
    expect(r.prior.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 12);
  });
  it('floors zero entries (BBSE clipping) so the solver gets a positive marginal', () => {
    const p = floorPrior([0.7, 0, 0.3]);
    expect(p[1]).toBeGreaterThan(0);
    expect(p[1]).toBeCloseTo(ESTIMATED_PRIOR_FLOOR, 9);
    expect(p.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 14);
  });
  it('passes a non-convergence warning on, prefixed with the caller', () => {
    const r = resolveTargetPrior(logits, [1, 1, 1], 'estimate', { maxIter: 1, tol: 0 }, 'otCorrect');
    expect(r.warning).toMatch(/^otCorrect: estimatePrior \(em\): did not converge in 1 iterations/);
  });
  it('errors clearly', () => {
    expect(() => resolveTargetPrior(logits, undefined, 'estimate')).toThrow(/targetPrior 'estimate' needs trainPrior/);
    expect(() => resolveTargetPrior(logits, undefined, 'guess' as 'estimate')).toThrow(/targetPrior must be an array of 3 numbers, 'uniform' or 'estimate'/);
    expect(() => resolveTargetPrior(logits, undefined, [1, 1])).toThrow(/targetPrior must have length 3/);
  });
});
