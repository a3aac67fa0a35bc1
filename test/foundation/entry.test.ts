// The library entry does not load the CLI (issue 16): `import 'otlm'` must not pull in commander,
// cli-progress or lib/cli/; the command line is the `otlm/cli` subpath (runCli).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ensureBuilt, ROOT } from '../cli/helpers.js';

const LIB = path.join(ROOT, 'lib');

/** Every module lib/index.js can reach through static and dynamic imports: local files and bare packages. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
      else packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(entry);
  return { files, packages };
}

describe("the library entry ('otlm') and the CLI entry ('otlm/cli')", () => {
  beforeAll(() => ensureBuilt());

  it('lib/index.js reaches no CLI module and no CLI dependency', () => {
    const { files, packages } = importGraph(path.join(LIB, 'index.js'));
    expect(files.size).toBeGreaterThan(20);  // the walk found the library
    expect([...files].filter((f) => f.startsWith(path.join(LIB, 'cli') + path.sep))).toEqual([]);
    expect(packages.has('commander')).toBe(false);
    expect(packages.has('cli-progress')).toBe(false);
    expect(packages.has('fflate')).toBe(true);  // the walk sees bare imports
  });

  it('the CommonJS bundle requires neither commander nor cli-progress', () => {
    const cjs = fs.readFileSync(path.join(LIB, 'index.cjs'), 'utf8');
    expect(cjs).not.toMatch(/require\(["'](commander|cli-progress)["']\)/);
  });

  it("'otlm/cli' resolves through the package's exports and gives runCli; 'otlm' gives the evaluation table", () => {
    const script = `const cli = await import('otlm/cli'); const lib = await import('otlm');
      console.log(JSON.stringify([typeof cli.runCli, cli.EXIT_BAD_INPUT, typeof lib.evaluateAll, 'runCli' in lib]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(['function', 2, 'function', false]);
  });
});
