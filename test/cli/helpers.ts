/** Shared by the CLI and report tests: build lib/ once when stale, run the built binary. */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll } from 'vitest';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'otlm.js');
export const DATA = path.join(ROOT, 'data', 'fmnist-lt');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/** `npm run build:ts` when lib/cli/main.js is missing or older than any src/ file; a lock dir serialises test files. */
export function ensureBuilt(): void {
  const target = path.join(ROOT, 'lib', 'cli', 'main.js');
  const stale = () => !fs.existsSync(target) || fs.statSync(target).mtimeMs < newestMtime(path.join(ROOT, 'src'));
  if (!stale()) return;
  const lock = path.join(ROOT, 'test', 'out', '.build-lock');
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try { fs.mkdirSync(lock); break; } catch { /* another test file is building */ }
    if (Date.now() > deadline) throw new Error('timed out waiting for the build lock ' + lock);
    execFileSync('sleep', ['0.5']);
  }
  try {
    if (stale()) execFileSync('npm', ['run', 'build:ts'], { cwd: ROOT, stdio: 'pipe' });
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

export interface RunResult { code: number; stdout: string; stderr: string; stdoutBytes: Buffer }

/** Runs `node bin/otlm.js ...args` (not a TTY) and returns its exit code and output. */
export function otlm(args: string[], opts: { input?: Buffer | string; cwd?: string; env?: Record<string, string> } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT, input: opts.input, env: { ...process.env, OTLM_DEBUG: '', ...opts.env }, timeout: 120_000, maxBuffer: 64 << 20,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), stdoutBytes: r.stdout };
}

const made: string[] = [];
// Each test file evaluates this module anew, so this removes that file's directories.
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** Fresh temporary directory under test/out, removed after the test file. */
export function tmpDir(name: string): string {
  const base = path.join(ROOT, 'test', 'out');
  fs.mkdirSync(base, { recursive: true });
  const d = fs.mkdtempSync(path.join(base, `${name}-`));
  made.push(d);
  return d;
}

/** Files in dir (hidden temp files included), to check that nothing partial was left. */
export const listDir = (dir: string): string[] => fs.readdirSync(dir).sort();

/** A minimal .npy writer, independent of src/io (so tests do not check the reader with itself). */
export function npy(descr: string, shape: number[], bytes: Uint8Array): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const head = Buffer.alloc(total, 0x20);
  Buffer.from([0x93]).copy(head, 0);
  head.write('NUMPY', 1, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(total - 10, 8);
  head.write(dict, 10, 'latin1');
  head[total - 1] = 0x0a;
  return Buffer.concat([head, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]);
}

export const f32npy = (rows: number, cols: number, data: number[]): Buffer => npy('<f4', [rows, cols], new Uint8Array(Float32Array.from(data).buffer));
export const i32npy = (data: number[]): Buffer => npy('<i4', [data.length], new Uint8Array(Int32Array.from(data).buffer));

/** Parse a float32/int32 C-order .npy (as written by otlm) for checking outputs. */
export function readNpy(buf: Buffer): { descr: string; shape: number[]; data: Float32Array | Int32Array | Float64Array } {
  const hl = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + hl).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)![1]!;
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)![1]!.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const body = buf.subarray(10 + hl);
  const ab = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  const data = descr === '<f4' ? new Float32Array(ab) : descr === '<i4' ? new Int32Array(ab) : new Float64Array(ab);
  return { descr, shape, data };
}
