// info() and `otlm info`: the typed backend description that crosses the N-API boundary
// (otlm_backend_info → NativeInfo → OtlmInfo), on whatever machine runs the tests, and the
// printing of GPU and emulator descriptions (synthetic ones: this machine may have neither).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { info, tfjsStatus, type OtlmInfo } from '../../src/api/info.js';
import { infoText } from '../../src/cli/format.js';
import { loadNative } from '../../src/native/loader.js';

const root = resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(join(tmpdir(), 'otlm-info-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `otlm info --json` and `otlm info` in a child process with extra environment. */
function cli(env: Record<string, string>): { json: OtlmInfo; text: string } {
  const run = (args: string[]) =>
    execFileSync(process.execPath, [join(root, 'bin/otlm.js'), 'info', ...args], {
      cwd: root,
      env: { ...process.env, OTLM_QUIET: '1', ...env },
      encoding: 'utf8',
    });
  return { json: JSON.parse(run(['--json'])) as OtlmInfo, text: run([]) };
}

const NO_JUNK = /NaN|undefined|null|\[object|sm_\b|\?/;

/** The printed text without the reasons quoted from elsewhere (a dlerror() may say 'undefined symbol'). */
function own(text: string, i: OtlmInfo): string {
  let t = text;
  for (const r of [i.cuda.reason, i.native.reason, i.tfjs.reason]) if (r) t = t.split(r).join('<reason>');
  return t;
}

describe('native info(): typed objects, no JSON text', () => {
  it('the CPU backend fills simd, threads, gemm and compiler', () => {
    const ni = loadNative().info();
    expect(ni.abi).toBe(2);
    expect(typeof ni.cpu).toBe('object');
    expect(['avx512', 'avx2-fma', 'baseline']).toContain(ni.cpu.simd);
    expect(Number.isInteger(ni.cpu.threads) && ni.cpu.threads >= 1).toBe(true);
    expect(ni.cpu.gemm).toMatch(/^(openblas-static|openblas|builtin-(avx512|avx2|baseline))$/);
    expect(ni.cpu.compiler).toMatch(/^(gcc|clang|msvc) /);
  });

  it('the CUDA part is a status plus, when the library ran its probe, a typed object', () => {
    const c = loadNative().info().cuda;
    expect(typeof c.path).toBe('string');
    expect(typeof c.built).toBe('boolean');
    expect(typeof c.usable).toBe('boolean');
    if (!c.usable) expect(c.reason.length).toBeGreaterThan(0);
    if (!c.built) expect(c.info).toBeNull();
    if (c.info) {
      expect(typeof c.info.emulated).toBe('boolean');
      expect(c.info.driverVersion === null || /^\d+\.\d+$/.test(c.info.driverVersion)).toBe(true);
      expect(c.info.runtimeVersion === null || /^\d+\.\d+$/.test(c.info.runtimeVersion)).toBe(true);
      expect(c.info.gemm).toMatch(/^otlm-(fp32|tf32)$/);
      expect(c.info.arch.length).toBeGreaterThan(0);
      expect(c.info.devices.length).toBe(Math.min(c.info.deviceCount, 16));
      for (const d of c.info.devices) {
        expect(d.name.length).toBeGreaterThan(0);
        expect(d.memoryBytes).toBeGreaterThan(0);
        expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
        expect(d.tf32).toBe(Number(d.computeCapability) >= 8);
      }
    }
  });
});

describe('info() on this machine', () => {
  const i = info();

  it('lists only backends that can run, and says why CUDA is not one of them', () => {
    expect(i.backends).toContain('cpu');
    expect(i.backends.at(-1)).toBe('reference');
    expect(i.backends.includes('tfjs')).toBe(i.tfjs.available);
    expect(i.backends.includes('cuda')).toBe(i.cuda.usable);
    expect(i.active).toBe(i.cuda.usable ? 'cuda' : 'cpu');
    if (!i.cuda.usable) {
      expect(i.cuda.reason).toBeTruthy();
      // The driver flag comes from the probe's driver version, not from the reason's wording.
      expect(i.cuda.driver).toBe(typeof i.cuda.driverVersion === 'string');
    } else {
      expect(i.cuda.reason).toBeUndefined();
      expect(i.cuda.devices.length).toBeGreaterThan(0);
    }
    expect(typeof i.cuda.emulated).toBe('boolean');
    expect(i.cuda.library).toBeTruthy();
  });

  it('`otlm info` prints every field without NaN, undefined or placeholders', () => {
    const { json, text } = cli({});
    expect(json.backends).toEqual(i.backends);
    expect(json.cpu).toEqual(i.cpu);
    expect(json.cuda.usable).toBe(i.cuda.usable);
    expect(own(text, json)).not.toMatch(NO_JUNK);
    expect(text).toMatch(/^CPU +SIMD (avx512|avx2-fma|baseline), \d+ threads?$/m);
    expect(text).toMatch(/^CUDA +compiled: (yes|no), driver: (yes|no), usable: (yes|no)/m);
    expect(text).toMatch(/^tfjs +/m);
    if (!i.cuda.usable) expect(text).toContain(`not used: ${i.cuda.reason}`);
    if (i.cuda.runtimeVersion) expect(text).toContain(`runtime ${i.cuda.runtimeVersion}`);
  });
});

describe('OTLM_CUDA_LIB', () => {
  it('names the library tried; a missing file is reported as such', () => {
    const missing = join(scratch, 'nowhere', 'libotlm_cuda.so');
    const { json, text } = cli({ OTLM_CUDA_LIB: missing });
    expect(json.cuda.library).toBe(missing);
    expect(json.cuda).toMatchObject({ compiled: false, driver: false, usable: false, emulated: false, devices: [] });
    expect(json.cuda.reason).toContain(`${missing} does not exist`);
    expect(text).toContain(`library ${missing}`);
    expect(own(text, json)).not.toMatch(NO_JUNK);
  });

  it('a file that is not a shared library: cannot load, with the loader error', () => {
    const bogus = join(scratch, 'bogus.so');
    writeFileSync(bogus, 'not an ELF file');
    const { json } = cli({ OTLM_CUDA_LIB: bogus });
    expect(json.cuda).toMatchObject({ compiled: true, usable: false, library: bogus });
    expect(json.cuda.reason).toMatch(/^cannot load .*bogus\.so: /);
    expect(json.cuda.runtimeVersion).toBeUndefined(); // the probe never ran
  });

  const built = info().cuda.library;
  const haveBuild = !process.env.OTLM_CUDA_LIB && built !== undefined && existsSync(built);
  const explicitName = haveBuild
    ? 'loads the CUDA library from an explicit path (a copy of this build’s)'
    : 'loads the CUDA library from an explicit path (skipped: no CUDA library was built here, or OTLM_CUDA_LIB is already set)';
  (haveBuild ? it : it.skip)(explicitName, () => {
    const copy = join(scratch, 'copy', 'libotlm_cuda_copy.so');
    mkdirSync(join(scratch, 'copy'));
    copyFileSync(built!, copy);
    const { json, text } = cli({ OTLM_CUDA_LIB: copy });
    expect(json.cuda.library).toBe(copy);
    expect(json.cuda.compiled).toBe(true);
    // The probe ran (its findings are there whether or not a device is usable).
    expect(json.cuda.runtimeVersion).toMatch(/^\d+\.\d+$/);
    expect(json.cuda.arch).toBeTruthy();
    expect(json.cuda.compiler).toBeTruthy();
    expect(json.cuda.usable).toBe(info().cuda.usable);
    expect(text).toContain(`library ${copy}`);
    expect(own(text, json)).not.toMatch(NO_JUNK);
  });
});

describe('tfjs is listed only when its optional peers resolve', () => {
  const none = () => {
    throw new Error('Cannot find module');
  };
  it('nothing installed', () => {
    expect(tfjsStatus(none)).toEqual({ available: false, wasm: false, reason: expect.stringContaining('@tensorflow/tfjs') });
  });
  it('tfjs without the wasm backend: available, cpu only', () => {
    const s = tfjsStatus((id) => (id === '@tensorflow/tfjs' ? '/x/tf.js' : none()));
    expect(s).toMatchObject({ available: true, wasm: false });
    expect(s.reason).toMatch(/tfjs-backend-wasm.*'cpu'/);
  });
  it('both installed', () => {
    expect(tfjsStatus((id) => `/x/${id}.js`)).toEqual({ available: true, wasm: true });
  });
  it('this package: matches a real resolution, without loading tfjs', () => {
    const s = tfjsStatus();
    let resolves = true;
    try {
      createRequire(import.meta.url).resolve('@tensorflow/tfjs');
    } catch {
      resolves = false;
    }
    expect(s.available).toBe(resolves);
  });
});

describe('`otlm info` text for devices this machine may not have', () => {
  const base: OtlmInfo = {
    version: '0.1.0',
    node: '20.0.0',
    platform: 'linux-x64',
    backends: ['cuda', 'cpu', 'tfjs', 'reference'],
    active: 'cuda',
    native: { loaded: true, path: '/p/otlm.node', source: 'build' },
    cpu: { simd: 'avx2-fma', threads: 16, gemm: 'openblas-static', compiler: 'gcc 12.2.0' },
    cuda: {
      compiled: true, driver: true, usable: true, emulated: false, library: '/p/libotlm_cuda.so',
      driverVersion: '13.0', runtimeVersion: '13.0', device: 0, gemm: 'otlm-fp32', arch: 'sm_90',
      compiler: 'nvcc 13.0, host gcc 12.2.0', deviceCount: 1,
      devices: [{ index: 0, name: 'NVIDIA H200', memoryBytes: 150_109_880_320, computeCapability: '9.0', smCount: 132, tf32: true }],
    },
    wasm: { available: true, path: '/p/lib/wasm/otlm.wasm', simd: 'wasm-simd128', gemm: 'builtin-baseline', compiler: 'clang 14.0.6' },
    tfjs: { available: true, wasm: true },
    activeReason: 'a usable CUDA device',
  };

  it('no native addon: auto runs the WebAssembly engine and says why', () => {
    const t = infoText({
      ...base,
      backends: ['wasm', 'tfjs', 'reference'],
      active: 'wasm',
      activeReason: 'the native addon did not load (see native.reason): the WebAssembly engine runs',
      native: { loaded: false, reason: 'otlm: cannot load the native addon.' },
      cpu: undefined,
      cuda: { compiled: false, driver: false, usable: false, emulated: false, devices: [], reason: 'the native addon did not load' },
    });
    expect(t).toContain('(auto → wasm)');
    expect(t).toContain('wasm          SIMD wasm-simd128, GEMM builtin-baseline, single-threaded');
    expect(t).toContain('auto → wasm: the native addon did not load');
    expect(t).not.toMatch(NO_JUNK);
  });

  it('a GPU: memory in GiB, sm_90, driver and runtime versions', () => {
    const t = infoText(base);
    expect(t).toContain('device 0: NVIDIA H200, 139.8 GiB, sm_90, 132 SMs, TF32  [in use]');
    expect(t).toContain('driver 13.0, runtime 13.0, built for sm_90, GEMM otlm-fp32');
    expect(t).toContain('(auto → cuda)');
    expect(t).not.toMatch(NO_JUNK);
    expect(t).not.toMatch(/EMULATED/);
  });

  it('a device that is too old: shown, refused, with the reason', () => {
    const t = infoText({
      ...base,
      backends: ['cpu', 'tfjs', 'reference'],
      active: 'cpu',
      cuda: {
        ...base.cuda, usable: false,
        devices: [{ index: 0, name: 'Tesla V100', memoryBytes: 17_179_869_184, computeCapability: '7.0', smCount: 80, tf32: false }],
        reason: 'CUDA device 0 (Tesla V100) is too old: compute capability 7.0; the CUDA backend needs 7.5 or newer',
      },
    });
    expect(t).toContain('device 0: Tesla V100, 16.0 GiB, sm_70, 80 SMs  [refused]');
    expect(t).toContain('not used: CUDA device 0 (Tesla V100) is too old');
    expect(t).not.toMatch(NO_JUNK);
  });

  it('the emulator: says EMULATED wherever CUDA is named', () => {
    const t = infoText({
      ...base,
      cuda: {
        ...base.cuda, emulated: true, arch: 'emulated', compiler: 'otlm CUDA emulator, gcc 12.2.0',
        devices: [{ index: 0, name: 'otlm CUDA emulator (CPU)', memoryBytes: 8 * 2 ** 30, computeCapability: '9.0', smCount: 2, tf32: true }],
      },
    });
    expect(t).toMatch(/auto → cuda, EMULATED on the CPU/);
    expect(t).toMatch(/^CUDA .*usable: yes — EMULATED/m);
    expect(t).toContain('device 0: otlm CUDA emulator (CPU), 8.0 GiB, sm_90');
    expect(t).not.toMatch(NO_JUNK);
  });

  it('no native addon: no CPU lines, no CUDA details, the reasons', () => {
    const t = infoText({
      ...base,
      backends: ['reference'],
      active: 'reference',
      native: { loaded: false, reason: 'otlm: cannot load the native addon.' },
      cpu: undefined,
      cuda: { compiled: false, driver: false, usable: false, emulated: false, devices: [], reason: 'the native addon did not load' },
      tfjs: { available: false, wasm: false, reason: 'the optional package @tensorflow/tfjs is not installed' },
    });
    expect(t).toContain('native addon  not loaded: otlm: cannot load the native addon.');
    expect(t).toContain('tfjs          not available');
    expect(t).not.toMatch(/^CPU/m);
    expect(t).not.toMatch(NO_JUNK);
  });
});
