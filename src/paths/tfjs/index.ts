/** The TensorFlow.js path (`backend: 'tfjs'`): loaded lazily, float32, wasm or cpu backend. */
export { tfjsSinkhorn, tfjsOtCorrect } from './sinkhorn.js';
export type { TfjsSinkhornOptions, TfjsSinkhornResult, TfjsOtCorrectOptions } from './sinkhorn.js';
export { tfjsOtlmStep } from './otlm.js';
export type { TfjsOtlmStepOptions, TfjsOtlmStepResult } from './otlm.js';
export { tfjsRuntimeInfo } from './load.js';
export type { TfBackendName, TfjsRuntimeInfo } from './load.js';
