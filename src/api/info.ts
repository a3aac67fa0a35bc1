import { packageVersion } from '../native/package-root.js';
import { loadNative, nativeLoadedFrom } from '../native/loader.js';

export interface CudaDeviceInfo {
  name: string;
  memoryBytes: number;
  computeCapability: string;
  [key: string]: unknown;
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
  cpu?: { simd: string; threads: number; gemm: string; compiler: string };
  cuda: {
    compiled: boolean;
    driver: boolean;
    usable: boolean;
    library?: string;
    devices: CudaDeviceInfo[];
    driverVersion?: string;
    runtimeVersion?: string;
    /** Why CUDA is not used, when it is not. */
    reason?: string;
  };
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
    cuda: { compiled: false, driver: false, usable: false, devices: [] },
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
    out.cpu = JSON.parse(ni.cpu);
    out.cuda.compiled = ni.cuda.built;
    out.cuda.library = ni.cuda.path;
    out.cuda.usable = ni.cuda.usable;
    if (ni.cuda.info) {
      const ci = JSON.parse(ni.cuda.info) as { devices?: CudaDeviceInfo[]; driverVersion?: string; runtimeVersion?: string };
      out.cuda.devices = ci.devices ?? [];
      out.cuda.driverVersion = ci.driverVersion;
      out.cuda.runtimeVersion = ci.runtimeVersion;
      out.cuda.driver = true;
    } else {
      // The CUDA library says 'no CUDA driver: ...' when the driver is missing; any later
      // failure ('no CUDA device (driver 12.4)', a failed probe kernel) means a driver answered.
      out.cuda.driver = ni.cuda.built && !/^no CUDA driver|not built|cannot load|has no symbol|ABI/.test(ni.cuda.reason);
      out.cuda.reason = ni.cuda.reason;
    }
    if (ni.cuda.usable) out.backends.push('cuda');
    out.backends.push('cpu');
    out.active = ni.cuda.usable ? 'cuda' : 'cpu';
  }
  out.backends.push('tfjs', 'reference');
  return out;
}
