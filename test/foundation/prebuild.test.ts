// A package holding only prebuilds/ (no build/) loads the prebuilt binary: builds the
// prebuild with `scripts/prebuild.cjs` (prebuildify + node-gyp, i.e. binding.gyp, so this
// also proves the gyp build compiles the same sources as CMake), then loads it from a
// scratch package with no build/ directory.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(join(tmpdir(), 'otlm-prebuilt-pkg-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('prebuilt binaries', () => {
  it('builds prebuilds/ and loads them when build/ is absent', { timeout: 900_000 }, () => {
    execFileSync(process.execPath, [join(root, 'scripts/prebuild.cjs'), '--out', scratch], { cwd: root, stdio: 'pipe' });
    const dir = join(scratch, 'prebuilds', `${process.platform}-${process.arch}`);
    expect(readdirSync(dir).some((f) => f.endsWith('.node'))).toBe(true);

    cpSync(join(root, 'package.json'), join(scratch, 'package.json'));
    cpSync(join(root, 'lib'), join(scratch, 'lib'), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'), 'dir');
    expect(existsSync(join(scratch, 'build'))).toBe(false);

    const script = `
      const m = require('./lib/index.cjs');
      const i = m.info();
      const b = require(i.native.path);
      const c = b.gemmSync({ a: new Float32Array([1, 2, 3, 4]), b: new Float32Array([0, 1, 1, 0]), m: 2, n: 2, kk: 2 });
      console.log(JSON.stringify({ native: i.native, c: Array.from(c) }));`;
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
  });
});
