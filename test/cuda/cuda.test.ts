// The CUDA backend from TypeScript. Without a usable device: an explicit 'cuda' fails with
// the reason and 'auto' runs on the CPU. With one (bench/gpu-check.sh runs this file on a GPU
// machine): CUDA results match the CPU engine, the independent reference for every CUDA result.
import { describe, expect, it } from 'vitest';

import { info } from '../../src/api/info.js';
import { otCorrect } from '../../src/methods/ot.js';
import { loadNative } from '../../src/native/loader.js';
import { mulberry32 } from '../../src/train/batches.js';
import { OTLM, OtlmDivergenceError } from '../../src/train/otlm.js';

const cuda = info().cuda;

function logits(n: number, k: number, seed: number) {
  const r = mulberry32(seed);
  const data = new Float32Array(n * k);
  for (let i = 0; i < data.length; i++) data[i] = 4 * (r() - 0.5) - 2 * Math.floor((i % k) / Math.max(1, k / 4));
  return { data, rows: n, cols: k };
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

describe.runIf(!cuda.usable)('without a usable CUDA device', () => {
  it("backend 'cuda' rejects with the reason; 'auto' runs on the CPU", async () => {
    const x = logits(50, 7, 1);
    await expect(otCorrect(x, { backend: 'cuda' })).rejects.toMatchObject({
      code: 'OTLM_ENODEVICE',
      message: expect.stringContaining(cuda.reason ?? 'not available'),
    });
    const r = await otCorrect(x, { backend: 'auto' });
    expect(r.backend).toBe('cpu');
    expect(cuda.reason).toBeTruthy();
  });
});

// The emulator (OTLM_CUDA_LIB at the OTLM_CUDA_EMU build) runs every thread on the CPU: the
// largest size is left to real GPUs.
const sizes = ([[1000, 10, 0.1], [3001, 100, 1], [20000, 1000, 1]] as const).filter(([n]) => !cuda.emulated || n <= 3001);

describe.runIf(cuda.usable)(`CUDA vs CPU on ${cuda.devices[0]?.name ?? 'no device'}${cuda.emulated ? ' (emulated; 20000×1000 skipped)' : ''}`, () => {
  for (const [n, k, lambda] of sizes) {
    it(`otCorrect ${n}×${k}, λ = ${lambda}: plans ≤ 1e-5, predictions equal`, async () => {
      const x = logits(n, k, n + k);
      const g = await otCorrect(x, { backend: 'cuda', lambda, tol: 1e-6, maxIter: 5000 });
      const c = await otCorrect(x, { backend: 'cpu', lambda, tol: 1e-6, maxIter: 5000 });
      expect(g.backend).toBe('cuda');
      expect(maxRelDiff(g.probabilities.data, c.probabilities.data)).toBeLessThanOrEqual(1e-5);
      let differ = 0;
      for (let i = 0; i < n; i++) if (g.predictions[i] !== c.predictions[i]) differ++;
      expect(differ).toBeLessThanOrEqual(Math.ceil(n * 1e-4)); // exact ties only
    });
  }

  it('OTLM loss and gradient match the CPU engine', () => {
    const native = loadNative();
    const b = 2000, k = 100;
    const x = logits(b, k, 7);
    const w = new Float32Array(k * k);
    for (let j = 0; j < k; j++) w[j * k + j] = 1;
    const args = { k, lambda: 0.5, sinkhornIters: 10, b, phi: x.data, w, targetPrior: new Float64Array(k).fill(1 / k) };
    const g = native.lossGradSync({ ...args, backend: 'cuda' });
    const c = native.lossGradSync({ ...args, backend: 'cpu' });
    expect(Math.abs(g.loss - c.loss) / Math.abs(c.loss)).toBeLessThan(1e-5);
    expect(maxRelDiff(g.gradW!, c.gradW!)).toBeLessThan(1e-4);
  });

  it('OTLM fit on cuda learns the same W as the CPU engine (same seeded batches, Adam and SGD/Nesterov)', async () => {
    const val = logits(1500, 20, 11);
    for (const opts of [
      { optimizer: 'adam', lr: 0.01, batchSize: 500, iterations: 8, grad: 'unrolled', bias: { trainCounts: Array.from({ length: 20 }, (_, j) => 200 >> (j >> 2)) } },
      { optimizer: 'sgd', lr: 0.2, momentum: 0.9, nesterov: true, batchSize: 1500, iterations: 5, grad: 'envelope' },
    ] as const) {
      const common = { lambda: 0.3, sinkhornIters: 20, tol: 0, weightDecay: 1e-3, seed: 3, ...opts };
      const g = new OTLM({ ...common, backend: 'cuda' });
      const c = new OTLM({ ...common, backend: 'cpu' });
      const rg = await g.fit(val);
      const rc = await c.fit(val);
      expect(rg.backend).toBe('cuda');
      expect(maxRelDiff(Float32Array.from(rg.losses), Float32Array.from(rc.losses))).toBeLessThan(1e-4);
      expect(maxRelDiff(g.weights, c.weights)).toBeLessThan(1e-4);
    }
  });

  it('an overflowing update is refused on cuda as on the CPU, and W is kept', async () => {
    const val = logits(400, 8, 12);
    const m = new OTLM({ backend: 'cuda', optimizer: 'sgd', lr: 1e38, lambda: 0.5, sinkhornIters: 5, batchSize: 400, iterations: 3, seed: 1 });
    await expect(m.fit(val)).rejects.toBeInstanceOf(OtlmDivergenceError);
  });
});
