/**
 * TypeScript optimizers for the reference backend, with torch.optim's update rules (the native trainer
 * implements the same ones):
 * - Adam:  g ← g + wd·w (L2, PyTorch's Adam); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
 *          w ← w − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)
 * - AdamW: w ← w(1 − lr·wd) first (decoupled decay), then the Adam update without the L2 term
 * - SGD:   g ← g + wd·w; buf ← g (first step) or μ buf + g; d = nesterov ? g + μ buf : buf; w ← w − lr·d
 */
export interface OptimizerConfig {
  optimizer: 'adam' | 'adamw' | 'sgd';
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
}

export class TsOptimizer {
  private readonly m1: Float64Array;
  private readonly m2: Float64Array;
  private t = 0;

  constructor(private readonly cfg: OptimizerConfig, size: number) {
    this.m1 = new Float64Array(size);
    this.m2 = new Float64Array(cfg.optimizer === 'sgd' ? 0 : size);
  }

  /** Returns the updated weights (a new array); the state advances only through `commit`. */
  propose(w: Float64Array, grad: ArrayLike<number>, lr: number): { w: Float64Array; commit: () => void } {
    const { optimizer, beta1, beta2, eps, weightDecay: wd, momentum, nesterov } = this.cfg;
    const step = this.t + 1;
    const out = new Float64Array(w.length);
    const m1 = Float64Array.from(this.m1);
    const m2 = Float64Array.from(this.m2);
    const bc1 = 1 - Math.pow(beta1, step);
    const bc2s = Math.sqrt(1 - Math.pow(beta2, step));
    for (let q = 0; q < w.length; q++) {
      let g = grad[q];
      let wq = w[q];
      if (optimizer === 'sgd') {
        if (wd !== 0) g += wd * wq;
        let d = g;
        if (momentum !== 0) {
          m1[q] = step === 1 ? g : momentum * m1[q] + g;
          d = nesterov ? g + momentum * m1[q] : m1[q];
        }
        wq -= lr * d;
      } else {
        if (optimizer === 'adamw') wq *= 1 - lr * wd;
        else if (wd !== 0) g += wd * wq;
        m1[q] = beta1 * m1[q] + (1 - beta1) * g;
        m2[q] = beta2 * m2[q] + (1 - beta2) * g * g;
        wq -= ((lr / bc1) * m1[q]) / (Math.sqrt(m2[q]) / bc2s + eps);
      }
      out[q] = wq;
    }
    return {
      w: out,
      commit: () => {
        this.m1.set(m1);
        this.m2.set(m2);
        this.t = step;
      },
    };
  }
}
