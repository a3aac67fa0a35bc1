// `npm run build` must not run prebuildify: npm runs a script named `pre<X>` before `<X>`, so `prebuild` (or
// `prebuild:ts`...) would run on every build (issue 13).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(fs.readFileSync(path.join(fileURLToPath(new URL('../../', import.meta.url)), 'package.json'), 'utf8'));

describe('package.json scripts', () => {
  it('no pre/post hook runs around build; the prebuilt binaries are `npm run build:prebuilds`', () => {
    const hooks = Object.keys(pkg.scripts).filter((s) => /^(pre|post)build/.test(s));
    expect(hooks).toEqual([]);
    expect(pkg.scripts['build:prebuilds']).toBe('node scripts/prebuild.cjs');
  });
});
