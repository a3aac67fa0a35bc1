/** Types of the raw N-API addon (native/addon). Internal: the public API wraps these. */

export type NativeBackendName = 'cpu' | 'cuda';

export interface NativeInfo {
  abi: number;
  napi: number;
  /** JSON text: { simd, threads, gemm, compiler } */
  cpu: string;
  cuda: { path: string; built: boolean; usable: boolean; reason: string; info: string | null };
}

export interface NativeSinkhornArgs {
  backend?: NativeBackendName;
  x: Float32Array;
  n: number;
  k: number;
  inputKind?: 'cost' | 'logits';
  lambda: number;
  maxIter: number;
  tol: number;
  checkEvery?: number;
  threads?: number;
  colMarginal: Float64Array;
  rowMarginal?: Float64Array;
  f0?: Float64Array;
  g0?: Float64Array;
  epsScaling?: number;
  overrelax?: number;
  plan?: boolean | Float32Array;
  predictions?: boolean;
  traceCap?: number;
  cancel?: Int32Array;
}

export interface NativeSinkhornResult {
  f: Float64Array;
  g: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
  mode: Array<'scaling' | 'log'>;
  logFallbacks: number;
  trace: Float64Array;
  seconds: number;
  backend: NativeBackendName;
  plan?: Float32Array;
  predictions?: Int32Array;
}

export interface NativeTrainParams {
  backend?: NativeBackendName;
  k: number;
  lambda: number;
  sinkhornIters: number;
  tol?: number;
  grad?: 'unrolled' | 'envelope';
  optimizer?: 'adam' | 'adamw' | 'sgd';
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  momentum?: number;
  nesterov?: boolean;
  threads?: number;
}

export interface NativeStepReport {
  loss: number;
  marginalError: number;
  sinkhornIters: number;
  gradNorm: number;
  seconds: number;
}

export interface NativeLossGradArgs extends NativeTrainParams {
  phi: Float32Array;
  b: number;
  w: Float32Array;
  bias?: Float32Array;
  targetPrior: Float64Array;
  wantGrad?: boolean;
}

export interface NativeLossGradResult extends NativeStepReport {
  gradW?: Float32Array;
}

export interface NativeTrainerArgs extends NativeTrainParams {
  phi: Float32Array;
  n: number;
  bias?: Float32Array;
  targetPrior: Float64Array;
}

export interface NativeTrainer {
  step(rows: Int32Array, lr: number): Promise<NativeStepReport>;
  stepSync(rows: Int32Array, lr: number): NativeStepReport;
  getWeights(): Float32Array;
  setWeights(w: Float32Array): void;
  close(): void;
}

export interface NativeGemmArgs {
  backend?: NativeBackendName;
  a: Float32Array;
  b: Float32Array;
  m: number;
  n: number;
  kk: number;
  bias?: Float32Array;
  threads?: number;
}

export interface NativeBinding {
  info(): NativeInfo;
  sinkhorn(args: NativeSinkhornArgs): Promise<NativeSinkhornResult>;
  sinkhornSync(args: NativeSinkhornArgs): NativeSinkhornResult;
  lossGrad(args: NativeLossGradArgs): Promise<NativeLossGradResult>;
  lossGradSync(args: NativeLossGradArgs): NativeLossGradResult;
  Trainer: new (args: NativeTrainerArgs) => NativeTrainer;
  gemm(args: NativeGemmArgs): Promise<Float32Array>;
  gemmSync(args: NativeGemmArgs): Float32Array;
}
