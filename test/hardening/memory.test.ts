// Memory safety of async calls and of in-place outputs (issue 13, items 1, 2 and 4 of the audit).
// The contract (docs/architecture.md, "Memory contract"): an async call reads its inputs from a
// snapshot taken at the call and fills a caller-supplied output when it settles, so JavaScript may
// transfer, post or shrink either buffer meanwhile; views of a SharedArrayBuffer are used in place.
// Each case compares with the same solve run synchronously on an untouched copy. Run under
// AddressSanitizer by `npm run test:asan`, where a read or write of freed memory is a report.
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

import { info } from '../../src/api/info.js';
import type { Backend } from '../../src/api/types.js';
import { otCorrect, otCorrectSync } from '../../src/methods/ot.js';
import { sinkhorn, sinkhornSync } from '../../src/methods/sinkhorn.js';
import { loadNative } from '../../src/native/loader.js';
import { OTLM } from '../../src/train/otlm.js';
import { referenceSinkhorn } from '../../src/paths/reference/sinkhorn.js';
import { longTailedLogits, nativeSinkhornUnavailable, wasmUnavailable } from '../methods/native-status.js';

const noNative = nativeSinkhornUnavailable();
if (noNative) console.warn(`[skip] native cases in test/hardening/memory.test.ts: ${noNative}`);
// 'cuda' joins where a CUDA library is usable (CI: the emulated one, through OTLM_CUDA_LIB); 'wasm'
// where the WebAssembly engine is built (its async calls run in a worker thread under Node).
const backends: Backend[] = [
  ...(noNative ? [] : ['cpu' as const]),
  ...(!noNative && info().cuda.usable ? ['cuda' as const] : []),
  ...(wasmUnavailable() === null ? ['wasm' as const] : []),
  'reference',
];
const itNative = noNative ? it.skip : it;

const N = 3000;
const K = 20;
const opts = { lambda: 0.5, tol: 1e-6 };
const solveArgs = { lambda: 1, maxIter: 100, tol: 1e-3 };

/** Ways JavaScript can take an ArrayBuffer's memory away while a call runs. */
const takers: Record<string, (b: ArrayBuffer) => void> = {
  'structuredClone transfer': (b) => void structuredClone(b, { transfer: [b] }),
  'postMessage transfer': (b) => {
    const ch = new MessageChannel();
    ch.port1.postMessage(b, [b]);
    ch.port1.close();
    ch.port2.close();
  },
};

/** Allocates and fills arrays so freed memory is reused (a use-after-free then reads or writes them). */
function churn(): Float32Array[] {
  return Array.from({ length: 32 }, () => new Float32Array(N * K).fill(7));
}
function untouched(arrays: Float32Array[]): boolean {
  return arrays.every((a) => a.every((v) => v === 7));
}

function resizable(data: Float32Array): Float32Array {
  const rb = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(data.byteLength, {
    maxByteLength: data.byteLength,
  });
  const a = new Float32Array(rb, 0, data.length);
  a.set(data);
  return a;
}

function argmaxRows(p: Float32Array, k: number): Int32Array {
  const out = new Int32Array(p.length / k);
  for (let i = 0; i < out.length; i++) {
    let a = 0;
    for (let j = 1; j < k; j++) if (p[i * k + j] > p[i * k + a]) a = j;
    out[i] = a;
  }
  return out;
}

describe('async calls: the input may be taken away while the call runs', () => {
  const logits = longTailedLogits(7, N, K);
  for (const backend of backends) {
    const expected = otCorrectSync({ data: logits.slice(), rows: N, cols: K }, { ...opts, backend });
    for (const [how, take] of Object.entries(takers)) {
      it(`${backend}: otCorrect, input detached by ${how}`, async () => {
        const data = logits.slice();
        const p = otCorrect({ data, rows: N, cols: K }, { ...opts, backend });
        take(data.buffer as ArrayBuffer);
        expect(data.length).toBe(0);
        const junk = churn();
        const r = await p;
        expect(r.predictions).toEqual(expected.predictions);
        expect(r.probabilities.data).toEqual(expected.probabilities.data);
        expect(untouched(junk)).toBe(true);
      });
    }
    it(`${backend}: otCorrect, resizable input shrunk to 0`, async () => {
      const data = resizable(logits);
      const p = otCorrect({ data, rows: N, cols: K }, { ...opts, backend });
      (data.buffer as unknown as { resize(n: number): void }).resize(0);
      const r = await p;
      expect(r.predictions).toEqual(expected.predictions);
    });
    it(`${backend}: otCorrect, input overwritten after the call reads the call-time values`, async () => {
      const data = logits.slice();
      const p = otCorrect({ data, rows: N, cols: K }, { ...opts, backend });
      data.fill(Number.NaN);
      expect((await p).predictions).toEqual(expected.predictions);
    });
  }
});

describe('async calls: a supplied output taken away is an error, and nothing else is written', () => {
  const logits = longTailedLogits(8, N, K);
  for (const backend of backends) {
    for (const [how, take] of Object.entries(takers)) {
      it(`${backend}: otCorrect out detached by ${how} rejects naming out`, async () => {
        const out = new Float32Array(N * K);
        const p = otCorrect({ data: logits, rows: N, cols: K }, { ...opts, backend, out });
        take(out.buffer as ArrayBuffer);
        const junk = churn();
        await expect(p).rejects.toMatchObject({ name: 'TypeError', code: 'OTLM_EDETACHED', message: expect.stringMatching(/otCorrect: out was detached/) });
        expect(untouched(junk)).toBe(true);
      });
    }
    it(`${backend}: sinkhorn plan on a resizable buffer shrunk mid-call rejects naming plan`, async () => {
      const plan = resizable(new Float32Array(N * K));
      const p = sinkhorn({ data: logits, rows: N, cols: K }, { ...opts, backend, plan });
      (plan.buffer as unknown as { resize(n: number): void }).resize(0);
      await expect(p).rejects.toMatchObject({ code: 'OTLM_EDETACHED', message: expect.stringMatching(/sinkhorn: plan was detached/) });
    });
    it(`${backend}: an out left alone is filled and returned`, async () => {
      const out = new Float32Array(N * K);
      const r = await otCorrect({ data: logits, rows: N, cols: K }, { ...opts, backend, out });
      expect(r.probabilities.data).toBe(out);
      expect(out).toEqual(otCorrectSync({ data: logits, rows: N, cols: K }, { ...opts, backend }).probabilities.data);
    });
  }
});

describe('SharedArrayBuffer views are used in place (zero-copy)', () => {
  for (const backend of backends) {
    it(`${backend}: input and out on SharedArrayBuffers`, async () => {
      const logits = longTailedLogits(9, N, K);
      const data = new Float32Array(new SharedArrayBuffer(N * K * 4));
      data.set(logits);
      const out = new Float32Array(new SharedArrayBuffer(N * K * 4));
      const r = await otCorrect({ data, rows: N, cols: K }, { ...opts, backend, out });
      expect(r.probabilities.data).toBe(out);
      const expected = otCorrectSync({ data: logits, rows: N, cols: K }, { ...opts, backend });
      expect(r.predictions).toEqual(expected.predictions);
      expect(Array.from(out)).toEqual(Array.from(expected.probabilities.data));
    });
  }
});

describe('outputs in place over the input (out === logits) are exact; partial overlaps are refused', () => {
  const n = 200;
  const k = 10;
  const logits = longTailedLogits(10, n, k, 3);
  for (const backend of backends) {
    const expected = otCorrectSync({ data: logits.slice(), rows: n, cols: k }, { lambda: 1, backend });
    it(`${backend}: otCorrectSync in place`, () => {
      const data = logits.slice();
      const r = otCorrectSync({ data, rows: n, cols: k }, { lambda: 1, backend, out: data });
      expect(r.probabilities.data).toBe(data);
      expect(r.predictions).toEqual(expected.predictions);
      expect(argmaxRows(data, k)).toEqual(expected.predictions);
      expect(data).toEqual(expected.probabilities.data);
    });
    it(`${backend}: otCorrect (async) in place`, async () => {
      const data = logits.slice();
      const r = await otCorrect({ data, rows: n, cols: k }, { lambda: 1, backend, out: data });
      expect(r.predictions).toEqual(expected.predictions);
      expect(data).toEqual(expected.probabilities.data);
    });
    it(`${backend}: sinkhornSync(cost, { plan: cost, predictions: true }) in place`, () => {
      const cost = logits.map((v) => -v);
      const ref = sinkhornSync({ data: cost.slice(), rows: n, cols: k }, { backend, plan: true, predictions: true });
      const r = sinkhornSync({ data: cost, rows: n, cols: k }, { backend, plan: cost, predictions: true });
      expect(r.predictions).toEqual(ref.predictions);
      expect(argmaxRows(cost, k)).toEqual(ref.predictions);
      expect(cost).toEqual(ref.plan);
    });
    it(`${backend}: an out overlapping the input by one row is refused`, () => {
      const buf = new Float32Array((n + 1) * k);
      buf.set(logits);
      const data = buf.subarray(0, n * k);
      const out = buf.subarray(k);
      expect(() => otCorrectSync({ data, rows: n, cols: k }, { backend, out })).toThrow(/otCorrectSync: out overlaps the input without being the same array/);
      expect(() => sinkhornSync({ data, rows: n, cols: k }, { backend, plan: out })).toThrow(/sinkhornSync: plan overlaps the input/);
    });
  }
  itNative('the binding refuses overlaps itself (callers other than the TS layer)', () => {
    const native = loadNative();
    const buf = new Float32Array((n + 1) * k);
    buf.set(logits);
    const colMarginal = new Float64Array(k).fill(n / k);
    expect(() => native.sinkhornSync({ ...solveArgs, x: buf.subarray(0, n * k), n, k, colMarginal, plan: buf.subarray(k) })).toThrow(/'plan' overlaps 'x' without being the same view/);
    const r = native.sinkhornSync({ ...solveArgs, x: buf.subarray(0, n * k), n, k, colMarginal, plan: buf.subarray(0, n * k), predictions: true });
    expect(r.plan?.buffer).toBe(buf.buffer);
  });
  itNative('an async binding call needs its cancel flag on a SharedArrayBuffer', () => {
    const native = loadNative();
    const colMarginal = new Float64Array(k).fill(n / k);
    expect(() => native.sinkhorn({ ...solveArgs, x: logits, n, k, colMarginal, cancel: new Int32Array(1) })).toThrow(/'cancel' must be backed by a SharedArrayBuffer/);
  });
});

describe('native GEMM and OTLM calls snapshot their inputs too', () => {
  itNative('gemm: a and b transferred during the call', async () => {
    const native = loadNative();
    const m = 500;
    const kk = 64;
    const a = longTailedLogits(11, m, kk);
    const b = longTailedLogits(12, kk, kk);
    const expected = native.gemmSync({ a: a.slice(), b: b.slice(), m, n: kk, kk });
    const p = native.gemm({ a, b, m, n: kk, kk });
    structuredClone(a.buffer, { transfer: [a.buffer] });
    structuredClone(b.buffer, { transfer: [b.buffer] });
    churn();
    expect(await p).toEqual(expected);
  });
  itNative('OTLM.correct: logits transferred during the call', async () => {
    const n = 600;
    const k = 10;
    const val = longTailedLogits(13, n, k);
    const model = new OTLM({ iterations: 3, batchSize: 200, sinkhornIters: 20, backend: 'cpu', seed: 1 });
    await model.fit({ data: val, rows: n, cols: k });
    const test = longTailedLogits(14, n, k);
    const expected = await model.correct({ data: test.slice(), rows: n, cols: k });
    const p = model.correct({ data: test, rows: n, cols: k });
    structuredClone(test.buffer, { transfer: [test.buffer] });
    churn();
    expect((await p).predictions).toEqual(expected.predictions);
  });
});

describe('concurrency: many async calls at once give the sequential results bit for bit', () => {
  itNative('100 otCorrect calls and 4 OTLM fits in flight together', async () => {
    const n = 400;
    const k = 10;
    const inputs = Array.from({ length: 100 }, (_, s) => longTailedLogits(100 + s, n, k));
    const seq = inputs.map((data) => otCorrectSync({ data, rows: n, cols: k }, { lambda: 0.3, backend: 'cpu' }));
    const fitOpts = { iterations: 4, batchSize: 100, sinkhornIters: 20, backend: 'cpu' as const, seed: 3 };
    const vals = Array.from({ length: 4 }, (_, s) => longTailedLogits(300 + s, n, k));
    const seqW: Float32Array[] = [];
    for (const data of vals) {
      const m = new OTLM(fitOpts);
      m.fitSync({ data, rows: n, cols: k });
      seqW.push(m.weights);
    }
    const models = vals.map(() => new OTLM(fitOpts));
    const [par, fits] = await Promise.all([
      Promise.all(inputs.map((data) => otCorrect({ data, rows: n, cols: k }, { lambda: 0.3, backend: 'cpu' }))),
      Promise.all(models.map((m, s) => m.fit({ data: vals[s], rows: n, cols: k }))),
    ]);
    expect(fits.length).toBe(4);
    par.forEach((r, s) => {
      expect(r.predictions).toEqual(seq[s].predictions);
      expect(r.probabilities.data).toEqual(seq[s].probabilities.data);
    });
    models.forEach((m, s) => expect(m.weights).toEqual(seqW[s]));
  });
});

describe('a valid tiny target prior converges (it used to underflow the column test)', () => {
  const n = 500;
  const k = 10;
  const logits = longTailedLogits(15, n, k);
  const tiny = new Float64Array(k).fill(1);
  tiny[0] = 1e-300;
  tiny[3] = 1e-305;
  const z = tiny.reduce((s, v) => s + v, 0);
  const prior = tiny.map((v) => v / z);
  const variants = [
    { lambda: 1 },
    { lambda: 0.1 },
    { lambda: 0.1, overrelax: 1.5 },
    { lambda: 0.05, epsScaling: 0.5 },
  ];
  for (const backend of backends) {
    for (const v of variants) {
      it(`${backend}: ${JSON.stringify(v)}`, () => {
        const r = otCorrectSync({ data: logits, rows: n, cols: k }, { ...v, backend, targetPrior: prior, tol: 1e-6, maxIter: 5000 });
        expect(r.converged).toBe(true);
        // The float64 reference of the same problem: same predictions, column masses to tol.
        const ref = referenceSinkhorn({
          x: logits, n, k, inputKind: 'logits', lambda: v.lambda, maxIter: 5000, tol: 1e-9, checkEvery: 1,
          colMarginal: prior.map((p) => p * n), epsScaling: 0, overrelax: 1, plan: false, predictions: true,
        });
        expect(r.predictions).toEqual(ref.predictions);
        for (const j of [0, 3]) for (let i = 0; i < n; i++) expect(r.predictions[i]).not.toBe(j);
        for (let i = 0; i < n; i++) expect(Number.isFinite(r.f[i])).toBe(true);
      });
    }
  }
});
