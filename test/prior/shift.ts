/**
 * Simulated label shift from the real Fashion-MNIST-LT logits (data/fmnist-lt, see its PROVENANCE.md):
 * the balanced test split (500 per class) is resampled, seeded, to a long-tailed one.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Matrix } from '../../src/api/types.js';
import { readLabels, readMatrix, readVector } from '../../src/io/index.js';
import { mulberry32 } from '../../src/train/batches.js';

const DATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../data/fmnist-lt');

export interface Split {
  logits: Matrix;
  labels: Int32Array;
}

export function loadFmnist(): { test: Split; val: Split; trainCounts: Float64Array } {
  return {
    test: { logits: readMatrix(path.join(DATA, 'test_logits.npy')), labels: readLabels(path.join(DATA, 'test_labels.npy')) },
    val: { logits: readMatrix(path.join(DATA, 'val_logits.npy')), labels: readLabels(path.join(DATA, 'val_labels.npy')) },
    trainCounts: readVector(path.join(DATA, 'train_counts.npy')),
  };
}

/** Seeded PRNG in [0, 1): the trainer's own mulberry32, so tests are reproducible. */
export const rng = mulberry32;

export function shuffle<T>(a: T[], rand: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Long-tailed class sizes n_c = floor(nMax · ρ^(−c/(K−1))) ('forward', class 0 = head as in training) or reversed ('backward'). */
export function ltCounts(k: number, nMax: number, rho: number, order: 'forward' | 'backward'): number[] {
  return Array.from({ length: k }, (_, c) => {
    const r = order === 'forward' ? c : k - 1 - c;
    return Math.floor(nMax * rho ** (-r / (k - 1)));
  });
}

/** Draws counts[c] rows of class c without replacement (seeded), in shuffled order. */
export function resample(split: Split, counts: number[], seed: number): Split & { truePrior: Float64Array } {
  const k = split.logits.cols;
  const rand = rng(seed);
  const byClass: number[][] = Array.from({ length: k }, () => []);
  split.labels.forEach((y, i) => byClass[y]!.push(i));
  const picked: number[] = [];
  for (let c = 0; c < k; c++) {
    const pool = shuffle([...byClass[c]!], rand);
    if (counts[c]! > pool.length) throw new Error(`class ${c}: only ${pool.length} rows, asked ${counts[c]}`);
    picked.push(...pool.slice(0, counts[c]));
  }
  shuffle(picked, rand);
  return { ...subset(split, picked), truePrior: Float64Array.from(counts, (v) => v / picked.length) };
}

export function subset(split: Split, idx: number[]): Split {
  const k = split.logits.cols;
  const data = new Float32Array(idx.length * k);
  idx.forEach((i, r) => data.set(split.logits.data.subarray(i * k, (i + 1) * k), r * k));
  return { logits: { data, rows: idx.length, cols: k }, labels: Int32Array.from(idx, (i) => split.labels[i]!) };
}

export function l1(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += Math.abs(a[j]! - b[j]!);
  return s;
}

export function accuracy(pred: ArrayLike<number>, labels: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) c++;
  return c / labels.length;
}

/** Predicted class marginal (fraction of rows predicted as each class). */
export function predictedMarginal(pred: ArrayLike<number>, k: number): Float64Array {
  const m = new Float64Array(k);
  for (let i = 0; i < pred.length; i++) m[pred[i]!]! += 1 / pred.length;
  return m;
}

/** argmax of each row (first maximum), the uncorrected classifier's predictions. */
export function argmaxRows(x: Matrix): Int32Array {
  const out = new Int32Array(x.rows);
  for (let i = 0; i < x.rows; i++) {
    let b = 0;
    for (let j = 1; j < x.cols; j++) if (x.data[i * x.cols + j]! > x.data[i * x.cols + b]!) b = j;
    out[i] = b;
  }
  return out;
}
