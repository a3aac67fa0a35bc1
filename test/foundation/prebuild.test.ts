// A package holding only prebuilds/ (no build/) loads the prebuilt binary: builds the prebuild with
// `scripts/prebuild.cjs` (prebuildify + node-gyp, i.e. binding.gyp, so this also proves the gyp build
// compiles the same sources as CMake; CPU only: `npm run test:install` covers the CUDA library), then
// loads it from a scratch package with no build/ directory, and runs the install script there.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(join(tmpdir(), 'otlm-prebuilt-pkg-'));
const dir = join(scratch, 'prebuilds', `${process.platform}-${process.arch}`);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The install script in the scratch package, on a PATH holding node only (no compiler, no cmake). */
function install(env: Record<string, string> = {}) {
  const bin = join(scratch, 'bin');
  if (!existsSync(bin)) {
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
  }
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(OTLM_|npm_config_build_from_source|CXX$)/i.test(k)),
  ) as Record<string, string>;
  const r = spawnSync(process.execPath, [join(scratch, 'scripts', 'install.cjs')], {
    cwd: scratch,
    encoding: 'utf8',
    env: { ...clean, PATH: bin, ...env },
  });
  return { status: r.status, stderr: r.stderr };
}

describe('prebuilt binaries', () => {
  it('builds prebuilds/ and loads them when build/ is absent', { timeout: 900_000 }, () => {
    execFileSync(process.execPath, [join(root, 'scripts/prebuild.cjs'), '--out', scratch, '--no-cuda'], { cwd: root, stdio: 'pipe' });
    // Tagged for node-gyp-build: N-API (no ABI tag), the libc.
    expect(readdirSync(dir)).toEqual(['otlm.glibc.node']);

    cpSync(join(root, 'package.json'), join(scratch, 'package.json'));
    cpSync(join(root, 'lib'), join(scratch, 'lib'), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'), 'dir');
    expect(existsSync(join(scratch, 'build'))).toBe(false);

    const script = `
      const m = require('./lib/index.cjs');
      const i = m.info();
      const b = require(i.native.path);
      const c = b.gemmSync({ a: new Float32Array([1, 2, 3, 4]), b: new Float32Array([0, 1, 1, 0]), m: 2, n: 2, kk: 2 });
      console.log(JSON.stringify({ native: i.native, gemm: i.cpu.gemm, c: Array.from(c) }));`;
    const out = execFileSync(process.execPath, ['-e', script], {
      cwd: scratch,
      encoding: 'utf8',
      env: { ...process.env, OTLM_NATIVE_PATH: '' },
    });
    const r = JSON.parse(out);
    expect(r.native.loaded).toBe(true);
    expect(r.native.source).toBe('prebuild');
    expect(r.native.path.startsWith(dir)).toBe(true);
    expect(r.c).toEqual([2, 1, 4, 3]); // [[1,2],[3,4]]·[[0,1],[1,0]] computed by the prebuilt engine
    if (existsSync('/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a')) expect(r.gemm).toBe('openblas-static');
  });

  it('the install script takes a prebuild that loads, and builds from source when asked or when it does not load', () => {
    expect(readdirSync(dir).length).toBe(1); // the test above made it
    mkdirSync(join(scratch, 'scripts'), { recursive: true });
    copyFileSync(join(root, 'scripts', 'install.cjs'), join(scratch, 'scripts', 'install.cjs'));
    const file = join(dir, readdirSync(dir)[0]);

    let r = install();
    expect(r.stderr).toBe(`otlm: using the prebuilt binary ${file.slice(scratch.length + 1)}\n`);
    expect(r.status).toBe(0);

    // Forced: without a compiler the install fails and says what is missing, and how to avoid the build.
    for (const [env, flag] of [
      [{ OTLM_BUILD_FROM_SOURCE: '1' }, 'OTLM_BUILD_FROM_SOURCE=1'],
      [{ npm_config_build_from_source: 'true' }, '--build-from-source'],
    ] as const) {
      r = install(env);
      expect(r.stderr).toContain(`building the native addon from source (${flag})`);
      expect(r.stderr).toContain('cannot build: no C++ compiler found (c++, g++ or clang++ on PATH)');
      expect(r.stderr).toContain(`or drop ${flag} to use the prebuilt binary`);
      expect(r.status).toBe(1);
    }

    // A prebuild that does not load: the reason, then the source build, which fails here for want of a
    // compiler; unforced, that leaves the install working (the wasm engine or the reference path run).
    const good = join(scratch, 'good.node.bak');
    copyFileSync(file, good);
    try {
      writeFileSync(file, 'not a shared library');
      r = install();
      expect(r.stderr).toMatch(/building the native addon from source \(the prebuilt binary prebuilds\/.+ does not load: .*(invalid ELF header|file too short)/);
      expect(r.stderr).toContain('no C++ compiler found');
      expect(r.stderr).not.toContain('or drop');
      expect(r.stderr).toContain('otlm works without it');
      expect(r.status).toBe(0);
    } finally {
      copyFileSync(good, file);
    }
  });
});
