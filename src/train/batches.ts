/**
 * Mini-batch planning for the OTLM trainer: a seeded PRNG (so a fit is reproducible), epochs of
 * shuffled row indices, and learning-rate schedules.
 */

/** mulberry32: a small, fast 32-bit PRNG; same seed → same stream on every platform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Yields the rows of each step. When batchSize ≥ n every step is the full batch 0..n−1 (in order).
 * Otherwise each epoch is a fresh Fisher–Yates permutation cut into floor(n / batchSize) batches of
 * exactly batchSize rows (the remainder of one epoch's permutation is dropped; it is reshuffled into
 * the next), so every Sinkhorn problem has the same size B and marginal c = B·μ.
 */
export class BatchPlanner {
  private readonly rand: () => number;
  private perm: Int32Array;
  private pos: number;
  readonly fullBatch: boolean;
  readonly batchesPerEpoch: number;

  constructor(readonly n: number, readonly batchSize: number, seed: number) {
    this.rand = mulberry32(seed);
    this.fullBatch = batchSize >= n;
    this.batchesPerEpoch = this.fullBatch ? 1 : Math.floor(n / batchSize);
    this.perm = new Int32Array(n);
    for (let i = 0; i < n; i++) this.perm[i] = i;
    this.pos = this.fullBatch ? 0 : n; // forces a shuffle before the first batch
  }

  next(): Int32Array {
    if (this.fullBatch) return this.perm.slice();
    if (this.pos + this.batchSize > this.n) {
      const p = this.perm;
      for (let i = this.n - 1; i > 0; i--) {
        const j = Math.floor(this.rand() * (i + 1));
        const t = p[i]; p[i] = p[j]; p[j] = t;
      }
      this.pos = 0;
    }
    const rows = this.perm.slice(this.pos, this.pos + this.batchSize);
    this.pos += this.batchSize;
    return rows;
  }
}

/** Learning-rate schedule: 'constant' (the paper's), 'cosine' (to 0 at the last step), or step decay. */
export type Schedule = 'constant' | 'cosine' | { type: 'step'; every: number; gamma: number };

/** lr for step s (0-based) of `steps`. */
export function scheduledLr(schedule: Schedule, lr: number, s: number, steps: number): number {
  if (schedule === 'constant') return lr;
  if (schedule === 'cosine') return steps <= 1 ? lr : 0.5 * lr * (1 + Math.cos((Math.PI * s) / steps));
  // Floored at the smallest double: a long decay must not underflow to lr = 0, which the engine refuses.
  return Math.max(lr * Math.pow(schedule.gamma, Math.floor(s / schedule.every)), Number.MIN_VALUE);
}
