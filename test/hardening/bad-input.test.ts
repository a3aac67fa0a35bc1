/**
 * Bad input, table-driven (issue 13): every row is one bad argument, flag or file, with the error
 * class (or CLI exit code) it must raise and what the message must name. The public API rows go
 * through src/index.ts; the CLI rows spawn bin/otlm.js. Rows marked `pending` reproduce a defect
 * whose fix lies outside this test's layer; they are skipped until it lands (see the reason).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  IoError, OTLM, OnlineCorrector, darpSync, estimatePrior, logitAdjustSync, metrics, otCorrect, otCorrectSync,
  readLabels, readMatrix, sinkhornSync, writeMatrix, type Matrix,
} from '../../src/index.js';
import { encodeModel } from '../../src/train/model-file.js';
import { encodeNpz } from '../../src/io/npz.js';
import { BIN, ensureBuilt, f32npy, i32npy, npy, tmpDir } from '../cli/helpers.js';

type ErrorClass = new (...args: never[]) => Error;

// Small inputs: N = 6 rows, K = 3 classes.
const N = 6;
const K = 3;
const LOGITS = [2, 0, -1, 0.5, 1.5, 0, -1, 0, 2, 1, 0.2, 0, 0, 1, 0.3, 0.1, 0, 1.2];
const LABELS = [0, 1, 2, 0, 1, 2];
const mat = (data: number[] = LOGITS, rows = N, cols = K): Matrix => ({ data: Float32Array.from(data), rows, cols });
const withValue = (i: number, v: number): Matrix => { const m = mat(); m.data[i] = v; return m; };
/** An OTLM with weights (W = I), no fit needed. */
const fitted = (k = K): OTLM => { const m = new OTLM({ backend: 'reference' }); const w = new Float32Array(k * k); for (let j = 0; j < k; j++) w[j * k + j] = 1; m.setWeights(w); return m; };

let dir: string;
const file = (name: string): string => path.join(dir, name);

/** A model file of K classes with these meta.options, as another tool (or a future otlm) could write it. */
function modelBytes(k: number, options: Record<string, unknown> = {}, metaK = k): Uint8Array {
  const w = new Float32Array(k * k);
  for (let j = 0; j < k; j++) w[j * k + j] = 1;
  const meta = { format: 'otlm-model', version: 1, library: 'test', k: metaK, trainedSteps: 0, options } as const;
  const targetPrior = new Float64Array(k).fill(1 / k);
  if (metaK === k) return encodeModel({ w, b: new Float32Array(k), targetPrior, meta });
  return encodeNpz({ // encodeModel takes the shapes from meta.k
    W: { data: w, shape: [k, k] }, b: { data: new Float32Array(k), shape: [k] }, target_prior: { data: targetPrior, shape: [k] },
    meta: new TextEncoder().encode(JSON.stringify(meta)),
  });
}

beforeAll(() => {
  dir = tmpDir('hardening');
  const f64 = (v: number[]) => npy('<f8', [v.length], new Uint8Array(Float64Array.from(v).buffer));
  const files: Record<string, Uint8Array | string> = {
    'x.npy': f32npy(N, K, LOGITS),
    'nan.npy': f32npy(N, K, LOGITS.map((v, i) => (i === 4 ? NaN : v))),
    'inf.npy': f32npy(N, K, LOGITS.map((v, i) => (i === 7 ? -Infinity : v))),
    'v.npy': npy('<f4', [3], new Uint8Array(Float32Array.from([1, 2, 3]).buffer)),
    'col1.npy': f32npy(N, 1, LOGITS.slice(0, N)),
    'corrupt.npy': Buffer.from('\x93NUMPY\x01\x00garbage', 'latin1'),
    'x.f32': Buffer.from(Float32Array.from(LOGITS).buffer),
    'x4.npy': f32npy(N, 4, [...LOGITS, ...LOGITS.slice(0, N)]),
    'counts.npy': i32npy([50, 10, 2]),
    'counts2.npy': i32npy([50, 10]),
    'counts0.npy': i32npy([50, 0, 2]),
    'countsneg.npy': f64([50, -1, 2]),
    'priornan.npy': f64([0.3, NaN, 0.7]),
    'y.npy': i32npy(LABELS),
    'y5.npy': i32npy(LABELS.slice(1)),
    'yout.npy': i32npy([0, 1, 5, 0, 1, 2]),
    'yfloat.npy': f32npy(1, N, [0, 1, 2.5, 0, 1, 2]),
    'y0.npy': i32npy(new Array(N).fill(0)),
    'k5.npz': modelBytes(5),
    'threads.npz': modelBytes(K, { threads: 1e9 }),
    'metak.npz': modelBytes(K, {}, 4),
    'notmodel.npz': 'hello, not a zip',
    'exists.npy': 'keep me',
  };
  // A model whose stored W has one flipped byte (W[0, 1]: 0 → 1.4e-45, still finite): only the CRC tells.
  const crc = Buffer.from(modelBytes(K));
  const at = crc.indexOf(Buffer.from(Float32Array.from([1, 0, 0, 0, 1]).buffer));
  crc[at + 4] ^= 1;
  files['crc.npz'] = crc;
  for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(file(name), bytes);
});

// ---------------------------------------------------------------------------------------- API

interface ApiRow { name: string; call: () => unknown; error: ErrorClass; names: RegExp; pending?: string }

const api: ApiRow[] = [
  // shapes, types, lengths
  { name: 'otCorrectSync: logits null', call: () => otCorrectSync(null as never), error: TypeError, names: /^logits must be a matrix/ },
  { name: 'otCorrectSync: logits.data a plain Array', call: () => otCorrectSync({ data: LOGITS, rows: N, cols: K } as never), error: TypeError, names: /^logits\.data must be a Float32Array, got Array/ },
  { name: 'otCorrectSync: data length != rows*cols', call: () => otCorrectSync(mat(LOGITS, N, 4)), error: RangeError, names: /^logits\.data has length 18, expected rows\*cols/ },
  { name: 'otCorrectSync: rows 0', call: () => otCorrectSync(mat([], 0, K)), error: RangeError, names: /^logits\.rows must be a positive integer/ },
  // NaN / Inf in logits
  { name: 'otCorrectSync: NaN logit', call: () => otCorrectSync(withValue(4, NaN)), error: RangeError, names: /^logits has a non-finite value \(NaN\) at row 1, column 1/ },
  { name: 'otCorrect: +Inf logit', call: () => otCorrect(withValue(2, Infinity)), error: RangeError, names: /^logits has a non-finite value \(Infinity\) at row 0, column 2/ },
  { name: 'logitAdjustSync: -Inf logit', call: () => logitAdjustSync(withValue(0, -Infinity), [1, 1, 1]), error: RangeError, names: /^logits has a non-finite value \(-Infinity\)/ },
  { name: 'darpSync: NaN logit', call: () => darpSync(withValue(17, NaN)), error: RangeError, names: /^logits has a non-finite value \(NaN\) at row 5, column 2/ },
  { name: 'sinkhornSync: NaN cost', call: () => sinkhornSync(withValue(3, NaN)), error: RangeError, names: /^cost has a non-finite value/ },
  // priors: every entry > 0 and finite, length K (any positive sum: they are normalised)
  { name: 'otCorrectSync: targetPrior with a zero', call: () => otCorrectSync(mat(), { targetPrior: [1, 0, 1] }), error: RangeError, names: /targetPrior\[1\] must be > 0, got 0/ },
  { name: 'otCorrectSync: targetPrior negative', call: () => otCorrectSync(mat(), { targetPrior: [0.5, 0.7, -0.2] }), error: RangeError, names: /targetPrior\[2\] must be > 0/ },
  { name: 'otCorrectSync: targetPrior NaN', call: () => otCorrectSync(mat(), { targetPrior: [0.5, NaN, 0.5] }), error: RangeError, names: /targetPrior\[1\] must be finite/ },
  { name: 'otCorrectSync: targetPrior of length 2', call: () => otCorrectSync(mat(), { targetPrior: [0.5, 0.5] }), error: RangeError, names: /targetPrior must have length 3/ },
  { name: "otCorrectSync: targetPrior 'estimate' without trainPrior", call: () => otCorrectSync(mat(), { targetPrior: 'estimate' }), error: TypeError, names: /trainPrior/ },
  { name: 'logitAdjustSync: trainPrior with a zero', call: () => logitAdjustSync(mat(), [5, 0, 1]), error: RangeError, names: /^trainPrior\[1\] must be > 0/ },
  { name: 'logitAdjustSync: trainPrior of length 4', call: () => logitAdjustSync(mat(), [5, 3, 1, 1]), error: RangeError, names: /^trainPrior must have length 3/ },
  { name: 'darpSync: targetPrior all zero', call: () => darpSync(mat(), { targetPrior: [0, 0, 0] }), error: RangeError, names: /^darp: targetPrior\[0\] must be > 0/ },
  // out-of-range and wrong-type numbers
  { name: 'otCorrectSync: lambda 0', call: () => otCorrectSync(mat(), { lambda: 0 }), error: RangeError, names: /lambda must be/ },
  { name: 'otCorrectSync: lambda NaN', call: () => otCorrectSync(mat(), { lambda: NaN }), error: RangeError, names: /lambda must be .*NaN/ },
  { name: 'otCorrectSync: lambda Infinity', call: () => otCorrectSync(mat(), { lambda: Infinity }), error: RangeError, names: /lambda must be .*Infinity/ },
  { name: "otCorrectSync: lambda '1' (a string)", call: () => otCorrectSync(mat(), { lambda: '1' as never }), error: RangeError, names: /lambda must be/ },
  { name: 'otCorrectSync: maxIter 1e12 (beyond int32)', call: () => otCorrectSync(mat(), { maxIter: 1e12 }), error: RangeError, names: /maxIter must be/ },
  { name: 'otCorrectSync: threads -1', call: () => otCorrectSync(mat(), { threads: -1 }), error: RangeError, names: /threads must be/ },
  { name: 'otCorrectSync: threads 1e9 refused by the TS check', call: () => otCorrectSync(mat(), { threads: 1e9 }), error: RangeError, names: /^otCorrectSync: threads must be in \[0, 4096\], got 1000000000/ },
  { name: 'otCorrectSync: overrelax 2', call: () => otCorrectSync(mat(), { overrelax: 2 }), error: RangeError, names: /overrelax must be in \[1, 2\), got 2/ },
  { name: "otCorrectSync: misspelt option 'lamda'", call: () => otCorrectSync(mat(), { lamda: 1 } as never), error: TypeError, names: /unknown option 'lamda'/ },
  { name: "otCorrectSync: backend 'gpu'", call: () => otCorrectSync(mat(), { backend: 'gpu' as never }), error: TypeError, names: /backend must be/ },
  { name: 'otCorrectSync: out of the wrong length', call: () => otCorrectSync(mat(), { out: new Float32Array(5) }), error: RangeError, names: /out must have length rows\*cols = 18/ },
  { name: 'otCorrect: signal not an AbortSignal', call: () => otCorrect(mat(), { signal: {} as never }), error: TypeError, names: /signal must be an AbortSignal/ },
  { name: 'sinkhornSync: colMarginal of another mass', call: () => sinkhornSync(mat(), { colMarginal: [1, 1, 1] }), error: RangeError, names: /colMarginal must sum to the row mass 6/ },
  { name: 'logitAdjustSync: tau NaN', call: () => logitAdjustSync(mat(), [5, 3, 1], { tau: NaN }), error: RangeError, names: /tau must be/ },
  { name: 'darpSync: weights of the wrong length', call: () => darpSync(mat(), { weights: [1, 1] }), error: RangeError, names: /weights must have length 6/ },
  { name: 'OnlineCorrector: maxIter 1e12 refused up front, not at fit', call: () => new OnlineCorrector({ maxIter: 1e12 }), error: RangeError, names: /^OnlineCorrector: maxIter must be in \[1, 2147483647\]/ },
  // OTLM: constructor, fit, correct, save, load
  { name: 'OTLM: threads 1e9', call: () => new OTLM({ threads: 1e9 }), error: RangeError, names: /^options\.threads must be in \[0, 4096\]/ },
  { name: 'OTLM: sinkhornIters beyond int32', call: () => new OTLM({ sinkhornIters: 2 ** 31 }), error: RangeError, names: /^options\.sinkhornIters must be in \[1, 2147483647\]/ },
  { name: 'OTLM: batchSize -1', call: () => new OTLM({ batchSize: -1 }), error: RangeError, names: /^options\.batchSize must be in \[1, 2147483647\]/ },
  { name: 'OTLM: lr NaN', call: () => new OTLM({ lr: NaN }), error: RangeError, names: /^options\.lr must be a finite number/ },
  { name: "OTLM: threads '4' (a string)", call: () => new OTLM({ threads: '4' as never }), error: RangeError, names: /^options\.threads must be a finite number/ },
  { name: "OTLM: backend 'tfjs'", call: () => new OTLM({ backend: 'tfjs' }), error: RangeError, names: /^options\.backend must be one of/ },
  { name: 'OTLM: targetPrior with a zero', call: () => new OTLM({ targetPrior: [1, 0, 1] }), error: RangeError, names: /^options\.targetPrior\[1\] must be > 0/ },
  { name: 'OTLM: bias with NaN', call: () => new OTLM({ bias: Float32Array.from([0, NaN, 0]) }), error: RangeError, names: /^options\.bias\[1\] must be finite/ },
  { name: 'OTLM.fit: NaN logits', call: () => new OTLM({ backend: 'reference' }).fit(withValue(1, NaN)), error: RangeError, names: /^valLogits has a non-finite value/ },
  { name: 'OTLM.fit: K != the model K', call: () => new OTLM({ backend: 'reference', targetPrior: [1, 1, 1, 1] }).fit(mat()), error: RangeError, names: /^valLogits has 3 columns but the model has K = 4/ },
  { name: 'OTLM.correct: before any weights', call: () => new OTLM().correct(mat()), error: Error, names: /no weights yet/ },
  { name: 'OTLM.correct: K != the model K', call: () => fitted(4).correct(mat()), error: RangeError, names: /^testLogits has 3 columns but the model has K = 4/ },
  { name: 'OTLM.correct: Inf logits', call: () => fitted().correct(withValue(5, Infinity)), error: RangeError, names: /^testLogits has a non-finite value/ },
  { name: 'OTLM.save: empty path', call: () => fitted().save(''), error: TypeError, names: /^path must be a non-empty string/ },
  { name: 'OTLM.load: missing file', call: () => OTLM.load(file('nope.npz')), error: IoError, names: /nope\.npz: cannot read the model file/ },
  { name: 'OTLM.load: not a zip', call: () => OTLM.load(file('notmodel.npz')), error: IoError, names: /notmodel\.npz: .*not a \.npz file/ },
  { name: 'OTLM.load: meta.k != W', call: () => OTLM.load(file('metak.npz')), error: IoError, names: /metak\.npz: meta\.k = 4 but W is 3×3/ },
  { name: 'OTLM.load: threads 1e9 in the file', call: () => OTLM.load(file('threads.npz')), error: IoError, names: /threads\.npz: the model's meta\.options are invalid: options\.threads must be in \[0, 4096\]/ },
  { name: 'OTLM.load: threads 1e9 as an override', call: () => OTLM.load(file('k5.npz'), { threads: 1e9 }), error: RangeError, names: /^options\.threads must be in \[0, 4096\]/ },
  // metrics
  { name: 'metrics: trainCounts too short for the labels', call: () => metrics([0, 1, 2], [0, 1, 2], [1, 2]), error: RangeError, names: /^trainCounts has length 2 .*trainCounts must have one entry per class \(length >= 3\)/ },
  { name: 'metrics: trainCounts != probabilities.cols', call: () => metrics([0, 1], [0, 1], [1, 2], { probabilities: mat(LOGITS.slice(0, 6), 2, 3) }), error: RangeError, names: /^trainCounts has length 2 but probabilities has 3 columns: trainCounts must have length 3/ },
  { name: 'metrics: predictions shorter than labels', call: () => metrics([0, 1], [0, 1, 2], [1, 2, 3]), error: RangeError, names: /^predictions has 2 entries, expected 3/ },
  { name: 'metrics: a negative train count', call: () => metrics([0], [0], [5, -1]), error: RangeError, names: /^trainCounts\[1\] must be a finite count >= 0/ },
  { name: 'metrics: label -1', call: () => metrics([0, 1], [0, -1], [1, 2]), error: RangeError, names: /^labels\[1\] must be an integer class index/ },
  { name: 'metrics: no labels', call: () => metrics([], [], [1, 2]), error: TypeError, names: /^labels must be a non-empty array/ },
  { name: 'metrics: targetPrior with a zero', call: () => metrics([0], [0], [1, 2], { targetPrior: [0, 1] }), error: RangeError, names: /targetPrior\[0\] must be > 0/ },
  // prior estimation
  { name: 'estimatePrior: trainPrior with a zero', call: () => estimatePrior(mat(), [1, 0, 1]), error: RangeError, names: /^trainPrior\[1\] must be > 0/ },
  { name: 'estimatePrior: bbse without validation', call: () => estimatePrior(mat(), [1, 1, 1], { method: 'bbse' }), error: TypeError, names: /'bbse' needs a labeled validation split/ },
  { name: 'estimatePrior: bbse, single-class validation labels', call: () => estimatePrior(mat(), [1, 1, 1], { method: 'bbse', validation: { logits: mat(), labels: new Array(N).fill(0) } }), error: RangeError, names: /confusion matrix is singular/ },
  { name: 'estimatePrior: validation label out of range', call: () => estimatePrior(mat(), [1, 1, 1], { validation: { logits: mat(), labels: [0, 1, 3, 0, 1, 2] } }), error: RangeError, names: /^validation\.labels\[2\] must be an integer class index in \[0, 3\)/ },
  { name: 'estimatePrior: validation logits with 4 classes', call: () => estimatePrior(mat(), [1, 1, 1], { validation: { logits: mat([...LOGITS, ...LOGITS.slice(0, 6)], 6, 4), labels: LABELS } }), error: RangeError, names: /^validation\.logits must have 3 columns/ },
  // files
  { name: 'readMatrix: missing file', call: () => readMatrix(file('nope.npy')), error: IoError, names: /nope\.npy/ },
  { name: 'readMatrix: corrupt .npy', call: () => readMatrix(file('corrupt.npy')), error: IoError, names: /corrupt\.npy/ },
  { name: 'readLabels: float labels', call: () => readLabels(file('yfloat.npy')), error: IoError, names: /yfloat\.npy/ },
  { name: 'writeMatrix: output equal to an input', call: () => writeMatrix(file('x.npy'), mat(), { force: true, inputs: [file('x.npy')] }), error: IoError, names: /x\.npy/ },
];

describe('bad input through the public API', () => {
  for (const row of api) {
    (row.pending ? it.skip : it)(row.pending ? `${row.name} (pending: ${row.pending})` : row.name, async () => {
      const e = await (async () => row.call())().then(() => undefined, (x: unknown) => x);
      expect(e, 'did not throw').toBeInstanceOf(row.error);
      expect((e as Error).message).toMatch(row.names);
    });
  }
});

// ---------------------------------------------------------------------------------------- CLI

interface CliRow { name: string; args: () => string[]; code: 1 | 2; names: RegExp; pending?: string }

const correct = (...args: string[]) => ['correct', '--logits', file('x.npy'), '--out', file('p.npy'), ...args];
const evalWith = (...args: string[]) => ['eval', '--logits', file('x.npy'), '--labels', file('y.npy'), '--train-counts', file('counts.npy'), ...args];
const fit = (...args: string[]) => ['fit', '--logits', file('x.npy'), '--out', file('m.npz'), ...args];
const otlmModel = (m: string) => correct('--method', 'otlm', '--model', file(m));

const cli: CliRow[] = [
  // files: missing, corrupt, wrong shape, NaN/Inf, bad priors and labels
  { name: 'missing --logits file', args: () => ['correct', '--logits', file('nope.npy')], code: 2, names: /--logits: .*nope\.npy: no such file/ },
  { name: 'corrupt --logits .npy', args: () => ['correct', '--logits', file('corrupt.npy')], code: 2, names: /--logits: .*corrupt\.npy/ },
  { name: 'NaN in --logits', args: () => ['correct', '--logits', file('nan.npy')], code: 2, names: /--logits: .*nan\.npy: .*non-finite value NaN at row 1, column 1/ },
  { name: '-Inf in --logits', args: () => ['correct', '--logits', file('inf.npy')], code: 2, names: /--logits: .*inf\.npy: .*non-finite/ },
  { name: '1-D --logits', args: () => ['correct', '--logits', file('v.npy')], code: 2, names: /--logits: .*v\.npy: .*2-D/ },
  { name: 'one-column --logits', args: () => ['correct', '--logits', file('col1.npy')], code: 2, names: /--logits: .*col1\.npy: expected at least 1 row and 2 columns/ },
  { name: '--train-counts of length 2 for 3 classes', args: () => correct('--method', 'la', '--train-counts', file('counts2.npy')), code: 2, names: /--train-counts: .*counts2\.npy: has 2 entries but the logits have 3 classes/ },
  { name: '--train-counts with a zero', args: () => correct('--method', 'la', '--train-counts', file('counts0.npy')), code: 2, names: /--train-counts: .*counts0\.npy: entry 1 is 0/ },
  { name: '--train-prior negative', args: () => correct('--method', 'la', '--train-prior', file('countsneg.npy')), code: 2, names: /--train-prior: .*countsneg\.npy: entry 1 is -1/ },
  { name: '--target-prior with NaN', args: () => correct('--target-prior', file('priornan.npy')), code: 2, names: /--target-prior: .*priornan\.npy/ },
  { name: '--labels count != rows', args: () => ['eval', '--logits', file('x.npy'), '--labels', file('y5.npy'), '--train-counts', file('counts.npy')], code: 2, names: /--labels: .*y5\.npy: has 5 labels but the logits have 6 rows/ },
  { name: '--labels out of range', args: () => ['eval', '--logits', file('x.npy'), '--labels', file('yout.npy'), '--train-counts', file('counts.npy')], code: 2, names: /--labels: .*yout\.npy: label 5 at index 2 is outside \[0, 3\)/ },
  { name: '--val-logits with another K', args: () => correct('--method', 'otlm', '--val-logits', file('x4.npy')), code: 2, names: /--val-logits: .*x4\.npy: has 4 classes but --logits has 3/ },
  { name: '--estimate-prior bbse, single-class --val-labels', args: () => correct('--train-counts', file('counts.npy'), '--estimate-prior', 'bbse', '--val-logits', file('x.npy'), '--val-labels', file('y0.npy')), code: 2, names: /--estimate-prior bbse: .*singular/ },
  // outputs
  { name: '--out equal to --logits, even with --force', args: () => ['correct', '--logits', file('x.npy'), '--out', file('x.npy'), '--force'], code: 2, names: /--out: .*x\.npy.*inputs are never overwritten/ },
  { name: '--out exists without --force', args: () => ['correct', '--logits', file('x.npy'), '--out', file('exists.npy')], code: 2, names: /--out: .*exists\.npy: already exists/ },
  { name: '--out with an unknown extension', args: () => ['correct', '--logits', file('x.npy'), '--out', file('p.txt')], code: 1, names: /--out: .*p\.txt: unsupported output extension '\.txt'/ },
  // models
  { name: '--model missing', args: () => otlmModel('nope.npz'), code: 2, names: /--model: .*nope\.npz: cannot read the model file/ },
  { name: '--model not a model', args: () => otlmModel('notmodel.npz'), code: 2, names: /--model: .*notmodel\.npz/ },
  { name: '--model with K = 5 on 3-class logits', args: () => otlmModel('k5.npz'), code: 2, names: /--model: .*k5\.npz: the model has K = 5 classes but the logits have 3/ },
  { name: 'eval --model with K = 5 on 3-class logits', args: () => evalWith('--model', file('k5.npz')), code: 2, names: /--model: .*k5\.npz: the model has K = 5/ },
  { name: '--model with threads 1e9 in its options', args: () => otlmModel('threads.npz'), code: 2, names: /--model: .*threads\.npz: the model's meta\.options are invalid: options\.threads/ },
  { name: '--model with a corrupted CRC', args: () => otlmModel('crc.npz'), code: 2, names: /--model: .*crc\.npz: .*CRC-32 mismatch/ },
  // flag values: the library's range, as a usage error naming the flag
  { name: '--lambda 0', args: () => correct('--lambda', '0'), code: 1, names: /--lambda must be > 0/ },
  { name: '--lambda nan', args: () => correct('--lambda', 'nan'), code: 1, names: /--lambda must be a number, got 'nan'/ },
  { name: '--max-iter 1e12', args: () => correct('--max-iter', '1e12'), code: 1, names: /--max-iter must be in \[1, 2147483647\]/ },
  { name: '--tol -1', args: () => correct('--tol', '-1'), code: 1, names: /--tol must be >= 0/ },
  { name: '--tau -1', args: () => correct('--method', 'la', '--train-counts', file('counts.npy'), '--tau', '-1'), code: 1, names: /--tau must be >= 0/ },
  { name: 'fit --batch-size -1', args: () => fit('--batch-size', '-1'), code: 1, names: /--batch-size must be in \[1, 2147483647\]/ },
  { name: 'fit --sinkhorn-iters 1e12', args: () => fit('--sinkhorn-iters', '1e12'), code: 1, names: /--sinkhorn-iters must be in \[1, 2147483647\]/ },
  { name: 'fit --seed -1', args: () => fit('--seed', '-1'), code: 1, names: /--seed must be in \[0, 4294967295\]/ },
  { name: 'fit --backend tfjs', args: () => fit('--backend', 'tfjs'), code: 1, names: /--backend/ },
  { name: '--method otlm --backend tfjs', args: () => correct('--method', 'otlm', '--val-logits', file('x.npy'), '--backend', 'tfjs'), code: 1, names: /--backend tfjs runs OT only/ },
  { name: "--shape 'abc'", args: () => ['correct', '--logits', file('x.f32'), '--shape', 'abc'], code: 1, names: /--shape: expected ROWS,COLS/ },
  // flag combinations
  { name: 'unknown flag', args: () => correct('--lamda', '1'), code: 1, names: /unknown option '--lamda'/ },
  { name: '--method la without --train-counts', args: () => correct('--method', 'la'), code: 1, names: /--method la needs --train-counts or --train-prior/ },
];

/** Runs bin/otlm.js without blocking, so the rows can share the two cores. */
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OTLM_DEBUG: '' } });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('bad input through the CLI: exit code and a message naming the flag or file', () => {
  beforeAll(() => ensureBuilt());
  for (const row of cli) {
    (row.pending ? it.skip : it.concurrent)(row.pending ? `${row.name} (pending: ${row.pending})` : row.name, async () => {
      const r = await run(row.args());
      expect(r.code, r.stderr).toBe(row.code);
      expect(r.stderr).toMatch(/^otlm: error: /);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stderr).toMatch(row.names);
    });
  }
});
