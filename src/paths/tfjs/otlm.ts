/**
 * One OTLM loss/gradient evaluation with TensorFlow.js (paper §3.2, Eq. 12), the
 * tfjs counterpart of the native `lossGrad`:
 *
 *   A = Φ_B W + b,  log Z = log_softmax(A),  M = −log Z,
 *   T log-domain Sinkhorn iterations from g = 0 with r = 1, c = B·μ (early stop when
 *   the column error < tol; the last iteration stops after its f update),
 *   log Y = (f + g − M)/λ,  L = (−⟨Y, log Z⟩ + λ⟨Y, log Y⟩) / B   (mean over batch rows).
 *
 * grad 'unrolled': dL/dW by tfjs autodiff through every iteration (what the paper's
 * PyTorch code does); grad 'envelope': dL/dM = Y/B at the final plan (Danskin), so
 * dL/dW = autodiff of ⟨stop_gradient(Y), M(W)⟩/B.
 */
import type { Matrix } from '../../api/types.js';
import { checkMatrix, checkNumber, describe, normalizePrior } from '../../api/validate.js';
import { withTf, type TfBackendName } from './load.js';
import { columnError, columnLse, rowUpdate } from './sinkhorn.js';

type TF = typeof import('@tensorflow/tfjs');
type Tensor = import('@tensorflow/tfjs').Tensor;

export interface TfjsOtlmStepOptions {
  /** λ > 0. No default: the paper uses 0.1 (CIFAR-100-LT), 1.2 (ImageNet-LT), 1.0 (iNaturalist). */
  lambda: number;
  /** T ≥ 1 Sinkhorn iterations. No default: the paper uses 200, 7, 10. */
  sinkhornIters: number;
  /** Early stop when the column error < tol (0 = run all T). Default 0. */
  tol?: number;
  /** Target prior μ (counts or probabilities, entries > 0). Default uniform. */
  targetPrior?: ArrayLike<number>;
  /** Fixed bias b (length K), e.g. −log π. Default none. */
  bias?: ArrayLike<number>;
  /** Gradient mode. Default 'unrolled'. */
  grad?: 'unrolled' | 'envelope';
  /** Compute dL/dW (false: loss only). Default true. */
  wantGrad?: boolean;
  /** Default 'wasm'. */
  tfBackend?: TfBackendName;
}

export interface TfjsOtlmStepResult {
  loss: number;
  /** Column L1 error / B of the final plan. */
  marginalError: number;
  sinkhornIters: number;
  /** Frobenius norm of dL/dW (NaN when wantGrad is false). */
  gradNorm: number;
  seconds: number;
  /** dL/dW, K×K row-major (absent when wantGrad is false). */
  gradW?: Float32Array;
  tfBackend: TfBackendName;
}

interface Forward {
  loss: Tensor;
  logZ: Tensor;
  logY: Tensor;
}

/** The forward computation; `stop` records iterations and error as plain numbers. */
function forward(tf: TF, phi: Tensor, W: Tensor, bias: Tensor | null, logc: Tensor, cT: Tensor,
  lam: number, T: number, tol: number, stop: { iters: number; error: number }): Forward {
  const b = phi.shape[0];
  let A = tf.matMul(phi, W);
  if (bias) A = tf.add(A, bias);
  const logZ = tf.logSoftmax(A);
  const S = tf.div(logZ, lam); // −M/λ
  let v: Tensor = tf.zerosLike(cT); // g/λ
  let u: Tensor = v;
  for (let t = 1; t <= T; t++) {
    u = rowUpdate(tf, S, v);
    stop.iters = t;
    const lseCol = columnLse(tf, S, u);
    // Reading the error is a host sync; skip it when it cannot stop the loop.
    if (tol > 0 || t === T) {
      stop.error = columnError(tf, v, lseCol, cT).dataSync()[0] / b;
      if (t === T || stop.error < tol) break;
    }
    v = tf.sub(logc, lseCol);
  }
  const logY = tf.add(tf.add(S, u), v);
  const Y = tf.exp(logY);
  const loss = tf.div(tf.add(tf.neg(tf.sum(tf.mul(Y, logZ))), tf.mul(lam, tf.sum(tf.mul(Y, logY)))), b);
  return { loss, logZ, logY };
}

/**
 * OTLM loss and dL/dW on one batch with tfjs (see the module comment).
 * `phi` is the B×K batch of logits, `w` the K×K map (row-major Float32Array).
 */
export async function tfjsOtlmStep(phi: Matrix, w: Float32Array, opts: TfjsOtlmStepOptions): Promise<TfjsOtlmStepResult> {
  checkMatrix('phi', phi);
  const b = phi.rows;
  const k = phi.cols;
  if (!(w instanceof Float32Array)) throw new TypeError(`w must be a Float32Array(K*K), got ${describe(w)}`);
  checkMatrix('w', { data: w, rows: k, cols: k });
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`options must be an object, got ${describe(opts)}`);
  const lam = checkNumber('lambda', opts.lambda, { min: 0, exclusiveMin: true });
  const T = checkNumber('sinkhornIters', opts.sinkhornIters, { min: 1, integer: true });
  const tol = checkNumber('tol', opts.tol ?? 0, { min: 0 });
  const grad = opts.grad ?? 'unrolled';
  if (grad !== 'unrolled' && grad !== 'envelope') throw new TypeError(`grad must be 'unrolled' or 'envelope', got ${String(grad)}`);
  const mu = opts.targetPrior === undefined ? new Float64Array(k).fill(1 / k) : normalizePrior('targetPrior', opts.targetPrior, k);
  let bias: Float32Array | undefined;
  if (opts.bias !== undefined) {
    bias = Float32Array.from(opts.bias as ArrayLike<number>);
    checkMatrix('bias', { data: bias, rows: 1, cols: k });
  }
  const wantGrad = opts.wantGrad ?? true;
  const tfBackend = opts.tfBackend ?? 'wasm';

  return withTf(tfBackend, async (tf) => {
    const t0 = performance.now();
    const stop = { iters: 0, error: Number.NaN };
    const res: Tensor[] = tf.tidy((): Tensor[] => {
      const P = tf.tensor2d(phi.data, [b, k]);
      const W = tf.tensor2d(w, [k, k]);
      const Bt = bias ? tf.tensor2d(bias, [1, k]) : null;
      const logc = tf.tensor2d(Float32Array.from(mu, (m) => Math.log(b * m)), [1, k]);
      const cT = tf.tensor2d(Float32Array.from(mu, (m) => b * m), [1, k]);
      if (!wantGrad) return [forward(tf, P, W, Bt, logc, cT, lam, T, tol, stop).loss];
      if (grad === 'unrolled') {
        const { value, grad: g } = tf.valueAndGrad((Wv: Tensor) => forward(tf, P, Wv, Bt, logc, cT, lam, T, tol, stop).loss as import('@tensorflow/tfjs').Scalar)(W);
        return [value, g];
      }
      const fw = forward(tf, P, W, Bt, logc, cT, lam, T, tol, stop);
      const Y = tf.exp(fw.logY); // constant w.r.t. W below
      const surrogate = (Wv: Tensor): import('@tensorflow/tfjs').Scalar => {
        let A = tf.matMul(P, Wv);
        if (Bt) A = tf.add(A, Bt);
        return tf.div(tf.sum(tf.mul(Y, tf.neg(tf.logSoftmax(A)))), b) as import('@tensorflow/tfjs').Scalar;
      };
      return [fw.loss, tf.grad(surrogate)(W)];
    });
    try {
      const loss = (await res[0].data())[0];
      if (!Number.isFinite(loss))
        throw new RangeError(`tfjs otlm: the loss is not finite (${loss}) after ${stop.iters} Sinkhorn iterations`);
      const out: TfjsOtlmStepResult = {
        loss, marginalError: stop.error, sinkhornIters: stop.iters, gradNorm: Number.NaN, seconds: 0, tfBackend,
      };
      if (res[1]) {
        const gw = Float32Array.from(await res[1].data());
        let s = 0;
        for (let i = 0; i < gw.length; i++) s += gw[i] * gw[i];
        out.gradW = gw;
        out.gradNorm = Math.sqrt(s);
      }
      out.seconds = (performance.now() - t0) / 1000;
      return out;
    } finally {
      tf.dispose(res);
    }
  });
}
