/**
 * otlm — optimal-transport post-hoc correction for long-tailed classifiers.
 * See README.md for the quickstart and DESIGN.md for the math.
 */
export type { Matrix, Backend, PriorInput } from './api/types.js';
export { info } from './api/info.js';
export type { OtlmInfo, CudaDeviceInfo } from './api/info.js';
export { NativeLoadError } from './native/loader.js';
