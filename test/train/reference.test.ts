/**
 * The float64 OTLM reference against central finite differences and PyTorch autograd fixtures
 * (test/fixtures/make_otlm_fixtures.py).
 */
import { describe, expect, it } from 'vitest';
import { otlmLossGradReference, type OtlmReferenceInput } from '../../src/paths/reference/otlm.js';
import { loadGradCases, randn, relErr } from './helpers.js';

function problem(b: number, k: number, seed: number, opts: { bias?: boolean; skew?: boolean; scale?: number } = {}) {
  const phi = { data: randn(b * k, seed, opts.scale ?? 2), rows: b, cols: k };
  const noise = randn(k * k, seed + 1, 0.1);
  const w = new Float64Array(k * k);
  for (let q = 0; q < k * k; q++) w[q] = noise[q] + (q % (k + 1) === 0 ? 1 : 0);
  const bias = opts.bias ? Float64Array.from(randn(k, seed + 2, 0.5)) : undefined;
  const mu = new Float64Array(k);
  for (let j = 0; j < k; j++) mu[j] = opts.skew ? 0.5 + (j % 3) : 1;
  const s = mu.reduce((a, x) => a + x, 0);
  for (let j = 0; j < k; j++) mu[j] /= s;
  return { phi, w, bias, targetPrior: mu };
}

/** Central differences of the loss in every entry of W. */
function fdGrad(input: OtlmReferenceInput, h = 1e-6): Float64Array {
  const w = Float64Array.from(input.w);
  const out = new Float64Array(w.length);
  for (let q = 0; q < w.length; q++) {
    const w0 = w[q];
    w[q] = w0 + h;
    const lp = otlmLossGradReference({ ...input, w, grad: 'none' }).loss;
    w[q] = w0 - h;
    const lm = otlmLossGradReference({ ...input, w, grad: 'none' }).loss;
    w[q] = w0;
    out[q] = (lp - lm) / (2 * h);
  }
  return out;
}

describe('otlmLossGradReference', () => {
  it('unrolled gradient matches central finite differences of the T-iteration loss', () => {
    const cases = [
      { b: 7, k: 4, lambda: 0.5, T: 1, bias: false, skew: false },
      { b: 7, k: 4, lambda: 1, T: 3, bias: true, skew: true },
      { b: 9, k: 5, lambda: 0.3, T: 6, bias: true, skew: false },
      { b: 12, k: 3, lambda: 0.1, T: 10, bias: false, skew: true },
    ];
    for (const [ci, c] of cases.entries()) {
      const p = problem(c.b, c.k, 100 + ci, { bias: c.bias, skew: c.skew });
      const input: OtlmReferenceInput = { ...p, lambda: c.lambda, sinkhornIters: c.T, tol: 0 };
      const r = otlmLossGradReference({ ...input, grad: 'unrolled' });
      expect(r.sinkhornIters).toBe(c.T);
      const fd = fdGrad(input);
      const e = relErr(r.gradW!, fd);
      expect(e, `case ${ci}: rel err ${e}`).toBeLessThan(1e-6);
    }
  });

  it('envelope gradient matches finite differences only at convergence; its gap to unrolled shrinks with T', () => {
    const p = problem(10, 4, 7, { bias: true, skew: true, scale: 1.5 });
    const base = { ...p, lambda: 1, tol: 0 };
    const gaps: number[] = [];
    for (const T of [1, 2, 4, 8, 16, 32, 64]) {
      const u = otlmLossGradReference({ ...base, sinkhornIters: T, grad: 'unrolled' }).gradW!;
      const e = otlmLossGradReference({ ...base, sinkhornIters: T, grad: 'envelope' }).gradW!;
      gaps.push(relErr(e, u));
    }
    console.log('envelope vs unrolled relative gap for T = 1,2,4,...,64:', gaps.map((g) => g.toExponential(2)).join(' '));
    for (let i = 2; i < gaps.length; i++) expect(gaps[i]).toBeLessThan(gaps[i - 1]);
    expect(gaps[0]).toBeGreaterThan(1e-2); // far from convergence the envelope is a different gradient
    expect(gaps[gaps.length - 1]).toBeLessThan(1e-6);
    // At convergence (many iterations) the envelope gradient is the derivative of the loss.
    const conv = { ...base, sinkhornIters: 400 };
    const env = otlmLossGradReference({ ...conv, grad: 'envelope' });
    expect(env.marginalError).toBeLessThan(1e-12);
    expect(relErr(env.gradW!, fdGrad(conv))).toBeLessThan(1e-6);
    // ...and not before: after 2 iterations FD (of the 2-iteration loss) disagrees with it.
    const early = { ...base, sinkhornIters: 2 };
    expect(relErr(otlmLossGradReference({ ...early, grad: 'envelope' }).gradW!, fdGrad(early))).toBeGreaterThan(1e-3);
  });

  it('early stop at tol: stops after the first f update whose column error is under tol, and the gradient is that of the truncated run', () => {
    const p = problem(8, 3, 21, { skew: true });
    const full = otlmLossGradReference({ ...p, lambda: 1, sinkhornIters: 200, tol: 1e-4 });
    expect(full.sinkhornIters).toBeLessThan(200);
    expect(full.marginalError).toBeLessThan(1e-4);
    const prev = otlmLossGradReference({ ...p, lambda: 1, sinkhornIters: full.sinkhornIters - 1, tol: 0 });
    expect(prev.marginalError).toBeGreaterThanOrEqual(1e-4);
    const same = otlmLossGradReference({ ...p, lambda: 1, sinkhornIters: full.sinkhornIters, tol: 0 });
    expect(same.loss).toBe(full.loss);
    expect(Array.from(same.gradW!)).toEqual(Array.from(full.gradW!));
  });

  it('rows of the final plan sum to 1 and the loss equals (−<Y, log Z> + λ<Y, log Y>)/B computed independently', () => {
    const p = problem(6, 4, 3, { bias: true });
    const lam = 0.5;
    const r = otlmLossGradReference({ ...p, lambda: lam, sinkhornIters: 5, grad: 'none' });
    const { phi, w, bias } = p;
    const k = 4;
    let L = 0;
    for (let i = 0; i < 6; i++) {
      const a = Array.from({ length: k }, (_, j) => bias![j] + Array.from({ length: k }, (_, q) => phi.data[i * k + q] * w[q * k + j]).reduce((x, y) => x + y));
      const mx = Math.max(...a);
      const lz = a.map((x) => x - mx - Math.log(a.reduce((s, y) => s + Math.exp(y - mx), 0)));
      let rs = 0;
      for (let j = 0; j < k; j++) {
        const y = Math.exp((r.f[i] + r.g[j] + lz[j]) / lam);
        rs += y;
        L += -y * lz[j] + lam * y * Math.log(y);
      }
      expect(rs).toBeCloseTo(1, 12);
    }
    expect(r.loss).toBeCloseTo(L / 6, 12);
  });

  it('matches the PyTorch autograd fixtures (loss, gradient, marginal error)', () => {
    const cases = loadGradCases();
    expect(cases.length).toBeGreaterThan(4);
    for (const c of cases) {
      const r = otlmLossGradReference({
        phi: { data: Float64Array.from(c.phi), rows: c.b, cols: c.k },
        w: c.w, bias: c.bias, targetPrior: c.mu, lambda: c.lambda, sinkhornIters: c.T, tol: 0, grad: 'unrolled',
      });
      expect(Math.abs(r.loss - c.loss) / Math.abs(c.loss), c.name).toBeLessThan(1e-10);
      expect(relErr(r.gradW!, c.grad_w), c.name).toBeLessThan(1e-9);
      expect(Math.abs(r.marginalError - c.marginal_error), c.name).toBeLessThan(1e-10);
    }
  });

  it('rejects malformed input with errors naming the argument', () => {
    const p = problem(3, 2, 1);
    const ok = { ...p, lambda: 1, sinkhornIters: 2 };
    expect(() => otlmLossGradReference({ ...ok, w: new Float64Array(3) })).toThrow(/w must have K\*K = 4/);
    expect(() => otlmLossGradReference({ ...ok, lambda: 0 })).toThrow(/lambda/);
    expect(() => otlmLossGradReference({ ...ok, sinkhornIters: 0 })).toThrow(/sinkhornIters/);
    expect(() => otlmLossGradReference({ ...ok, targetPrior: [0.7, 0.7] })).toThrow(/sum to 1/);
    expect(() => otlmLossGradReference({ ...ok, bias: [1] })).toThrow(/bias/);
  });
});
