/**
 * Reference Logit Adjustment (Menon et al., ICLR 2021), float64:
 *
 *   Φ'_ij = Φ_ij − τ · log π_j  (+ log μ_j when a target prior μ is given)
 *
 * π is the training prior, μ the target prior (both normalised, entries > 0). With μ uniform the
 * `+ log μ_j` term is a constant per row and changes neither the softmax nor the argmax.
 */
export function referenceLogitAdjust(
  logits: ArrayLike<number>,
  n: number,
  k: number,
  trainPrior: ArrayLike<number>,
  tau: number,
  targetPrior?: ArrayLike<number>,
): Float64Array {
  const shift = new Float64Array(k);
  for (let j = 0; j < k; j++) shift[j] = -tau * Math.log(trainPrior[j]) + (targetPrior ? Math.log(targetPrior[j]) : 0);
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) out[i * k + j] = logits[i * k + j] + shift[j];
  }
  return out;
}

/** Row-wise softmax in float64 (max-shifted). */
export function referenceSoftmax(x: ArrayLike<number>, n: number, k: number): Float64Array {
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    let mx = -Infinity;
    for (let j = 0; j < k; j++) mx = Math.max(mx, x[o + j]);
    let s = 0;
    for (let j = 0; j < k; j++) s += (out[o + j] = Math.exp(x[o + j] - mx));
    for (let j = 0; j < k; j++) out[o + j] /= s;
  }
  return out;
}

/** Row-wise argmax (first maximum on ties). */
export function referenceArgmax(x: ArrayLike<number>, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = x[i * k + j];
      if (v > bv) {
        bv = v;
        best = j;
      }
    }
    out[i] = best;
  }
  return out;
}
