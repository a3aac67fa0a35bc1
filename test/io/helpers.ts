import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const FIX = fileURLToPath(new URL('../fixtures/io/', import.meta.url));
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const fix = (name: string): string => path.join(FIX, name);

interface Expected { dtype: string; shape: number[]; values: (number | string)[] }
/** Values numpy recorded for each fixture (see test/fixtures/make_io_fixtures.py). */
export const EXPECTED: Record<string, Expected> = JSON.parse(fs.readFileSync(fix('expected.json'), 'utf8'));

export function expectedValues(key: string): number[] {
  const e = EXPECTED[key];
  if (!e) throw new Error(`no expected values for ${key}`);
  return e.values.map((v) => (typeof v === 'number' ? v : v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : Number(v)));
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'otlm-io-'));
}

/** Build .npy bytes from a header dict text (padded like numpy) and raw data. */
export function makeNpy(header: string, data: Uint8Array, major = 1): Uint8Array {
  const pre = major === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  const hl = total - pre;
  const text = header + ' '.repeat(hl - header.length - 1) + '\n';
  const out = new Uint8Array(total + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, hl, true); else dv.setUint32(8, hl, true);
  out.set(new TextEncoder().encode(text), pre);
  out.set(data, total);
  return out;
}

/** A python3 with numpy, for checking that numpy reads what we write; null when absent. */
export const PYTHON: string | null = (() => {
  for (const exe of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(exe, ['-c', 'import numpy'], { encoding: 'utf8' });
    if (r.status === 0) return exe;
  }
  return null;
})();
