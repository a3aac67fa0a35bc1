// metrics() on small cases computed by hand.
import { describe, expect, it } from 'vitest';

import { metrics } from '../src/metrics.js';

describe('metrics', () => {
  // K = 3, train counts [200, 50, 5] → class 0 many-shot, 1 medium, 2 few.
  const labels = [0, 0, 0, 0, 1, 1, 2, 2];
  const preds = [0, 0, 0, 1, 1, 0, 2, 0];

  it('accuracies, shot groups, predicted marginal and KL by hand', () => {
    const m = metrics(preds, labels, [200, 50, 5]);
    expect(m.top1).toBe(5 / 8);
    expect(Array.from(m.perClass)).toEqual([0.75, 0.5, 0.5]);
    expect(Array.from(m.support)).toEqual([4, 2, 2]);
    expect(m.balancedAccuracy).toBeCloseTo(1.75 / 3, 15);
    expect(m.geometricMeanRecall).toBeCloseTo(0.1875 ** (1 / 3), 14); // (0.75·0.5·0.5)^(1/3) = 0.572357
    expect(m.geometricMeanRecall).toBeCloseTo(0.572357, 6);
    expect(m.many).toBe(0.75);
    expect(m.medium).toBe(0.5);
    expect(m.few).toBe(0.5);
    expect(Array.from(m.predictedMarginal)).toEqual([5 / 8, 2 / 8, 1 / 8]);
    // KL(q ‖ uniform) = 5/8 ln(15/8) + 1/4 ln(3/4) + 1/8 ln(3/8) = 0.392881 − 0.071921 − 0.122604
    expect(m.klMarginal).toBeCloseTo(0.198356, 5);
    expect(m.ece).toBeNull();
  });

  it('KL against a given target prior; classes never predicted contribute 0', () => {
    const m = metrics([0, 0, 1, 1], [0, 1, 1, 2], [10, 10, 10], { targetPrior: [2, 1, 1] });
    // q = [0.5, 0.5, 0], μ = [0.5, 0.25, 0.25]: 0.5 ln 1 + 0.5 ln 2 + 0 = 0.346574
    expect(m.klMarginal).toBeCloseTo(0.5 * Math.LN2, 14);
    // class 2 has recall 0: floored at 1e-3 by default (1·0.5·0.001)^(1/3); strict (floor 0) gives 0
    expect(m.zeroRecallClasses).toBe(1);
    expect(m.geometricMeanRecall).toBeCloseTo(Math.cbrt(1 * 0.5 * 1e-3), 14);
    expect(metrics([0, 0, 1, 1], [0, 1, 1, 2], [10, 10, 10], { gmFloor: 0 }).geometricMeanRecall).toBe(0);
    expect(metrics([0, 0, 1, 1], [0, 1, 1, 2], [10, 10, 10], { gmFloor: 0.1 }).geometricMeanRecall).toBeCloseTo(Math.cbrt(0.05), 14);
    expect(() => metrics([0], [0], [1], { gmFloor: 2 })).toThrow(/gmFloor must be in \[0, 1\], got 2/);
  });

  it('thresholds: configurable; empty groups are null; absent classes NaN in perClass and left out of the means', () => {
    const m = metrics([0, 1, 1], [0, 1, 0], [1000, 500, 30, 2], { manyThreshold: 400, fewThreshold: 3 });
    expect(m.many).toBe(0.75); // classes 0 (recall 0.5) and 1 (recall 1)
    expect(m.medium).toBeNull(); // class 2 (count 30) has no test rows
    expect(m.few).toBeNull(); // class 3 (count 2 < 3) has no test rows
    expect(Number.isNaN(m.perClass[2])).toBe(true);
    expect(m.balancedAccuracy).toBe(0.75);
    const d = metrics([0, 1], [0, 1], [100, 20]); // defaults: 100 is not > 100 → medium; 20 is not < 20 → medium
    expect(d.many).toBeNull();
    expect(d.medium).toBe(1);
    expect(d.few).toBeNull();
  });

  it('ECE by hand (equal-width bins, confidence = max probability, prediction = its argmax)', () => {
    const probabilities = { data: Float32Array.from([0.85, 0.15, 0.75, 0.25, 0.62, 0.38, 0.45, 0.55]), rows: 4, cols: 2 };
    const labels2 = [0, 1, 0, 1];
    // confidences .85 (right) .75 (wrong) .62 (right) .55 (right); 10 bins, one row each:
    // (|1−.85| + |0−.75| + |1−.62| + |1−.55|) / 4 = 1.73 / 4
    const m = metrics([0, 0, 0, 1], labels2, [5, 5], { probabilities, eceBins: 10 });
    expect(m.ece).toBeCloseTo(0.4325, 6);
    // 2 bins: all in (0.5, 1]: |0.75 − 2.77/4| = 0.0575
    expect(metrics([0, 0, 0, 1], labels2, [5, 5], { probabilities, eceBins: 2 }).ece).toBeCloseTo(0.0575, 6);
    // default 15 bins: (0.8, 0.8667] .85; (0.7333, 0.8] .75; (0.6, 0.6667] .62; (0.5333, 0.6] .55 — one per bin again
    expect(metrics([0, 0, 0, 1], labels2, [5, 5], { probabilities }).ece).toBeCloseTo(0.4325, 6);
  });

  it('trainCounts of the wrong length is named, with the length expected (issue 13)', () => {
    expect(() => metrics([0, 1, 2], [0, 1, 2], [1, 2])).toThrow(new RangeError(
      'trainCounts has length 2 but the classes go up to 2: trainCounts must have one entry per class (length >= 3), ' +
      'or labels[2] must be an integer class index in [0, 2)'));
    expect(() => metrics([0, 3, 1], [0, 1, 1], [1, 2])).toThrow(/^trainCounts has length 2 .* \(length >= 4\), or predictions\[1\] must be/);
    const probabilities = { data: new Float32Array(9).fill(1 / 3), rows: 3, cols: 3 };
    expect(() => metrics([0, 1, 1], [0, 1, 1], [1, 2], { probabilities }))
      .toThrow(/^trainCounts has length 2 but probabilities has 3 columns: trainCounts must have length 3/);
    // A label that is wrong by itself is the label's fault only.
    expect(() => metrics([0, 1], [0, -1], [1, 2])).toThrow(/^labels\[1\] must be an integer class index/);
    expect(() => metrics([0, 1.5], [0, 1], [1, 2])).toThrow(/^predictions\[1\] must be an integer class index/);
  });
});
