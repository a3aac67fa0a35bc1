/**
 * OTLM on real data: Fashion-MNIST-LT logits (data/fmnist-lt, K = 10; see PROVENANCE.md). Fit on the
 * unlabeled validation logits with the paper's CIFAR-100-LT preset (full batch here: N = 5000 < 10000),
 * correct the test logits, and print the test accuracy beside plain argmax, LA (Φ − log π) and OT.
 */
import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { OTLM } from '../../src/train/otlm.js';
import { otCorrect } from '../../src/methods/ot.js';
import { readLabels, readMatrix, readVector } from '../../src/io/matrix.js';
import { nativeOtlmReady, REPO } from './helpers.js';

const D = path.join(REPO, 'data/fmnist-lt');
const ready = await nativeOtlmReady();

function argmax(d: ArrayLike<number>, k: number): Int32Array {
  const out = new Int32Array(d.length / k);
  for (let i = 0; i < out.length; i++) {
    let b = 0;
    for (let j = 1; j < k; j++) if (d[i * k + j] > d[i * k + b]) b = j;
    out[i] = b;
  }
  return out;
}

describe('OTLM on Fashion-MNIST-LT', () => {
  it('trains without NaN, the loss decreases, and its test accuracy is reported beside plain, LA and OT', async () => {
    let val = readMatrix(path.join(D, 'val_logits.npy'));
    const test = readMatrix(path.join(D, 'test_logits.npy'));
    const labels = readLabels(path.join(D, 'test_labels.npy'));
    const counts = readVector(path.join(D, 'train_counts.npy'));
    const k = test.cols;
    expect(k).toBe(10);
    if (!ready) {
      console.log('native OTLM step not available: fitting on the float64 reference path with the first 1000 validation rows');
      val = { data: val.data.subarray(0, 1000 * k), rows: 1000, cols: k };
    }
    const acc = (p: Int32Array) => p.reduce((s, x, i) => s + (x === labels[i] ? 1 : 0), 0) / labels.length;
    const total = counts.reduce((a, b) => a + b, 0);

    const model = OTLM.preset('cifar100-lt', { backend: ready ? 'cpu' : 'reference' });
    const fit = await model.fit(val);
    expect(fit.steps).toBe(20);
    expect(fit.losses.every(Number.isFinite)).toBe(true);
    expect(model.weights.every(Number.isFinite)).toBe(true);
    expect(fit.finalLoss).toBeLessThan(fit.losses[0]);
    const lossesDown = fit.losses.slice(1).every((l, i) => l <= fit.losses[i] + 1e-9); // full batch, small lr: monotone
    expect(lossesDown).toBe(true);

    const lambda = model.options.lambda;
    const otlm = await model.correct(test);
    expect(otlm.probabilities.data.every(Number.isFinite)).toBe(true);
    const ot = await otCorrect(test, { lambda });
    const rows = [
      ['plain (argmax Φ)', acc(argmax(test.data, k))],
      ['LA (Φ − log π)', acc(argmax(test.data.map((x, q) => x - Math.log(counts[q % k] / total)), k))],
      [`OT (λ = ${lambda})`, acc(ot.predictions)],
      [`OTLM (preset cifar100-lt, λ = ${lambda}, ${fit.steps} steps, ${fit.seconds.toFixed(1)} s on ${fit.backend})`, acc(otlm.predictions)],
    ] as const;
    console.log(`Fashion-MNIST-LT test top-1 (N = ${labels.length}); OTLM loss ${fit.losses[0].toFixed(4)} → ${fit.finalLoss.toFixed(4)}\n` +
      rows.map(([name, a]) => `  ${name.padEnd(72)} ${(100 * a).toFixed(2)}%`).join('\n'));
    // OTLM corrects the head bias: better than plain argmax (a floor that real training must clear).
    expect(rows[3][1]).toBeGreaterThan(rows[0][1]);
  }, 180_000);
});
