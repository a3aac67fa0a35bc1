import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { encodeMatrix, parseSpec, readLabels, readMatrix, readVector, writeMatrix, writeVector } from '../../src/io/matrix.js';
import { IoError } from '../../src/io/errors.js';
import { encodeNpz } from '../../src/io/npz.js';
import { expectedValues, fix, PYTHON, REPO, tmpDir } from './helpers.js';

function catchIo(fn: () => unknown): IoError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(IoError); return e as IoError; }
  throw new Error('expected an IoError');
}

describe('readMatrix', () => {
  const f4 = expectedValues('f4.npy');
  it('dispatches on the extension and returns the project matrix', () => {
    const m = readMatrix(fix('f4.npy'));
    expect([m.rows, m.cols]).toEqual([5, 3]);
    expect(m.data).toBeInstanceOf(Float32Array);
    expect(Array.from(m.data)).toEqual(f4);
    expect(Array.from(readMatrix(fix('f8.npy')).data)).toEqual(expectedValues('f8.npy').map(Math.fround));
    expect(Array.from(readMatrix(fix('be_f4.npy')).data)).toEqual(expectedValues('be_f4.npy'));
    expect(Array.from(readMatrix(fix('u1.npy')).data)).toEqual(expectedValues('u1.npy'));
    expect(Array.from(readMatrix(fix('m.f32'), { shape: '6,3' }).data)).toEqual(expectedValues('m.f32'));
    expect(Array.from(readMatrix(fix('m.f32'), { shape: [-1, 3] }).data)).toEqual(expectedValues('m.f32'));
    const csv = readMatrix(fix('header.csv'));
    expect([csv.rows, csv.cols]).toEqual([6, 3]);
    expect(Array.from(csv.data)).toEqual(expectedValues('text').map(Math.fround));
    expect(readMatrix(fix('empty.npy'))).toEqual({ data: new Float32Array(0), rows: 0, cols: 10 });
  });

  it('reads npz arrays by file.npz:name, by option, or the only one', () => {
    expect(parseSpec('a/b.npz:W')).toEqual({ file: 'a/b.npz', array: 'W' });
    expect(parseSpec('C:\\x\\b.npy')).toEqual({ file: 'C:\\x\\b.npy' });
    const W = expectedValues('model.npz:W');
    expect(Array.from(readMatrix(`${fix('model_c.npz')}:W`).data)).toEqual(W);
    expect(Array.from(readMatrix(fix('model.npz'), { array: 'W' }).data)).toEqual(W);
    expect(Array.from(readMatrix(fix('single.npz')).data)).toEqual(f4);
    const e = catchIo(() => readMatrix(fix('model.npz')));
    expect(e.message).toBe(`${fix('model.npz')}: holds 4 arrays (W, b, lam, labels); name one as ${fix('model.npz')}:NAME`);
    expect(catchIo(() => readMatrix(`${fix('model.npz')}:b`)).message).toMatch(/model\.npz:b: expected a 2-D array \(rows x columns\), got shape \(4\)/);
  });

  it('reads stdin bytes for "-", sniffing the format', () => {
    const stdin = fs.readFileSync(fix('f4.npy'));
    expect(Array.from(readMatrix('-', { stdin }).data)).toEqual(f4);
    expect(readMatrix('-', { stdin: fs.readFileSync(fix('single.npz')) }).rows).toBe(5);
    expect(readMatrix('-', { stdin: fs.readFileSync(fix('noheader.csv')) }).cols).toBe(3);
    expect(readMatrix('-', { stdin: fs.readFileSync(fix('m.f32')), shape: '6,3' }).rows).toBe(6);
    expect(catchIo(() => readMatrix('-')).message).toBe('-: reading from stdin needs the input bytes (opts.stdin)');
  });

  it('rejects bad input with the documented messages', () => {
    const nf = catchIo(() => readMatrix('/nonexistent/x.npy'));
    expect([nf.kind, nf.message]).toEqual(['not-found', '/nonexistent/x.npy: no such file']);
    expect(catchIo(() => readMatrix(fix('i4_labels.npy'))).message).toMatch(/i4_labels\.npy: expected a 2-D array \(rows x columns\), got shape \(20\)/);
    expect(catchIo(() => readMatrix(fix('three_d.npy'))).message).toMatch(/got shape \(2, 3, 4\)/);
    expect(catchIo(() => readMatrix(fix('expected.json'))).message).toMatch(/unknown file extension '\.json'; expected \.npy, \.npz, \.f32 \(with a shape\) or \.csv/);
    expect(catchIo(() => readMatrix(fix('m.f32'))).message).toMatch(/m\.f32: raw \.f32 input needs a shape/);
    expect(catchIo(() => readMatrix(fix('m.f32'), { shape: '7,3' })).message).toMatch(/needs 84 bytes/);
    expect(catchIo(() => readMatrix(fix('fortran.npy'))).message).toMatch(/Fortran-order/);
    expect(catchIo(() => readMatrix(path.dirname(fix('x')))).kind).toBe('bad-input');
    // the json fixture read as npy: bad magic
    expect(catchIo(() => readMatrix(fix('expected.json'), { format: 'npy' })).message).toMatch(/bad magic/);
  });

  it('rejects NaN/Inf unless allowed, naming the position; float64 overflow counts', () => {
    expect(catchIo(() => readMatrix(fix('nan.npy'))).message).toBe(`${fix('nan.npy')}: non-finite value NaN at row 1, column 2 (0-based); expected finite numbers`);
    expect(Number.isNaN(readMatrix(fix('nan.npy'), { allowNonFinite: true }).data[5])).toBe(true);
    expect(catchIo(() => readMatrix(fix('f8_overflow.npy'))).message).toMatch(/non-finite value Infinity at row 0, column 1/);
    const d = tmpDir();
    fs.writeFileSync(path.join(d, 'n.csv'), '1,2\n3,nan\n');
    expect(catchIo(() => readMatrix(path.join(d, 'n.csv'))).message).toMatch(/non-finite value NaN at row 1, column 1/);
  });
});

describe('readLabels and readVector', () => {
  it('labels from int32, int64, big-endian, (n,1), bool and CSV', () => {
    for (const name of ['i4_labels.npy', 'i8_labels.npy', 'be_i8.npy', 'col.npy', 'labels.csv']) {
      const l = readLabels(fix(name));
      expect(l).toBeInstanceOf(Int32Array);
      expect(Array.from(l)).toEqual(expectedValues(name));
    }
    expect(Array.from(readLabels(`${fix('model.npz')}:labels`))).toEqual(expectedValues('model.npz:labels'));
  });
  it('rejects labels that are not integer vectors', () => {
    expect(catchIo(() => readLabels(fix('i8_big.npy'))).message).toMatch(/labels must be integers in the int32 range; element 1/);
    expect(catchIo(() => readLabels(fix('f4.npy'))).message).toMatch(/expected a vector \(shape \(n,\), \(n, 1\) or \(1, n\)\), got shape \(5, 3\)/);
    const d = tmpDir();
    fs.writeFileSync(path.join(d, 'l.csv'), '1\n2.5\n');
    expect(catchIo(() => readLabels(path.join(d, 'l.csv'))).message).toMatch(/l\.csv: labels must be integers; element 1 is 2\.5/);
  });
  it('vectors as float64', () => {
    const v = readVector(`${fix('model.npz')}:b`);
    expect(v).toBeInstanceOf(Float64Array);
    expect(Array.from(v)).toEqual(expectedValues('model.npz:b'));
    expect(Array.from(readVector(fix('scalar.npy')))).toEqual([0.1]);
    expect(catchIo(() => readVector(fix('f8.npy'))).message).toMatch(/expected a vector/);
  });
});

describe('writeMatrix / writeVector', () => {
  const m = { data: Float32Array.from([0.1, -2.5, 3e-7, 1e30, 0, 7]), rows: 2, cols: 3 };
  it.each(['o.npy', 'o.csv', 'o.f32', 'o.npz:W'])('round-trips through %s', (name) => {
    const d = tmpDir();
    const spec = path.join(d, name);
    writeMatrix(spec, m);
    const back = readMatrix(spec, { shape: [2, 3] });
    expect(back).toEqual(m);
  });
  it('writes CSV with a header, and vectors of predictions', () => {
    const d = tmpDir();
    writeMatrix(path.join(d, 'p.csv'), m, { header: ['a', 'b', 'c'] });
    expect(fs.readFileSync(path.join(d, 'p.csv'), 'utf8')).toBe('a,b,c\n0.1,-2.5,3e-7\n1e+30,0,7\n');
    const pred = Int32Array.from([3, 1, 4, 1, 5]);
    writeVector(path.join(d, 'pred.npy'), pred);
    writeVector(path.join(d, 'pred.csv'), pred);
    expect(Array.from(readLabels(path.join(d, 'pred.npy')))).toEqual([3, 1, 4, 1, 5]);
    expect(fs.readFileSync(path.join(d, 'pred.csv'), 'utf8')).toBe('3\n1\n4\n1\n5\n');
  });
  it('writes "-" to the given stream only', () => {
    const chunks: Uint8Array[] = [];
    writeMatrix('-', m, { format: 'csv', stdout: { write: (c) => chunks.push(c) } });
    expect(Buffer.concat(chunks).toString()).toBe('0.1,-2.5,3e-7\n1e+30,0,7\n');
    expect(catchIo(() => writeMatrix('-', m)).message).toMatch(/needs a stream/);
  });
  it('refuses to overwrite without force and never writes onto inputs; leaves no partial file', () => {
    const d = tmpDir();
    const out = path.join(d, 'o.npy');
    writeMatrix(out, m);
    expect(catchIo(() => writeMatrix(out, m)).kind).toBe('exists');
    writeMatrix(out, { ...m, data: m.data.map((x) => x * 2) }, { force: true });
    expect(readMatrix(out).data[1]).toBe(-5);
    expect(catchIo(() => writeMatrix(out, m, { force: true, inputs: [out] })).kind).toBe('is-input');
    expect(catchIo(() => writeMatrix(path.join(d, 'o.xyz'), m)).message).toMatch(/unknown output extension '\.xyz'/);
    expect(catchIo(() => writeVector(path.join(d, 'i.f32'), Int32Array.of(1))).message).toMatch(/float32 data only/);
    expect(() => encodeMatrix('x.npy', { data: new Float32Array(5), rows: 2, cols: 3 })).toThrow(/data has 5 values, expected rows\*cols = 2\*3/);
    expect(fs.readdirSync(d)).toEqual(['o.npy']);
  });
});

describe.skipIf(PYTHON === null)('numpy reads what we write', () => {
  it('npy (f4, f8, i4), stored and compressed npz, csv', () => {
    const d = tmpDir();
    const m = { data: Float32Array.from({ length: 12 }, (_, i) => (i - 5.5) / 3), rows: 4, cols: 3 };
    writeMatrix(path.join(d, 'm.npy'), m);
    writeMatrix(path.join(d, 'm.csv'), m, { header: ['x', 'y', 'z'] });
    writeVector(path.join(d, 'l.npy'), Int32Array.from([2, -1, 7]));
    writeVector(path.join(d, 'p.npy'), Float64Array.from([Math.PI, 1e-300]));
    for (const [name, compress] of [['s.npz', false], ['c.npz', true]] as const) {
      fs.writeFileSync(path.join(d, name), encodeNpz({ W: { data: m.data, shape: [4, 3] }, lam: { data: Float64Array.of(0.1), shape: [] } },
        { compress, extra: { 'meta.json': '{"a":1}' } }));
    }
    const script = `
import numpy as np, sys, json
d = sys.argv[1]
m = np.load(d + '/m.npy'); l = np.load(d + '/l.npy'); p = np.load(d + '/p.npy')
out = {'m': [m.dtype.str, list(m.shape), m.ravel().tolist()], 'l': [l.dtype.str, l.tolist()], 'p': [p.dtype.str, p.tolist()]}
for n in ('s.npz', 'c.npz'):
    z = np.load(d + '/' + n)
    out[n] = [sorted(z.files), z['W'].tolist() == m.tolist(), float(z['lam']), z['lam'].shape == ()]
out['csv'] = np.loadtxt(d + '/m.csv', delimiter=',', skiprows=1, dtype=np.float32).ravel().tolist()
print(json.dumps(out))`;
    const r = spawnSync(PYTHON!, ['-c', script, d], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    const mVals = Array.from(m.data);
    expect(out.m).toEqual(['<f4', [4, 3], mVals]);
    expect(out.l).toEqual(['<i4', [2, -1, 7]]);
    expect(out.p).toEqual(['<f8', [Math.PI, 1e-300]]);
    for (const n of ['s.npz', 'c.npz']) expect(out[n]).toEqual([['W', 'lam', 'meta.json'], true, 0.1, true]);
    expect(out.csv).toEqual(mVals);
  });
});

describe('bundled demo data (data/fmnist-lt)', () => {
  const dir = path.join(REPO, 'data', 'fmnist-lt');
  it('has the documented shapes, dtypes and long-tailed training counts', () => {
    for (const split of ['val', 'test']) {
      const lg = readMatrix(path.join(dir, `${split}_logits.npy`));
      expect([lg.rows, lg.cols]).toEqual([5000, 10]);
      const lb = readLabels(path.join(dir, `${split}_labels.npy`));
      expect(lb.length).toBe(5000);
      // stratified halves of the balanced test split: 500 per class
      const per = new Array<number>(10).fill(0);
      for (const y of lb) per[y]! += 1;
      expect(per).toEqual(new Array(10).fill(500));
    }
    const counts = readLabels(path.join(dir, 'train_counts.npy'));
    const profile = Array.from({ length: 10 }, (_, c) => Math.floor(6000 * 0.01 ** (c / 9) + 1e-9));
    expect(Array.from(counts)).toEqual(profile);
    expect(counts[0]! / counts[9]!).toBe(100);
  });
});
