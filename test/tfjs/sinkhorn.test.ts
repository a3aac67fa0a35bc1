import { describe, expect, it } from 'vitest';

import { referenceSinkhorn } from '../../src/paths/reference/sinkhorn.js';
import { tfjsOtCorrect, tfjsOtlmStep, tfjsSinkhorn } from '../../src/paths/tfjs/index.js';
import { loadTf } from '../../src/paths/tfjs/load.js';
import { argmaxRows, gaussian, rng, sinkhornF64 } from './f64.js';

const BACKENDS = ['cpu', 'wasm'] as const;

function randomMatrix(n: number, k: number, seed: number, scale = 1) {
  const r = rng(seed);
  const data = new Float32Array(n * k);
  for (let i = 0; i < data.length; i++) data[i] = scale * gaussian(r);
  return { data, rows: n, cols: k };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe.each(BACKENDS)('tfjsSinkhorn on tfjs-%s', (tfBackend) => {
  it('matches a float64 loop iterate for iterate (cost input, non-uniform marginals, fixed iterations)', async () => {
    const n = 37, k = 13;
    const x = randomMatrix(n, k, 1);
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.abs(x.data[i]);
    const r = rng(2);
    const row = Array.from({ length: n }, () => 0.5 + r());
    const rs = row.reduce((a, b) => a + b, 0);
    const w = Array.from({ length: k }, () => 0.2 + r());
    const ws = w.reduce((a, b) => a + b, 0);
    const col = w.map((v) => (v / ws) * rs);
    const ref = sinkhornF64(x.data, n, k, { inputKind: 'cost', lambda: 0.3, maxIter: 25, tol: 0, col, row });
    const got = await tfjsSinkhorn(x, {
      lambda: 0.3, maxIter: 25, tol: 0, colMarginal: col, rowMarginal: row, plan: true, predictions: true, traceCap: 100, tfBackend,
    });
    expect(got.iterations).toBe(25);
    expect(got.converged).toBe(false);
    expect(got.backend).toBe('tfjs');
    expect(got.tfBackend).toBe(tfBackend);
    expect(maxAbsDiff(got.f, ref.f)).toBeLessThan(2e-4);
    expect(maxAbsDiff(got.g, ref.g)).toBeLessThan(2e-4);
    expect(maxAbsDiff(got.plan!, ref.plan)).toBeLessThan(1e-4);
    expect(Math.abs(got.error - ref.error)).toBeLessThan(1e-4 + 1e-3 * ref.error);
    expect(Array.from(got.predictions!)).toEqual(Array.from(argmaxRows(ref.plan, n, k)));
    expect(got.trace.length).toBe(25);
  });

  it('matches the project float64 reference path (logits, λ = 0.1, checkEvery 3)', async () => {
    const n = 64, k = 9;
    const x = randomMatrix(n, k, 8, 2);
    const col = Array.from({ length: k }, (_, j) => (n * (j + 1)) / ((k * (k + 1)) / 2));
    const opts = { inputKind: 'logits' as const, lambda: 0.1, maxIter: 300, tol: 1e-4, checkEvery: 3, colMarginal: col };
    const ref = referenceSinkhorn({ x: x.data, n, k, ...opts, plan: true, predictions: true });
    const got = await tfjsSinkhorn(x, { ...opts, plan: true, predictions: true, tfBackend });
    expect(got.converged).toBe(ref.converged);
    expect(got.iterations % 3 === 0 || got.iterations === 300).toBe(true);
    expect(Math.abs(got.iterations - ref.iterations)).toBeLessThanOrEqual(3);
    expect(maxAbsDiff(got.plan!, ref.plan!)).toBeLessThan(2e-4);
    expect(Array.from(got.predictions!)).toEqual(Array.from(ref.predictions!));
  });

  it('converges on logits input with a skewed target and the plan has the marginals', async () => {
    const n = 200, k = 10;
    const x = randomMatrix(n, k, 3, 2);
    const mu = Array.from({ length: k }, (_, j) => Math.pow(0.7, j));
    const s = mu.reduce((a, b) => a + b, 0);
    const col = mu.map((m) => (m / s) * n);
    const ref = sinkhornF64(x.data, n, k, { inputKind: 'logits', lambda: 1, maxIter: 500, tol: 1e-5, col });
    const got = await tfjsSinkhorn(x, { inputKind: 'logits', lambda: 1, maxIter: 500, tol: 1e-5, colMarginal: col, plan: true, predictions: true, tfBackend });
    expect(ref.converged).toBe(true);
    expect(got.converged).toBe(true);
    expect(got.error).toBeLessThan(1e-5);
    // Converged plans are unique: compare them directly.
    expect(maxAbsDiff(got.plan!, ref.plan)).toBeLessThan(1e-4);
    for (let i = 0; i < n; i++) {
      let rsum = 0;
      for (let j = 0; j < k; j++) rsum += got.plan![i * k + j];
      expect(Math.abs(rsum - 1)).toBeLessThan(1e-5);
    }
    for (let j = 0; j < k; j++) {
      let csum = 0;
      for (let i = 0; i < n; i++) csum += got.plan![i * k + j];
      expect(Math.abs(csum - col[j]) / n).toBeLessThan(1e-5);
    }
    const disagree = Array.from(got.predictions!).filter((p, i) => p !== argmaxRows(ref.plan, n, k)[i]).length;
    expect(disagree).toBe(0);
  });

  it('warm start from the float64 g continues the same sequence', async () => {
    const n = 30, k = 7;
    const x = randomMatrix(n, k, 4);
    const col = new Array(k).fill(n / k);
    const a = sinkhornF64(x.data, n, k, { inputKind: 'logits', lambda: 0.5, maxIter: 10, tol: 0, col });
    // f at 10 iterations came from g9; continue one more g update in float64 and compare with a warm start.
    const b = sinkhornF64(x.data, n, k, { inputKind: 'logits', lambda: 0.5, maxIter: 15, tol: 0, col });
    const gAfter10 = sinkhornF64(x.data, n, k, { inputKind: 'logits', lambda: 0.5, maxIter: 11, tol: 0, col }).g;
    const got = await tfjsSinkhorn(x, { inputKind: 'logits', lambda: 0.5, maxIter: 5, tol: 0, colMarginal: col, g0: gAfter10, tfBackend });
    expect(a.iterations).toBe(10);
    expect(maxAbsDiff(got.g, b.g)).toBeLessThan(2e-4);
    expect(maxAbsDiff(got.f, b.f)).toBeLessThan(2e-4);
  });

  it('otCorrect: cost −log softmax, column marginal N·μ, predictions of the plan', async () => {
    const n = 120, k = 6;
    const x = randomMatrix(n, k, 5, 3);
    const prior = [50, 20, 10, 10, 5, 5];
    const mu = prior.map((p) => p / 100);
    const ref = sinkhornF64(x.data, n, k, { inputKind: 'logits', lambda: 0.2, maxIter: 1000, tol: 1e-4, col: mu.map((m) => m * n) });
    const got = await tfjsOtCorrect(x, { lambda: 0.2, targetPrior: prior, tol: 1e-4, tfBackend });
    expect(got.converged).toBe(true);
    expect(maxAbsDiff(got.plan!, ref.plan)).toBeLessThan(5e-4);
    expect(Array.from(got.predictions!)).toEqual(Array.from(argmaxRows(ref.plan, n, k)));
  });

  it('reports maxIter without convergence as converged: false', async () => {
    const x = randomMatrix(50, 5, 6, 4);
    const got = await tfjsSinkhorn(x, { inputKind: 'logits', lambda: 0.05, maxIter: 2, tol: 1e-9, tfBackend });
    expect(got.iterations).toBe(2);
    expect(got.converged).toBe(false);
    expect(got.error).toBeGreaterThan(1e-9);
  });
});

describe('tfjs path memory', () => {
  it.each(BACKENDS)('leaves no tensor behind on tfjs-%s (solve, OT correction, OTLM step, failed call)', async (tfBackend) => {
    const x = randomMatrix(40, 6, 10);
    await tfjsSinkhorn(x, { maxIter: 2, tfBackend }); // backend initialised
    const tf = await loadTf();
    const before = tf.memory().numTensors;
    await tfjsSinkhorn(x, { inputKind: 'logits', maxIter: 20, tol: 1e-6, plan: true, predictions: true, tfBackend });
    await tfjsOtCorrect(x, { tfBackend });
    const w = new Float32Array(36);
    for (let j = 0; j < 6; j++) w[j * 7] = 1;
    await tfjsOtlmStep(x, w, { lambda: 1, sinkhornIters: 4, tol: 1e-3, tfBackend });
    await tfjsOtlmStep(x, w, { lambda: 1, sinkhornIters: 4, grad: 'envelope', tfBackend });
    await expect(tfjsSinkhorn(x, { inputKind: 'logits', lambda: 1e-39, maxIter: 3, tfBackend })).rejects.toThrow(/non-finite/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('tfjsSinkhorn cancellation', () => {
  it('an aborted signal stops the solve with its reason', async () => {
    const x = randomMatrix(300, 50, 9);
    const ac = new AbortController();
    const p = tfjsSinkhorn(x, { maxIter: 100000, tol: 0, signal: ac.signal, tfBackend: 'wasm' });
    setTimeout(() => ac.abort(new Error('stop now')), 50);
    await expect(p).rejects.toThrow('stop now');
    // tfjs is still usable afterwards (the queue and the tensors were released).
    const r = await tfjsSinkhorn(x, { maxIter: 3, tol: 0, tfBackend: 'wasm' });
    expect(r.iterations).toBe(3);
  });
});

describe('tfjsSinkhorn argument checks', () => {
  const x = randomMatrix(4, 3, 7);
  it.each([
    [{ lambda: 0 }, /lambda/],
    [{ lambda: Number.NaN }, /lambda/],
    [{ maxIter: 0 }, /maxIter/],
    [{ tol: -1 }, /tol/],
    [{ checkEvery: 1.5 }, /checkEvery/],
    [{ colMarginal: [1, 1] }, /colMarginal must have length 3/],
    [{ colMarginal: [1, 1, 1] }, /same mass/],
    [{ colMarginal: [2, 2, 0] }, /colMarginal\[2\] must be > 0/],
    [{ rowMarginal: [1, 1, 1, Number.POSITIVE_INFINITY] }, /rowMarginal\[3\]/],
    [{ plan: new Float32Array(5) }, /plan must have length/],
    [{ inputKind: 'probs' }, /inputKind/],
    [{ tfBackend: 'webgl' }, /tfBackend/],
  ])('rejects %o', async (opts, msg) => {
    await expect(tfjsSinkhorn(x, opts as never)).rejects.toThrow(msg);
  });
  it('rejects NaN in the matrix, naming the position', async () => {
    const bad = { data: Float32Array.from(x.data), rows: 4, cols: 3 };
    bad.data[5] = Number.NaN;
    await expect(tfjsSinkhorn(bad)).rejects.toThrow(/x has a non-finite value .* row 1, column 2/);
  });
  it('rejects a data length that does not match rows*cols', async () => {
    await expect(tfjsSinkhorn({ data: new Float32Array(5), rows: 2, cols: 3 })).rejects.toThrow(/x.data has length 5/);
  });
});
