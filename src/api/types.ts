/**
 * Shared public types. Matrices everywhere are `{ data, rows, cols }` with
 * row-major float32 data (the convention of docs/architecture.md).
 */

/** A dense row-major matrix: element (i, j) is `data[i * cols + j]`. */
export interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

/**
 * Where the math runs. `auto` picks CUDA when the CUDA backend loaded and found a
 * device, else the native CPU engine; `reference` is the float64 TypeScript path
 * (slow, the oracle of the tests); `tfjs` is the TensorFlow.js path.
 */
export type Backend = 'auto' | 'cpu' | 'cuda' | 'tfjs' | 'reference';

/** A class prior given as counts or probabilities (normalised to sum to 1). */
export type PriorInput = ArrayLike<number>;
