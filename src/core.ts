/**
 * The library's platform-neutral API, shared by the Node entry (src/index.ts) and the browser entry
 * (src/browser/index.ts): every correction, the OTLM trainer, metrics, priors, evaluation and tuning.
 * Nothing here reads files or loads the addon by itself.
 */
export type { Matrix, MatrixInput, OrtTensorLike, TfTensorLike, Backend, PriorInput } from './api/types.js';

// Corrections (OT = the paper's Algorithm 1, Logit Adjustment, DARP), the Sinkhorn solver, metrics.
export { sinkhorn, sinkhornSync } from './methods/sinkhorn.js';
export type { SinkhornOptions, SinkhornAsyncOptions, SinkhornResult } from './methods/sinkhorn.js';
export type { SolverOptions } from './methods/common.js';
export { otCorrect, otCorrectSync, applyClassOffsets } from './methods/ot.js';
export type { OtCorrectOptions, OtCorrectAsyncOptions, CorrectionResult } from './methods/ot.js';
export { logitAdjust, logitAdjustSync } from './methods/la.js';
export type { LogitAdjustOptions, LogitAdjustResult } from './methods/la.js';
export { darp, darpSync } from './methods/darp.js';
export type { DarpOptions, DarpAsyncOptions } from './methods/darp.js';

// Beyond the paper: unknown target prior (EM/MLLS, BBSE) and the online corrector (class offsets g).
export { estimatePrior, fitCalibration } from './prior/estimate.js';
export type { PriorEstimateOptions, PriorEstimate } from './prior/estimate.js';
export { resolveTargetPrior, floorPrior, ESTIMATED_PRIOR_FLOOR } from './prior/resolve.js';
export type { TargetPriorSpec, ResolvedTargetPrior } from './prior/resolve.js';
export { OnlineCorrector } from './online.js';
export type { OnlineCorrectorOptions, OnlineSolveReport, OnlineCorrectorJSON } from './online.js';
export { metrics } from './metrics.js';
export type { MetricsOptions, MetricsResult } from './metrics.js';

// OTLM: the learned cost map W (paper §3.2), its trainer, presets, model files; the float64 loss/gradient reference.
export { OTLM, OTLM_PRESETS, OtlmDivergenceError } from './train/otlm.js';
export type { OtlmOptions, OtlmFitOptions, OtlmProgressEvent, OtlmBias, OtlmHyper, OtlmPreset, OtlmCorrectOptions, FitResult, Schedule } from './train/otlm.js';
export { otlmLossGradReference } from './paths/reference/otlm.js';
export type { OtlmReferenceInput, OtlmReferenceResult } from './paths/reference/otlm.js';

// The paper's comparison table (CE, LA, DARP, OT, OTLM scored alike) and the tuner.
export { evaluateAll, ALL_METHODS } from './evaluate.js';
export type { EvalInput, EvalOutput, MethodName, MethodResult } from './evaluate.js';
export { tune } from './tune.js';
export type { TuneOptions, TuneResult, TuneRow, TuneMethod } from './tune.js';
