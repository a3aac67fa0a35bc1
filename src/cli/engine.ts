/**
 * The CLI's view of the library's methods. Kept in one place so the commands
 * read the same whatever module a method lives in.
 */
import type { Backend, Matrix } from '../api/types.js';
import { runtimeError } from './errors.js';

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
  ece: number;
  [k: string]: unknown;
}
export interface ProgressEvent { step: number; loss: number; marginalError: number; msPerStep: number; [k: string]: unknown }

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Imports a library module by relative path, or fails with a clear 'not available yet'. */
async function lib(spec: string, what: string): Promise<Any> {
  try {
    return await import(spec);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') throw runtimeError(`${what} is not available in this build`, e);
    throw e;
  }
}

export async function otCorrect(logits: Matrix, opts: { lambda?: number; targetPrior?: ArrayLike<number>; maxIter?: number; tol?: number; trace?: boolean; backend?: Backend }): Promise<OtOut> {
  const m = await lib('../methods/ot.js', 'the OT correction');
  return m.otCorrect(logits, opts);
}

export async function logitAdjust(logits: Matrix, trainPrior: ArrayLike<number>, opts: { tau?: number; targetPrior?: ArrayLike<number> }): Promise<LaOut> {
  const m = await lib('../methods/la.js', 'logit adjustment');
  return m.logitAdjust(logits, trainPrior, opts);
}

export async function darp(logits: Matrix, opts: { targetPrior?: ArrayLike<number>; [k: string]: unknown }): Promise<DarpOut> {
  const m = await lib('../methods/darp.js', 'DARP');
  return m.darp(logits, opts);
}

export async function metrics(pred: Int32Array, labels: Int32Array, trainCounts: ArrayLike<number>, opts: { targetPrior?: ArrayLike<number>; probabilities?: Matrix }): Promise<MetricsOut> {
  const m = await lib('../metrics.js', 'metrics');
  return m.metrics(pred, labels, trainCounts, opts);
}

export async function estimatePrior(logits: Matrix, trainPrior: ArrayLike<number>, opts: { method: string; [k: string]: unknown }): Promise<Float64Array> {
  const m = await lib('../prior/estimate.js', '--estimate-prior (prior estimation)');
  const r = await m.estimatePrior(logits, trainPrior, opts);
  return Float64Array.from((r && 'prior' in r ? r.prior : r) as ArrayLike<number>);
}

export interface OtlmModel {
  fit(val: Matrix, opts?: Any): Promise<Any>;
  correct(test: Matrix, opts?: Any): Promise<OtOut>;
  save(path: string, opts?: Any): Promise<void> | void;
  readonly weights: Float32Array;
  [k: string]: Any;
}

export async function otlmClass(): Promise<Any> {
  const m = await lib('../train/otlm.js', 'OTLM training');
  return m.OTLM;
}
