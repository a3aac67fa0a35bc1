/**
 * The paper's comparison (its Tables 1–4): the plain classifier (CE) and every
 * post-hoc correction on the same test logits, scored with the same metrics.
 * The library's evaluation table (exported by the package), shared by `otlm eval`, `otlm demo` and
 * `otlm report`.
 */
import { defined } from './api/options.js';
import { checkMatrix, normalizePrior } from './api/validate.js';
import type { Backend, Matrix } from './api/types.js';
import { darp } from './methods/darp.js';
import { logitAdjust } from './methods/la.js';
import { applyClassOffsets, otCorrect, type CorrectionResult } from './methods/ot.js';
import { metrics, type MetricsResult } from './metrics.js';
import { OTLM, type OtlmPreset, type OtlmProgressEvent } from './train/otlm.js';

export type MethodName = 'CE' | 'LA' | 'DARP' | 'OT' | 'OTLM';
export const ALL_METHODS: MethodName[] = ['CE', 'LA', 'DARP', 'OT', 'OTLM'];

export interface EvalInput {
  test: Matrix;
  labels: Int32Array;
  trainCounts: Float64Array;
  /** Target prior μ (default uniform). */
  targetPrior?: Float64Array;
  /** Unlabeled validation logits to fit OTLM on. */
  val?: Matrix;
  /** A loaded OTLM model, checked against the test logits (instead of fitting). */
  model?: OTLM;
  methods?: MethodName[];
  lambda?: number;
  maxIter?: number;
  tol?: number;
  tau?: number;
  backend?: Backend;
  /** Overrides for the OTLM fit (preset name, lr, iterations...). */
  fit?: { preset?: OtlmPreset; [k: string]: unknown };
  onFitProgress?: (e: OtlmProgressEvent, total: number) => void;
}

export interface MethodResult {
  method: MethodName;
  metrics: MetricsResult;
  predictions: Int32Array;
  seconds: number;
  /**
   * OT and OTLM: the ECE of their 'calibrated' probabilities softmax(Φ + g) (same predictions), beside
   * `metrics.ece` of the plan's rows, which 1/λ sharpens. Undefined for the other methods.
   */
  eceCalibrated?: number | null;
  /** Method-specific notes (iterations, converged...). */
  detail?: Record<string, unknown>;
}

export interface EvalOutput {
  k: number;
  n: number;
  targetPrior: Float64Array;
  trainCounts: Float64Array;
  results: MethodResult[];
  /** Marginal error per recorded Sinkhorn iteration of the OT solve (Figure 2 left). */
  otTrace?: number[];
  otLambda?: number;
  /** OTLM training curve. */
  lossCurve?: OtlmProgressEvent[];
  /** Learned W (K×K, row-major). */
  weights?: Float32Array;
  skipped: Array<{ method: MethodName; reason: string }>;
}

/** Row-wise softmax and argmax of raw logits (the plain classifier). */
export function softmaxArgmax(x: Matrix): { probabilities: Matrix; predictions: Int32Array } {
  const { rows, cols, data } = x;
  const p = new Float32Array(rows * cols);
  const pred = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    let mx = -Infinity;
    let arg = 0;
    for (let j = 0; j < cols; j++) if (data[o + j]! > mx) { mx = data[o + j]!; arg = j; }
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(data[o + j]! - mx);
    for (let j = 0; j < cols; j++) p[o + j] = Math.exp(data[o + j]! - mx) / s;
    pred[i] = arg;
  }
  return { probabilities: { data: p, rows, cols }, predictions: pred };
}

const now = (): number => performance.now() / 1000;

export async function evaluateAll(inp: EvalInput): Promise<EvalOutput> {
  const { test, labels, trainCounts } = inp;
  const k = test.cols;
  const mu = inp.targetPrior ?? new Float64Array(k).fill(1 / k);
  checkMatrix('test', test);
  const pi = normalizePrior('trainCounts', trainCounts, k);
  const want = new Set(inp.methods ?? ALL_METHODS);
  const out: EvalOutput = { k, n: test.rows, targetPrior: mu, trainCounts, results: [], skipped: [] };
  const score = async (method: MethodName, t0: number, r: { predictions: Int32Array; probabilities?: Matrix }, detail?: Record<string, unknown>, calibratedFrom?: { logits: Matrix; g: Float64Array }) => {
    const seconds = now() - t0;
    const m = metrics(r.predictions, labels, trainCounts, defined({ targetPrior: mu, probabilities: r.probabilities }));
    const res: MethodResult = { method, metrics: m, predictions: r.predictions, seconds, detail };
    if (calibratedFrom) {
      const cal = applyClassOffsets(calibratedFrom.logits, calibratedFrom.g, { lambda: 1 });
      res.eceCalibrated = metrics(r.predictions, labels, trainCounts, { targetPrior: mu, probabilities: cal.probabilities }).ece;
    }
    out.results.push(res);
  };

  if (want.has('CE')) {
    const t0 = now();
    await score('CE', t0, softmaxArgmax(test));
  }
  if (want.has('LA')) {
    const t0 = now();
    // The prior-shift form Φ − τ·log π + log μ, as `correct --method la --target-prior` computes it
    // (+ log μ is a constant shift for a uniform μ: same predictions).
    const r = await logitAdjust(test, pi, defined({ tau: inp.tau ?? 1, targetPrior: inp.targetPrior }));
    await score('LA', t0, r, { tau: inp.tau ?? 1 });
  }
  if (want.has('DARP')) {
    const t0 = now();
    const r = await darp(test, { targetPrior: mu });
    await score('DARP', t0, r, { iterations: r.iterations, converged: r.converged });
  }
  if (want.has('OT')) {
    const t0 = now();
    const r: CorrectionResult = await otCorrect(test, defined({ lambda: inp.lambda, targetPrior: mu, maxIter: inp.maxIter, tol: inp.tol, trace: true, backend: inp.backend }));
    await score('OT', t0, r, { iterations: r.iterations, error: r.error, converged: r.converged }, { logits: test, g: r.classOffsets });
    if (r.trace) out.otTrace = Array.from(r.trace);
    out.otLambda = inp.lambda ?? 1; // otCorrect's documented default
  }
  if (want.has('OTLM')) {
    if (!inp.model && !inp.val) {
      out.skipped.push({ method: 'OTLM', reason: 'needs --val-logits (to fit) or --model' });
    } else {
      const t0 = now();
      let model: OTLM;
      const curve: OtlmProgressEvent[] = [];
      if (inp.model) {
        model = inp.model;
      } else {
        const { preset, ...over } = inp.fit ?? {};
        const opts = defined({ trainPrior: trainCounts, targetPrior: mu, backend: inp.backend, ...over });
        model = preset ? OTLM.preset(preset, opts) : new OTLM(opts);
        const total = Number(model.options?.iterations ?? over.iterations ?? 0);
        await model.fit(inp.val!, {
          onProgress: (e: OtlmProgressEvent) => { curve.push({ ...e }); inp.onFitProgress?.(e, Number(e.steps ?? total)); },
        });
      }
      const r = await model.correct(test, defined({ maxIter: inp.maxIter, tol: inp.tol, trace: false }));
      await score('OTLM', t0, r, { iterations: r.iterations, converged: r.converged, fitSteps: curve.length }, { logits: await model.adjustedLogits(test), g: r.classOffsets });
      out.lossCurve = curve;
      out.weights = model.weights;
    }
  }
  return out;
}
