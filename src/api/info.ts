import { createRequire } from 'node:module';

import type { NativeCpuInfo, NativeCudaDevice, NativeCudaInfo } from '../native/binding.js';
import { packageVersion } from '../native/package-root.js';
import { loadNative, nativeLoadedFrom } from '../native/loader.js';
import { loadWasm, wasmPath, wasmThreadsPath, wasmVariant } from '../native/wasm-node.js';

/** One CUDA device: name, memory, compute capability, SM count, TF32. */
export type CudaDeviceInfo = NativeCudaDevice;
/** The native CPU engine: SIMD level, threads, GEMM provider, compiler. */
export type CpuInfo = NativeCpuInfo;

/**
 * The CUDA backend. The probe's fields (versions, devices, `emulated`, …) come from the native
 * library as they are (src/native/binding.ts); they are absent when the library could not be
 * loaded, and present — with the device it refused — when it loaded but cannot run.
 */
export interface CudaStatus extends Partial<NativeCudaInfo> {
  /** The CUDA library file exists (`library`). */
  compiled: boolean;
  /** A CUDA driver answered (or the emulator's stand-in for one). */
  driver: boolean;
  usable: boolean;
  /** The "device" is the otlm CUDA emulator running on the CPU, not a GPU. */
  emulated: boolean;
  /** The library file tried: OTLM_CUDA_LIB when set, else libotlm_cuda.so beside the addon. */
  library?: string;
  devices: CudaDeviceInfo[];
  /** Why CUDA is not used, when it is not. */
  reason?: string;
}

/** The `tfjs` backend: its optional peer packages, resolved without loading them. */
export interface TfjsStatus {
  /** `@tensorflow/tfjs` resolves: `backend: 'tfjs'` can run (with `tfBackend: 'cpu'` at least). */
  available: boolean;
  /** `@tensorflow/tfjs-backend-wasm` resolves too (the default `tfBackend: 'wasm'`). */
  wasm: boolean;
  /** What is missing, when something is. */
  reason?: string;
}

/** The WebAssembly engine (backend 'wasm'): the CPU engine compiled to WebAssembly, threaded where the host allows it. */
export interface WasmStatus {
  /** lib/wasm/otlm.wasm loaded and answered. */
  available: boolean;
  /** The .wasm file (otlm-mt.wasm when the threaded build runs). */
  path: string;
  /** 'wasm-simd128' (WebAssembly SIMD), when available. */
  simd?: string;
  /** GEMM of the engine ('builtin-baseline': the packed builtin, compiled for WebAssembly SIMD). */
  gemm?: string;
  compiler?: string;
  /** Which build runs: 'threads' (lib/wasm/otlm-mt.wasm, a pool of worker threads) or 'single' (lib/wasm/otlm.wasm). */
  variant?: 'threads' | 'single';
  /** Threads a call uses by default (OTLM_THREADS, else the cores; 1 for 'single'). */
  threads?: number;
  /** Why the single-threaded build runs (or why fewer threads than asked), when it does. */
  variantReason?: string;
  /** Why it is not available. */
  reason?: string;
}

export interface OtlmInfo {
  version: string;
  node: string;
  platform: string;
  /** Backends that can run here, in the order `auto` prefers them. */
  backends: Array<'cuda' | 'cpu' | 'wasm' | 'tfjs' | 'reference'>;
  /** What `backend: 'auto'` runs on: CUDA, else the native CPU engine, else wasm, else the reference path. */
  active: 'cuda' | 'cpu' | 'wasm' | 'reference';
  /** Why `active` was chosen over the backends before it (e.g. why not the native addon). */
  activeReason: string;
  native: {
    loaded: boolean;
    path?: string;
    source?: 'override' | 'build' | 'prebuild';
    /** Why the addon did not load (the pure-TS paths still work). */
    reason?: string;
  };
  cpu?: CpuInfo;
  cuda: CudaStatus;
  wasm: WasmStatus;
  tfjs: TfjsStatus;
}

/**
 * Whether tfjs' optional peers resolve from this package, without importing them
 * (`resolve` is injectable for tests).
 */
export function tfjsStatus(resolve: (id: string) => string = createRequire(import.meta.url).resolve): TfjsStatus {
  const has = (id: string) => {
    try {
      resolve(id);
      return true;
    } catch {
      return false;
    }
  };
  const available = has('@tensorflow/tfjs');
  const wasm = available && has('@tensorflow/tfjs-backend-wasm');
  const out: TfjsStatus = { available, wasm };
  if (!available) out.reason = 'the optional package @tensorflow/tfjs is not installed';
  else if (!wasm) out.reason = "@tensorflow/tfjs-backend-wasm is not installed: only tfBackend 'cpu' runs";
  return out;
}

/** Describes this installation: version, backends and the reason for each missing piece. */
export function info(): OtlmInfo {
  const out: OtlmInfo = {
    version: packageVersion(),
    node: process.versions.node,
    platform: `${process.platform}-${process.arch}`,
    backends: [],
    active: 'reference',
    native: { loaded: false },
    cpu: undefined,
    cuda: { compiled: false, driver: false, usable: false, emulated: false, devices: [] },
    wasm: wasmStatus(),
    tfjs: tfjsStatus(),
    activeReason: '',
  };
  let native;
  try {
    native = loadNative();
  } catch (e) {
    out.native.reason = (e as Error).message;
    out.cuda.reason = 'the native addon did not load';
  }
  if (native) {
    const from = nativeLoadedFrom();
    out.native = { loaded: true, path: from?.path, source: from?.source };
    const ni = native.info();
    out.cpu = ni.cpu;
    const probe = ni.cuda.info;
    out.cuda = {
      compiled: ni.cuda.built,
      driver: probe?.driverVersion != null,
      usable: ni.cuda.usable,
      emulated: probe?.emulated ?? false,
      library: ni.cuda.path,
      ...probe,
      devices: probe?.devices ?? [],
    };
    if (!ni.cuda.usable) out.cuda.reason = ni.cuda.reason;
    if (ni.cuda.usable) out.backends.push('cuda');
    out.backends.push('cpu');
    out.active = ni.cuda.usable ? 'cuda' : 'cpu';
    out.activeReason = ni.cuda.usable ? 'a usable CUDA device' : `the native CPU engine; no CUDA: ${ni.cuda.reason}`;
  }
  if (out.wasm.available) {
    out.backends.push('wasm');
    if (!native) {
      out.active = 'wasm';
      out.activeReason = 'the native addon did not load (see native.reason): the WebAssembly engine runs';
    }
  }
  if (out.active === 'reference')
    out.activeReason = `neither the native addon nor the WebAssembly engine loaded (${out.wasm.reason}): the float64 TypeScript path runs, slowly`;
  if (out.tfjs.available) out.backends.push('tfjs');
  out.backends.push('reference');
  return out;
}

function wasmStatus(): WasmStatus {
  const path = wasmPath();
  try {
    const cpu = loadWasm().info().cpu;
    const v = wasmVariant();
    return {
      available: true,
      path: v?.variant === 'threads' ? wasmThreadsPath() : path,
      simd: cpu.simd,
      gemm: cpu.gemm,
      compiler: cpu.compiler,
      ...(v ? { variant: v.variant, threads: v.threads, ...(v.reason ? { variantReason: v.reason } : {}) } : {}),
    };
  } catch (e) {
    return { available: false, path, reason: (e as Error).message };
  }
}
