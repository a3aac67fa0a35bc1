// DARP: optimality checked through its own KKT conditions and feasibility, the uniform-weight case
// against the λ = 1 OT projection (a different algorithm), an objective comparison, and the native
// engine against the float64 reference (issue 14).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import type { Matrix } from '../../src/api/types.js';
import { readMatrix, readVector } from '../../src/io/index.js';
import { darp, darpSync, type DarpOptions } from '../../src/methods/darp.js';
import { otCorrectSync, type CorrectionResult } from '../../src/methods/ot.js';
import { loadNative } from '../../src/native/loader.js';
import { referenceDarp } from '../../src/paths/reference/darp.js';
import { longTailedLogits, rng } from './native-status.js';

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

// ---------------------------------------------------------------- native DARP (issue 14)
// The native CPU engine (native/cpu/darp.cpp) against the float64 reference, which stays the oracle:
// identical predictions, probabilities within 1e-6, the same sweeps.

const dataDir = fileURLToPath(new URL('../../data/fmnist-lt/', import.meta.url));

function nativeDarpUnavailable(): string | null {
  try {
    darpSync({ data: new Float32Array([0, 1, 1, 0]), rows: 2, cols: 2 }, { backend: 'cpu' });
    return null;
  } catch (e) {
    return `native DARP unavailable: ${(e as Error).message}`;
  }
}
const noNativeDarp = nativeDarpUnavailable();
if (noNativeDarp) console.warn(`[skip] native tests in test/methods/darp.test.ts: ${noNativeDarp}`);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let t = 0; t < a.length; t++) d = Math.max(d, Math.abs(a[t] - b[t]));
  return d;
}

/** Runs both paths with the same options and holds the native one to the reference. */
function agree(m: Matrix, opts: DarpOptions = {}): { nat: CorrectionResult; ref: CorrectionResult } {
  const ref = darpSync(m, { ...opts, backend: 'reference' });
  const nat = darpSync(m, { ...opts, backend: 'cpu' });
  expect(ref.backend).toBe('reference');
  expect(nat.backend).toBe('cpu');
  let mism = 0;
  for (let i = 0; i < m.rows; i++) if (nat.predictions[i] !== ref.predictions[i]) mism++;
  expect(mism).toBe(0);
  expect(maxAbsDiff(nat.probabilities.data, ref.probabilities.data)).toBeLessThan(1e-6);
  expect(nat.iterations).toBe(ref.iterations);
  expect(nat.converged).toBe(ref.converged);
  expect(nat.trace!.length).toBe(ref.trace!.length);
  expect(Math.abs(nat.error - ref.error)).toBeLessThanOrEqual(1e-6 * Math.abs(ref.error) + 1e-12);
  expect(maxAbsDiff(nat.classOffsets, ref.classOffsets)).toBeLessThan(1e-8);
  expect(maxAbsDiff(nat.f, ref.f)).toBeLessThan(1e-8);
  expect(nat.warning === undefined).toBe(ref.warning === undefined);
  return { nat, ref };
}

function bitIdentical(a: CorrectionResult, b: CorrectionResult): void {
  expect(Buffer.from(a.probabilities.data.buffer).equals(Buffer.from(b.probabilities.data.buffer))).toBe(true);
  expect(Array.from(a.predictions)).toEqual(Array.from(b.predictions));
  expect(Array.from(a.f)).toEqual(Array.from(b.f));
  expect(Array.from(a.classOffsets)).toEqual(Array.from(b.classOffsets));
  expect(Array.from(a.trace!)).toEqual(Array.from(b.trace!));
  expect(a.iterations).toBe(b.iterations);
  expect(a.error).toBe(b.error);
}

describe.skipIf(noNativeDarp !== null)('native DARP (cpu) against the float64 reference', () => {
  describe.skipIf(!existsSync(`${dataDir}test_logits.npy`))('real data: Fashion-MNIST-LT', () => {
    for (const split of ['test', 'val']) {
      it(`${split} logits, uniform target and the long-tailed training prior as target`, () => {
        const logits = readMatrix(`${dataDir}${split}_logits.npy`);
        const counts = readVector(`${dataDir}train_counts.npy`);
        const { nat } = agree(logits);
        expect(nat.converged).toBe(true);
        agree(logits, { targetPrior: counts, tol: 1e-9 });
      });
    }
  });

  it('synthetic long-tailed logits 5000×10 and 2000×100 (and the chunking edges: 20003×3, 413×701)', () => {
    for (const [n, k, seed] of [[5000, 10, 3], [2000, 100, 4], [20003, 3, 15], [413, 701, 16]]) {
      const m = { data: longTailedLogits(seed, n, k), rows: n, cols: k };
      const { nat } = agree(m);
      expect(nat.converged).toBe(true);
    }
  });

  it('bit-identical for any thread count (1, 2, 3, default)', () => {
    for (const [n, k, seed] of [[5000, 10, 5], [2000, 100, 6], [37, 3, 7], [20003, 3, 17]]) {
      const m = { data: longTailedLogits(seed, n, k), rows: n, cols: k };
      const one = darpSync(m, { backend: 'cpu', threads: 1 });
      bitIdentical(one, darpSync(m, { backend: 'cpu', threads: 2 }));
      bitIdentical(one, darpSync(m, { backend: 'cpu', threads: 3 }));
      bitIdentical(one, darpSync(m, { backend: 'cpu' }));
    }
  });

  it('every SIMD level (OTLM_SIMD): AVX2 gives the AVX-512 bits, the baseline (no FMA) agrees to rounding', () => {
    const m = { data: longTailedLogits(14, 1203, 37), rows: 1203, cols: 37 };
    const saved = process.env.OTLM_SIMD;
    const at = (level: string) => {
      process.env.OTLM_SIMD = level;
      return darpSync(m, { backend: 'cpu', tol: 1e-9 });
    };
    try {
      const top = at('avx512');
      bitIdentical(top, at('avx2'));
      const base = at('baseline');
      expect(Array.from(base.predictions)).toEqual(Array.from(top.predictions));
      expect(base.iterations).toBe(top.iterations);
      expect(maxAbsDiff(base.probabilities.data, top.probabilities.data)).toBeLessThan(1e-7);
      expect(maxAbsDiff(base.classOffsets, top.classOffsets)).toBeLessThan(1e-10);
    } finally {
      if (saved === undefined) delete process.env.OTLM_SIMD;
      else process.env.OTLM_SIMD = saved;
    }
  });

  it('options behave as on the reference: maxIter, tol, newtonIter, weights, targetPrior', () => {
    const n = 1500;
    const k = 12;
    const m = { data: longTailedLogits(8, n, k), rows: n, cols: k };
    for (const maxIter of [1, 2, 3]) {
      const { nat } = agree(m, { maxIter });
      expect(nat.converged).toBe(false);
      expect(nat.iterations).toBe(maxIter);
      expect(nat.warning).toMatch(/did not converge in \d+ iterations/);
    }
    for (const tol of [1e-2, 1e-4, 1e-10]) agree(m, { tol });
    for (const newtonIter of [1, 2, 5]) agree(m, { newtonIter, tol: 1e-8 });
    agree(m, { weights: 'uniform' });
    const u = rng(9);
    agree(m, { weights: Array.from({ length: n }, () => 10 ** (3 * (2 * u() - 1))), tol: 1e-8 });
    agree(m, { targetPrior: Array.from({ length: k }, (_, j) => 1 + j) });
    agree(m, { targetPrior: Array.from({ length: k }, (_, j) => Math.exp(-j / 3)), weights: 'uniform', tol: 1e-9 });
  });

  it('the async form runs on the pool, gives the sync bits, and reads a snapshot of the input', async () => {
    const n = 3000;
    const k = 20;
    const data = longTailedLogits(10, n, k);
    const want = darpSync({ data: data.slice(), rows: n, cols: k }, { backend: 'cpu' });
    bitIdentical(want, await darp({ data, rows: n, cols: k }, { backend: 'cpu' }));
    // Overwritten right after the call: the engine reads the snapshot taken at the call.
    const a = data.slice();
    const pa = darp({ data: a, rows: n, cols: k }, { backend: 'cpu' });
    a.fill(0);
    bitIdentical(want, await pa);
    // Transferred (detached) right after the call.
    const b = data.slice();
    const pb = darp({ data: b, rows: n, cols: k }, { backend: 'auto' });
    structuredClone(b.buffer, { transfer: [b.buffer] });
    expect(b.length).toBe(0);
    bitIdentical(want, await pb);
    // A SharedArrayBuffer view is read in place.
    const s = new Float32Array(new SharedArrayBuffer(n * k * 4));
    s.set(data);
    bitIdentical(want, await darp({ data: s, rows: n, cols: k }, { backend: 'cpu' }));
  });

  it('an onnxruntime-style Tensor is accepted as the logits on both paths', async () => {
    const n = 300;
    const k = 7;
    const data = longTailedLogits(18, n, k);
    const want = darpSync({ data, rows: n, cols: k }, { backend: 'cpu' });
    const tensor = { data, dims: [n, k], type: 'float32' as const };
    bitIdentical(want, darpSync(tensor, { backend: 'cpu' }));
    bitIdentical(want, await darp(tensor, { backend: 'cpu' }));
    expect(Array.from(darpSync(tensor, { backend: 'reference' }).predictions)).toEqual(Array.from(want.predictions));
  });

  it('an aborted signal rejects with an AbortError', async () => {
    const m = { data: longTailedLogits(11, 200, 5), rows: 200, cols: 5 };
    const ac = new AbortController();
    ac.abort();
    await expect(darp(m, { backend: 'cpu', signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(darp(m, { backend: 'cpu', signal: {} as AbortSignal })).rejects.toThrow(/signal must be an AbortSignal/);
  });

  it("backends: 'auto' and 'cpu' run natively, 'cuda' falls back to the CPU engine, 'tfjs' is refused", async () => {
    const m = { data: longTailedLogits(12, 100, 4), rows: 100, cols: 4 };
    expect(darpSync(m).backend).toBe('cpu');
    expect((await darp(m)).backend).toBe('cpu');
    bitIdentical(darpSync(m, { backend: 'cpu' }), darpSync(m, { backend: 'cuda' }));
    expect(darpSync(m, { backend: 'cuda' }).backend).toBe('cpu');
    expect(darpSync(m, { backend: 'reference' }).backend).toBe('reference');
    expect(() => darpSync(m, { backend: 'tfjs' })).toThrow(expect.objectContaining({ code: 'OTLM_ENOTSUP' }));
    await expect(darp(m, { backend: 'tfjs' })).rejects.toThrow(/backend 'tfjs' has no DARP/);
    expect(() => darpSync(m, { backend: 'gpu' as 'cpu' })).toThrow(TypeError);
    expect(() => darpSync(m, { threads: -1 })).toThrow(/threads must be in \[0, 4096\]/);
  });

  it('bad input: the same errors on every backend, and the binding checks its own arguments', async () => {
    const good = { data: Float32Array.from([0.5, -1, 2, 0.1, 0.3, -0.2]), rows: 2, cols: 3 };
    const nan = { data: Float32Array.from([0.5, -1, 2, 0.1, NaN, -0.2]), rows: 2, cols: 3 };
    const cases: Array<[Matrix, DarpOptions, RegExp]> = [
      [nan, {}, /^logits has a non-finite value \(NaN\) at row 1, column 1/],
      [good, { targetPrior: [1, 0, 1] }, /^darp: targetPrior\[1\] must be > 0/],
      [good, { weights: [1] }, /weights must have length 2/],
      [good, { weights: [1, -1] }, /weights\[1\] must be > 0/],
      [good, { maxIter: 0 }, /maxIter must be in \[1, 2147483647\]/],
      [good, { newtonIter: 1.5 }, /newtonIter must be/],
      [good, { tol: NaN }, /tol must be a finite number/],
    ];
    for (const backend of ['reference', 'cpu', 'auto'] as const) {
      for (const [m, o, re] of cases) {
        expect(() => darpSync(m, { ...o, backend })).toThrow(re);
        await expect(darp(m, { ...o, backend })).rejects.toThrow(re);
      }
    }
    const native = loadNative();
    const sync = native.darpSync!;
    const c = Float64Array.from([1, 0.5, 0.5]);
    const args = { logits: good.data, n: 2, k: 3, colMarginal: c };
    expect(sync(args).predictions.length).toBe(2);
    expect(() => sync({ ...args, logits: new Float32Array(5) })).toThrow(/'logits' must have length 6/);
    expect(() => sync({ ...args, logits: new Float64Array(6) as unknown as Float32Array })).toThrow(/'logits' must be a Float32Array/);
    expect(() => sync({ ...args, colMarginal: Float64Array.from([1, 1, 1]) })).toThrow(expect.objectContaining({ code: 'OTLM_EINVAL', message: expect.stringMatching(/colMarginal must sum to the number of rows 2/) }));
    expect(() => sync({ ...args, colMarginal: Float64Array.from([2, 0, 0]) })).toThrow(/colMarginal\[1\] must be a finite number > 0/);
    expect(() => sync({ ...args, logits: nan.data })).toThrow(/logits has a non-finite value \(nan\) at row 1, column 1/i);
    expect(() => sync({ ...args, weights: 'flat' as 'uniform' })).toThrow(/'weights' must be 'entropy', 'uniform' or a Float64Array/);
    expect(() => sync({ ...args, weights: Float64Array.from([1, 0]) })).toThrow(/weights\[1\] must be a finite number > 0/);
    expect(() => sync({ ...args, maxIter: 0 })).toThrow(/'maxIter' must be an integer in \[1, /);
    expect(() => sync({ ...args, threads: 5000 })).toThrow(/'threads' must be an integer in \[0, 4096\]/);
    expect(() => sync({ ...args, cancel: new Int32Array(1) })).not.toThrow();
    expect(() => native.darp!({ ...args, cancel: new Int32Array(1) })).toThrow(/must be backed by a SharedArrayBuffer/);
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    cancel[0] = 1;
    await expect(native.darp!({ ...args, cancel })).rejects.toMatchObject({ code: 'OTLM_EABORTED' });
  });

  it('extreme weights: a non-finite column error is an error, not NaN probabilities', () => {
    const n = 50;
    const k = 4;
    const m = { data: longTailedLogits(13, n, k), rows: n, cols: k };
    const w = Array.from({ length: n }, (_, i) => (i % 2 ? 1e-300 : 1e300));
    let threw: unknown;
    let r: CorrectionResult | undefined;
    try {
      r = darpSync(m, { backend: 'cpu', weights: w, maxIter: 50 });
    } catch (e) {
      threw = e;
    }
    // Either it stays finite, or it says why it stopped.
    if (threw) expect(threw).toMatchObject({ code: 'OTLM_ENONFINITE' });
    else for (const v of r!.probabilities.data) expect(Number.isFinite(v)).toBe(true);
  });
});
