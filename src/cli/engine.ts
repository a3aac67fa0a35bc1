/**
 * The CLI's view of the library's methods. Kept in one place so the commands
 * read the same whatever module a method lives in.
 */
import type { Backend, Matrix } from '../api/types.js';
import { estimatePrior as estimatePriorImpl } from '../prior/estimate.js';
import { otCorrect as otCorrectImpl } from '../methods/ot.js';
import { logitAdjust as logitAdjustImpl } from '../methods/la.js';
import { darp as darpImpl } from '../methods/darp.js';
import { metrics as metricsImpl } from '../metrics.js';
import { OTLM } from '../train/otlm.js';

export interface OtOut {
  probabilities: Matrix;
  predictions: Int32Array;
  classOffsets: ArrayLike<number>;
  iterations: number;
  error: number;
  converged: boolean;
  trace?: ArrayLike<number>;
}
export interface LaOut { logits: Matrix; probabilities: Matrix; predictions: Int32Array }
export interface DarpOut { probabilities: Matrix; predictions: Int32Array; iterations?: number; converged?: boolean }
export interface MetricsOut {
  top1: number;
  balancedAccuracy: number;
  geometricMeanRecall: number;
  many: number | null;
  medium: number | null;
  few: number | null;
  perClass: ArrayLike<number>;
  predictedMarginal: ArrayLike<number>;
  klMarginal: number;
  ece: number | null;
  [k: string]: unknown;
}
export interface ProgressEvent { step: number; loss: number; marginalError: number; msPerStep: number; [k: string]: unknown }

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Drops undefined entries: the library rejects option keys it does not know, and CLI flags not given stay undefined. */
export function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export async function otCorrect(logits: Matrix, opts: { lambda?: number; targetPrior?: ArrayLike<number>; maxIter?: number; tol?: number; trace?: boolean; backend?: Backend }): Promise<OtOut> {
  return otCorrectImpl(logits, defined(opts));
}

export async function logitAdjust(logits: Matrix, trainPrior: ArrayLike<number>, opts: { tau?: number; targetPrior?: ArrayLike<number> }): Promise<LaOut> {
  return logitAdjustImpl(logits, trainPrior, defined(opts));
}

export async function darp(logits: Matrix, opts: { targetPrior?: ArrayLike<number>; maxIter?: number; tol?: number }): Promise<DarpOut> {
  return darpImpl(logits, defined(opts));
}

export async function metrics(pred: Int32Array, labels: Int32Array, trainCounts: ArrayLike<number>, opts: { targetPrior?: ArrayLike<number>; probabilities?: Matrix }): Promise<MetricsOut> {
  return metricsImpl(pred, labels, trainCounts, defined(opts)) as unknown as MetricsOut;
}

/** Target-prior estimation (EM/MLLS or BBSE) from the logits; the labeled validation split is optional for EM and required for BBSE. */
export async function estimatePrior(logits: Matrix, trainPrior: ArrayLike<number>, opts: { method: 'em' | 'bbse'; validation?: { logits: Matrix; labels: Int32Array } }): Promise<{ prior: Float64Array; detail: Record<string, unknown> }> {
  const r = estimatePriorImpl(logits, trainPrior, { method: opts.method, validation: opts.validation });
  const { prior, ...detail } = r;
  return { prior, detail: detail as Record<string, unknown> };
}

export interface OtlmModel {
  fit(val: Matrix, opts?: Any): Promise<Any>;
  correct(test: Matrix, opts?: Any): Promise<OtOut>;
  save(path: string, opts?: Any): Promise<void> | void;
  readonly weights: Float32Array;
  [k: string]: Any;
}

/** The OTLM class (src/train/otlm.ts), typed loosely so the commands can pass flag-built option objects. */
export async function otlmClass(): Promise<Any> {
  return OTLM;
}
