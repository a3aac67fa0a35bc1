import * as fs from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCsv, encodeF32, formatFloat32, parseCsv, parseF32, parseShape } from '../../src/io/text.js';
import { expectedValues, fix } from './helpers.js';

const text = (name: string) => fs.readFileSync(fix(name), 'utf8');

describe('raw .f32', () => {
  const bytes = fs.readFileSync(fix('m.f32'));
  const want = expectedValues('m.f32');
  it('reads numpy tofile() output with an explicit or inferred shape', () => {
    for (const shape of [[6, 3], [-1, 3], [6, -1]] as [number, number][]) {
      const m = parseF32(bytes, 'm.f32', shape);
      expect([m.rows, m.cols]).toEqual([6, 3]);
      expect(Array.from(m.data)).toEqual(want);
    }
  });
  it('checks the length against the shape', () => {
    expect(() => parseF32(bytes, 'm.f32', [5, 3])).toThrow('m.f32: shape 5x3 needs 60 bytes (15 float32 values), file has 72');
    expect(() => parseF32(bytes, 'm.f32', [-1, 5])).toThrow(/m\.f32: 18 float32 values do not fill rows of 5 columns/);
    expect(() => parseF32(bytes.subarray(0, 70), 'm.f32', [6, 3])).toThrow(/not a multiple of 4/);
  });
  it('round-trips', () => {
    const d = Float32Array.from([1.5, -2, 3e-39, NaN]);
    expect(Array.from(parseF32(encodeF32(d), 'x', [2, 2]).data)).toEqual(Array.from(d));
  });
  it('parseShape accepts the usual spellings and rejects the rest', () => {
    expect(parseShape('5000,10')).toEqual([5000, 10]);
    expect(parseShape('5000x10')).toEqual([5000, 10]);
    expect(parseShape(' 7 3 ')).toEqual([7, 3]);
    expect(parseShape('-1,10')).toEqual([-1, 10]);
    for (const bad of ['10', '1,2,3', 'a,b', '-1,-1', '-2,3', '1.5,2']) {
      expect(() => parseShape(bad)).toThrow(/--shape: expected ROWS,COLS/);
    }
  });
});

describe('CSV reading of numpy savetxt output', () => {
  const want = expectedValues('text');
  it.each([['header.csv', ['a', 'b', 'c']], ['noheader.csv', undefined], ['tabs.tsv', undefined], ['spaces.txt', undefined]] as const)(
    '%s', (name, header) => {
      const t = parseCsv(text(name), name);
      expect([t.rows, t.cols]).toEqual([6, 3]);
      expect(t.header).toEqual(header);
      expect(Array.from(t.data)).toEqual(want);
    });
  it('a one-column label file with a header', () => {
    const t = parseCsv(text('labels.csv'), 'labels.csv');
    expect(t.header).toEqual(['label']);
    expect(Array.from(t.data)).toEqual(expectedValues('labels.csv'));
  });
});

describe('CSV parsing rules', () => {
  it('header detection can be forced either way', () => {
    expect(parseCsv('1,2\n3,4\n', 'f', { header: true }).header).toEqual(['1', '2']);
    expect(() => parseCsv('x,y\n3,4\n', 'f.csv', { header: false })).toThrow(/f\.csv: line 1, column 1: 'x' is not a number/);
  });
  it('CRLF, BOM, quoted fields and trailing blank lines', () => {
    const t = parseCsv('\ufeff"name, with comma","b"\r\n"1",2\r\n3,4\r\n\r\n', 'f');
    expect(t.header).toEqual(['name, with comma', 'b']);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4]);
  });
  it('inconsistent column counts name the line', () => {
    expect(() => parseCsv('a,b\n1,2\n3\n', 'f.csv')).toThrow('f.csv: line 3: 1 columns, expected 2 (as in the header)');
    expect(() => parseCsv('1,2\n3,4,5\n', 'f.csv')).toThrow('f.csv: line 2: 3 columns, expected 2 (as on line 1)');
  });
  it('non-numbers, empty fields and holes are rejected', () => {
    expect(() => parseCsv('1,2\n3,abc\n', 'f.csv')).toThrow("f.csv: line 2, column 2: 'abc' is not a number");
    expect(() => parseCsv('1,2\n3,\n', 'f.csv')).toThrow("f.csv: line 2, column 2: '' is not a number");
    expect(() => parseCsv('1,2\n\n3,4\n', 'f.csv')).toThrow('f.csv: line 2: empty line inside the data');
    expect(() => parseCsv('\n  \n', 'f.csv')).toThrow('f.csv: CSV file is empty');
    expect(() => parseCsv('1,2\n1,0x10\n', 'f.csv')).toThrow(/'0x10' is not a number/);
  });
  it('NaN and Inf are rejected unless allowed', () => {
    expect(() => parseCsv('1,nan\n', 'f.csv')).toThrow("f.csv: line 1, column 2: non-finite value 'nan'");
    expect(() => parseCsv('1,2\n-inf,3\n', 'f.csv')).toThrow(/line 2, column 1: non-finite value '-inf'/);
    const t = parseCsv('nan,inf,-Infinity\n', 'f.csv', { allowNonFinite: true });
    expect(Array.from(t.data)).toEqual([NaN, Infinity, -Infinity]);
  });
});

describe('CSV writing', () => {
  it('formatFloat32 is the shortest decimal that reads back as the same float32', () => {
    expect(formatFloat32(Math.fround(0.1))).toBe('0.1');
    expect(formatFloat32(Math.fround(1 / 3))).toBe('0.33333334');
    expect(formatFloat32(3)).toBe('3');
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => {
      const s = formatFloat32(x);
      expect(Math.fround(Number(s))).toBe(x === 0 ? 0 : x);
      expect(s.replace(/^-|\.|e.*$/g, '').replace(/^0+|0+$/g, '').length).toBeLessThanOrEqual(9);
    }));
  });
  it('encode → parse round-trips random float32 matrices exactly', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 5 }), fc.integer(), (r, c, seed) => {
      let s = seed >>> 0;
      const d = Float32Array.from({ length: r * c }, () => {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        return (s / 2 ** 32 - 0.5) * 10 ** ((s % 9) - 4);
      });
      const t = parseCsv(encodeCsv(d, r, c), 'rt.csv', { header: false });
      expect([t.rows, t.cols]).toEqual([r, c]);
      expect(Array.from(Float32Array.from(t.data))).toEqual(Array.from(d));
    }));
  });
  it('writes a header (quoted where needed), ints, and non-finite values as numpy spells them', () => {
    expect(encodeCsv(Int32Array.from([1, 2, 3, 4]), 2, 2, ['a', 'b,c'])).toBe('a,"b,c"\n1,2\n3,4\n');
    expect(encodeCsv(Float32Array.from([NaN, -Infinity]), 1, 2)).toBe('nan,-inf\n');
    expect(() => encodeCsv(Int32Array.of(1), 1, 1, ['a', 'b'])).toThrow(/header has 2 names for 1 columns/);
  });
});
