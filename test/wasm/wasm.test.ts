// The WebAssembly engine suite (suite.ts) on the build that loads by default (the threaded one,
// lib/wasm/otlm-mt.wasm, where there is more than one core), and the threaded build's own checks:
// its workers take part, and 1 or 2 threads and the single-threaded build give bit-identical results.
import { existsSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { createWasmEngine, wasmThreadsPath } from '../../src/native/wasm-node.js';
import { longTailedLogits, wasmUnavailable } from '../methods/native-status.js';
import { wasmSuite } from './suite.js';

wasmSuite('threads');

const noWasm = wasmUnavailable() ?? (existsSync(wasmThreadsPath()) ? null : `${wasmThreadsPath()} was not built`);

function bytes(v: ArrayBufferView | undefined): Buffer {
  return v ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.alloc(0);
}

describe.skipIf(noWasm !== null)('WebAssembly engine: the threaded build', () => {
  it('1 and 2 threads and the single-threaded build give bit-identical plans, gradients, DARP and GEMM; the workers take part', () => {
    const mt = createWasmEngine('threads', 2);
    const st = createWasmEngine('single');
    try {
      const n = 5000, k = 100;
      const x = longTailedLogits(11, n, k);
      const col = new Float64Array(k).fill(n / k);
      const sk = (e: typeof mt, threads: number) =>
        e.sinkhornSync({ x, n, k, inputKind: 'logits', lambda: 0.7, maxIter: 60, tol: 0, colMarginal: col, plan: true, predictions: true, threads });
      const b = 1500, kk = 40;
      const phi = longTailedLogits(12, b, kk), w = longTailedLogits(13, kk, kk);
      const prior = new Float64Array(kk).fill(1 / kk);
      const lg = (e: typeof mt, threads: number) =>
        e.lossGradSync({ phi, b, k: kk, w, targetPrior: prior, lambda: 0.5, sinkhornIters: 20, grad: 'unrolled', threads });
      const dp = (e: typeof mt, threads: number) =>
        e.darpSync!({ logits: x.subarray(0, 2000 * k), n: 2000, k, colMarginal: new Float64Array(k).fill(20), threads });
      const a = longTailedLogits(14, 300, 150), bb = longTailedLogits(15, 150, 200);
      const gm = (e: typeof mt, threads: number) => e.gemmSync({ a, b: bb, m: 300, n: 200, kk: 150, threads });

      const before = mt.variant().workerTasks ?? 0;
      const one = { s: sk(mt, 1), l: lg(mt, 1), d: dp(mt, 1), g: gm(mt, 1) };
      expect(mt.variant().workerTasks).toBe(before); // threads: 1 stays on the caller
      const two = { s: sk(mt, 2), l: lg(mt, 2), d: dp(mt, 2), g: gm(mt, 2) };
      const single = { s: sk(st, 0), l: lg(st, 0), d: dp(st, 0), g: gm(st, 0) };
      const v = mt.variant();
      expect(v).toMatchObject({ variant: 'threads', threads: 2, workers: 1 });
      expect(v.workerTasks!).toBeGreaterThan(before);
      for (const r of [two, single]) {
        expect(bytes(r.s.plan).equals(bytes(one.s.plan))).toBe(true);
        expect(bytes(r.s.f).equals(bytes(one.s.f))).toBe(true);
        expect(bytes(r.s.g).equals(bytes(one.s.g))).toBe(true);
        expect(bytes(r.s.predictions).equals(bytes(one.s.predictions))).toBe(true);
        expect(r.l.loss).toBe(one.l.loss);
        expect(bytes(r.l.gradW).equals(bytes(one.l.gradW))).toBe(true);
        expect(bytes(r.d.probabilities).equals(bytes(one.d.probabilities))).toBe(true);
        expect(bytes(r.g).equals(bytes(one.g))).toBe(true);
      }
    } finally {
      mt.close();
      st.close();
    }
  });

  it('a pool worker that traps in a call fails that call (OTLM_EINTERNAL) instead of hanging it, and later calls still work', () => {
    const mt = createWasmEngine('threads', 2);
    try {
      const n = 5000, k = 100;
      const x = longTailedLogits(16, n, k);
      const col = new Float64Array(k).fill(n / k);
      const solve = () => mt.sinkhornSync({ x, n, k, inputKind: 'logits', lambda: 0.7, maxIter: 30, tol: 0, colMarginal: col, plan: true });
      const good = solve();
      mt.trapNextWorkerTask!();
      let err: (Error & { code?: string }) | undefined;
      // The worker traps in the first job it joins; a call it does not join is unaffected.
      for (let i = 0; i < 50 && !err; i++) {
        try {
          expect(bytes(solve().plan).equals(bytes(good.plan))).toBe(true);
        } catch (e) {
          err = e as Error;
        }
      }
      expect(err?.code).toBe('OTLM_EINTERNAL');
      expect(err?.message).toMatch(/worker thread of the WebAssembly engine failed/);
      expect(bytes(solve().plan).equals(bytes(good.plan))).toBe(true); // on the caller alone now
      expect(mt.variant().reason).toMatch(/pool worker failed/);
    } finally {
      mt.close();
    }
  });
});
