import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { otlmLossGradReference } from '../../src/paths/reference/otlm.js';
import { tfjsOtlmStep } from '../../src/paths/tfjs/index.js';
import { gaussian, rng } from './f64.js';

interface GradCase {
  name: string; b: number; k: number; lambda: number; T: number;
  phi: number[]; w: number[]; bias: number[] | null; mu: number[];
  loss: number; grad_w: number[]; marginal_error: number;
}
// PyTorch autograd in float64 (test/fixtures/make_otlm_fixtures.py): an independent implementation.
const fixture = JSON.parse(
  readFileSync(fileURLToPath(new URL('../fixtures/otlm/grad_cases.json', import.meta.url)), 'utf8'),
) as { cases: GradCase[] };

const BACKENDS = ['cpu', 'wasm'] as const;

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

describe.each(BACKENDS)('tfjsOtlmStep on tfjs-%s', (tfBackend) => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))('unrolled gradient matches PyTorch autograd: %s', async (_n, c) => {
    const got = await tfjsOtlmStep(
      { data: Float32Array.from(c.phi), rows: c.b, cols: c.k },
      Float32Array.from(c.w),
      { lambda: c.lambda, sinkhornIters: c.T, bias: c.bias ?? undefined, targetPrior: c.mu, tfBackend },
    );
    expect(got.sinkhornIters).toBe(c.T);
    expect(Math.abs(got.loss - c.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(c.loss)));
    // float32 tfjs vs float64 torch: λ = 0.1 with T = 10 amplifies rounding, hence 2e-3 (norm-wise).
    const gnorm = Math.sqrt(c.grad_w.reduce((s, v) => s + v * v, 0));
    if (gnorm > 1e-6) expect(relErr(got.gradW!, c.grad_w)).toBeLessThan(2e-3);
    else expect(got.gradNorm).toBeLessThan(1e-4);
    expect(Math.abs(got.marginalError - c.marginal_error)).toBeLessThan(1e-4);
  });

  it('envelope gradient and early stop at tol match the float64 reference', async () => {
    const b = 40, k = 8;
    const r = rng(11);
    const phi = Float32Array.from({ length: b * k }, () => 2 * gaussian(r));
    const w = Float32Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? 1 : 0) + 0.1 * gaussian(r));
    const bias = Array.from({ length: k }, () => 0.5 * gaussian(r));
    const mu = Array.from({ length: k }, (_, j) => 1 + j);
    const s = mu.reduce((a, v) => a + v, 0);
    const prior = mu.map((m) => m / s);
    for (const grad of ['envelope', 'unrolled'] as const) {
      const ref = otlmLossGradReference({ phi: { data: phi, rows: b, cols: k }, w, bias, targetPrior: prior, lambda: 0.5, sinkhornIters: 200, tol: 1e-3, grad });
      const got = await tfjsOtlmStep({ data: phi, rows: b, cols: k }, w, { lambda: 0.5, sinkhornIters: 200, tol: 1e-3, bias, targetPrior: mu, grad, tfBackend });
      expect(ref.sinkhornIters).toBeLessThan(200);
      expect(got.sinkhornIters).toBe(ref.sinkhornIters);
      expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ref.loss)));
      expect(relErr(got.gradW!, ref.gradW!)).toBeLessThan(2e-3);
    }
  });

  it('loss only (wantGrad: false) returns no gradient', async () => {
    const c = fixture.cases[1];
    const got = await tfjsOtlmStep({ data: Float32Array.from(c.phi), rows: c.b, cols: c.k }, Float32Array.from(c.w), {
      lambda: c.lambda, sinkhornIters: c.T, bias: c.bias ?? undefined, targetPrior: c.mu, wantGrad: false, tfBackend,
    });
    expect(got.gradW).toBeUndefined();
    expect(Math.abs(got.loss - c.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(c.loss)));
  });
});

describe('tfjsOtlmStep argument checks', () => {
  const phi = { data: new Float32Array(12).fill(0.5), rows: 4, cols: 3 };
  const w = new Float32Array(9);
  it.each([
    [{ lambda: 0, sinkhornIters: 3 }, /lambda/],
    [{ lambda: 1, sinkhornIters: 0 }, /sinkhornIters/],
    [{ lambda: 1, sinkhornIters: 3, targetPrior: [1, 2] }, /targetPrior must have length 3/],
    [{ lambda: 1, sinkhornIters: 3, targetPrior: [1, 0, 1] }, /targetPrior\[1\]/],
    [{ lambda: 1, sinkhornIters: 3, bias: [0, 0] }, /bias/],
    [{ lambda: 1, sinkhornIters: 3, grad: 'implicit' }, /grad/],
  ])('rejects %o', async (opts, msg) => {
    await expect(tfjsOtlmStep(phi, w, opts as never)).rejects.toThrow(msg);
  });
  it('rejects a W whose size is not K*K', async () => {
    await expect(tfjsOtlmStep(phi, new Float32Array(8), { lambda: 1, sinkhornIters: 2 })).rejects.toThrow(/w.data has length 8/);
  });
});
