/**
 * The native OTLM step (CPU backend) against the float64 reference and the PyTorch fixtures:
 * lossGrad (both gradient modes, early stop), the Trainer (20 optimizer steps = torch.optim), and the
 * OTLM class on the native backend (same W as the reference backend, divergence, abort).
 */
import { describe, expect, it } from 'vitest';
import { otlmLossGradReference } from '../../src/paths/reference/otlm.js';
import { OTLM, OtlmDivergenceError } from '../../src/train/otlm.js';
import { MAX_THREADS } from '../../src/api/validate.js';
import { loadGradCases, loadTrainCases, nativeOtlmReady, randn, relErr } from './helpers.js';

const ready = await nativeOtlmReady();
if (!ready) console.log('native OTLM step not available (addon missing or OTLM_ENOTSUP): native tests skipped');
const native = ready ? (await import('../../src/native/loader.js')).loadNative() : undefined;

function problem(b: number, k: number, seed: number) {
  const phi = randn(b * k, seed, 2);
  const noise = randn(k * k, seed + 1, 0.1);
  const w = new Float32Array(k * k);
  for (let q = 0; q < k * k; q++) w[q] = noise[q] + (q % (k + 1) === 0 ? 1 : 0);
  const bias = randn(k, seed + 2, 0.5);
  const mu = new Float64Array(k);
  for (let j = 0; j < k; j++) mu[j] = 0.5 + (j % 3);
  const s = mu.reduce((a, x) => a + x, 0);
  for (let j = 0; j < k; j++) mu[j] /= s;
  return { phi, w, bias, mu };
}

describe.skipIf(!ready)('native lossGrad (cpu) vs the float64 reference', () => {
  it('matches the PyTorch autograd fixtures to 1e-4 relative', () => {
    for (const c of loadGradCases()) {
      const r = native!.lossGradSync({
        backend: 'cpu', k: c.k, b: c.b, phi: Float32Array.from(c.phi), w: Float32Array.from(c.w),
        bias: c.bias ? Float32Array.from(c.bias) : undefined, targetPrior: Float64Array.from(c.mu),
        lambda: c.lambda, sinkhornIters: c.T, tol: 0, grad: 'unrolled',
      });
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss), c.name).toBeLessThan(1e-4);
      expect(relErr(r.gradW!, c.grad_w), c.name).toBeLessThan(1e-4);
      expect(r.sinkhornIters).toBe(c.T);
    }
  });

  it('matches the reference in both gradient modes, with and without early stopping', () => {
    const shapes = [
      { b: 50, k: 7, lambda: 1, T: 10, tol: 0 },
      { b: 200, k: 10, lambda: 0.1, T: 30, tol: 0 },
      { b: 130, k: 12, lambda: 0.5, T: 200, tol: 1e-3 }, // stops early
      { b: 64, k: 5, lambda: 1.2, T: 7, tol: 1e-3 },
    ];
    for (const [i, s] of shapes.entries()) {
      const p = problem(s.b, s.k, 10 + i);
      for (const grad of ['unrolled', 'envelope'] as const) {
        const ref = otlmLossGradReference({ phi: { data: p.phi, rows: s.b, cols: s.k }, w: p.w, bias: p.bias, targetPrior: p.mu, lambda: s.lambda, sinkhornIters: s.T, tol: s.tol, grad });
        const r = native!.lossGradSync({ backend: 'cpu', k: s.k, b: s.b, phi: p.phi, w: p.w, bias: p.bias, targetPrior: p.mu, lambda: s.lambda, sinkhornIters: s.T, tol: s.tol, grad });
        const tag = `${JSON.stringify(s)} ${grad}`;
        expect(r.sinkhornIters, tag).toBe(ref.sinkhornIters);
        expect(Math.abs(r.loss - ref.loss) / Math.abs(ref.loss), tag).toBeLessThan(1e-4);
        expect(relErr(r.gradW!, ref.gradW!), tag).toBeLessThan(1e-4);
        expect(Math.abs(r.marginalError - ref.marginalError), tag).toBeLessThan(1e-4 * Math.max(1, ref.marginalError));
      }
    }
  });
});

describe.skipIf(!ready)('native Trainer vs torch.optim (training parity fixtures)', () => {
  it('20 optimizer steps on the fixture batches reproduce PyTorch W to 1e-4', async () => {
    for (const c of loadTrainCases()) {
      const t = new native!.Trainer({
        backend: 'cpu', k: c.k, lambda: c.lambda, sinkhornIters: c.T, tol: 0, grad: c.grad, optimizer: c.optimizer,
        beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay, momentum: c.momentum, nesterov: c.nesterov,
        phi: Float32Array.from(c.phi), n: c.n, bias: c.bias ? Float32Array.from(c.bias) : undefined, targetPrior: Float64Array.from(c.mu),
      });
      try {
        expect(c.batches.length).toBe(20);
        for (const [s, rows] of c.batches.entries()) {
          const rep = await t.step(Int32Array.from(rows), c.lr);
          expect(Math.abs(rep.loss - c.losses[s]) / Math.abs(c.losses[s]), `${c.name} step ${s + 1}`).toBeLessThan(1e-4);
        }
        const w = t.getWeights();
        const e = relErr(w, c.w_final);
        console.log(`training parity ${c.name}: ‖W − W_torch‖/‖W_torch‖ = ${e.toExponential(2)}`);
        expect(e, c.name).toBeLessThan(1e-4);
      } finally {
        t.close();
      }
    }
  });
});

describe.skipIf(!ready)('OTLM class on the native backend', () => {
  const k = 6;
  const val = (() => {
    const d = randn(300 * k, 77, 2);
    for (let i = 0; i < 300; i++) d[i * k] += 2;
    return { data: d, rows: 300, cols: k };
  })();

  it('native and reference backends learn the same W (same seeded batches)', async () => {
    for (const opts of [
      { optimizer: 'sgd', lr: 0.5, momentum: 0.9, batchSize: 100, iterations: 15, grad: 'unrolled' },
      { optimizer: 'adam', lr: 0.01, batchSize: 1000, iterations: 10, grad: 'envelope', bias: { trainCounts: [60, 30, 15, 8, 4, 2] } },
    ] as const) {
      const common = { lambda: 0.5, sinkhornIters: 10, tol: 0, weightDecay: 1e-3, seed: 5, ...opts };
      const a = new OTLM({ ...common, backend: 'cpu' });
      const b = new OTLM({ ...common, backend: 'reference' });
      const ra = await a.fit(val);
      const rb = await b.fit(val);
      expect(ra.backend).toBe('cpu');
      expect(relErr(ra.losses, rb.losses)).toBeLessThan(1e-4);
      expect(relErr(a.weights, b.weights), opts.optimizer).toBeLessThan(1e-4);
      // correct()'s first stage, A = ΦW + b, by the native GEMM vs float64
      const A = await a.adjustedLogits(val);
      const r64 = new OTLM({ ...common, backend: 'reference' });
      r64.setWeights(a.weights);
      const A2 = await r64.adjustedLogits(val);
      expect(relErr(A.data, A2.data)).toBeLessThan(1e-6);
    }
  });

  it('fitSync gives the same fit as fit', async () => {
    const o = { backend: 'cpu', lambda: 0.5, sinkhornIters: 10, tol: 1e-3, lr: 0.01, batchSize: 64, iterations: 6, seed: 9 } as const;
    const a = new OTLM(o);
    const b = new OTLM(o);
    const ra = await a.fit(val);
    const rb = b.fitSync(val);
    expect(Array.from(rb.losses)).toEqual(Array.from(ra.losses));
    expect(Array.from(b.weights)).toEqual(Array.from(a.weights));
  });

  it('abort mid-fit: the step in flight finishes, W is that of the last completed step', async () => {
    const ac = new AbortController();
    const m = new OTLM({ backend: 'cpu', lambda: 0.5, sinkhornIters: 20, tol: 0, lr: 0.01, batchSize: 100, iterations: 1000, signal: ac.signal, onProgress: (e) => { if (e.step === 5) setImmediate(() => ac.abort()); } });
    const r = await m.fit(val);
    expect(r.aborted).toBe(true);
    expect(r.steps).toBeGreaterThanOrEqual(5);
    expect(r.steps).toBeLessThan(1000);
    const ref = new OTLM({ backend: 'cpu', lambda: 0.5, sinkhornIters: 20, tol: 0, lr: 0.01, batchSize: 100, iterations: r.steps });
    await ref.fit(val);
    expect(Array.from(m.weights)).toEqual(Array.from(ref.weights));
  });

  it('a non-finite loss in the engine (huge but finite W overflows A = ΦW) stops at step 1, W unchanged', async () => {
    const m = new OTLM({ backend: 'cpu', lambda: 0.5, sinkhornIters: 10, tol: 0, lr: 0.01, batchSize: 1000, iterations: 5 });
    const big = new Float32Array(k * k).fill(3e38);
    m.setWeights(big);
    const err = await m.fit(val, { warmStart: true }).catch((e) => e);
    expect(err).toBeInstanceOf(OtlmDivergenceError);
    expect(err.step).toBe(1);
    expect(err.message).toMatch(/OTLM diverged at step 1: .*not finite/);
    expect(Array.from(m.weights)).toEqual(Array.from(big));
    expect(m.steps).toBe(0);
  });

  it('a diverging run rejects with the step, W finite', async () => {
    const m = new OTLM({ backend: 'cpu', optimizer: 'sgd', momentum: 0, lr: 1e37, lambda: 0.5, sinkhornIters: 10, tol: 0, batchSize: 1000, iterations: 20 });
    const err = await m.fit(val).catch((e) => e);
    expect(err).toBeInstanceOf(OtlmDivergenceError);
    console.log(`native divergence: ${err.message}`);
    expect(err.message).toMatch(/OTLM diverged at step \d+/);
    expect(err.step).toBeGreaterThan(1);
    expect(m.weights.every(Number.isFinite)).toBe(true);
    expect(m.steps).toBe(err.step - 1);
  });
});

describe.skipIf(!ready)('threads: what the TS check accepts, the engine accepts (issue 13)', () => {
  it('MAX_THREADS fits and corrects on the CPU (trainer, GEMM and Sinkhorn)', async () => {
    const m = new OTLM({ backend: 'cpu', threads: MAX_THREADS, lambda: 0.5, sinkhornIters: 5, iterations: 2, batchSize: 16 });
    const x = { data: randn(16 * 3, 5, 2), rows: 16, cols: 3 };
    await m.fit(x);
    const r = await m.correct(x);
    expect(r.predictions.length).toBe(16);
  });
});
