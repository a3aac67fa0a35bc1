// Tensors of the Node ML stack wherever a matrix is accepted (issue 16): onnxruntime's Tensor
// (onnxruntime-common, the class onnxruntime-node returns) is read in place; a tfjs Tensor2D through
// dataSync(). Each result is compared with the same call on a plain { data, rows, cols }.
import * as tf from '@tensorflow/tfjs';
import { Tensor } from 'onnxruntime-common';
import { beforeAll, describe, expect, it } from 'vitest';

import { estimatePrior } from '../../src/prior/estimate.js';
import { logitAdjustSync } from '../../src/methods/la.js';
import { otCorrect, otCorrectSync } from '../../src/methods/ot.js';
import { sinkhornSync } from '../../src/methods/sinkhorn.js';
import { metrics } from '../../src/metrics.js';
import { OnlineCorrector } from '../../src/online.js';
import { OTLM } from '../../src/train/otlm.js';
import { longTailedLogits } from '../methods/native-status.js';

const N = 300;
const K = 7;
const logits = longTailedLogits(21, N, K);
const plain = () => ({ data: logits.slice(), rows: N, cols: K });

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('onnxruntime Tensor', () => {
  it('otCorrect / otCorrectSync give the plain-matrix result; the tensor is read in place (out: tensor.data corrects it in place)', async () => {
    const want = otCorrectSync(plain(), { lambda: 0.5 });
    const t = new Tensor('float32', logits.slice(), [N, K]);
    const r = otCorrectSync(t, { lambda: 0.5 });
    expect(r.predictions).toEqual(want.predictions);
    expect(r.probabilities.data).toEqual(want.probabilities.data);
    expect((await otCorrect(t, { lambda: 0.5 })).predictions).toEqual(want.predictions);
    const inPlace = otCorrectSync(t, { lambda: 0.5, out: t.data as Float32Array });
    expect(inPlace.probabilities.data).toBe(t.data);
    expect(t.data).toEqual(want.probabilities.data);
  });
  it('LA, Sinkhorn, prior estimation, metrics, OTLM and OnlineCorrector take it too', async () => {
    const t = () => new Tensor('float32', logits.slice(), [N, K]);
    const counts = Array.from({ length: K }, (_, j) => 100 / (j + 1));
    expect(logitAdjustSync(t(), counts).predictions).toEqual(logitAdjustSync(plain(), counts).predictions);
    expect(sinkhornSync(t()).g).toEqual(sinkhornSync(plain()).g);
    expect(estimatePrior(t(), counts).prior).toEqual(estimatePrior(plain(), counts).prior);
    const labels = Int32Array.from({ length: N }, (_, i) => i % K);
    const p = otCorrectSync(plain());
    const probs = new Tensor('float32', p.probabilities.data, [N, K]);
    expect(metrics(p.predictions, labels, counts, { probabilities: probs }).ece).toBe(metrics(p.predictions, labels, counts, { probabilities: p.probabilities }).ece);
    const opts = { iterations: 3, batchSize: 100, sinkhornIters: 10, seed: 1 };
    const a = new OTLM(opts);
    const b = new OTLM(opts);
    await a.fit(t());
    await b.fit(plain());
    expect(a.weights).toEqual(b.weights);
    expect((await a.correct(t())).predictions).toEqual((await b.correct(plain())).predictions);
    const oc = new OnlineCorrector();
    expect(oc.fitSync(t()).iterations).toBe(new OnlineCorrector().fitSync(plain()).iterations);
  });
  it('a non-float32 or non-2-D tensor is refused, naming the argument', () => {
    expect(() => otCorrectSync(new Tensor('int32', new Int32Array(N * K), [N, K]))).toThrow(/logits: an onnxruntime Tensor of type 'float32' is needed, got 'int32'/);
    expect(() => otCorrectSync(new Tensor('float32', logits.slice(), [N * K]))).toThrow(/logits must be a 2-D tensor \[N, K\], got dims \[2100\]/);
    expect(() => otCorrectSync(new Tensor('float32', logits.slice(), [N, K, 1]))).toThrow(RangeError);
  });
});

describe('tfjs Tensor2D', () => {
  it('otCorrect gives the plain-matrix result', async () => {
    const want = otCorrectSync(plain(), { lambda: 0.5 });
    const t = tf.tensor2d(logits.slice(), [N, K]);
    const r = await otCorrect(t, { lambda: 0.5 });
    expect(r.predictions).toEqual(want.predictions);
    expect(r.probabilities.data).toEqual(want.probabilities.data);
    t.dispose();
  });
  it('int32, 1-D and disposed tensors are refused, naming the argument', () => {
    const i = tf.tensor2d(new Int32Array(N * K), [N, K], 'int32');
    expect(() => otCorrectSync(i)).toThrow(/logits: a tfjs tensor of dtype 'float32' is needed, got 'int32'/);
    const v = tf.tensor1d(logits.slice());
    expect(() => otCorrectSync(v)).toThrow(/logits must be a 2-D tensor \[N, K\], got shape \[2100\]/);
    const d = tf.tensor2d(logits.slice(), [N, K]);
    d.dispose();
    expect(() => otCorrectSync(d)).toThrow(/logits: cannot read the tfjs tensor \(disposed\?\)/);
    i.dispose();
    v.dispose();
  });
});
