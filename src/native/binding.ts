/** Types of the raw N-API addon (native/addon). Internal: the public API wraps these. */

/** 'wasm': the WebAssembly build of the CPU engine (src/native/wasm.ts), behind the same interface. */
export type NativeBackendName = 'cpu' | 'cuda' | 'wasm';

/*
 * info(): the addon converts each backend's otlm_backend_info (native/core/include/otlm/otlm.h)
 * into these objects field by field. They are the one TypeScript definition of those fields:
 * the public info() (src/api/info.ts) hands them on as they are.
 */

/** The CPU backend (otlm_backend_info's CPU fields). */
export interface NativeCpuInfo {
  /** Kernels selected at run time for this CPU. */
  simd: 'avx512' | 'avx2-fma' | 'baseline' | 'wasm-simd128';
  /** Default worker threads. */
  threads: number;
  /** GEMM provider: 'openblas-static' | 'openblas' | 'builtin-avx512' | 'builtin-avx2' | 'builtin-baseline'. */
  gemm: string;
  /** Compiler that built the engine, e.g. 'gcc 12.2.0'. */
  compiler: string;
}

/** One CUDA device (otlm_device_info). */
export interface NativeCudaDevice {
  /** Device ordinal (what OTLM_CUDA_DEVICE selects). */
  index: number;
  name: string;
  /** Total device memory in bytes. */
  memoryBytes: number;
  /** Compute capability 'major.minor', e.g. '9.0' (sm_90). */
  computeCapability: string;
  /** Streaming multiprocessors. */
  smCount: number;
  /** TF32 tensor cores (compute capability >= 8.0). */
  tf32: boolean;
}

/** What the CUDA library's probe found (otlm_backend_info's CUDA fields), usable or not. */
export interface NativeCudaInfo {
  /** CUDA driver version, e.g. '13.0'; null when no driver answered. */
  driverVersion: string | null;
  /** CUDA runtime version the library was built with, e.g. '13.0'. */
  runtimeVersion: string | null;
  /** The CUDA API is emulated on the CPU (a library built with OTLM_CUDA_EMU=1), not a GPU. */
  emulated: boolean;
  /** The device the backend runs on (or refused); null when the probe stopped before choosing one. */
  device: number | null;
  /** GEMM used: 'otlm-fp32', or 'otlm-tf32' with OTLM_CUDA_TF32=1. */
  gemm: string;
  /** Architectures compiled in (SASS), e.g. 'sm_75,sm_80,sm_90'. */
  arch: string;
  compiler: string;
  /** Devices present (devices lists at most 16). */
  deviceCount: number;
  devices: NativeCudaDevice[];
}

export interface NativeInfo {
  abi: number;
  napi: number;
  cpu: NativeCpuInfo;
  cuda: {
    /** The library file tried (OTLM_CUDA_LIB, else libotlm_cuda.so beside the addon). */
    path: string;
    /** That file exists. */
    built: boolean;
    usable: boolean;
    /** Why it is not usable ('' when it is). */
    reason: string;
    /** null when the library could not be loaded or lacks the entry point. */
    info: NativeCudaInfo | null;
  };
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

/** darp(opts): DARP on the native CPU engine (native/cpu/darp.h, native/addon/bind_darp.cpp). */
export interface NativeDarpArgs {
  /** N×K logits, row-major. */
  logits: Float32Array;
  n: number;
  k: number;
  /** c = N·μ: K entries > 0 summing to N (relative 1e-6). */
  colMarginal: Float64Array;
  /** Per-sample weights: 'entropy' (default, computed natively), 'uniform', or N values > 0. */
  weights?: 'entropy' | 'uniform' | Float64Array;
  maxIter?: number;
  tol?: number;
  newtonIter?: number;
  /** Worker threads, 0 = all cores (default); results are bit-identical for any count. */
  threads?: number;
  /** Raised to 1 to cancel (checked after every row step); on a SharedArrayBuffer when async. */
  cancel?: Int32Array;
}

export interface NativeDarpResult {
  /** X rounded to float32, N×K row-major. */
  probabilities: Float32Array;
  /** argmax of each row of the float64 X (first maximum). */
  predictions: Int32Array;
  /** log a_i, length N. */
  logRowScale: Float64Array;
  /** ν, length K. */
  nu: Float64Array;
  iterations: number;
  error: number;
  converged: boolean;
  /** The column error after every row step. */
  trace: Float64Array;
  seconds: number;
  backend: 'cpu' | 'wasm';
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
  /** Absent from addons built before native DARP (issue 14): callers check. */
  darp?(args: NativeDarpArgs): Promise<NativeDarpResult>;
  darpSync?(args: NativeDarpArgs): NativeDarpResult;
}
