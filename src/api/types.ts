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

/** An onnxruntime Tensor (onnxruntime-node/-web/-common), or anything shaped like one: float32, 2-D. Read in place (zero-copy). */
// Typed loosely (an ort.Tensor from session.run() has a union `type`): float32 and 2-D are checked at run time.
export interface OrtTensorLike {
  readonly data: unknown;
  readonly dims: readonly number[];
  readonly type: string;
}

/** A TensorFlow.js float32 `Tensor2D` (read with `dataSync()`: one copy, made by tfjs). */
export interface TfTensorLike {
  readonly shape: readonly number[];
  readonly dtype: string;
  dataSync(): unknown;
}

/** Anything a matrix argument accepts: `{ data, rows, cols }`, an onnxruntime Tensor or a tfjs 2-D tensor. */
export type MatrixInput = Matrix | OrtTensorLike | TfTensorLike;

/**
 * Where the math runs. `auto` picks CUDA when the CUDA backend loaded and found a
 * device, else the native CPU engine, else the WebAssembly engine (`wasm`: the CPU engine
 * compiled to WebAssembly, for platforms without a native binary and for browsers);
 * `reference` is the float64 TypeScript path (slow, the oracle of the tests); `tfjs` is the
 * TensorFlow.js path.
 */
export type Backend = 'auto' | 'cpu' | 'cuda' | 'wasm' | 'tfjs' | 'reference';

/** A class prior given as counts or probabilities (normalised to sum to 1). */
export type PriorInput = ArrayLike<number>;
