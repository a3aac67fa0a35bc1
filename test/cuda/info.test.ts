// info() with the CUDA library named by OTLM_CUDA_LIB: a real one (bench/gpu-check.sh sets it
// on a GPU machine) or the emulated one (build-emu/Release/libotlm_cuda_emu.so, compiled with
// OTLM_CUDA_EMU=1). Skipped, with the reason, when OTLM_CUDA_LIB is not set.
import { execFileSync } from 'node:child_process';
import { basename, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { info } from '../../src/api/info.js';
import { infoText } from '../../src/cli/format.js';

const lib = process.env.OTLM_CUDA_LIB;
const root = resolve(import.meta.dirname, '../..');

const suite = lib
  ? `CUDA info with OTLM_CUDA_LIB=${lib}`
  : 'CUDA info with OTLM_CUDA_LIB (skipped: OTLM_CUDA_LIB is not set; point it at a CUDA library, e.g. build-emu/Release/libotlm_cuda_emu.so)';

describe.skipIf(!lib)(suite, () => {
  const i = info();
  const c = i.cuda;
  const emuName = /emu/.test(basename(lib ?? ''));

  it('info().cuda.library is the library named, and it was found', () => {
    expect(c.library).toBe(lib);
    expect(c.compiled).toBe(true);
  });

  it('the probe ran: runtime version, compiled architectures, and a reason when unusable', () => {
    expect(c.runtimeVersion).toMatch(/^\d+\.\d+$/);
    expect(c.arch).toBeTruthy();
    if (!c.usable) {
      expect(c.reason).toBeTruthy();
      expect(i.backends).not.toContain('cuda');
    }
  });

  it.runIf(c.usable)('a usable library names its device: memory, compute capability, driver and runtime', () => {
    expect(i.backends[0]).toBe('cuda');
    expect(i.active).toBe('cuda');
    expect(c.driver).toBe(true);
    expect(c.driverVersion).toMatch(/^\d+\.\d+$/);
    expect(c.device).toBeTypeOf('number');
    const d = c.devices.find((x) => x.index === c.device);
    expect(d).toBeDefined();
    expect(d!.name.length).toBeGreaterThan(0);
    expect(d!.memoryBytes).toBeGreaterThan(0);
    expect(d!.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(Number(d!.computeCapability)).toBeGreaterThanOrEqual(7.5);
    expect(d!.smCount).toBeGreaterThan(0);
    expect(d!.tf32).toBe(Number(d!.computeCapability) >= 8);
    const t = infoText(i);
    expect(t).toContain(`device ${d!.index}: ${d!.name}, `);
    expect(t).toContain(`sm_${d!.computeCapability.replace('.', '')}`);
    expect(t).toContain(`driver ${c.driverVersion}, runtime ${c.runtimeVersion}`);
    expect(t).not.toMatch(/NaN|undefined|null/);
  });

  it('the emulator says it is one (library compiled with OTLM_CUDA_EMU=1)', () => {
    if (!emuName && !c.emulated) return; // a real CUDA library: covered by the test above
    expect(c.emulated).toBe(true);
    expect(c.compiler).toMatch(/emulator/);
    if (c.usable) {
      expect(c.devices[0]?.name).toBe('otlm CUDA emulator (CPU)');
      const t = infoText(i);
      expect(t).toMatch(/EMULATED/);
      expect(t).toMatch(/auto → cuda, EMULATED on the CPU/);
    }
  });

  it('a real CUDA library does not claim to be emulated', () => {
    if (emuName) return;
    if (c.compiler && /^nvcc /.test(c.compiler)) expect(c.emulated).toBe(false);
  });

  it('`otlm info` in a child process shows the same library', () => {
    const out = execFileSync(process.execPath, [resolve(root, 'bin/otlm.js'), 'info', '--json'], {
      cwd: root,
      env: { ...process.env, OTLM_QUIET: '1' },
      encoding: 'utf8',
    });
    const j = JSON.parse(out);
    expect(j.cuda.library).toBe(lib);
    expect(j.cuda.usable).toBe(c.usable);
    expect(j.cuda.emulated).toBe(c.emulated);
  });
});
