/**
 * The Sinkhorn driver's acceleration strategies in float64 (docs/architecture.md, "Acceleration";
 * the native ones are native/core/src/acceleration.cpp). Same rules, constants and safeguards, so
 * the reference path takes the same decisions as the native backends and its iteration counts
 * match theirs. h = g/λ; `resid` is the plain update log c − log colsum of the current pass.
 */

/** Newton up to this k, Anderson above (the driver's kNewtonMaxK). */
export const NEWTON_MAX_K = 64;

export interface AccelStep {
  resid: Float64Array;
  colsum: Float64Array;
  c: Float64Array;
  /** W_jq = Σ_i Y_ij Y_iq / r_i (j < q, row-major k×k) when `wantsHessian()` held for this pass. */
  hessian?: Float64Array;
  error: number;
  /** F(h) − F(h of the previous pass); non-finite when not comparable. */
  dF: number;
  iteration: number;
}

export interface Acceleration {
  reset(): void;
  wantsHessian(): boolean;
  /** Replaces h (in place) by the next iterate. */
  step(s: AccelStep, h: Float64Array): void;
}

export function makeAcceleration(overrelax: number, k: number): Acceleration | undefined {
  if (!(overrelax > 1)) return undefined;
  return k >= 2 && k <= NEWTON_MAX_K ? new Newton(k) : new Anderson(k, overrelax);
}

/**
 * Anderson mixing (type II, memory 8) of the g-updates with relaxation β = ω:
 * γ = argmin ‖r_t − ΔR γ‖² (normal equations, Tikhonov 1e-10·trace), h ← h + ω r − (ΔH + ω ΔR) γ.
 * History dropped when the error exceeds 10× its best or stalls 20 iterations; plain after 5 restarts.
 */
class Anderson implements Acceleration {
  private static readonly MEM = 8;
  private H: Float64Array[] = [];
  private R: Float64Array[] = [];
  private best = Infinity;
  private bestIt = 0;
  private restarts = 0;
  private off: boolean;
  constructor(private readonly k: number, private readonly beta: number) {
    this.off = beta <= 1;
  }
  reset(): void {
    this.H = [];
    this.R = [];
    this.best = Infinity;
    this.restarts = 0;
    this.off = this.beta <= 1;
  }
  wantsHessian(): boolean {
    return false;
  }
  private restart(err: number, it: number): void {
    this.H = [];
    this.R = [];
    this.best = err;
    this.bestIt = it;
    if (++this.restarts >= 5) this.off = true;
  }
  step(s: AccelStep, h: Float64Array): void {
    const { k } = this;
    const r = s.resid;
    if (this.off) {
      for (let j = 0; j < k; j++) h[j] += r[j];
      return;
    }
    if (s.error < this.best) {
      this.best = s.error;
      this.bestIt = s.iteration;
    } else if (s.error > 10 * this.best || s.iteration - this.bestIt > 20) this.restart(s.error, s.iteration);
    this.H.push(Float64Array.from(h));
    this.R.push(Float64Array.from(r));
    if (this.H.length > Anderson.MEM + 1) {
      this.H.shift();
      this.R.shift();
    }
    const m = this.H.length - 1;
    const hn = Float64Array.from(h);
    for (let j = 0; j < k; j++) hn[j] += this.beta * r[j];
    if (m > 0) {
      const dR = Array.from({ length: m }, (_, i) => Float64Array.from({ length: k }, (_, j) => this.R[i + 1][j] - this.R[i][j]));
      const A = new Float64Array(m * m);
      const b = new Float64Array(m);
      let tr = 0;
      for (let i = 0; i < m; i++) {
        for (let q = 0; q <= i; q++) {
          let acc = 0;
          for (let j = 0; j < k; j++) acc += dR[i][j] * dR[q][j];
          A[i * m + q] = A[q * m + i] = acc;
        }
        let acc = 0;
        for (let j = 0; j < k; j++) acc += dR[i][j] * r[j];
        b[i] = acc;
        tr += A[i * m + i];
      }
      for (let i = 0; i < m; i++) A[i * m + i] += 1e-10 * tr + 1e-300;
      const gam = solveGauss(A, b, m);
      if (gam) {
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < k; j++) hn[j] -= gam[i] * (this.H[i + 1][j] - this.H[i][j] + this.beta * dR[i][j]);
        }
      }
    }
    if (hn.every(Number.isFinite)) h.set(hn);
    else {
      this.restart(s.error, s.iteration);
      for (let j = 0; j < k; j++) h[j] += r[j];
    }
  }
}

/** Gaussian elimination with partial pivoting; undefined when singular or not finite. */
function solveGauss(A0: Float64Array, b0: Float64Array, m: number): Float64Array | undefined {
  const A = Float64Array.from(A0);
  const b = Float64Array.from(b0);
  for (let c = 0; c < m; c++) {
    let piv = c;
    for (let i = c + 1; i < m; i++) if (Math.abs(A[i * m + c]) > Math.abs(A[piv * m + c])) piv = i;
    if (!(Math.abs(A[piv * m + c]) > 0)) return undefined;
    if (piv !== c) {
      for (let q = 0; q < m; q++) [A[c * m + q], A[piv * m + q]] = [A[piv * m + q], A[c * m + q]];
      [b[c], b[piv]] = [b[piv], b[c]];
    }
    for (let i = c + 1; i < m; i++) {
      const f = A[i * m + c] / A[c * m + c];
      for (let q = c; q < m; q++) A[i * m + q] -= f * A[c * m + q];
      b[i] -= f * b[c];
    }
  }
  const x = new Float64Array(m);
  for (let i = m - 1; i >= 0; i--) {
    let acc = b[i];
    for (let q = i + 1; q < m; q++) acc -= A[i * m + q] * x[q];
    x[i] = acc / A[i * m + i];
  }
  return x.every(Number.isFinite) ? x : undefined;
}

/**
 * Damped Newton on the semi-dual F(h) = Σ_i r_i LSE_j(−M_ij/λ + h_j) − Σ_j c_j h_j, whose Hessian is
 * the Laplacian L = diag(W1) − W. Step: (L + τ11ᵀ + ρI) δ = c − colsum (Cholesky, τ = mean diagonal,
 * ρ from 1e-12·τ up by 1e3 until positive definite), |δ| capped at 8, backtracking (t /= 4) until
 * Armijo holds or the error halves; below t = 1/64 a plain step and 5 plain iterations.
 */
class Newton implements Acceleration {
  private static readonly MAX_STEP = 8;
  private static readonly COOLDOWN = 5;
  private haveBase = false;
  private cool = 0;
  private F = 0;
  private Fb = 0;
  private errb = 0;
  private slope = 0;
  private t = 1;
  private readonly hb: Float64Array;
  private readonly rb: Float64Array;
  private readonly d: Float64Array;
  private readonly L: Float64Array;
  constructor(private readonly k: number) {
    this.hb = new Float64Array(k);
    this.rb = new Float64Array(k);
    this.d = new Float64Array(k);
    this.L = new Float64Array(k * k);
  }
  reset(): void {
    this.haveBase = false;
    this.cool = 0;
    this.F = 0;
  }
  wantsHessian(): boolean {
    return this.cool === 0;
  }
  step(s: AccelStep, h: Float64Array): void {
    const { k } = this;
    if (Number.isFinite(s.dF)) this.F += s.dF;
    else {
      this.F = 0;
      this.haveBase = false;
    }
    if (this.haveBase) {
      const ok = this.F <= this.Fb + 1e-4 * this.t * this.slope || s.error < 0.5 * this.errb;
      if (!ok) {
        this.t *= 0.25;
        if (this.t < 1 / 64) {
          for (let j = 0; j < k; j++) h[j] = this.hb[j] + this.rb[j];
          this.haveBase = false;
          this.cool = Newton.COOLDOWN;
        } else {
          for (let j = 0; j < k; j++) h[j] = this.hb[j] + this.t * this.d[j];
        }
        return;
      }
    }
    this.haveBase = false;
    const W = s.hessian;
    if (this.cool > 0 || !W) {
      if (this.cool > 0) this.cool--;
      for (let j = 0; j < k; j++) h[j] += s.resid[j];
      return;
    }
    let trace = 0;
    for (let j = 0; j < k; j++) {
      let dsum = 0;
      for (let q = 0; q < k; q++) {
        if (q === j) continue;
        const w = j < q ? W[j * k + q] : W[q * k + j];
        this.L[j * k + q] = -w;
        dsum += w;
      }
      this.L[j * k + j] = dsum;
      trace += dsum;
    }
    const tau = trace / k;
    const b = Float64Array.from({ length: k }, (_, j) => s.c[j] - s.colsum[j]);
    let solved = false;
    if (tau > 0 && Number.isFinite(tau)) {
      for (let rho = 1e-12 * tau; rho < tau && !solved; rho *= 1e3) solved = this.cholSolve(tau, rho, b);
    }
    let slope = 0;
    let dmax = 0;
    if (solved) {
      for (let j = 0; j < k; j++) {
        slope -= b[j] * this.d[j];
        dmax = Math.max(dmax, Math.abs(this.d[j]));
      }
    }
    if (!solved || !(slope < 0) || !Number.isFinite(dmax)) {
      for (let j = 0; j < k; j++) h[j] += s.resid[j];
      return;
    }
    this.hb.set(h);
    this.rb.set(s.resid);
    this.errb = s.error;
    this.Fb = this.F;
    this.slope = slope;
    this.t = dmax > Newton.MAX_STEP ? Newton.MAX_STEP / dmax : 1;
    this.haveBase = true;
    for (let j = 0; j < k; j++) h[j] = this.hb[j] + this.t * this.d[j];
  }
  /** Cholesky of L + τ11ᵀ + ρI, solution into d; false when not positive definite. */
  private cholSolve(tau: number, rho: number, b: Float64Array): boolean {
    const { k, d } = this;
    const A = new Float64Array(k * k);
    for (let j = 0; j < k; j++) for (let q = 0; q < k; q++) A[j * k + q] = this.L[j * k + q] + tau + (j === q ? rho : 0);
    for (let j = 0; j < k; j++) {
      let dgl = A[j * k + j];
      for (let p = 0; p < j; p++) dgl -= A[j * k + p] * A[j * k + p];
      if (!(dgl > 1e-14 * (tau + rho))) return false;
      dgl = Math.sqrt(dgl);
      A[j * k + j] = dgl;
      for (let i = j + 1; i < k; i++) {
        let v = A[i * k + j];
        for (let p = 0; p < j; p++) v -= A[i * k + p] * A[j * k + p];
        A[i * k + j] = v / dgl;
      }
    }
    for (let j = 0; j < k; j++) {
      let v = b[j];
      for (let p = 0; p < j; p++) v -= A[j * k + p] * d[p];
      d[j] = v / A[j * k + j];
    }
    for (let j = k - 1; j >= 0; j--) {
      let v = d[j];
      for (let p = j + 1; p < k; p++) v -= A[p * k + j] * d[p];
      d[j] = v / A[j * k + j];
    }
    return d.every(Number.isFinite);
  }
}
