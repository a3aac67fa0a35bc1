/**
 * Shared plumbing of the Sinkhorn-based methods: option checks, backend dispatch (native CPU/CUDA,
 * the float64 reference path, and the hook for the tfjs path), cancellation and result assembly.
 * Internal: the public API is methods/sinkhorn.ts and methods/ot.ts.
 */
import type { Backend, Matrix } from '../api/types.js';
import { checkHyper, describe, normalizePrior, type HyperName } from '../api/validate.js';
import { isBackend, nativeOrReference, type resolveNative } from '../native/backend.js';
import type { NativeBackendName, NativeSinkhornArgs, NativeSinkhornResult } from '../native/binding.js';
import type { InputKind, ReferenceSinkhornInput, ReferenceSinkhornResult } from '../paths/reference/sinkhorn.js';
import { referenceSinkhorn, referenceSinkhornAsync } from '../paths/reference/sinkhorn.js';
import type { TfjsSinkhornResult } from '../paths/tfjs/sinkhorn.js';

/** Where a solve ran. */
export type SolvedOn = 'cpu' | 'cuda' | 'wasm' | 'reference' | 'tfjs';

/** Options shared by every Sinkhorn-based solve (see `sinkhorn` for the math and the defaults). */
export interface SolverOptions {
  /** Entropic regularisation λ > 0. Default 1 (the paper uses λ ∈ [0.005, 2]; λ = 1 is the KL projection). */
  lambda?: number;
  /** Iteration cap (one iteration = an f and a g update), integer ≥ 1. Default 1000. */
  maxIter?: number;
  /** Stop when the column-marginal error ‖Yᵀ1 − c‖₁ / Σr < tol. Default 1e-3 (the paper's Δ). */
  tol?: number;
  /** Check the error every this many iterations (and at the last). Default 1. */
  checkEvery?: number;
  /** Warm start from earlier potentials (e.g. a previous result's `f`, `g`); both lengths must match. */
  warmStart?: { f: ArrayLike<number>; g: ArrayLike<number> };
  /**
   * ε-scaling factor κ ∈ (0, 1), or 0 = off (default): solve a sequence of problems with
   * λ_s = max(lambda, λ₀κ^s) (λ₀ from the cost's range), carrying the potentials over; helps at
   * small λ (≲ 0.05). Native CPU: a stage ends at column error < max(tol, 1e-2) or after 50
   * iterations; the reference and CUDA paths shrink λ every iteration. Convergence is only
   * declared at the requested λ.
   */
  epsScaling?: number;
  /**
   * Acceleration, ω ∈ [1, 2). Default 1: plain Sinkhorn, the paper's Algorithm 1. With ω > 1 the
   * native CPU engine takes damped Newton steps on the semi-dual in g when K ≤ 64 (ω unused),
   * Anderson mixing of the g updates (relaxation ω) above; CUDA and the reference path over-relax
   * the g updates by ω. f updates stay plain, so rows of the plan stay exact, and every path
   * converges to the same plan; only the iteration count changes. 1.5 is a robust choice
   * (docs/beyond-the-paper.md has the measurements).
   */
  overrelax?: number;
  /** Worker threads of the native CPU engine, 0 = all cores (default). Results are bit-identical for any count. */
  threads?: number;
  /** Record the error at every check in `trace`. Default false. */
  trace?: boolean;
  /** Where to run: 'auto' (default: CUDA if usable, else native CPU, else the reference path), 'cpu', 'cuda', 'reference', 'tfjs'. */
  backend?: Backend;
}

/** A checked, backend-neutral solve request. Exported for the backends (e.g. the tfjs path). */
export interface SolveRequest {
  fn: string;
  x: Float32Array;
  n: number;
  k: number;
  inputKind: InputKind;
  lambda: number;
  maxIter: number;
  tol: number;
  checkEvery: number;
  threads: number;
  rowMarginal?: Float64Array;
  colMarginal: Float64Array;
  f0?: Float64Array;
  g0?: Float64Array;
  epsScaling: number;
  overrelax: number;
  plan: boolean | Float32Array;
  /** The caller's name for a supplied plan array ('plan', or otCorrect's 'out'), for messages. */
  planName: string;
  predictions: boolean;
  trace: boolean;
  backend: Backend;
}

/** What a solve returns, whatever the backend. */
export interface SolveOutput {
  f: Float64Array;
  g: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
  mode: Array<'scaling' | 'log'>;
  backend: SolvedOn;
  plan?: Float32Array;
  predictions?: Int32Array;
  trace?: Float64Array;
  seconds: number;
  warning?: string;
}

/** Rejects anything but a plain options object with known keys (catches typos such as `lamda`). */
export function checkOptions<T extends object>(fn: string, opts: unknown, allowed: readonly string[]): Partial<T> {
  if (opts === undefined) return {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts))
    throw new TypeError(`${fn}: options must be an object, got ${describe(opts)}`);
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key))
      throw new TypeError(`${fn}: unknown option '${key}' (expected one of: ${allowed.join(', ')})`);
  }
  return opts as Partial<T>;
}

export const SOLVER_OPTION_KEYS = [
  'lambda', 'maxIter', 'tol', 'checkEvery', 'warmStart', 'epsScaling', 'overrelax', 'threads', 'trace', 'backend',
] as const;

/** A float64 vector of length `len`, every entry finite (and > 0 when `positive`). */
export function checkVector(name: string, v: unknown, len: number, positive = false): Float64Array {
  if (typeof v !== 'object' || v === null || typeof (v as ArrayLike<number>).length !== 'number')
    throw new TypeError(`${name} must be an array of ${len} numbers, got ${describe(v)}`);
  const a = v as ArrayLike<number>;
  if (a.length !== len) throw new RangeError(`${name} must have length ${len}, got ${a.length}`);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const x = a[i];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new RangeError(`${name}[${i}] must be a finite number, got ${String(x)}`);
    if (positive && !(x > 0)) throw new RangeError(`${name}[${i}] must be > 0, got ${x}`);
    out[i] = x;
  }
  return out;
}

/**
 * Checks the common solver options and the marginals.
 * Marginals: r = `rowMarginal` (default all ones); c = `colMarginal` if given (must have the same
 * total mass as r, relative 1e-6), else Σr · μ with μ = `targetPrior` (normalised; default uniform).
 */
export function buildRequest(
  fn: string,
  x: Matrix,
  inputKind: InputKind,
  o: SolverOptions & {
    rowMarginal?: ArrayLike<number>;
    colMarginal?: ArrayLike<number>;
    targetPrior?: unknown;
    plan?: boolean | Float32Array;
    predictions?: boolean;
  },
  defaults: { plan: boolean; predictions: boolean; planName?: string },
): SolveRequest {
  const n = x.rows;
  const k = x.cols;
  const hyper = (key: HyperName, v: unknown, def: number) => (v === undefined ? def : checkHyper(`${fn}: ${key}`, key, v));
  const lambda = hyper('lambda', o.lambda, 1);
  const maxIter = hyper('maxIter', o.maxIter, 1000);
  const tol = hyper('tol', o.tol, 1e-3);
  const checkEvery = hyper('checkEvery', o.checkEvery, 1);
  const threads = hyper('threads', o.threads, 0);
  const epsScaling = hyper('epsScaling', o.epsScaling, 0);
  const overrelax = hyper('overrelax', o.overrelax, 1);
  const backend = o.backend ?? 'auto';
  if (!isBackend(backend))
    throw new TypeError(`${fn}: backend must be 'auto', 'cpu', 'cuda', 'wasm', 'tfjs' or 'reference', got ${String(backend)}`);

  let mass = n;
  let rowMarginal: Float64Array | undefined;
  if (o.rowMarginal !== undefined) {
    rowMarginal = checkVector(`${fn}: rowMarginal`, o.rowMarginal, n, true);
    mass = rowMarginal.reduce((s, v) => s + v, 0);
  }
  let colMarginal: Float64Array;
  if (o.colMarginal !== undefined) {
    if (o.targetPrior !== undefined) throw new TypeError(`${fn}: give either colMarginal or targetPrior, not both`);
    colMarginal = checkVector(`${fn}: colMarginal`, o.colMarginal, k, true);
    const cs = colMarginal.reduce((s, v) => s + v, 0);
    if (Math.abs(cs - mass) > 1e-6 * mass)
      throw new RangeError(`${fn}: colMarginal must sum to the row mass ${mass} (Σ rowMarginal, or N), got ${cs}`);
  } else {
    const mu = o.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior(`${fn}: targetPrior`, o.targetPrior, k);
    colMarginal = mu.map((v) => v * mass);
  }

  let f0: Float64Array | undefined;
  let g0: Float64Array | undefined;
  if (o.warmStart !== undefined) {
    const ws = o.warmStart as unknown;
    if (typeof ws !== 'object' || ws === null) throw new TypeError(`${fn}: warmStart must be { f, g }, got ${describe(ws)}`);
    f0 = checkVector(`${fn}: warmStart.f`, (ws as { f: unknown }).f, n);
    g0 = checkVector(`${fn}: warmStart.g`, (ws as { g: unknown }).g, k);
  }

  const planOpt = o.plan ?? defaults.plan;
  if (typeof planOpt !== 'boolean') {
    if (!(planOpt instanceof Float32Array))
      throw new TypeError(`${fn}: plan must be a boolean or a Float32Array of length ${n * k}, got ${describe(planOpt)}`);
    if (planOpt.length !== n * k) throw new RangeError(`${fn}: plan must have length rows*cols = ${n * k}, got ${planOpt.length}`);
    checkInPlace(fn, defaults.planName ?? 'plan', planOpt, x.data);
  }
  const predictions = o.predictions ?? defaults.predictions;
  if (typeof predictions !== 'boolean') throw new TypeError(`${fn}: predictions must be a boolean, got ${describe(predictions)}`);
  const trace = o.trace ?? false;
  if (typeof trace !== 'boolean') throw new TypeError(`${fn}: trace must be a boolean, got ${describe(trace)}`);

  return {
    fn, x: x.data, n, k, inputKind, lambda, maxIter, tol, checkEvery, threads, rowMarginal, colMarginal, f0, g0,
    epsScaling, overrelax, plan: planOpt, planName: defaults.planName ?? 'plan', predictions, trace, backend,
  };
}

/** Whether two typed arrays share any byte of memory. */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** An output may be the input itself (in place) but must not partly overlap it: rows would be overwritten before they are read. */
function checkInPlace(fn: string, name: string, out: Float32Array, x: Float32Array): void {
  if (out.byteOffset === x.byteOffset && out.length === x.length) return;
  if (overlaps(out, x))
    throw new RangeError(`${fn}: ${name} overlaps the input without being the same array; pass the input itself (in place) or a separate array`);
}

/** The error of an async call whose caller-supplied output array was detached or shrunk before the result could be written. */
function detachedError(req: SolveRequest, cause?: unknown): Error {
  const e = new TypeError(`${req.fn}: ${req.planName} was detached or resized while the call ran; its result was discarded`, { cause });
  (e as NodeJS.ErrnoException).code = 'OTLM_EDETACHED';
  return e;
}

/**
 * The memory contract of async solves on the JS paths (the native binding keeps the same one,
 * docs/architecture.md): the input is read from a snapshot taken at the call, and a supplied plan
 * array is filled when the call settles, so the caller may reuse, transfer or shrink either meanwhile.
 */
function staged(req: SolveRequest): { req: SolveRequest; settle: (r: { plan?: Float32Array }) => void } {
  const shared = (a: Float32Array) => typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer;
  const user = req.plan instanceof Float32Array && !shared(req.plan) ? req.plan : undefined;
  const len = req.n * req.k;
  const out: SolveRequest = { ...req, x: shared(req.x) ? req.x : req.x.slice(), plan: user ? new Float32Array(len) : req.plan };
  return {
    req: out,
    settle(r) {
      if (!user) return;
      if (user.length !== len) throw detachedError(req);
      user.set(r.plan as Float32Array);
      r.plan = user;
    },
  };
}

/** Resolves the backend: a native one, 'reference', or 'tfjs'. 'auto' falls back to the reference when the addon is missing. */
type Picked = { kind: 'native'; native: ReturnType<typeof resolveNative> } | { kind: 'reference' } | { kind: 'tfjs' };

function pick(req: SolveRequest): Picked {
  if (req.backend === 'tfjs') return { kind: 'tfjs' };
  const b = nativeOrReference(req.backend, 'Sinkhorn runs');
  return b === 'reference' ? { kind: 'reference' } : { kind: 'native', native: b };
}

function tfjsSyncUnavailable(fn: string): Error {
  const e = new Error(`${fn}: backend 'tfjs' is asynchronous only; use the Promise form`);
  (e as NodeJS.ErrnoException).code = 'OTLM_ENOTSUP';
  return e;
}

/** The tfjs path runs plain log-domain Sinkhorn: reject the native-only solver options. */
function tfjsRequest(req: SolveRequest): void {
  const bad = req.epsScaling !== 0 ? 'epsScaling' : req.overrelax !== 1 ? 'overrelax' : undefined;
  if (bad) {
    const e = new Error(`${req.fn}: backend 'tfjs' does not support ${bad}; use backend 'cpu' or 'auto'`);
    (e as NodeJS.ErrnoException).code = 'OTLM_ENOTSUP';
    throw e;
  }
}

function nativeArgs(req: SolveRequest, name: NativeBackendName, cancel?: Int32Array): NativeSinkhornArgs {
  const args: NativeSinkhornArgs = {
    backend: name, x: req.x, n: req.n, k: req.k, inputKind: req.inputKind, lambda: req.lambda, maxIter: req.maxIter,
    tol: req.tol, checkEvery: req.checkEvery, threads: req.threads, colMarginal: req.colMarginal,
    epsScaling: req.epsScaling, overrelax: req.overrelax, plan: req.plan, predictions: req.predictions,
    traceCap: req.trace ? Math.min(1 << 24, Math.ceil(req.maxIter / req.checkEvery) + 1) : 0,
  };
  if (req.rowMarginal) args.rowMarginal = req.rowMarginal;
  if (req.f0 && req.g0) {
    args.f0 = req.f0;
    args.g0 = req.g0;
  }
  if (cancel) args.cancel = cancel;
  return args;
}

function referenceInput(req: SolveRequest): ReferenceSinkhornInput {
  return {
    x: req.x, n: req.n, k: req.k, inputKind: req.inputKind, lambda: req.lambda, maxIter: req.maxIter, tol: req.tol,
    checkEvery: req.checkEvery, rowMarginal: req.rowMarginal, colMarginal: req.colMarginal, f0: req.f0, g0: req.g0,
    epsScaling: req.epsScaling, overrelax: req.overrelax,
    plan: req.plan === false ? false : req.plan === true ? new Float32Array(req.n * req.k) : req.plan,
    predictions: req.predictions,
  };
}

function finish(req: SolveRequest, r: NativeSinkhornResult | ReferenceSinkhornResult | TfjsSinkhornResult, backend: SolvedOn, seconds: number): SolveOutput {
  const out: SolveOutput = {
    f: r.f, g: r.g, iterations: r.iterations, error: r.error, converged: r.converged,
    mode: [...r.mode], backend, seconds,
  };
  if (r.plan) out.plan = r.plan as Float32Array;
  if (r.predictions) out.predictions = r.predictions;
  if (req.trace) out.trace = Float64Array.from(r.trace);
  if (!out.converged) {
    out.warning =
      `${req.fn}: did not converge in ${out.iterations} iterations (maxIter): column-marginal error ` +
      `${out.error.toExponential(3)} is not below tol ${req.tol}; raise maxIter, raise lambda, or try epsScaling`;
  }
  return out;
}

/** Runs a solve now, on the calling thread. */
export function solveSync(req: SolveRequest): SolveOutput {
  const p = pick(req);
  if (p.kind === 'tfjs') throw tfjsSyncUnavailable(req.fn);
  if (p.kind === 'reference') {
    const t0 = performance.now();
    const r = referenceSinkhorn(referenceInput(req));
    return finish(req, r, 'reference', (performance.now() - t0) / 1000);
  }
  const r = p.native.native.sinkhornSync(nativeArgs(req, p.native.name));
  return finish(req, r, r.backend ?? p.native.name, r.seconds);
}

/** The AbortError a cancelled call rejects with (DOMException, as fetch() does). */
export function abortError(fn: string, signal: AbortSignal, cause?: unknown): Error {
  const e = new DOMException(`${fn}: the operation was aborted`, 'AbortError');
  if (cause !== undefined || signal.reason !== undefined) Object.defineProperty(e, 'cause', { value: cause ?? signal.reason });
  return e as unknown as Error;
}

/**
 * The flag an async engine call polls: on a SharedArrayBuffer (the native addon reads it in place
 * from its worker thread, and requires that), or a plain array where SharedArrayBuffer does not
 * exist (browsers without cross-origin isolation), which only the WebAssembly engine can be there.
 */
export function cancelFlag(): Int32Array {
  return new Int32Array(typeof SharedArrayBuffer === 'function' ? new SharedArrayBuffer(4) : new ArrayBuffer(4));
}

export function checkSignal(fn: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new TypeError(`${fn}: signal must be an AbortSignal, got ${describe(signal)}`);
  return signal;
}

/** Runs a solve off the main thread (native) or in slices (reference); `signal` cancels it. */
export async function solve(req: SolveRequest, signal?: AbortSignal): Promise<SolveOutput> {
  if (signal?.aborted) throw abortError(req.fn, signal);
  const p = pick(req);
  if (p.kind !== 'native') {
    const st = staged(req);
    const r = await solveJs(p.kind, st.req, signal);
    st.settle(r);
    return r;
  }
  // The engine polls this flag at its convergence checks.
  const cancel = cancelFlag();
  const onAbort = () => Atomics.store(cancel, 0, 1);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await p.native.native.sinkhorn(nativeArgs(req, p.native.name, cancel));
    return finish(req, r, r.backend ?? p.native.name, r.seconds);
  } catch (e) {
    if (signal && (e as NodeJS.ErrnoException)?.code === 'OTLM_EABORTED') throw abortError(req.fn, signal, e);
    if ((e as NodeJS.ErrnoException)?.code === 'OTLM_EDETACHED') throw detachedError(req, e);
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The tfjs and float64 reference solves (async: they yield to the event loop). */
async function solveJs(kind: 'tfjs' | 'reference', req: SolveRequest, signal?: AbortSignal): Promise<SolveOutput> {
  if (kind === 'tfjs') {
    tfjsRequest(req);
    // Loaded on first use so `import 'otlm'` never pays for TensorFlow.js.
    const { tfjsSinkhorn } = await import('../paths/tfjs/index.js');
    try {
      const r = await tfjsSinkhorn({ data: req.x, rows: req.n, cols: req.k }, {
        inputKind: req.inputKind, lambda: req.lambda, maxIter: req.maxIter, tol: req.tol,
        checkEvery: req.checkEvery, colMarginal: req.colMarginal, rowMarginal: req.rowMarginal,
        g0: req.g0, plan: req.plan, predictions: req.predictions,
        traceCap: req.trace ? Math.ceil(req.maxIter / req.checkEvery) + 1 : 0, signal,
      });
      return finish(req, r, 'tfjs', r.seconds);
    } catch (e) {
      if (signal?.aborted) throw abortError(req.fn, signal, e);
      throw e;
    }
  }
  const t0 = performance.now();
  const r = await referenceSinkhornAsync(
    referenceInput(req),
    () => signal?.aborted === true,
    () => abortError(req.fn, signal as AbortSignal),
  );
  return finish(req, r, 'reference', (performance.now() - t0) / 1000);
}
