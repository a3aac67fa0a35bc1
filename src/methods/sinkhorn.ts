/**
 * The public entropic-OT solver: log-domain Sinkhorn over a dense cost matrix, on any backend.
 */
import type { MatrixInput, PriorInput } from '../api/types.js';
import { checkMatrix } from '../api/validate.js';
import type { SolveOutput, SolverOptions } from './common.js';
import { SOLVER_OPTION_KEYS, buildRequest, checkOptions, checkSignal, solve, solveSync } from './common.js';

export interface SinkhornOptions extends SolverOptions {
  /** Row marginal r (length N, every entry > 0). Default all ones (each sample carries mass 1). */
  rowMarginal?: ArrayLike<number>;
  /** Column marginal c (length K, every entry > 0, Σc = Σr). Default Σr/K each (uniform). Excludes `targetPrior`. */
  colMarginal?: ArrayLike<number>;
  /** Target class prior μ (counts or probabilities, normalised, every entry > 0): c = Σr · μ (N·μ for r = 1). Excludes `colMarginal`. */
  targetPrior?: PriorInput;
  /** Return the plan Y: true → a new Float32Array, or a Float32Array of length N·K to fill. Default false. */
  plan?: boolean | Float32Array;
  /** Return argmax_j Y_ij per row (Int32Array, first maximum on ties). Default false. */
  predictions?: boolean;
}

export interface SinkhornAsyncOptions extends SinkhornOptions {
  /** Cancels the solve; the Promise then rejects with an AbortError (DOMException). */
  signal?: AbortSignal;
}

/**
 * The result of a solve, like OTT-JAX's solver outputs.
 * `f` (length N) and `g` (length K) are the log-domain potentials: Y_ij = exp((f_i + g_j − M_ij)/λ)
 * (they are defined up to f + t, g − t). `error` = ‖Yᵀ1 − c‖₁ / Σr of the returned plan, whose rows are
 * exact (the solver stops after an f update). `converged` is false when `maxIter` was reached first:
 * `warning` then says so (never silently). `mode` lists the arithmetic the engine used: 'scaling'
 * (shifted sums, one exp per element) and/or 'log' (exact max-shifted log-sum-exp).
 */
export type SinkhornResult = SolveOutput;

const KEYS = [...SOLVER_OPTION_KEYS, 'rowMarginal', 'colMarginal', 'targetPrior', 'plan', 'predictions'];

/**
 * Entropic optimal transport by log-domain Sinkhorn (docs/architecture.md):
 *
 *   min_Y ⟨M, Y⟩ + λ Σ_ij Y_ij log Y_ij   s.t.  Y 1 = r,  Yᵀ 1 = c
 *   f_i = λ log r_i − λ LSE_j((g_j − M_ij)/λ),   g_j = λ log c_j − λ LSE_i((f_i − M_ij)/λ)
 *
 * One iteration is an f update then a g update; the solver stops right after an f update, when the
 * column error ‖Yᵀ1 − c‖₁/Σr is below `tol` (checked every `checkEvery` iterations) or at `maxIter`.
 *
 * Defaults: lambda 1, maxIter 1000, tol 1e-3 (the paper's Δ), checkEvery 1, r = 1, c uniform,
 * epsScaling off, overrelax 1, threads = all cores, plan/predictions/trace off, backend 'auto'.
 *
 * @param cost the cost M, N×K, finite float32 (row-major).
 */
export function sinkhornSync(input: MatrixInput, opts?: SinkhornOptions): SinkhornResult {
  const fn = 'sinkhornSync';
  const o = checkOptions<SinkhornOptions>(fn, opts, KEYS);
  const cost = checkMatrix('cost', input);
  return solveSync(buildRequest(fn, cost, 'cost', o, { plan: false, predictions: false }));
}

/** The Promise form of {@link sinkhornSync}: runs off the main thread (native) and honours `signal`. */
export async function sinkhorn(input: MatrixInput, opts?: SinkhornAsyncOptions): Promise<SinkhornResult> {
  const fn = 'sinkhorn';
  const o = checkOptions<SinkhornAsyncOptions>(fn, opts, [...KEYS, 'signal']);
  const cost = checkMatrix('cost', input);
  const signal = checkSignal(fn, o.signal);
  return solve(buildRequest(fn, cost, 'cost', o, { plan: false, predictions: false }), signal);
}
