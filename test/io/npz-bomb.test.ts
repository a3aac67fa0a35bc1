/**
 * Zip bombs: a ~1 MB `.npz` whose member inflates to 1 GiB. In its own file so
 * the worker process's peak RSS (maxRSS) is not raised by other tests.
 */
import { describe, expect, it } from 'vitest';
import { readNpzAll } from '../../src/io/npz.js';
import { encodeNpy } from '../../src/io/npy.js';
import { IoError } from '../../src/io/errors.js';
import { buildZip, crcRef, zeroBomb } from './zip-builder.js';

const MB = 1 << 20;
const GIB_MIB = 1024;
const peak = () => process.resourceUsage().maxRSS * 1024; // bytes; a high-water mark, so transient spikes count

function refusal(fn: () => unknown): IoError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(IoError); expect((e as IoError).kind).toBe('bad-input'); return e as IoError; }
  throw new Error('expected the archive to be refused');
}

describe('zip bombs are refused without inflating them', () => {
  // A 10-float array whose DEFLATE stream goes on with 1 GiB of zeros.
  const header = encodeNpy(new Float32Array(10), [10]);
  const comp = zeroBomb(header, GIB_MIB);
  const inflated = header.length + GIB_MIB * MB;

  it('the bomb is small, and really inflates that far', () => {
    expect(comp.length).toBeLessThan(1.5 * MB);
    expect(inflated).toBeGreaterThan(1 << 30);
  });

  it('a 1 GiB bomb (declared honestly, or lying to fit the shape, or beyond DEFLATE) costs < 200 MB of RSS', () => {
    const rss0 = process.memoryUsage().rss;
    const peak0 = peak();
    // 1. declares its real size, which the .npy header's shape (10,) contradicts
    const honest = buildZip([{ name: 'x.npy', method: 8, comp, size: inflated, crc: 0 }]);
    expect(honest.length).toBeLessThan(1.5 * MB);
    expect(refusal(() => readNpzAll(honest, 'bomb.npz')).message).toBe(
      `bomb.npz: member 'x.npy': declares ${inflated} bytes uncompressed but its .npy header (shape (10) of <f4) ` +
      `implies ${header.length}; the file is corrupt`);
    // 2. declares the size the shape needs (with the CRC of those bytes), but inflates on
    const lying = buildZip([{ name: 'x.npy', method: 8, comp, size: header.length, crc: crcRef(header) }]);
    expect(refusal(() => readNpzAll(lying, 'bomb.npz')).message).toBe(
      `bomb.npz: member 'x.npy': inflates to more than its declared ${header.length} bytes; the file is corrupt or a zip bomb`);
    // 3. declares more than DEFLATE can produce from its compressed size
    const absurd = buildZip([{ name: 'x.npy', method: 8, comp, size: 0xfffffff0, crc: 0 }]);
    expect(refusal(() => readNpzAll(absurd, 'bomb.npz')).message).toMatch(
      /^bomb\.npz: member 'x\.npy': declares 4294967280 bytes from \d+ compressed bytes, more than DEFLATE can produce; the file is corrupt or a zip bomb$/);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * MB);
    expect(peak() - peak0).toBeLessThan(200 * MB);
  });
});
