import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The directory of otlm's package.json, found by walking up from this file
 * (works from lib/ as ESM, from the CommonJS bundle and from src/ under vitest). */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'otlm') return (cached = dir);
      } catch {
        /* not ours: keep walking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`otlm: cannot find the package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export function packageVersion(): string {
  return JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version as string;
}
