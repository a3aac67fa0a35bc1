/**
 * Float64 reference of the OTLM loss and its gradient (paper §3.2, Eq. 12; docs/architecture.md).
 * Written for reading, not speed: it is the oracle the native engine and the trainer are tested against.
 *
 *   A = Φ W + b                      (B×K; Φ the mini-batch of logits, W K×K, b an optional fixed bias)
 *   log Z = log_softmax(A) row-wise, M = −log Z
 *   c = B·μ,  g⁰ = 0;  for t = 1..T:
 *     f^t_i = −λ LSE_j((g^{t−1}_j − M_ij)/λ)
 *     error_t = Σ_j |Σ_i P^t_ij − c_j| / B  with P^t = exp((f^t ⊕ g^{t−1} − M)/λ)
 *     stop here if t = T or (tol > 0 and error_t < tol)   (the last iteration ends after its f update)
 *     g^t_j = λ log c_j − λ LSE_i((f^t_i − M_ij)/λ)
 *   Y = exp((f^S ⊕ g^{S−1} − M)/λ)   (S = iterations run; rows of Y sum to 1 exactly)
 *   L = (−⟨Y, log Z⟩ + λ⟨Y, log Y⟩) / B   (mean over the batch rows)
 *
 * Gradients:
 * - `unrolled`: the exact derivative of the S-iteration computation above (what autodiff gives),
 *   by reverse mode through every f^t, g^t. Only the potentials are stored; the plans P^t and
 *   Q^t = exp((f^t ⊕ g^t − M)/λ) are recomputed in the backward pass.
 * - `envelope`: ∂L/∂M = Y/B (Danskin: exact once Sinkhorn has converged), then through log_softmax.
 * Both end with dL/dW = Φᵀ dL/dA.
 */
import { logSumExp, referenceSinkhorn } from './sinkhorn.js';

/** A row-major matrix in float32 or float64 (the reference accepts both). */
export interface RefMatrix {
  data: Float32Array | Float64Array;
  rows: number;
  cols: number;
}

export interface OtlmReferenceInput {
  /** Mini-batch of logits Φ (B×K). */
  phi: RefMatrix;
  /** W (K×K, row-major). */
  w: ArrayLike<number>;
  /** Fixed bias b (length K), or none. */
  bias?: ArrayLike<number> | null;
  /** Target prior μ (length K, entries > 0, summing to 1). */
  targetPrior: ArrayLike<number>;
  /** Entropic regularisation λ > 0. */
  lambda: number;
  /** T ≥ 1: the number of Sinkhorn iterations (f updates). */
  sinkhornIters: number;
  /** Δ ≥ 0: stop early once the column error falls under it (0 = always run T). Default 0. */
  tol?: number;
  /** 'unrolled' (default), 'envelope', or 'none' (loss only). */
  grad?: 'unrolled' | 'envelope' | 'none';
}

export interface OtlmReferenceResult {
  loss: number;
  /** dL/dW (K×K, row-major); absent when grad = 'none'. */
  gradW?: Float64Array;
  /** Σ_j |colsum_j − c_j| / B of the final plan. */
  marginalError: number;
  /** Iterations run (S ≤ T). */
  sinkhornIters: number;
  /** Final potentials: f^S (length B) and g^{S−1} (length K). */
  f: Float64Array;
  g: Float64Array;
}

function check(input: OtlmReferenceInput): { b: number; k: number } {
  const { phi, w, bias, targetPrior, lambda, sinkhornIters } = input;
  const b = phi.rows;
  const k = phi.cols;
  if (!Number.isInteger(b) || b < 1 || !Number.isInteger(k) || k < 1 || phi.data.length !== b * k)
    throw new RangeError(`otlmLossGradReference: phi must be a B×K matrix with data of length rows*cols, got ${b}×${k} with ${phi.data.length} values`);
  if (w.length !== k * k) throw new RangeError(`otlmLossGradReference: w must have K*K = ${k * k} entries, got ${w.length}`);
  if (bias != null && bias.length !== k) throw new RangeError(`otlmLossGradReference: bias must have K = ${k} entries, got ${bias.length}`);
  if (targetPrior.length !== k) throw new RangeError(`otlmLossGradReference: targetPrior must have K = ${k} entries, got ${targetPrior.length}`);
  let s = 0;
  for (let j = 0; j < k; j++) {
    if (!(targetPrior[j] > 0) || !Number.isFinite(targetPrior[j])) throw new RangeError(`otlmLossGradReference: targetPrior[${j}] must be finite and > 0, got ${targetPrior[j]}`);
    s += targetPrior[j];
  }
  if (Math.abs(s - 1) > 1e-6) throw new RangeError(`otlmLossGradReference: targetPrior must sum to 1, got ${s}`);
  if (!(lambda > 0) || !Number.isFinite(lambda)) throw new RangeError(`otlmLossGradReference: lambda must be a finite number > 0, got ${lambda}`);
  if (!Number.isInteger(sinkhornIters) || sinkhornIters < 1) throw new RangeError(`otlmLossGradReference: sinkhornIters must be an integer >= 1, got ${sinkhornIters}`);
  const tol = input.tol ?? 0;
  if (!(tol >= 0) || !Number.isFinite(tol)) throw new RangeError(`otlmLossGradReference: tol must be a finite number >= 0, got ${tol}`);
  return { b, k };
}

/** The OTLM loss, marginal error and dL/dW in float64 (see the module comment for the exact conventions). */
export function otlmLossGradReference(input: OtlmReferenceInput): OtlmReferenceResult {
  const { b, k } = check(input);
  const { phi, w, bias, targetPrior: mu, lambda: lam, sinkhornIters: T } = input;
  const tol = input.tol ?? 0;
  const mode = input.grad ?? 'unrolled';
  const P = phi.data;

  // A = ΦW + b, then log Z = A − LSE_row(A); M = −log Z.
  const logZ = new Float64Array(b * k);
  const row = new Float64Array(k);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      let a = bias != null ? Number(bias[j]) : 0;
      for (let q = 0; q < k; q++) a += P[i * k + q] * w[q * k + j];
      row[j] = a;
    }
    const l = logSumExp(k, (j) => row[j]);
    for (let j = 0; j < k; j++) logZ[i * k + j] = row[j] - l;
  }
  const M = (i: number, j: number): number => -logZ[i * k + j];
  const c = Float64Array.from({ length: k }, (_, j) => b * mu[j]);

  // Forward: the reference Sinkhorn (the driver's algorithm, plain steps, stop at T or error < tol),
  // recording F[t−1] = f^t and G[t−1] = g^{t−1} (t = 1..S) after every row pass.
  const F: Float64Array[] = [];
  const G: Float64Array[] = [];
  const cost = new Float64Array(b * k);
  for (let q = 0; q < b * k; q++) cost[q] = -logZ[q];
  const sk = referenceSinkhorn({
    x: cost, n: b, k, inputKind: 'cost', lambda: lam, maxIter: T, tol, colMarginal: c,
    onRowPass: (_t, f, g) => {
      F.push(Float64Array.from(f));
      G.push(Float64Array.from(g));
    },
  });
  const S = sk.iterations;
  const error = sk.error;
  const fS = F[S - 1];
  const gS = G[S - 1];

  // L = (1/B) Σ Y_ij (M_ij + λ log Y_ij) = (1/B) Σ Y_ij (f_i + g_j), since λ log Y = f ⊕ g − M.
  let loss = 0;
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < k; j++) {
      const logY = (fS[i] + gS[j] - M(i, j)) / lam;
      const y = Math.exp(logY);
      loss += -y * logZ[i * k + j] + lam * y * logY;
    }
  }
  loss /= b;
  const result: OtlmReferenceResult = { loss, marginalError: error, sinkhornIters: S, f: fS.slice(), g: gS.slice() };
  if (mode === 'none') return result;

  // Mbar = dL/dM.
  const Mbar = new Float64Array(b * k);
  if (mode === 'envelope') {
    for (let i = 0; i < b; i++)
      for (let j = 0; j < k; j++) Mbar[i * k + j] = Math.exp((fS[i] + gS[j] - M(i, j)) / lam) / b;
  } else {
    // L as an explicit function of (f^S, g^{S−1}, M): with Y = exp((f ⊕ g − M)/λ) and H = Y (f ⊕ g)/(λB),
    // ∂L/∂f_i = Σ_j (H_ij + Y_ij/B), ∂L/∂g_j = Σ_i (H_ij + Y_ij/B), ∂L/∂M_ij = −H_ij.
    let fbar = new Float64Array(b);
    let gbar = new Float64Array(k);
    for (let i = 0; i < b; i++) {
      for (let j = 0; j < k; j++) {
        const y = Math.exp((fS[i] + gS[j] - M(i, j)) / lam);
        const h = (y * (fS[i] + gS[j])) / (lam * b);
        fbar[i] += h + y / b;
        gbar[j] += h + y / b;
        Mbar[i * k + j] = -h;
      }
    }
    for (let t = S; t >= 1; t--) {
      // f^t = −λ LSE_j((g^{t−1}_j − M_ij)/λ): ∂f_i/∂g_j = −P_ij, ∂f_i/∂M_ij = P_ij.
      const f = F[t - 1];
      const gp = G[t - 1];
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < k; j++) {
          const p = Math.exp((f[i] + gp[j] - M(i, j)) / lam);
          Mbar[i * k + j] += fbar[i] * p;
          gbar[j] -= fbar[i] * p;
        }
      }
      if (t === 1) break; // g⁰ = 0 is a constant
      // g^{t−1} = λ log c − λ LSE_i((f^{t−1}_i − M_ij)/λ): with Q_ij = exp((f^{t−1} ⊕ g^{t−1} − M)/λ)/c_j,
      // ∂g_j/∂f_i = −Q_ij, ∂g_j/∂M_ij = Q_ij.
      const f1 = F[t - 2];
      const nf = new Float64Array(b);
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < k; j++) {
          const q = Math.exp((f1[i] + gp[j] - M(i, j)) / lam) / c[j];
          Mbar[i * k + j] += gbar[j] * q;
          nf[i] -= gbar[j] * q;
        }
      }
      fbar = nf;
      gbar = new Float64Array(k);
    }
  }

  // M = −log Z, log Z = A − LSE(A): dL/dA_ij = Zbar_ij − softmax(A)_ij Σ_l Zbar_il with Zbar = −Mbar.
  const Abar = new Float64Array(b * k);
  for (let i = 0; i < b; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += -Mbar[i * k + j];
    for (let j = 0; j < k; j++) Abar[i * k + j] = -Mbar[i * k + j] - Math.exp(logZ[i * k + j]) * s;
  }
  // dL/dW = Φᵀ Abar.
  const gradW = new Float64Array(k * k);
  for (let i = 0; i < b; i++)
    for (let q = 0; q < k; q++) {
      const x = P[i * k + q];
      if (x === 0) continue;
      for (let j = 0; j < k; j++) gradW[q * k + j] += x * Abar[i * k + j];
    }
  result.gradW = gradW;
  return result;
}
