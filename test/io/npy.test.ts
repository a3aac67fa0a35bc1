import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeNpy, npyToFloat32, npyToFloat64, npyToInt32, parseNpy, parseNpyHeader } from '../../src/io/npy.js';
import { IoError } from '../../src/io/errors.js';
import { EXPECTED, expectedValues, fix, makeNpy } from './helpers.js';

const read = (name: string) => parseNpy(fs.readFileSync(fix(name)), name);

function rejects(bytes: Uint8Array, name: string, re: RegExp): void {
  let err: unknown;
  try { parseNpy(bytes, name); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(IoError);
  expect((err as IoError).kind).toBe('bad-input');
  expect((err as IoError).message.startsWith(`${name}: `)).toBe(true);
  expect((err as IoError).message).toMatch(re);
}

const NUMERIC = ['f4.npy', 'f8.npy', 'i4_labels.npy', 'i8_labels.npy', 'i8_big.npy', 'u1.npy', 'i1.npy', 'i2.npy', 'u2.npy',
  'u4.npy', 'u8.npy', 'bool.npy', 'be_f4.npy', 'be_f8.npy', 'be_i8.npy', 'be_i2.npy', 'scalar.npy', 'empty.npy',
  'three_d.npy', 'col.npy', 'v2.npy', 'v3.npy', 'nan.npy', 'f8_overflow.npy'];

describe('parseNpy on numpy-written files', () => {
  it.each(NUMERIC)('%s: dtype, shape and values match numpy', (name) => {
    const a = read(name);
    const e = EXPECTED[name]!;
    expect(a.descr).toBe(e.dtype);
    expect(a.shape).toEqual(e.shape);
    expect(a.size).toBe(e.values.length);
    expect(Array.from(npyToFloat64(a))).toEqual(expectedValues(name));
    // float32 view: numpy's values narrowed the way float32 does it
    expect(Array.from(npyToFloat32(a))).toEqual(expectedValues(name).map(Math.fround));
  });

  it('reads format versions 2.0 and 3.0', () => {
    expect(read('v2.npy').version).toEqual([2, 0]);
    expect(read('v3.npy').version).toEqual([3, 0]);
    expect(read('f4.npy').version).toEqual([1, 0]);
  });

  it('big- and little-endian arrays give the same numbers as numpy', () => {
    const a = read('be_i8.npy');
    expect(a.littleEndian).toBe(false);
    expect(Array.from(npyToInt32(a))).toEqual(expectedValues('be_i8.npy'));
    expect(Array.from(npyToInt32(read('be_i2.npy')))).toEqual(expectedValues('be_i2.npy'));
  });

  it('converts integer, bool and integral data to int32', () => {
    for (const name of ['i4_labels.npy', 'i8_labels.npy', 'u1.npy', 'i1.npy', 'i2.npy', 'u2.npy', 'u8.npy', 'bool.npy', 'col.npy']) {
      expect(Array.from(npyToInt32(read(name)))).toEqual(expectedValues(name));
    }
  });

  it('refuses int32 conversion of out-of-range or fractional values, naming the element', () => {
    expect(() => npyToInt32(read('i8_big.npy'), 'labels')).toThrow(/i8_big\.npy: labels must be integers in the int32 range; element 1 is 1099511627776/);
    expect(() => npyToInt32(read('f8.npy'))).toThrow(/f8\.npy: .*element 0/);
    expect(() => npyToInt32(read('u4.npy'))).toThrow(/int32 range/); // values up to 2^32
  });

  it('returns owned copies, not views into the file bytes', () => {
    const bytes = fs.readFileSync(fix('f4.npy'));
    const f = npyToFloat32(parseNpy(bytes, 'f4.npy'));
    bytes.fill(0);
    expect(f[2]).toBe(Math.fround(expectedValues('f4.npy')[2]!));
  });
});

describe('parseNpy rejections', () => {
  it('Fortran order', () => rejects(fs.readFileSync(fix('fortran.npy')), 'fortran.npy', /Fortran-order .* not supported; expected C order/));
  it('object arrays', () => rejects(fs.readFileSync(fix('object.npy')), 'object.npy', /object arrays \(dtype '\|O'\) are not supported/));
  it('string arrays', () => rejects(fs.readFileSync(fix('unicode_str.npy')), 'unicode_str.npy', /unsupported dtype '<U2'/));
  it('complex arrays', () => rejects(fs.readFileSync(fix('complex.npy')), 'complex.npy', /unsupported dtype '<c8'/));
  it('half precision', () => rejects(fs.readFileSync(fix('f2.npy')), 'f2.npy', /unsupported dtype '<f2'/));
  it('structured dtype with a UTF-8 (format 3.0) field name, decoded', () =>
    rejects(fs.readFileSync(fix('v3_unicode_field.npy')), 'v3_unicode_field.npy', /structured dtype with fields \(λé\) is not supported/));

  const good = fs.readFileSync(fix('f4.npy'));
  const data12 = new Uint8Array(12 * 4);
  it('bad magic', () => {
    const b = Uint8Array.from(good); b[1] = 0x4f;
    rejects(b, 'x.npy', /not a \.npy file \(bad magic/);
    rejects(new TextEncoder().encode('a,b\n1,2\n'), 'x.npy', /bad magic/);
    rejects(new Uint8Array(0), 'x.npy', /bad magic/);
  });
  it('unknown version', () => {
    const b = Uint8Array.from(good); b[6] = 4;
    rejects(b, 'x.npy', /unsupported \.npy format version 4\.0/);
  });
  it('truncated data', () => rejects(good.subarray(0, good.length - 3), 'x.npy', /truncated data: shape \(5, 3\) of <f4 needs 60 bytes, file has 57/));
  it('extra data', () => rejects(Buffer.concat([good, Buffer.alloc(4)]), 'x.npy', /data length mismatch: .* needs 60 bytes, file has 64/));
  it('truncated header', () => rejects(good.subarray(0, 40), 'x.npy', /truncated \.npy header/));
  it('header that is not a dict', () => rejects(makeNpy("[1, 2, 3]", data12), 'x.npy', /expected a dict literal/));
  it('missing key', () => rejects(makeNpy("{'descr': '<f4', 'shape': (3, 4), }", data12), 'x.npy', /missing key 'fortran_order'/));
  it('extra key', () => rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1}", data12), 'x.npy', /unexpected key 'x'/));
  it('bad shape', () => {
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': [3, 4], }", data12), 'x.npy', /'shape' must be a tuple/);
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4), }", data12), 'x.npy', /'shape' must be a tuple of non-negative/);
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3.5, 4), }", data12), 'x.npy', /only integers/);
  });
  it('shape/length mismatch', () => rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }", data12), 'x.npy', /needs 64 bytes, file has 48/));
  it('garbage in the header', () => {
    rejects(makeNpy("{'descr': '<f4, 'fortran_order': False}", data12), 'x.npy', /corrupt \.npy header/);
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4), }", data12), 'x.npy', /'fortran_order' must be True or False/);
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } junk", data12), 'x.npy', /unexpected text after the header/);
    rejects(makeNpy("{'descr': 'f4', 'fortran_order': False, 'shape': (3, 4), }", data12), 'x.npy', /has no byte order/);
  });
  it('huge shapes: an overflowing product is refused before any allocation; an empty dimension makes any shape empty', () => {
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824, 1073741824, 1073741824), }", data12), 'x.npy', /shape \(1073741824, 1073741824, 1073741824\) is too large/);
    rejects(makeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (4503599627370496, 2), }", data12), 'x.npy', /is too large/);
    rejects(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }", data12), 'x.npy', /integer 99999999999999999999 is too large/);
    // numpy saves np.empty((0, 2**40, 2**40)) fine: 0 elements, 0 bytes
    const e = parseNpy(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 0), }", new Uint8Array(0)), 'e.npy');
    expect(e.size).toBe(0);
    expect(npyToFloat32(e).length).toBe(0);
  });
  it('deeply nested header literals are an IoError, not a stack overflow', () => {
    const deep = '('.repeat(60000) + ')'.repeat(60000);
    rejects(makeNpy(`{'descr': '<f4', 'fortran_order': False, 'shape': ${deep}, }`, data12, 2), 'x.npy', /corrupt \.npy header: nesting deeper than 32 levels/);
    rejects(makeNpy(`{'descr': ${'['.repeat(100000)}`, data12, 2), 'x.npy', /nesting deeper than 32 levels/);
  });
  it('a header longer than 1 MiB is refused (numpy itself stops at 10000 bytes)', () => {
    const pad = ' '.repeat(1 << 20);
    rejects(makeNpy(`{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }${pad}`, data12, 2), 'x.npy', /its length field says \d+ bytes; at most 1048576 are accepted/);
    // a lying length field is refused as such, not waited for
    const b = Uint8Array.from(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", data12, 2));
    new DataView(b.buffer).setUint32(8, 0xfffffff0, true);
    rejects(b, 'x.npy', /at most 1048576 are accepted/);
  });
  it('a prefix of a header parses only once the header is complete (used for compressed .npz members)', () => {
    const full = makeNpy("{'descr': '>f8', 'fortran_order': False, 'shape': (3, 4), }", new Uint8Array(96));
    expect(parseNpyHeader(full.subarray(0, 11), 'x.npy', true)).toBeUndefined();
    expect(parseNpyHeader(full.subarray(0, 100), 'x.npy', true)).toBeUndefined();
    const h = parseNpyHeader(full.subarray(0, 128), 'x.npy', true)!;
    expect([h.descr, h.shape, h.dataStart, h.nbytes, h.littleEndian]).toEqual(['>f8', [3, 4], 128, 96, false]);
    expect(() => parseNpyHeader(new Uint8Array(20), 'x.npy', true)).toThrow(/bad magic/);
  });
  it('accepts Python 2 style long shapes and double-quoted strings', () => {
    const a = parseNpy(makeNpy('{"descr": "<f4", "fortran_order": False, "shape": (3L, 4L)}', data12), 'old.npy');
    expect(a.shape).toEqual([3, 4]);
  });
});

describe('encodeNpy', () => {
  it('writes byte-identical files to np.save for the same arrays', () => {
    for (const [name, conv] of [['f4.npy', npyToFloat32], ['f8.npy', npyToFloat64], ['i4_labels.npy', npyToInt32],
      ['col.npy', npyToInt32], ['empty.npy', npyToFloat32], ['scalar.npy', npyToFloat64]] as const) {
      const bytes = fs.readFileSync(fix(name));
      const a = parseNpy(bytes, name);
      expect(Buffer.from(encodeNpy(conv(a), a.shape)).equals(bytes), name).toBe(true);
    }
  });

  it('pads the header so data starts on a 64-byte boundary, for any shape', () => {
    for (const shape of [[], [0], [7], [1, 1], [123456789, 0], [2, 3, 4], [99999, 99999, 0, 1]]) {
      const n = shape.reduce((p, x) => p * x, 1);
      const bytes = encodeNpy(new Float32Array(n), shape);
      const hl = new DataView(bytes.buffer).getUint16(8, true);
      expect((10 + hl) % 64).toBe(0);
      expect(bytes[10 + hl - 1]).toBe(0x0a);
      const back = parseNpy(bytes, 'rt.npy');
      expect(back.shape).toEqual(shape);
    }
  });

  it('round-trips float32, float64 and int32 exactly', () => {
    const f32 = Float32Array.from([0, -0, 1.5, -3.4028234663852886e38, 1e-45, NaN, Infinity]);
    const f64 = Float64Array.from([Math.PI, -1e300, 5e-324]);
    const i32 = Int32Array.from([-2147483648, 2147483647, 0, 7]);
    expect(Object.is(npyToFloat32(parseNpy(encodeNpy(f32, [7]), 'a'))[1], -0)).toBe(true);
    expect(Array.from(npyToFloat32(parseNpy(encodeNpy(f32, [7]), 'a')))).toEqual(Array.from(f32));
    expect(Array.from(npyToFloat64(parseNpy(encodeNpy(f64, [3, 1]), 'b')))).toEqual(Array.from(f64));
    expect(Array.from(npyToInt32(parseNpy(encodeNpy(i32, [2, 2]), 'c')))).toEqual(Array.from(i32));
  });

  it('honours the byteOffset of a subarray view', () => {
    const base = Float32Array.from([9, 9, 1, 2, 3, 9]);
    const view = base.subarray(2, 5);
    expect(Array.from(npyToFloat32(parseNpy(encodeNpy(view, [3]), 'v')))).toEqual([1, 2, 3]);
  });

  it('rejects a shape that does not match the data', () => {
    expect(() => encodeNpy(new Float32Array(5), [2, 3])).toThrow(/shape \[2, 3\] has 6 elements but data has 5/);
    expect(() => encodeNpy(new Float32Array(1), [-1])).toThrow(/non-negative integers/);
  });
});
