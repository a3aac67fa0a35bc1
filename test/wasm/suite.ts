// The WebAssembly engine (backend 'wasm'): the CPU engine's own C++ built with Emscripten, as
// lib/wasm/otlm-mt.wasm (threads: a pool of worker instances on a shared memory) and lib/wasm/otlm.wasm
// (single-threaded). Either must give the native CPU backend's predictions and plans within 1e-5 on
// the bundled real long-tailed logits, and its OTLM, DARP and GEMM must agree with the float64
// references. wasm.test.ts runs this suite on the build that loads by default (threaded where there
// are cores), wasm-single.test.ts with OTLM_THREADS=1 (single-threaded). The Sinkhorn conformance suite
// (test/conformance) runs on it too. Skipped, with the reason, where the .wasm was not built (no
// Emscripten); under CI a missing engine fails.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { info } from '../../src/api/info.js';
import type { Matrix } from '../../src/api/types.js';
import { readMatrix } from '../../src/io/index.js';
import { darpSync } from '../../src/methods/darp.js';
import { otCorrect, otCorrectSync } from '../../src/methods/ot.js';
import { sinkhornSync } from '../../src/methods/sinkhorn.js';
import { loadWasm, wasmDefaultThreads } from '../../src/native/wasm-node.js';
import { OTLM } from '../../src/train/otlm.js';
import { longTailedLogits, nativeSinkhornUnavailable, wasmUnavailable } from '../methods/native-status.js';

const noWasm = wasmUnavailable();
const noNative = nativeSinkhornUnavailable();
if (noWasm) console.warn(`[skip] wasm tests: ${noWasm}`);
const dataDir = fileURLToPath(new URL('../../data/fmnist-lt/', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(a[i]));
  }
  return d / m;
}

export function wasmSuite(build: 'threads' | 'single'): void {
  describe.skipIf(noWasm !== null)(`WebAssembly engine (${build})`, () => {
    const test = readMatrix(`${dataDir}test_logits.npy`);
    const val = readMatrix(`${dataDir}val_logits.npy`);
    const threads = build === 'threads' ? wasmDefaultThreads() : 1;

    it(`describes itself: WebAssembly SIMD kernels, the builtin GEMM, ${build === 'threads' ? 'the threaded build' : 'one thread'}`, () => {
      const i = info();
      expect(i.wasm).toMatchObject({ available: true, simd: 'wasm-simd128', gemm: 'builtin-baseline' });
      expect(i.wasm.variant).toBe(threads > 1 ? 'threads' : 'single');
      expect(i.wasm.threads).toBe(threads);
      expect(i.wasm.path).toMatch(threads > 1 ? /otlm-mt\.wasm$/ : /otlm\.wasm$/);
      expect(i.backends).toContain('wasm');
      expect(loadWasm().info().cpu.threads).toBe(threads);
    });

    it.skipIf(noNative !== null)('OT on real long-tailed logits: the native predictions, plans within 1e-5 (plain and accelerated)', () => {
      for (const opts of [{ lambda: 1 }, { lambda: 0.1, overrelax: 1.5, epsScaling: 0.5, tol: 1e-6, maxIter: 5000 }]) {
        const cpu = otCorrectSync(test, { ...opts, backend: 'cpu' });
        const wasm = otCorrectSync(test, { ...opts, backend: 'wasm' });
        expect(wasm.backend).toBe('wasm');
        expect(Array.from(wasm.predictions)).toEqual(Array.from(cpu.predictions));
        expect(maxRelDiff(cpu.probabilities.data, wasm.probabilities.data)).toBeLessThanOrEqual(1e-5);
        expect(Math.abs(wasm.iterations - cpu.iterations)).toBeLessThanOrEqual(Math.max(2, 0.1 * cpu.iterations));
      }
    });

    it('K = 100 and K = 1000 synthetic long-tailed logits agree with the float64 reference', () => {
      for (const [n, k] of [[601, 100], [97, 1000]]) {
        const m: Matrix = { data: longTailedLogits(n + k, n, k), rows: n, cols: k };
        const ref = otCorrectSync(m, { lambda: 0.5, tol: 1e-6, maxIter: 3000, backend: 'reference' });
        const got = otCorrectSync(m, { lambda: 0.5, tol: 1e-6, maxIter: 3000, backend: 'wasm' });
        expect(got.converged).toBe(true);
        expect(maxRelDiff(ref.probabilities.data, got.probabilities.data)).toBeLessThanOrEqual(1e-5);
        let same = 0;
        for (let i = 0; i < n; i++) same += ref.predictions[i] === got.predictions[i] ? 1 : 0;
        expect(same).toBeGreaterThanOrEqual(n - 1); // a float32 tie may flip one row
      }
    });

    it('async calls resolve with the sync result and honour an aborted signal', async () => {
      const sync = otCorrectSync(test, { backend: 'wasm' });
      const r = await otCorrect(test, { backend: 'wasm' });
      expect(Array.from(r.predictions)).toEqual(Array.from(sync.predictions));
      const ac = new AbortController();
      ac.abort();
      await expect(otCorrect(test, { backend: 'wasm', signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    });

    it('under Node, async calls run in a worker: the event loop turns during the solve, and an abort stops it', async () => {
      const n = 4000, k = 200;
      const m: Matrix = { data: longTailedLogits(5, n, k), rows: n, cols: k };
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      try {
        const r = await otCorrect(m, { backend: 'wasm', maxIter: 300, tol: 0 });
        expect(r.iterations).toBe(300);
        expect(ticks).toBeGreaterThan(2); // a call on this thread would let none run
        const sync = otCorrectSync(m, { backend: 'wasm', maxIter: 300, tol: 0 });
        expect(Array.from(r.predictions)).toEqual(Array.from(sync.predictions));
        // Abort a long solve once it runs: it rejects as aborted, and the next call works.
        const ac = new AbortController();
        const long = otCorrect(m, { backend: 'wasm', maxIter: 1_000_000, tol: 0, signal: ac.signal });
        setTimeout(() => ac.abort(), 50);
        await expect(long).rejects.toMatchObject({ name: 'AbortError' });
        const again = await otCorrect(m, { backend: 'wasm', maxIter: 300, tol: 0 });
        expect(Array.from(again.predictions)).toEqual(Array.from(sync.predictions));
      } finally {
        clearInterval(timer);
      }
    });

    it('bad input gets the same errors as on the native engine', () => {
      const bad = Float32Array.from(test.data.subarray(0, 40));
      bad[7] = NaN;
      expect(() => sinkhornSync({ data: bad, rows: 4, cols: 10 }, { backend: 'wasm' })).toThrow(/NaN|finite/);
      expect(() => sinkhornSync(test, { backend: 'wasm', lambda: 0 })).toThrow(RangeError);
      const e = (() => {
        try {
          loadWasm().sinkhornSync({ x: new Float32Array(4), n: 2, k: 2, lambda: -1, maxIter: 10, tol: 0, colMarginal: new Float64Array([1, 1]) });
        } catch (err) {
          return err as NodeJS.ErrnoException;
        }
      })();
      expect(e).toBeInstanceOf(RangeError);
      expect(e?.code).toBe('OTLM_EINVAL');
      expect(e?.message).toMatch(/lambda/);
      // The binding itself checks lengths (the module would otherwise read past a short array).
      expect(() => loadWasm().sinkhornSync({ x: new Float32Array(4), n: 2, k: 2, lambda: 1, maxIter: 10, tol: 0, colMarginal: new Float64Array([2]) }))
        .toThrow(/colMarginal' must have length 2/);
      expect(() => loadWasm().gemmSync({ a: new Float32Array(6), b: new Float32Array(5), m: 2, n: 2, kk: 3 })).toThrow(/'b' must have length 6/);
    });

    it.skipIf(noNative !== null)('OTLM: fit on the unlabeled validation logits gives the native weights (1e-4) and predictions', async () => {
      const opts = { iterations: 5, sinkhornIters: 50, lambda: 0.5, lr: 1e-2, batchSize: 2000, seed: 3 };
      const onCpu = new OTLM({ ...opts, backend: 'cpu' });
      const onWasm = new OTLM({ ...opts, backend: 'wasm' });
      const a = await onCpu.fit(val);
      const b = await onWasm.fit(val);
      expect(b.backend).toBe('wasm');
      expect(maxRelDiff(onCpu.weights, onWasm.weights)).toBeLessThanOrEqual(1e-4);
      const pa = await onCpu.correct(test, { backend: 'cpu' });
      const pb = await onWasm.correct(test, { backend: 'wasm' });
      let same = 0;
      for (let i = 0; i < test.rows; i++) same += pa.predictions[i] === pb.predictions[i] ? 1 : 0;
      expect(same / test.rows).toBeGreaterThanOrEqual(0.999);
      expect(a.finalLoss).toBeCloseTo(b.finalLoss, 4);
    });

    it('DARP: the float64 reference predictions', () => {
      const m: Matrix = { data: test.data.slice(0, 1000 * 10), rows: 1000, cols: 10 };
      const ref = darpSync(m, { backend: 'reference' });
      const got = darpSync(m, { backend: 'wasm' });
      expect(got.backend).toBe('wasm');
      expect(Array.from(got.predictions)).toEqual(Array.from(ref.predictions));
      expect(maxRelDiff(ref.probabilities.data, got.probabilities.data)).toBeLessThanOrEqual(1e-5);
    });

    it('GEMM (with bias) against float64 sums', () => {
      const m = 37, n = 29, kk = 53;
      const a = longTailedLogits(1, m, kk), b = longTailedLogits(2, kk, n), bias = longTailedLogits(3, 1, n);
      const c = loadWasm().gemmSync({ a, b, m, n, kk, bias });
      let worst = 0;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = bias[j];
          for (let q = 0; q < kk; q++) s += a[i * kk + q] * b[q * n + j];
          worst = Math.max(worst, Math.abs(c[i * n + j] - s) / (1 + Math.abs(s)));
        }
      expect(worst).toBeLessThanOrEqual(1e-5);
    });

    it("'auto' runs on wasm, quietly, where the native addon does not load; info() says why", () => {
      const script = `
        import('otlm').then(async (o) => {
          const i = o.info();
          const m = { data: new Float32Array([2, 0, 0, 1, 0, 3, 1, 1, 0]), rows: 3, cols: 3 };
          const r = o.otCorrectSync(m);
          console.log(JSON.stringify({ active: i.active, why: i.activeReason, backend: r.backend }));
        });`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: root,
        env: { ...process.env, OTLM_NATIVE_PATH: '/nonexistent/otlm.node', OTLM_CUDA_LIB: '' },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe(''); // no warning: wasm is a full engine
      const out = JSON.parse(r.stdout);
      expect(out).toMatchObject({ active: 'wasm', backend: 'wasm' });
      expect(out.why).toMatch(/native addon did not load/);
    });
  });
}
