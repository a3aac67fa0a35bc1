import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const OTLM_FIX = path.join(REPO, 'test/fixtures/otlm');

export interface GradCase {
  name: string; b: number; k: number; lambda: number; T: number;
  phi: number[]; w: number[]; bias: number[] | null; mu: number[];
  loss: number; grad_w: number[]; marginal_error: number;
}
export interface TrainCase {
  name: string; n: number; k: number; lambda: number; T: number; grad: 'unrolled';
  optimizer: 'adam' | 'adamw' | 'sgd'; lr: number; beta1: number; beta2: number; eps: number;
  weight_decay: number; momentum: number; nesterov: boolean;
  phi: number[]; bias: number[] | null; mu: number[];
  batches: number[][]; losses: number[]; w_final: number[];
}

export function loadGradCases(): GradCase[] {
  const d = JSON.parse(fs.readFileSync(path.join(OTLM_FIX, 'grad_cases.json'), 'utf8'));
  if (d.format !== 'otlm-grad-v1') throw new Error(`unexpected fixture format ${d.format}`);
  return d.cases;
}
export function loadTrainCases(): TrainCase[] {
  const d = JSON.parse(fs.readFileSync(path.join(OTLM_FIX, 'train_cases.json'), 'utf8'));
  if (d.format !== 'otlm-train-v1') throw new Error(`unexpected fixture format ${d.format}`);
  return d.cases;
}

/** Deterministic normal draws (Box–Muller over a small LCG-free xorshift); float32-exact values. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  let s = (seed >>> 0) || 1;
  const u = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'otlm-train-'));
}

/** Whether the native addon's OTLM step is implemented (it answers OTLM_ENOTSUP until it lands). */
export async function nativeOtlmReady(): Promise<boolean> {
  try {
    const { loadNative } = await import('../../src/native/loader.js');
    const n = loadNative();
    n.lossGradSync({ k: 1, b: 1, phi: new Float32Array([0]), w: new Float32Array([1]), lambda: 1, sinkhornIters: 1, targetPrior: new Float64Array([1]) });
    return true;
  } catch {
    return false;
  }
}
