import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodeNpz, listNpz, listNpzMembers, readNpzAll, readNpzArray, readNpzMember } from '../../src/io/npz.js';
import { encodeNpy, npyToFloat32, npyToFloat64, npyToInt32 } from '../../src/io/npy.js';
import { IoError } from '../../src/io/errors.js';
import { readMatrix } from '../../src/io/matrix.js';
import { crc32 } from '../../src/io/zip.js';
import { MODEL_FORMAT, MODEL_VERSION, readModel, writeModel } from '../../src/train/model-file.js';
import { EXPECTED, expectedValues, fix, PYTHON, tmpDir } from './helpers.js';
import { buildZip, crcRef } from './zip-builder.js';

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

describe('integrity: CRC-32 and declared sizes are checked before the data is trusted', () => {
  const W = Float32Array.from({ length: 100 }, (_, i) => i / 10 - 5);
  const npyW = encodeNpy(W, [10, 10]);

  function refusal(fn: () => unknown): IoError {
    try { fn(); } catch (e) {
      expect(e).toBeInstanceOf(IoError);
      expect((e as IoError).kind).toBe('bad-input'); // the CLI's exit 2
      return e as IoError;
    }
    throw new Error('expected the archive to be refused');
  }

  /** Flip `n` bytes of member `member`'s data (past the .npy header) in a stored archive. */
  function flipInMember(bytes: Uint8Array, member: string, n: number): Uint8Array {
    const bad = Uint8Array.from(bytes);
    const at = Buffer.from(bad).indexOf(Buffer.from(member)) + member.length;
    const data = Buffer.from(bad).indexOf(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]), at) + 128;
    for (let i = 0; i < n; i++) bad[data + i] ^= 0x5a;
    return bad;
  }

  it('a saved OTLM model with 60 bytes flipped inside W.npy is refused, naming the file and the member', () => {
    const d = tmpDir();
    const k = 10;
    const meta = { format: MODEL_FORMAT, version: MODEL_VERSION, library: 'test', k, trainedSteps: 1, options: {} } as const;
    const good = path.join(d, 'model.npz');
    writeModel(good, { w: W, b: new Float32Array(k), targetPrior: new Float64Array(k).fill(1 / k), meta }, false);
    expect(readModel(good).w).toEqual(W);
    const bad = path.join(d, 'bad.npz');
    fs.writeFileSync(bad, flipInMember(fs.readFileSync(good), 'W.npy', 60));
    const e = refusal(() => readModel(bad));
    expect(e.message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: member 'W\\.npy': ` +
      `CRC-32 mismatch \\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\); the file is corrupt$`));
    if (PYTHON) { // numpy agrees that the file is bad
      const r = spawnSync(PYTHON, ['-c', 'import numpy, sys; numpy.load(sys.argv[1])["W"]', bad], { encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/BadZipFile|CRC/i);
    }
  });

  it('logits in a corrupted .npz are refused by readMatrix too', () => {
    const d = tmpDir();
    const f = path.join(d, 'logits.npz');
    fs.writeFileSync(f, flipInMember(encodeNpz({ logits: { data: W, shape: [10, 10] } }), 'logits.npy', 8));
    expect(refusal(() => readMatrix(`${f}:logits`)).message).toMatch(/logits\.npz: member 'logits\.npy': CRC-32 mismatch/);
  });

  it('a stored member with a wrong CRC is refused', () => {
    const zip = buildZip([{ name: 'W.npy', data: npyW, crc: 0x12345678 }]);
    expect(refusal(() => readNpzArray(zip, 'x.npz', 'W')).message)
      .toMatch(/^x\.npz: member 'W\.npy': CRC-32 mismatch \(stored 0x12345678, computed 0x[0-9a-f]{8}\); the file is corrupt$/);
  });

  it('a DEFLATE member with a wrong CRC is refused, and non-array members are checked too', () => {
    const zip = buildZip([{ name: 'W.npy', data: npyW, method: 8, crc: crcRef(npyW) ^ 1 }]);
    expect(refusal(() => readNpzAll(zip, 'x.npz')).message).toMatch(/^x\.npz: member 'W\.npy': CRC-32 mismatch/);
    const meta = buildZip([{ name: 'meta.json', data: Buffer.from('{}'), crc: 7 }]);
    expect(refusal(() => readNpzMember(meta, 'm.npz', 'meta.json')).message).toMatch(/member 'meta\.json': CRC-32 mismatch/);
  });

  it('every byte flip in a compressed archive\'s members is caught', () => {
    const bytes = fs.readFileSync(fix('model_c.npz'));
    const names = listNpz(bytes, 'model_c.npz');
    for (let i = 40; i < 120; i += 3) { // inside W.npy's DEFLATE data
      const bad = Uint8Array.from(bytes);
      bad[i] ^= 0x10;
      expect(refusal(() => names.forEach((n) => readNpzArray(bad, 'c.npz', n))).message).toMatch(/^c\.npz(:W)?: /);
    }
  });

  it('local header and central directory must agree', () => {
    expect(refusal(() => readNpzAll(buildZip([{ name: 'W.npy', data: npyW, localCrc: 1 }]), 'x.npz')).message)
      .toMatch(/member 'W\.npy': the local header \(CRC-32 0x00000001, .*\) disagrees with the central directory/);
    expect(refusal(() => readNpzAll(buildZip([{ name: 'W.npy', data: npyW, localSize: 5 }]), 'x.npz')).message)
      .toMatch(/disagrees with the central directory/);
  });

  it('declared sizes must match the data and the .npy header', () => {
    // stored: the declared size is the data's size
    expect(refusal(() => readNpzAll(buildZip([{ name: 'W.npy', data: npyW, size: 10 }]), 'x.npz')).message)
      .toMatch(/member 'W\.npy': is stored uncompressed but declares 10 bytes for \d+ bytes of data/);
    // deflated: declared larger than the header's shape implies (checked before allocating it)
    const big = buildZip([{ name: 'W.npy', data: npyW, method: 8, size: npyW.length + 4 }]);
    expect(refusal(() => readNpzAll(big, 'x.npz')).message)
      .toMatch(/member 'W\.npy': declares 532 bytes uncompressed but its \.npy header \(shape \(10, 10\) of <f4\) implies 528/);
    // deflated: the stream is longer than declared
    const npy2 = encodeNpy(new Float32Array(200), [200]);
    const long = buildZip([{ name: 'W.npy', data: npyW, method: 8, comp: deflateRawSync(Buffer.concat([npyW, npy2])) }]);
    expect(refusal(() => readNpzAll(long, 'x.npz')).message).toMatch(/inflates to more than its declared 528 bytes/);
    // deflated: the stream is shorter than declared
    const short = buildZip([{ name: 'W.npy', data: npyW, method: 8, comp: deflateRawSync(npyW.subarray(0, 500)) }]);
    expect(refusal(() => readNpzAll(short, 'x.npz')).message).toMatch(/inflates to 500 bytes but declares 528/);
  });

  it('truncated, overlapping, duplicated and unsupported members are refused', () => {
    const zip = buildZip([{ name: 'W.npy', data: npyW }, { name: 'b.npy', data: npyW }]);
    // cut inside the member data but keep a valid-looking end record
    const cd = Buffer.from(zip).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    expect(refusal(() => readNpzAll(Buffer.concat([zip.subarray(0, 300), zip.subarray(cd)]), 'cut.npz')).message)
      .toMatch(/^cut\.npz: /);
    // a member whose data holds another member's local record (how overlapping bombs multiply)
    const inner = buildZip([{ name: 'V.npy', data: npyW }]);
    const rec = inner.subarray(0, Buffer.from(inner).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])));
    const overlap = buildZip([{ name: 'a.bin', data: rec }, { name: 'V.npy', data: npyW, localOffset: 30 + 5, noData: true }]);
    expect(refusal(() => listNpz(overlap, 'o.npz')).message).toMatch(/^o\.npz: corrupt \.npz \(zip\) archive: members 'a\.bin' and 'V\.npy' overlap/);
    const shared = buildZip([{ name: 'W.npy', data: npyW }, { name: 'V.npy', data: npyW, localOffset: 0, noData: true }]);
    expect(refusal(() => listNpz(shared, 's.npz')).message).toMatch(/^s\.npz: member 'V\.npy': the local header names a different member/);
    const dup = buildZip([{ name: 'W.npy', data: npyW }, { name: 'W.npy', data: npyW }]);
    expect(refusal(() => readNpzAll(dup, 'd.npz')).message).toMatch(/member 'W\.npy': appears twice/);
    const bz = buildZip([{ name: 'W.npy', data: npyW, method: 12, comp: npyW }]);
    expect(refusal(() => readNpzAll(bz, 'z.npz')).message).toMatch(/member 'W\.npy': uses compression method 12; expected stored \(0\) or DEFLATE \(8\)/);
  });

  it('ZIP64 archives and data descriptors still load (and numpy agrees they are valid)', () => {
    const b = Float64Array.of(1.5, -2, 3);
    const zip = buildZip([
      { name: 'W.npy', data: npyW, zip64: true },
      { name: 'b.npy', data: encodeNpy(b, [3]), method: 8, zip64: true, descriptor: true },
    ], { zip64Eocd: true });
    const all = readNpzAll(zip, 'z64.npz');
    expect(Array.from(npyToFloat32(all.get('W')!))).toEqual(Array.from(W));
    expect(Array.from(npyToFloat64(all.get('b')!))).toEqual([1.5, -2, 3]);
    if (PYTHON) {
      const f = path.join(tmpDir(), 'z64.npz');
      fs.writeFileSync(f, zip);
      const r = spawnSync(PYTHON, ['-c', 'import numpy, sys; z = numpy.load(sys.argv[1]); print(z["W"].shape, z["W"][9, 9], z["b"].tolist())', f], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('(10, 10) 4.9 [1.5, -2.0, 3.0]');
    }
  });

  it('crc32 matches the reference values', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff);
    expect(crc32(data)).toBe(crcRef(data));
    expect(crc32(data.subarray(1234), crc32(data.subarray(0, 1234)))).toBe(crcRef(data));
  });
});
