import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeNpz, listNpz, listNpzMembers, readNpzAll, readNpzArray, readNpzMember } from '../../src/io/npz.js';
import { npyToFloat32, npyToFloat64, npyToInt32 } from '../../src/io/npy.js';
import { IoError } from '../../src/io/errors.js';
import { EXPECTED, expectedValues, fix } from './helpers.js';

describe('reading numpy-written .npz', () => {
  it.each(['model.npz', 'model_c.npz'])('%s (savez / savez_compressed): names and arrays match numpy', (name) => {
    const bytes = fs.readFileSync(fix(name));
    expect(listNpz(bytes, name)).toEqual(['W', 'b', 'lam', 'labels']);
    for (const arr of ['W', 'b', 'lam', 'labels']) {
      const a = readNpzArray(bytes, name, arr);
      const e = EXPECTED[`model.npz:${arr}`]!;
      expect(a.shape).toEqual(e.shape);
      expect(a.descr).toBe(e.dtype);
      expect(Array.from(npyToFloat64(a))).toEqual(expectedValues(`model.npz:${arr}`));
    }
    // 'W.npy' also names the member
    expect(readNpzArray(bytes, name, 'W.npy').shape).toEqual([4, 4]);
    const all = readNpzAll(bytes, name);
    expect([...all.keys()].sort()).toEqual(['W', 'b', 'labels', 'lam']);
  });

  it('positional savez arrays are arr_0, arr_1', () => {
    const bytes = fs.readFileSync(fix('positional.npz'));
    expect(listNpz(bytes, 'p.npz')).toEqual(['arr_0', 'arr_1']);
    expect(Array.from(npyToFloat32(readNpzArray(bytes, 'p.npz', 'arr_1')))).toEqual(expectedValues('model.npz:b'));
  });

  it('a missing name lists the names that exist', () => {
    const bytes = fs.readFileSync(fix('model.npz'));
    expect(() => readNpzArray(bytes, 'model.npz', 'Q')).toThrow("model.npz: no array named 'Q' in the archive; it has: W, b, lam, labels");
  });

  it('errors name the array inside the archive', () => {
    const bytes = fs.readFileSync(fix('model.npz'));
    expect(() => npyToInt32(readNpzArray(bytes, 'model.npz', 'W'), 'labels')).toThrow(/^model\.npz:W: labels must be integers/);
  });

  it('rejects non-zip and corrupt archives', () => {
    const npy = fs.readFileSync(fix('f4.npy'));
    expect(() => listNpz(npy, 'x.npz')).toThrow(/x\.npz: not a \.npz file/);
    const bytes = fs.readFileSync(fix('model_c.npz'));
    let err: unknown;
    try { readNpzArray(bytes.subarray(0, bytes.length - 30), 'cut.npz', 'W'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(IoError);
    expect((err as IoError).message).toMatch(/^cut\.npz: corrupt \.npz \(zip\) archive/);
    // a corrupted DEFLATE stream inside an intact directory
    const bad = Uint8Array.from(bytes);
    for (let i = 60; i < 200; i++) bad[i] = 0xff;
    expect(() => readNpzAll(bad, 'bad.npz')).toThrow(/bad\.npz/);
  });
});

describe('encodeNpz', () => {
  const W = Float32Array.from({ length: 100 }, (_, i) => (i % 7) * 0.25 - 1);
  const b = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const arrays = {
    W: { data: W, shape: [10, 10] },
    b,
    lambda: { data: Float64Array.of(0.1), shape: [] },
    steps: { data: Int32Array.of(200), shape: [] },
  };

  it.each([false, true])('round-trips several arrays (compress=%s)', (compress) => {
    const bytes = encodeNpz(arrays, { compress, extra: { 'meta.json': JSON.stringify({ mode: 'unrolled' }) } });
    expect(listNpz(bytes, 'm.npz')).toEqual(['W', 'b', 'lambda', 'steps']);
    expect(listNpzMembers(bytes, 'm.npz')).toContain('meta.json');
    const w = readNpzArray(bytes, 'm.npz', 'W');
    expect(w.shape).toEqual([10, 10]);
    expect(Array.from(npyToFloat32(w))).toEqual(Array.from(W));
    expect(Array.from(npyToFloat32(readNpzArray(bytes, 'm.npz', 'b')))).toEqual(Array.from(b));
    const lam = readNpzArray(bytes, 'm.npz', 'lambda');
    expect(lam.shape).toEqual([]);
    expect(npyToFloat64(lam)[0]).toBe(0.1);
    expect(npyToInt32(readNpzArray(bytes, 'm.npz', 'steps'))[0]).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(readNpzMember(bytes, 'm.npz', 'meta.json')))).toEqual({ mode: 'unrolled' });
    expect(readNpzMember(bytes, 'm.npz', 'nope')).toBeUndefined();
  });

  it('compression shrinks compressible data, and output is deterministic', () => {
    const stored = encodeNpz(arrays);
    const deflated = encodeNpz(arrays, { compress: true });
    expect(deflated.length).toBeLessThan(stored.length);
    expect(Buffer.from(encodeNpz(arrays)).equals(Buffer.from(stored))).toBe(true);
  });

  it('rejects unsafe member names', () => {
    expect(() => encodeNpz({ '../evil': b })).toThrow(/bad member name/);
    expect(() => encodeNpz({ '': b })).toThrow(/bad member name/);
    expect(() => encodeNpz({ a: b }, { extra: { 'a.npy': 'x' } })).toThrow(/given twice/);
  });
});
