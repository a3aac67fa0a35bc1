// Bad input for every public function: a clear error that names the argument.
import { describe, expect, it } from 'vitest';

import type { Matrix } from '../../src/api/types.js';
import { metrics } from '../../src/metrics.js';
import { darp, darpSync } from '../../src/methods/darp.js';
import { logitAdjust, logitAdjustSync } from '../../src/methods/la.js';
import { applyClassOffsets, otCorrect, otCorrectSync } from '../../src/methods/ot.js';
import { sinkhorn, sinkhornSync } from '../../src/methods/sinkhorn.js';

const good = (): Matrix => ({ data: Float32Array.from([0.1, 0.5, -0.2, 1, 0.3, 0.2]), rows: 2, cols: 3 });
const withValue = (v: number): Matrix => {
  const m = good();
  m.data[4] = v;
  return m;
};

type Call = (m: Matrix, opts?: Record<string, unknown>) => unknown;
const sync: Array<[string, string, Call]> = [
  ['sinkhornSync', 'cost', (m, o) => sinkhornSync(m, { backend: 'reference', ...o })],
  ['otCorrectSync', 'logits', (m, o) => otCorrectSync(m, { backend: 'reference', ...o })],
  ['darpSync', 'logits', (m, o) => darpSync(m, o)],
];
const asyncCalls: Array<[string, string, Call]> = [
  ['sinkhorn', 'cost', (m, o) => sinkhorn(m, { backend: 'reference', ...o })],
  ['otCorrect', 'logits', (m, o) => otCorrect(m, { backend: 'reference', ...o })],
  ['darp', 'logits', (m, o) => darp(m, o)],
];

async function fails(fn: () => unknown, re: RegExp): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error matching ${re}`).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(re);
}

describe('matrix arguments', () => {
  for (const [name, arg, call] of [...sync, ...asyncCalls]) {
    it(`${name}: NaN/Inf, wrong lengths, Float64Array, bad shapes`, async () => {
      await fails(() => call(withValue(NaN)), new RegExp(`${arg} has a non-finite value \\(NaN\\) at row 1, column 1`));
      await fails(() => call(withValue(Infinity)), new RegExp(`${arg} has a non-finite value \\(Infinity\\)`));
      await fails(() => call(withValue(-Infinity)), new RegExp(`${arg} has a non-finite value`));
      await fails(() => call({ data: new Float32Array(5), rows: 2, cols: 3 }), new RegExp(`${arg}.data has length 5, expected rows\\*cols`));
      await fails(() => call({ data: new Float64Array(6) as unknown as Float32Array, rows: 2, cols: 3 }), new RegExp(`${arg}.data must be a Float32Array, got Float64Array`));
      await fails(() => call({ data: new Float32Array(0), rows: 0, cols: 3 }), new RegExp(`${arg}.rows must be a positive integer`));
      await fails(() => call([1, 2, 3] as unknown as Matrix), new RegExp(`${arg} must be a matrix`));
    });
  }
  it('logitAdjust and applyClassOffsets check logits too', async () => {
    await fails(() => logitAdjustSync(withValue(NaN), [1, 1, 1]), /logits has a non-finite value/);
    await fails(() => logitAdjust(withValue(Infinity), [1, 1, 1]), /logits has a non-finite value/);
    await fails(() => applyClassOffsets(withValue(NaN), [0, 0, 0]), /logits has a non-finite value/);
  });
});

describe('priors', () => {
  const priorCases: Array<[unknown, RegExp]> = [
    [[1, 1], /targetPrior must have length 3/],
    [[1, -1, 1], /targetPrior\[1\] must be > 0, got -1/],
    [[1, 0, 1], /targetPrior\[1\] must be > 0, got 0/],
    [[0, 0, 0], /targetPrior\[0\] must be > 0/],
    [[1, NaN, 1], /targetPrior\[1\] must be finite/],
    ['sideways', /targetPrior must be/],
  ];
  for (const [name, , call] of [...sync, ...asyncCalls]) {
    it(`${name}: targetPrior`, async () => {
      for (const [p, re] of priorCases) await fails(() => call(good(), { targetPrior: p }), re);
    });
  }
  it('logitAdjust: trainPrior and targetPrior', async () => {
    await fails(() => logitAdjustSync(good(), [1, 2]), /trainPrior must have length 3/);
    await fails(() => logitAdjustSync(good(), [1, 0, 2]), /trainPrior\[1\] must be > 0/);
    await fails(() => logitAdjust(good(), [0, 0, 0]), /trainPrior\[0\] must be > 0/);
    await fails(() => logitAdjustSync(good(), [1, 2, 3], { targetPrior: [1, -2, 3] }), /targetPrior\[1\] must be > 0/);
    await fails(() => logitAdjustSync(good(), [1, 2, 3], { tau: NaN }), /tau must be a finite number/);
  });
  it('priors that do not sum to 1 are normalised (documented policy)', () => {
    const a = otCorrectSync(good(), { backend: 'reference', targetPrior: [2, 2, 4] });
    const b = otCorrectSync(good(), { backend: 'reference', targetPrior: [0.25, 0.25, 0.5] });
    expect(Array.from(a.probabilities.data)).toEqual(Array.from(b.probabilities.data));
  });
});

describe('solver options', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ lambda: 0 }, /lambda must be > 0, got 0/],
    [{ lambda: -1 }, /lambda must be > 0/],
    [{ lambda: NaN }, /lambda must be a finite number/],
    [{ maxIter: 0 }, /maxIter must be in \[1, 2147483647\], got 0/],
    [{ maxIter: 1.5 }, /maxIter must be an integer/],
    [{ tol: -1 }, /tol must be >= 0/],
    [{ checkEvery: 0 }, /checkEvery must be in \[1, 2147483647\]/],
    [{ threads: -1 }, /threads must be in \[0, 4096\]/],
    [{ epsScaling: 1.5 }, /epsScaling must be in \[0, 1\), got 1.5/],
    [{ epsScaling: 1 }, /epsScaling must be in \[0, 1\), got 1/],
    [{ overrelax: 2 }, /overrelax must be in \[1, 2\)/],
    [{ overrelax: 0.5 }, /overrelax must be in \[1, 2\)/],
    [{ backend: 'gpu' }, /backend must be 'auto', 'cpu', 'cuda', 'wasm', 'tfjs' or 'reference'/],
    [{ warmStart: { f: [0], g: [0, 0, 0] } }, /warmStart.f must have length 2/],
    [{ warmStart: { f: [0, 0], g: [0, NaN, 0] } }, /warmStart.g\[1\] must be a finite number/],
    [{ lamda: 1 }, /unknown option 'lamda'/],
  ];
  for (const [name, , call] of [...sync, ...asyncCalls].filter(([n]) => !n.startsWith('darp'))) {
    it(`${name}`, async () => {
      for (const [o, re] of cases) await fails(() => call(good(), o), re);
    });
  }
  it('sinkhorn marginals and outputs', async () => {
    await fails(() => sinkhornSync(good(), { rowMarginal: [1] }), /rowMarginal must have length 2/);
    await fails(() => sinkhornSync(good(), { rowMarginal: [1, 0] }), /rowMarginal\[1\] must be > 0/);
    await fails(() => sinkhornSync(good(), { colMarginal: [1, 1] }), /colMarginal must have length 3/);
    await fails(() => sinkhornSync(good(), { colMarginal: [1, 1, 1] }), /colMarginal must sum to the row mass 2/);
    await fails(() => sinkhornSync(good(), { colMarginal: [1, -0.5, 1.5] }), /colMarginal\[1\] must be > 0/);
    await fails(() => sinkhornSync(good(), { colMarginal: [1, 0.5, 0.5], targetPrior: [1, 1, 1] }), /either colMarginal or targetPrior/);
    await fails(() => sinkhornSync(good(), { plan: new Float32Array(5) }), /plan must have length rows\*cols = 6/);
    await fails(() => sinkhornSync(good(), { plan: new Float64Array(6) as unknown as Float32Array }), /plan must be a boolean or a Float32Array/);
    await fails(() => sinkhorn(good(), { signal: {} as AbortSignal }), /signal must be an AbortSignal/);
    await fails(() => otCorrectSync(good(), { out: new Float32Array(2) }), /out must have length rows\*cols = 6/);
    await fails(() => otCorrectSync(good(), { out: new Float64Array(6) as unknown as Float32Array }), /out must be a Float32Array/);
  });
  it('darp options', async () => {
    await fails(() => darpSync(good(), { maxIter: 0 }), /maxIter must be in \[1, 2147483647\]/);
    await fails(() => darpSync(good(), { tol: -1 }), /tol must be >= 0/);
    await fails(() => darpSync(good(), { weights: [1] }), /weights must have length 2/);
    await fails(() => darpSync(good(), { weights: [1, 0] }), /weights\[1\] must be > 0/);
    await fails(() => darpSync(good(), { weights: 'flat' as 'uniform' }), /weights must be 'entropy', 'uniform'/);
    await fails(() => darp(good(), { lambda: 1 } as never), /unknown option 'lambda'/);
  });
  it('applyClassOffsets', async () => {
    await fails(() => applyClassOffsets(good(), [0, 0]), /classOffsets must have length 3/);
    await fails(() => applyClassOffsets(good(), [0, 0, 0], { lambda: 0 }), /lambda must be > 0/);
  });
});

describe('metrics arguments', () => {
  it('labels, predictions, counts, options', async () => {
    await fails(() => metrics([0, 1], [0], [1, 1]), /predictions has 2 entries, expected 1/);
    await fails(() => metrics([0, 2], [0, 1], [1, 1]), /predictions\[1\] must be an integer class index in \[0, 2\)/);
    await fails(() => metrics([0, 1], [0, -1], [1, 1]), /labels\[1\] must be an integer class index/);
    await fails(() => metrics([0, 1], [0, 0.5], [1, 1]), /labels\[1\] must be an integer/);
    await fails(() => metrics([0], [0], [1, -1]), /trainCounts\[1\] must be a finite count >= 0/);
    await fails(() => metrics([0], [0], [1, NaN]), /trainCounts\[1\] must be a finite count/);
    await fails(() => metrics([0], [0], []), /trainCounts must be a non-empty array/);
    await fails(() => metrics([], [], [1]), /labels must be a non-empty array/);
    await fails(() => metrics([0], [0], [1, 1], { targetPrior: [1, 0] }), /targetPrior\[1\] must be > 0/);
    await fails(() => metrics([0], [0], [1, 1], { fewThreshold: 200 }), /fewThreshold \(200\) must be <= manyThreshold \(100\)/);
    await fails(() => metrics([0], [0], [1, 1], { eceBins: 0 }), /eceBins must be >= 1/);
    await fails(() => metrics([0], [0], [1, 1], { probabilities: { data: new Float32Array(3), rows: 1, cols: 3 } }), /probabilities must have 2 columns/);
    await fails(() => metrics([0], [0], [1, 1], { probabilities: { data: Float32Array.from([NaN, 1]), rows: 1, cols: 2 } }), /probabilities has a non-finite value/);
  });
});
