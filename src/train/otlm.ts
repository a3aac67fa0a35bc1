/**
 * OTLM: optimal transport with a learnable cost matrix (paper §3.2, Eq. 12; docs/architecture.md).
 *
 * On unlabeled validation logits Φ, learn W ∈ R^{K×K} (identity at start) with a fixed bias b:
 *
 *   A = Φ_B W + b,  log Z = log_softmax(A),  M = −log Z,  Y = Sinkhorn_T(M, λ, rows 1, columns B·μ)
 *   L(W) = (−⟨Y, log Z⟩ + λ⟨Y, log Y⟩) / B          (mean over the B rows of the mini-batch)
 *
 * and correct test logits with the OT correction of the cost −log softmax(Φ_test W + b).
 * The TypeScript loop here owns batching (seeded shuffles), schedules, early stopping, progress
 * events and cancellation; each step (forward, backward, optimizer) runs in the native trainer,
 * which keeps Φ, W and the optimizer state, so no K×K array crosses into JS per step.
 * Backend 'reference' runs the float64 TypeScript loss/gradient and a TS optimizer instead (tests).
 */
import type { Backend, Matrix, MatrixInput, PriorInput } from '../api/types.js';
import { checkHyper, checkMatrix, describe, normalizePrior, type HyperName } from '../api/validate.js';
import type { NativeBinding, NativeStepReport, NativeTrainer } from '../native/binding.js';
import { nativeOrReference } from '../native/backend.js';
import { otCorrect, type CorrectionResult, type OtCorrectAsyncOptions } from '../methods/ot.js';
import { packageVersion } from '../native/package-root.js';
import { otlmLossGradReference } from '../paths/reference/otlm.js';
import { BatchPlanner, scheduledLr, type Schedule } from './batches.js';
import { TsOptimizer } from './optim.js';
import { MODEL_FORMAT, MODEL_VERSION, readModel, writeModel } from './model-file.js';
import { IoError } from '../io/errors.js';

export type { Schedule } from './batches.js';

/** One progress event, emitted after every completed step. */
export interface OtlmProgressEvent {
  /** 1-based index of the step that just completed. */
  step: number;
  /** Total steps planned (iterations, or epochs × batches per epoch). */
  steps: number;
  /** Mini-batch loss L(W) before this step's update. */
  loss: number;
  /** Column-marginal error Σ_j |Yᵀ1 − Bμ|_j / B of this step's Sinkhorn plan. */
  marginalError: number;
  /** Sinkhorn iterations run in this step (≤ T; fewer when tol stopped it). */
  sinkhornIters: number;
  /** ‖dL/dW‖_F of this step (before weight decay). */
  gradNorm: number;
  /** Wall time of this step in milliseconds. */
  msPerStep: number;
  /** Learning rate used by this step. */
  lr: number;
}

/** How the fixed bias b of A = ΦW + b is chosen. */
export type OtlmBias = 'none' | { trainCounts: PriorInput } | { trainPrior: PriorInput } | Float32Array;

export interface OtlmOptions {
  /** Entropic regularisation λ > 0. Default 0.1 (paper, CIFAR-100-LT). */
  lambda?: number;
  /** T ≥ 1: Sinkhorn iterations per step. Default 200 (paper, CIFAR-100-LT). */
  sinkhornIters?: number;
  /** Δ ≥ 0: a step's Sinkhorn stops early once its column error is under Δ (0 = always T). Default 1e-3 (paper). */
  tol?: number;
  /** 'unrolled' (default, the paper's: autodiff through the T iterations) or 'envelope' (∂L/∂M = Y/B). */
  grad?: 'unrolled' | 'envelope';
  /** 'adam' (default, paper CIFAR-100-LT; L2 decay as torch.optim.Adam), 'adamw' (decoupled decay) or 'sgd'. */
  optimizer?: 'adam' | 'adamw' | 'sgd';
  /** Learning rate > 0. Default 1e-3 (paper, CIFAR-100-LT). */
  lr?: number;
  /** Weight decay ≥ 0. Default 1e-3 (paper, all benchmarks). */
  weightDecay?: number;
  /** SGD momentum in [0, 1). Default 0.9 (the paper does not say; the usual value). Ignored by Adam. */
  momentum?: number;
  /** SGD Nesterov momentum. Default false. */
  nesterov?: boolean;
  /** Adam β1 in [0, 1). Default 0.9. */
  beta1?: number;
  /** Adam β2 in [0, 1). Default 0.999. */
  beta2?: number;
  /** Adam ε > 0. Default 1e-8. */
  eps?: number;
  /** Rows per mini-batch ≥ 1; ≥ N means full batch. Default 10000 (paper). */
  batchSize?: number;
  /** Optimizer steps. Default 20 (paper, CIFAR-100-LT) unless `epochs` is given; not both. */
  iterations?: number;
  /** Passes over the data instead of `iterations`: steps = epochs × floor(N / batchSize) (1 per epoch for full batch). */
  epochs?: number;
  /** Seed of the mini-batch shuffles (uint32). Default 0. */
  seed?: number;
  /** Learning-rate schedule: 'constant' (default, the paper's), 'cosine' (to 0 at the end), or { type: 'step', every, gamma }. */
  schedule?: Schedule;
  /** Stop when the loss has not improved by more than minDelta (default 0) for `patience` steps. Default: off. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Fixed bias b: 'none' (default), { trainCounts } or { trainPrior } → b = −log π, or a Float32Array of K values. */
  bias?: OtlmBias;
  /** Shorthand for bias: { trainPrior } (counts or probabilities of the training classes). */
  trainPrior?: PriorInput;
  /** Target prior μ on the evaluation set (counts or probabilities). Default uniform. */
  targetPrior?: PriorInput;
  /** Where steps run: 'auto' (default: CUDA if usable, else CPU), 'cpu', 'cuda', or 'reference' (float64 TS). */
  backend?: Backend;
  /** Native threads (0 = all cores). Default 0. */
  threads?: number;
  /** Called after every completed step. */
  onProgress?: (event: OtlmProgressEvent) => void;
  /** Cancels `fit` between steps (a step in flight finishes); see `fit`. */
  signal?: AbortSignal;
}

export interface OtlmFitOptions {
  /** Overrides the constructor's onProgress for this fit. */
  onProgress?: (event: OtlmProgressEvent) => void;
  /** Overrides the constructor's signal for this fit. */
  signal?: AbortSignal;
  /** Start from the current weights (after fit/setWeights/load) instead of the identity. Default false. */
  warmStart?: boolean;
}

export interface FitResult {
  /** Steps completed (their updates are in W). */
  steps: number;
  /** Loss of every completed step (before its update). */
  losses: Float64Array;
  /** Column error of every completed step's plan. */
  marginalErrors: Float64Array;
  /** Loss of the last completed step (NaN when none completed). */
  finalLoss: number;
  /** True when the signal aborted the fit. */
  aborted: boolean;
  /** True when early stopping ended the fit. */
  stoppedEarly: boolean;
  seconds: number;
  /** Backend that ran the steps. */
  backend: 'cpu' | 'cuda' | 'wasm' | 'reference';
}

/** Options of `correct`: otCorrect's (its defaults: maxIter 1000, tol 1e-3, …); λ, μ and backend default to the model's. */
export type OtlmCorrectOptions = OtCorrectAsyncOptions;

/** The error of a step whose loss or gradient became NaN/Inf. W is left at its last finite value. */
export class OtlmDivergenceError extends Error {
  readonly code = 'OTLM_ENONFINITE';
  constructor(readonly step: number, readonly detail: string) {
    super(`OTLM diverged at step ${step}: ${detail}; W is left at its value after step ${step - 1} (lower lr?)`);
    this.name = 'OtlmDivergenceError';
  }
}

export type OtlmPreset = 'cifar100-lt' | 'imagenet-lt' | 'inaturalist';

/**
 * The paper's Appendix C settings. Where it is silent we chose: SGD momentum 0.9 (ImageNet-LT,
 * iNaturalist), 100 iterations for iNaturalist (as ImageNet-LT), Δ = 1e-3 for all three.
 */
export const OTLM_PRESETS: Readonly<Record<OtlmPreset, Readonly<OtlmOptions>>> = Object.freeze({
  'cifar100-lt': Object.freeze({ optimizer: 'adam', batchSize: 10000, weightDecay: 1e-3, iterations: 20, lr: 1e-3, lambda: 0.1, sinkhornIters: 200, tol: 1e-3 }),
  'imagenet-lt': Object.freeze({ optimizer: 'sgd', momentum: 0.9, batchSize: 10000, weightDecay: 1e-3, iterations: 100, lr: 0.2, lambda: 1.2, sinkhornIters: 7, tol: 1e-3 }),
  inaturalist: Object.freeze({ optimizer: 'sgd', momentum: 0.9, batchSize: 23826, weightDecay: 1e-3, iterations: 100, lr: 0.05, lambda: 1.0, sinkhornIters: 10, tol: 1e-3 }),
} as const);

const KNOWN = new Set([
  'lambda', 'sinkhornIters', 'tol', 'grad', 'optimizer', 'lr', 'weightDecay', 'momentum', 'nesterov', 'beta1', 'beta2', 'eps',
  'batchSize', 'iterations', 'epochs', 'seed', 'schedule', 'earlyStopping', 'bias', 'trainPrior', 'targetPrior', 'backend',
  'threads', 'onProgress', 'signal',
]);

/** Resolved hyper-parameters (what `toJSON` and the model file store). */
export interface OtlmHyper {
  lambda: number;
  sinkhornIters: number;
  tol: number;
  grad: 'unrolled' | 'envelope';
  optimizer: 'adam' | 'adamw' | 'sgd';
  lr: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
  beta1: number;
  beta2: number;
  eps: number;
  batchSize: number;
  iterations: number | null;
  epochs: number | null;
  seed: number;
  schedule: Schedule;
  earlyStopping: { patience: number; minDelta: number } | null;
  bias: 'none' | 'train-prior' | 'vector';
  backend: Backend;
  threads: number;
}

interface StepEngine {
  readonly name: 'cpu' | 'cuda' | 'wasm' | 'reference';
  step(rows: Int32Array, lr: number): Promise<NativeStepReport>;
  stepSync(rows: Int32Array, lr: number): NativeStepReport;
  getWeights(): Float32Array;
  setWeights(w: Float32Array): void;
  close(): void;
}


function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T))
    throw new RangeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${typeof v === 'string' ? `'${v}'` : describe(v)}`);
  return v as T;
}

/** The hyper-parameters of OtlmOptions, checked (src/api/validate.ts HYPER), with their defaults (the paper's CIFAR-100-LT settings). */
function parseHyper(o: OtlmOptions): OtlmHyper {
  const num = (name: keyof OtlmOptions & HyperName, def: number): number =>
    o[name] === undefined ? def : checkHyper(`options.${name}`, name, o[name]);
  if (o.iterations !== undefined && o.epochs !== undefined) throw new RangeError('OTLM: give options.iterations or options.epochs, not both');
  const schedule = o.schedule ?? 'constant';
  if (typeof schedule === 'object' && schedule !== null) {
    if (schedule.type !== 'step') throw new RangeError(`options.schedule.type must be 'step', got ${describe(schedule.type)}`);
    checkHyper('options.schedule.every', 'scheduleEvery', schedule.every);
    checkHyper('options.schedule.gamma', 'scheduleGamma', schedule.gamma);
  } else oneOf('options.schedule', schedule, ['constant', 'cosine'] as const);
  let earlyStopping: OtlmHyper['earlyStopping'] = null;
  if (o.earlyStopping !== undefined) {
    if (typeof o.earlyStopping !== 'object' || o.earlyStopping === null) throw new TypeError(`options.earlyStopping must be { patience, minDelta? }, got ${describe(o.earlyStopping)}`);
    earlyStopping = {
      patience: checkHyper('options.earlyStopping.patience', 'patience', o.earlyStopping.patience),
      minDelta: o.earlyStopping.minDelta === undefined ? 0 : checkHyper('options.earlyStopping.minDelta', 'minDelta', o.earlyStopping.minDelta),
    };
  }
  const backend = oneOf('options.backend', o.backend ?? 'auto', ['auto', 'cpu', 'cuda', 'wasm', 'reference'] as const);
  return {
    lambda: num('lambda', 0.1),
    sinkhornIters: num('sinkhornIters', 200),
    tol: num('tol', 1e-3),
    grad: oneOf('options.grad', o.grad ?? 'unrolled', ['unrolled', 'envelope'] as const),
    optimizer: oneOf('options.optimizer', o.optimizer ?? 'adam', ['adam', 'adamw', 'sgd'] as const),
    lr: num('lr', 1e-3),
    weightDecay: num('weightDecay', 1e-3),
    momentum: num('momentum', 0.9),
    nesterov: o.nesterov === undefined ? false : typeof o.nesterov === 'boolean' ? o.nesterov : (() => { throw new TypeError(`options.nesterov must be a boolean, got ${describe(o.nesterov)}`); })(),
    beta1: num('beta1', 0.9),
    beta2: num('beta2', 0.999),
    eps: num('eps', 1e-8),
    batchSize: num('batchSize', 10000),
    iterations: o.epochs !== undefined ? null : num('iterations', 20),
    epochs: o.epochs === undefined ? null : num('epochs', 1),
    seed: num('seed', 0),
    schedule,
    earlyStopping,
    bias: 'none',
    backend,
    threads: num('threads', 0),
  };
}

/** The fixed bias b of OtlmOptions (bias or trainPrior): its vector, how it was given, and the option that set K. */
function parseBias(o: OtlmOptions):
  { vec: Float32Array; input: { trainCounts: PriorInput } | Float32Array; kind: OtlmHyper['bias']; from: string } | undefined {
  if (o.trainPrior !== undefined && o.bias !== undefined && o.bias !== 'none')
    throw new RangeError('OTLM: give options.trainPrior or options.bias, not both');
  const bias: OtlmBias = o.trainPrior !== undefined ? { trainPrior: o.trainPrior } : (o.bias ?? 'none');
  if (bias instanceof Float32Array) {
    if (bias.length < 1) throw new RangeError('options.bias must have one entry per class, got an empty array');
    for (let j = 0; j < bias.length; j++) if (!Number.isFinite(bias[j])) throw new RangeError(`options.bias[${j}] must be finite, got ${bias[j]}`);
    const vec = bias.slice();
    return { vec, input: vec, kind: 'vector', from: 'options.bias' };
  } else if (bias !== 'none') {
    if (typeof bias !== 'object' || bias === null || !('trainCounts' in bias || 'trainPrior' in bias))
      throw new TypeError(`options.bias must be 'none', { trainCounts }, { trainPrior } or a Float32Array, got ${describe(bias)}`);
    const counts = 'trainCounts' in bias ? bias.trainCounts : bias.trainPrior;
    const name = 'trainCounts' in bias ? 'options.bias.trainCounts' : 'options.trainPrior';
    if (typeof counts !== 'object' || counts === null || typeof (counts as ArrayLike<number>).length !== 'number')
      throw new TypeError(`${name} must be an array of class counts or probabilities, got ${describe(counts)}`);
    const k = (counts as ArrayLike<number>).length;
    const pi = normalizePrior(name, counts, k);
    return { vec: Float32Array.from(pi, (p) => -Math.log(p)), input: { trainCounts: Array.from(pi) }, kind: 'train-prior', from: name };
  }
  return undefined;
}

export class OTLM {
  private readonly hyper: OtlmHyper;
  private k: number | undefined;
  private biasVec: Float32Array | undefined; // undefined = no bias
  private biasInput: { trainCounts: PriorInput } | Float32Array | undefined;
  private prior: Float64Array | undefined; // undefined = uniform (K unknown yet)
  private w: Float32Array | undefined;
  private trainedSteps = 0;
  private busy = false;
  private readonly onProgress?: (event: OtlmProgressEvent) => void;
  private readonly signal?: AbortSignal;

  /** See OtlmOptions for every option, its default and the paper's value. */
  constructor(options: OtlmOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError(`OTLM options must be an object, got ${describe(options)}`);
    for (const [key, v] of Object.entries(options))
      if (v !== undefined && !KNOWN.has(key)) throw new RangeError(`OTLM: unknown option '${key}'; known options: ${[...KNOWN].join(', ')}`);
    const o = options;
    this.hyper = parseHyper(o);
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError(`options.onProgress must be a function, got ${describe(o.onProgress)}`);
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError(`options.signal must be an AbortSignal, got ${describe(o.signal)}`);
    this.onProgress = o.onProgress;
    this.signal = o.signal;

    // Bias and target prior fix K when given as vectors.
    const bias = parseBias(o);
    if (bias) {
      this.setK(bias.vec.length, bias.from);
      this.biasVec = bias.vec;
      this.biasInput = bias.input;
      this.hyper.bias = bias.kind;
    }
    if (o.targetPrior !== undefined) {
      const tp = o.targetPrior as ArrayLike<number>;
      if (typeof tp !== 'object' || tp === null || typeof tp.length !== 'number')
        throw new TypeError(`options.targetPrior must be an array of counts or probabilities, got ${describe(tp)}`);
      if (this.k !== undefined && tp.length !== this.k)
        throw new RangeError(`options.targetPrior must have length ${this.k} (the K of the bias), got ${tp.length}`);
      this.prior = normalizePrior('options.targetPrior', tp, tp.length);
      this.setK(tp.length, 'options.targetPrior');
    }
  }

  /**
   * A model with the paper's Appendix C hyper-parameters for a benchmark (see OTLM_PRESETS), with
   * `overrides` applied on top.
   */
  static preset(name: OtlmPreset, overrides: OtlmOptions = {}): OTLM {
    const p = OTLM_PRESETS[oneOf('preset', name, Object.keys(OTLM_PRESETS) as OtlmPreset[])];
    return new OTLM({ ...p, ...overrides });
  }

  private setK(k: number, from: string): void {
    if (this.k !== undefined && this.k !== k) throw new RangeError(`${from} has ${k} classes but the model has K = ${this.k}`);
    this.k = k;
  }

  /** Number of classes, once known (from the bias, the target prior, loaded weights or the first fit). */
  get numClasses(): number | undefined {
    return this.k;
  }

  /** The resolved hyper-parameters (a copy). */
  get options(): OtlmHyper {
    return this.toJSON();
  }

  /** A Float32Array copy of W (K×K, row-major); throws before fit/setWeights/load. */
  get weights(): Float32Array {
    if (!this.w) throw new Error('OTLM.weights: the model has no weights yet; call fit() (or setWeights()/OTLM.load()) first');
    return this.w.slice();
  }

  /** A copy of the bias b (zeros when the model has none); undefined before K is known. */
  get bias(): Float32Array | undefined {
    if (this.biasVec) return this.biasVec.slice();
    return this.k === undefined ? undefined : new Float32Array(this.k);
  }

  /** The target prior μ (a copy; uniform by default); undefined before K is known. */
  get targetPrior(): Float64Array | undefined {
    if (this.prior) return this.prior.slice();
    return this.k === undefined ? undefined : new Float64Array(this.k).fill(1 / this.k);
  }

  /** Steps of training that produced the current weights (0 after setWeights). */
  get steps(): number {
    return this.trainedSteps;
  }

  /** Sets W (K×K, row-major float32, finite; K = √length). */
  setWeights(w: Float32Array): void {
    if (!(w instanceof Float32Array)) throw new TypeError(`weights must be a Float32Array, got ${describe(w)}`);
    const k = Math.round(Math.sqrt(w.length));
    if (k < 1 || k * k !== w.length) throw new RangeError(`weights must have K*K entries, got ${w.length}`);
    if (this.k !== undefined && k !== this.k) throw new RangeError(`weights are ${k}×${k} but the model has K = ${this.k}`);
    for (let q = 0; q < w.length; q++) if (!Number.isFinite(w[q])) throw new RangeError(`weights[${Math.floor(q / k)}, ${q % k}] must be finite, got ${w[q]}`);
    this.k = k;
    this.w = w.slice();
    this.trainedSteps = 0;
  }

  /** The hyper-parameters as plain JSON. */
  toJSON(): OtlmHyper {
    return JSON.parse(JSON.stringify(this.hyper));
  }

  // ------------------------------------------------------------------ fit

  private prepare(input: MatrixInput, opts: OtlmFitOptions) {
    if (this.busy) throw new Error('OTLM.fit: a fit is already running on this model');
    const val = checkMatrix('valLogits', input);
    const k = val.cols;
    if (this.k !== undefined && k !== this.k)
      throw new RangeError(`valLogits has ${k} columns but the model has K = ${this.k} (W is ${this.k}×${this.k})`);
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw new TypeError(`fit options.onProgress must be a function, got ${describe(opts.onProgress)}`);
    if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new TypeError(`fit options.signal must be an AbortSignal, got ${describe(opts.signal)}`);
    if (opts.warmStart && !this.w) throw new Error('OTLM.fit: warmStart needs weights (fit, setWeights or load first)');
    const n = val.rows;
    const h = this.hyper;
    const planner = new BatchPlanner(n, h.batchSize, h.seed);
    const steps = h.iterations ?? (h.epochs as number) * planner.batchesPerEpoch;
    const prior = this.prior ?? new Float64Array(k).fill(1 / k);
    let w0: Float32Array | undefined;
    if (opts.warmStart) w0 = this.w!.slice();
    const engine = this.makeEngine(val, prior, w0);
    this.k = k;
    return { planner, steps, engine, onProgress: opts.onProgress ?? this.onProgress, signal: opts.signal ?? this.signal };
  }

  private makeEngine(val: Matrix, prior: Float64Array, w0: Float32Array | undefined): StepEngine {
    const h = this.hyper;
    const k = val.cols;
    const picked = nativeOrReference(h.backend, 'OTLM runs');
    if (picked === 'reference') return new ReferenceEngine(val, this.biasVec, prior, h, w0);
    const { native, name } = picked;
    const trainer: NativeTrainer = new native.Trainer({
      backend: name, k, lambda: h.lambda, sinkhornIters: h.sinkhornIters, tol: h.tol, grad: h.grad, optimizer: h.optimizer,
      beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay, momentum: h.momentum, nesterov: h.nesterov,
      threads: h.threads, phi: val.data, n: val.rows, bias: this.biasVec, targetPrior: prior,
    });
    if (w0) trainer.setWeights(w0);
    return {
      name,
      step: (rows, lr) => trainer.step(rows, lr),
      stepSync: (rows, lr) => trainer.stepSync(rows, lr),
      getWeights: () => trainer.getWeights(),
      setWeights: (w) => trainer.setWeights(w),
      close: () => trainer.close(),
    };
  }

  /**
   * Learns W on unlabeled validation logits (N×K). W starts at the identity (or, with warmStart,
   * at the current weights); the optimizer state starts fresh.
   *
   * Cancellation: when `signal` aborts, the step in flight finishes and fit RESOLVES with
   * `aborted: true`; the model keeps W from the last completed step and stays usable. An already
   * aborted signal resolves at once with steps = 0 (W: identity, or unchanged with warmStart).
   * A step whose loss or gradient is NaN/Inf, or whose update would make W non-finite, rejects
   * with an OtlmDivergenceError naming the step; W is left at its last finite value. Bad arguments throw (reject) before any step.
   */
  async fit(valLogits: MatrixInput, opts: OtlmFitOptions = {}): Promise<FitResult> {
    const ctx = this.prepare(valLogits, opts);
    return this.run(ctx, async (rows, lr) => {
      const r = await ctx.engine.step(rows, lr);
      if (ctx.engine.name === 'reference') await new Promise((res) => setImmediate(res)); // let abort handlers run
      return r;
    }) as Promise<FitResult>;
  }

  /** `fit` on the calling thread (blocks the event loop; a signal can only stop it before it starts). */
  fitSync(valLogits: MatrixInput, opts: OtlmFitOptions = {}): FitResult {
    const ctx = this.prepare(valLogits, opts);
    return this.run(ctx, (rows, lr) => ctx.engine.stepSync(rows, lr)) as FitResult;
  }

  // The loop, shared by fit and fitSync: `step` returns a report or a promise of one.
  private run(
    ctx: ReturnType<OTLM['prepare']>,
    step: (rows: Int32Array, lr: number) => NativeStepReport | Promise<NativeStepReport>,
  ): FitResult | Promise<FitResult> {
    const { planner, steps, engine, onProgress, signal } = ctx;
    const h = this.hyper;
    // Grown per step, not sized by `steps`: a huge iteration count must not allocate up front.
    const losses: number[] = [];
    const errors: number[] = [];
    const t0 = performance.now();
    let done = 0;
    let best = Infinity;
    let wait = 0;
    let stoppedEarly = false;
    let aborted = false;
    this.busy = true;
    const finish = (): FitResult => {
      const w = engine.getWeights();
      engine.close();
      this.busy = false;
      this.w = w;
      this.trainedSteps = done;
      return {
        steps: done, losses: Float64Array.from(losses), marginalErrors: Float64Array.from(errors), finalLoss: done ? losses[done - 1] : NaN,
        aborted, stoppedEarly, seconds: (performance.now() - t0) / 1000, backend: engine.name,
      };
    };
    // Every engine refuses a step whose loss, gradient or updated W is not finite (OTLM_ENONFINITE)
    // and leaves W as it was, so the W read back here is the last finite one.
    const fail = (e: unknown, s: number): never => {
      const err = e as NodeJS.ErrnoException;
      let w: Float32Array | undefined;
      try { w = engine.getWeights(); } catch { w = undefined; }
      try { engine.close(); } catch { /* already failing */ }
      this.busy = false;
      if (w && w.every(Number.isFinite)) { this.w = w; this.trainedSteps = s - 1; }
      if (err instanceof OtlmDivergenceError) throw new OtlmDivergenceError(s, err.detail);
      if (err?.code === 'OTLM_ENONFINITE') throw new OtlmDivergenceError(s, err.message);
      throw e;
    };
    // Returns true to stop.
    const after = (rep: NativeStepReport, s: number, lr: number, ms: number): boolean => {
      if (!Number.isFinite(rep.loss)) fail(new OtlmDivergenceError(s + 1, `the loss is ${rep.loss}`), s + 1);
      losses[s] = rep.loss;
      errors[s] = rep.marginalError;
      done = s + 1;
      if (onProgress) {
        try {
          onProgress({ step: s + 1, steps, loss: rep.loss, marginalError: rep.marginalError, sinkhornIters: rep.sinkhornIters, gradNorm: rep.gradNorm, msPerStep: ms, lr });
        } catch (e) {
          finish();
          throw e;
        }
      }
      if (h.earlyStopping) {
        if (rep.loss < best - h.earlyStopping.minDelta) { best = rep.loss; wait = 0; } else if (++wait >= h.earlyStopping.patience) { stoppedEarly = true; return true; }
      }
      return false;
    };
    const lrAt = (s: number): number => scheduledLr(h.schedule, h.lr, s, steps);

    let s = 0;
    const syncLoop = (): FitResult | Promise<FitResult> => {
      for (; s < steps; s++) {
        if (signal?.aborted) { aborted = true; break; }
        const lr = lrAt(s);
        const rows = planner.next();
        const ts = performance.now();
        let r: NativeStepReport | Promise<NativeStepReport>;
        try { r = step(rows, lr); } catch (e) { return fail(e, s + 1); }
        if (r instanceof Promise) return asyncRest(r, rows, lr, ts);
        if (after(r, s, lr, performance.now() - ts)) { s++; break; }
      }
      return finish();
    };
    const asyncRest = async (first: Promise<NativeStepReport>, _rows: Int32Array, lr0: number, ts0: number): Promise<FitResult> => {
      let pending = first;
      let lr = lr0;
      let ts = ts0;
      for (;;) {
        let rep: NativeStepReport;
        try { rep = await pending; } catch (e) { return fail(e, s + 1); }
        if (after(rep, s, lr, performance.now() - ts)) break;
        s++;
        if (s >= steps) break;
        if (signal?.aborted) { aborted = true; break; }
        lr = lrAt(s);
        const rows = planner.next();
        ts = performance.now();
        try { pending = Promise.resolve(step(rows, lr)); } catch (e) { return fail(e, s + 1); }
      }
      return finish();
    };
    return syncLoop();
  }

  // ------------------------------------------------------------------ correct

  /**
   * Corrects test logits: A = Φ_test W + b (native GEMM, or float64 for backend 'reference'), then
   * the OT correction `otCorrect(A, …)` whose cost is −log softmax(A) — the same CorrectionResult.
   * λ and the target prior default to the model's; other options are otCorrect's (its defaults).
   */
  async correct(testLogits: MatrixInput, opts: OtlmCorrectOptions = {}): Promise<CorrectionResult> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError(`OTLM.correct: options must be an object, got ${describe(opts)}`);
    const a = await this.adjustedLogits(testLogits);
    return otCorrect(a, { lambda: this.hyper.lambda, targetPrior: this.targetPrior, backend: this.hyper.backend, threads: this.hyper.threads, ...opts });
  }

  /** A = Φ W + b for N×K logits (the logits whose softmax OTLM transports). */
  async adjustedLogits(input: MatrixInput): Promise<Matrix> {
    if (!this.w || this.k === undefined) throw new Error('OTLM.correct: the model has no weights yet; call fit() (or setWeights()/OTLM.load()) first');
    const logits = checkMatrix('testLogits', input);
    const k = this.k;
    if (logits.cols !== k) throw new RangeError(`testLogits has ${logits.cols} columns but the model has K = ${k} (W is ${k}×${k})`);
    const n = logits.rows;
    const picked = nativeOrReference(this.hyper.backend, 'OTLM runs');
    if (picked !== 'reference') {
      const { native, name } = picked;
      const data = await (native as NativeBinding).gemm({ backend: name, a: logits.data, b: this.w, m: n, n: k, kk: k, bias: this.biasVec, threads: this.hyper.threads });
      return { data, rows: n, cols: k };
    }
    const out = new Float32Array(n * k);
    const w = this.w;
    const b = this.biasVec;
    const row = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) row[j] = b ? b[j] : 0;
      for (let q = 0; q < k; q++) {
        const x = logits.data[i * k + q];
        for (let j = 0; j < k; j++) row[j] += x * w[q * k + j];
      }
      for (let j = 0; j < k; j++) out[i * k + j] = row[j];
    }
    return { data: out, rows: n, cols: k };
  }

  // ------------------------------------------------------------------ save / load

  /**
   * Saves the model as `.npz` (W float32 K×K, b float32 K, target_prior float64 K, meta uint8 JSON;
   * see src/train/model-file.ts for the format and how to read it with numpy), atomically.
   * `force` (default true) replaces an existing file; false refuses.
   */
  save(path: string, opts: { force?: boolean } = {}): void {
    if (typeof path !== 'string' || !path) throw new TypeError(`path must be a non-empty string, got ${describe(path)}`);
    if (!this.w || this.k === undefined) throw new Error('OTLM.save: the model has no weights yet; call fit() (or setWeights()) first');
    const options: Record<string, unknown> = { ...this.toJSON() };
    if (this.biasInput && !(this.biasInput instanceof Float32Array)) options.trainPrior = (this.biasInput as { trainCounts: number[] }).trainCounts;
    writeModel(path, {
      w: this.w, b: this.bias!, targetPrior: this.targetPrior!,
      meta: { format: MODEL_FORMAT, version: MODEL_VERSION, library: packageVersion(), k: this.k, trainedSteps: this.trainedSteps, options },
    }, opts.force ?? true);
  }

  /**
   * Loads a model saved by `save` (or written by numpy in the same layout); validates every array and
   * the stored hyper-parameters (a bad file throws an IoError naming it; a bad override, a RangeError).
   */
  static load(path: string, overrides: Pick<OtlmOptions, 'backend' | 'threads' | 'onProgress' | 'signal'> = {}): OTLM {
    if (typeof path !== 'string' || !path) throw new TypeError(`path must be a non-empty string, got ${describe(path)}`);
    new OTLM(overrides); // checks the overrides first, so that their errors are not blamed on the file
    const m = readModel(path);
    const o = m.meta.options as Partial<OtlmHyper> & Record<string, unknown>;
    const pick: OtlmOptions = {};
    for (const key of ['lambda', 'sinkhornIters', 'tol', 'grad', 'optimizer', 'lr', 'weightDecay', 'momentum', 'nesterov', 'beta1', 'beta2', 'eps', 'batchSize', 'seed', 'schedule', 'backend', 'threads'] as const)
      if (o[key] !== undefined && o[key] !== null) (pick as Record<string, unknown>)[key] = o[key];
    if (typeof o.iterations === 'number') pick.iterations = o.iterations;
    else if (typeof o.epochs === 'number') pick.epochs = o.epochs;
    if (o.earlyStopping) pick.earlyStopping = o.earlyStopping;
    let model: OTLM;
    try {
      model = new OTLM({
        ...pick,
        bias: m.b.some((x) => x !== 0) ? m.b : 'none',
        targetPrior: m.targetPrior,
        ...overrides,
      });
    } catch (e) {
      throw new IoError('bad-input', path, `${path}: the model's meta.options are invalid: ${(e as Error).message}`, { cause: e });
    }
    if (o.bias === 'train-prior') model.hyper.bias = 'train-prior';
    model.setWeights(m.w);
    model.trainedSteps = typeof m.meta.trainedSteps === 'number' ? m.meta.trainedSteps : 0;
    return model;
  }
}

/** The float64 reference step: TS loss/gradient and a TS optimizer (torch.optim semantics). */
class ReferenceEngine implements StepEngine {
  readonly name = 'reference' as const;
  private w: Float64Array;
  private readonly opt: TsOptimizer;

  constructor(private readonly phi: Matrix, private readonly bias: Float32Array | undefined, private readonly prior: Float64Array,
    private readonly h: OtlmHyper, w0: Float32Array | undefined) {
    const k = phi.cols;
    this.w = new Float64Array(k * k);
    if (w0) this.w.set(w0);
    else for (let j = 0; j < k; j++) this.w[j * k + j] = 1;
    this.opt = new TsOptimizer(h, k * k);
  }

  stepSync(rows: Int32Array, lr: number): NativeStepReport {
    const t0 = performance.now();
    const k = this.phi.cols;
    const batch = new Float32Array(rows.length * k);
    for (let i = 0; i < rows.length; i++) batch.set(this.phi.data.subarray(rows[i] * k, rows[i] * k + k), i * k);
    const r = otlmLossGradReference({
      phi: { data: batch, rows: rows.length, cols: k }, w: this.w, bias: this.bias, targetPrior: this.prior,
      lambda: this.h.lambda, sinkhornIters: this.h.sinkhornIters, tol: this.h.tol, grad: this.h.grad,
    });
    const g = r.gradW!;
    let gn = 0;
    for (let q = 0; q < g.length; q++) gn += g[q] * g[q];
    if (!Number.isFinite(r.loss)) throw new OtlmDivergenceError(0, `the loss is ${r.loss}`);
    if (!Number.isFinite(gn)) throw new OtlmDivergenceError(0, `the gradient dL/dW is not finite (loss ${r.loss})`);
    const next = this.opt.propose(this.w, g, lr);
    // The model's W is float32: an update beyond its range is a divergence too.
    if (!Float32Array.from(next.w).every(Number.isFinite)) throw new OtlmDivergenceError(0, 'the optimizer update made W non-finite');
    next.commit();
    this.w = next.w;
    return { loss: r.loss, marginalError: r.marginalError, sinkhornIters: r.sinkhornIters, gradNorm: Math.sqrt(gn), seconds: (performance.now() - t0) / 1000 };
  }

  step(rows: Int32Array, lr: number): Promise<NativeStepReport> {
    try {
      return Promise.resolve(this.stepSync(rows, lr));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  getWeights(): Float32Array {
    return Float32Array.from(this.w);
  }

  setWeights(w: Float32Array): void {
    this.w = Float64Array.from(w);
  }

  close(): void { /* nothing to free */ }
}
