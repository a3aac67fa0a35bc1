/**
 * otlm — optimal-transport post-hoc correction for long-tailed classifiers.
 * See README.md for the quickstart and docs/architecture.md for the math.
 */
export * from './core.js';
export { info } from './api/info.js';
export type { OtlmInfo, CudaDeviceInfo } from './api/info.js';
export { NativeLoadError } from './native/loader.js';

// The HTML report. The command line is not loaded by this entry: it is `otlm/cli` (runCli), so
// importing the library never pulls in the CLI's dependencies.
export { renderReport } from './report/index.js';
export type { ReportData, ReportMethod } from './report/index.js';

// Files: .npy / .npz (FILE.npz:NAME) / raw .f32 / CSV readers and atomic writers.
export { readMatrix, readVector, readLabels, writeMatrix, writeVector, writeFileAtomic, IoError } from './io/index.js';
export type { ReadOptions, WriteOptions } from './io/index.js';
