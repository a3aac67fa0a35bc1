import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { info } from '../../src/api/info.js';

const root = resolve(import.meta.dirname, '../..');

describe('loader and info()', () => {
  it('reports the version, the active backend and why CUDA is not used', () => {
    const i = info();
    expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(i.native.loaded).toBe(true);
    expect(i.backends).toContain('cpu');
    expect(i.backends).toContain('reference');
    expect(['avx512', 'avx2-fma', 'baseline']).toContain(i.cpu?.simd);
    expect(i.cpu?.threads).toBeGreaterThanOrEqual(1);
    expect(i.cpu?.gemm).toMatch(/openblas|builtin/);
    if (!i.cuda.usable) {
      expect(i.active).toBe('cpu');
      expect(i.cuda.reason).toBeTruthy();
    } else {
      expect(i.active).toBe('cuda');
      expect(i.cuda.devices.length).toBeGreaterThan(0);
    }
  });

  it('loads the addon without OpenBLAS threads of its own, and leaves OPENBLAS_NUM_THREADS as it was', () => {
    // Fresh processes: threads in /proc/self/task once the addon is loaded. OpenBLAS, linked into it,
    // starts one per extra core as it loads unless OPENBLAS_NUM_THREADS=1 (the engine calls it
    // single-threaded only), so the count must not depend on the variable the user set.
    const script = `const fs = require('fs'); const m = require('./lib/index.cjs'); const loaded = m.info().native.loaded;
      console.log(JSON.stringify({ threads: fs.readdirSync('/proc/self/task').length, loaded, env: process.env.OPENBLAS_NUM_THREADS ?? null }));`;
    const run = (value: string | null) => {
      const env = { ...process.env };
      if (value === null) delete env.OPENBLAS_NUM_THREADS;
      else env.OPENBLAS_NUM_THREADS = value;
      return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: root, env, encoding: 'utf8' }));
    };
    const [unset, one, three] = [run(null), run('1'), run('3')];
    expect(unset.loaded && one.loaded && three.loaded).toBe(true);
    expect(unset.threads).toBe(one.threads);
    expect(three.threads).toBe(one.threads);
    expect([unset.env, one.env, three.env]).toEqual([null, '1', '3']);
  });

  it('explains a failed override: which file it tried and what to check', () => {
    const script = `const m = require('./lib/index.cjs'); console.log(JSON.stringify(m.info().native));`;
    const out = execFileSync(process.execPath, ['-e', script], {
      cwd: root,
      env: { ...process.env, OTLM_NATIVE_PATH: '/nonexistent/otlm.node' },
      encoding: 'utf8',
    });
    const nat = JSON.parse(out);
    expect(nat.loaded).toBe(false);
    expect(nat.reason).toMatch(/\/nonexistent\/otlm\.node: not found/);
    expect(nat.reason).toMatch(/OTLM_NATIVE_PATH/);
  });

  it('explains a file that is not a valid addon (wrong platform / corrupt)', () => {
    const bogus = join(mkdtempSync(join(tmpdir(), 'otlm-')), 'otlm.node');
    writeFileSync(bogus, 'this is not an ELF file. '.repeat(20));
    const script = `const m = require('./lib/index.cjs'); try { console.log(JSON.stringify(m.info().native)); } catch (e) { console.log(e.message); }`;
    const out = execFileSync(process.execPath, ['-e', script], {
      cwd: root,
      env: { ...process.env, OTLM_NATIVE_PATH: bogus },
      encoding: 'utf8',
    });
    const nat = JSON.parse(out);
    expect(nat.loaded).toBe(false);
    expect(nat.reason).toMatch(/otlm\.node: .*not a loadable library.*invalid ELF header/);
    expect(nat.reason).toMatch(/cannot load the native addon/);
  });
});
