import { createRequire } from 'node:module';

import type { NativeCpuInfo, NativeCudaDevice, NativeCudaInfo } from '../native/binding.js';
import { packageVersion } from '../native/package-root.js';
import { loadNative, nativeLoadedFrom } from '../native/loader.js';

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

export interface OtlmInfo {
  version: string;
  node: string;
  platform: string;
  /** Backends that can run here, in the order `auto` prefers them. */
  backends: Array<'cuda' | 'cpu' | 'tfjs' | 'reference'>;
  /** What `backend: 'auto'` runs on. */
  active: 'cuda' | 'cpu' | 'reference';
  native: {
    loaded: boolean;
    path?: string;
    source?: 'override' | 'build' | 'prebuild';
    /** Why the addon did not load (the pure-TS paths still work). */
    reason?: string;
  };
  cpu?: CpuInfo;
  cuda: CudaStatus;
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
    tfjs: tfjsStatus(),
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
  }
  if (out.tfjs.available) out.backends.push('tfjs');
  out.backends.push('reference');
  return out;
}
