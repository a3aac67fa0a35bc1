// The N-API layer rejects bad typed arrays with TypeError/RangeError (never a crash)
// and honours byteOffset on subarray views.
import { describe, expect, it } from 'vitest';

import { loadNative } from '../../src/native/loader.js';

const native = loadNative();

/** C = A·B in float64, the independent reference. */
function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, kk: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < kk; p++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * kk + p] * b[p * n + j];
  return c;
}

function rand(len: number, seed: number): Float32Array {
  const out = new Float32Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

describe('native argument checks', () => {
  const m = 3, kk = 4, n = 5;
  const a = rand(m * kk, 1);
  const b = rand(kk * n, 2);

  it('rejects a plain Array or a Float64Array where a Float32Array is required', () => {
    expect(() => native.gemmSync({ a: Array.from(a) as unknown as Float32Array, b, m, n, kk })).toThrow(TypeError);
    expect(() => native.gemmSync({ a: new Float64Array(a) as unknown as Float32Array, b, m, n, kk })).toThrow(
      /'a' must be a Float32Array, got Float64Array/,
    );
    expect(() => native.sinkhornSync({ x: 'nope' as unknown as Float32Array, n: 1, k: 1, lambda: 1, maxIter: 1, tol: 0, colMarginal: new Float64Array([1]) })).toThrow(TypeError);
  });

  it('rejects wrong lengths with a RangeError naming the argument', () => {
    expect(() => native.gemmSync({ a: a.subarray(1), b, m, n, kk })).toThrow(/'a' must have length 12, got 11/);
    expect(() =>
      native.sinkhornSync({ x: new Float32Array(6), n: 2, k: 3, lambda: 1, maxIter: 5, tol: 0, colMarginal: new Float64Array(2) }),
    ).toThrow(RangeError);
  });

  it('rejects a detached buffer with a TypeError', () => {
    const buf = new ArrayBuffer(m * kk * 4);
    const view = new Float32Array(buf);
    view.set(a);
    structuredClone(buf, { transfer: [buf] }); // detaches `buf`
    expect(view.length).toBe(0);
    expect(() => native.gemmSync({ a: view, b, m, n, kk })).toThrow(TypeError);
  });

  it('reads the right elements of a subarray view with a byteOffset', () => {
    const big = new Float32Array(7 + m * kk + 3).fill(1e6);
    big.set(a, 7);
    const view = big.subarray(7, 7 + m * kk);
    expect(view.byteOffset).toBe(28);
    const c = native.gemmSync({ a: view, b, m, n, kk });
    const ref = matmul(a, b, m, kk, n);
    for (let i = 0; i < c.length; i++) expect(c[i]).toBeCloseTo(ref[i], 5);
  });

  it('turns engine argument errors into RangeErrors with a code', () => {
    try {
      native.sinkhornSync({ x: new Float32Array(4), n: 2, k: 2, lambda: -1, maxIter: 5, tol: 0, colMarginal: new Float64Array([1, 1]) });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
      expect((e as Error).message).toMatch(/lambda/);
      expect((e as NodeJS.ErrnoException).code).toBe('OTLM_EINVAL');
    }
  });

  it('rejects an unknown backend name', () => {
    expect(() => native.gemmSync({ backend: 'gpu' as 'cpu', a, b, m, n, kk })).toThrow(/'backend' must be 'cpu' or 'cuda'/);
  });
});
