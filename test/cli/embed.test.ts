/** runCli in-process with fake streams: the embedding contract (no process.exit, output only to the given streams). */
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCli } from '../../src/cli/main.js';
import { ROOT, tmpDir, i32npy } from './helpers.js';

function sink(isTTY = false) {
  const chunks: Buffer[] = [];
  return {
    isTTY,
    write(c: string | Uint8Array) { chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c)); return true; },
    get text() { return Buffer.concat(chunks).toString('utf8'); },
    get bytes() { return Buffer.concat(chunks); },
  };
}

describe('runCli (embedded)', () => {
  it('info --json: exit 0, JSON on the given stdout', async () => {
    const out = sink();
    const err = sink();
    const code = await runCli(['info', '--json'], { stdout: out, stderr: err });
    expect(code).toBe(0);
    expect(JSON.parse(out.text).version).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(err.text).toBe('');
  });

  it('usage errors resolve to 1 and never exit the host process', async () => {
    const before = process.exitCode;
    for (const argv of [['nope'], ['info', '--frob'], ['eval'], []]) {
      const out = sink();
      const err = sink();
      const code = await runCli(argv, { stdout: out, stderr: err });
      expect(code, argv.join(' ')).toBe(1);
      expect(err.text).toMatch(/otlm: error: |Usage: otlm/);
    }
    expect(process.exitCode).toBe(before);
  });

  it('--help goes to the given stdout and resolves to 0', async () => {
    const out = sink();
    const code = await runCli(['--help'], { stdout: out, stderr: sink() });
    expect(code).toBe(0);
    expect(out.text).toMatch(/Exit codes:/);
  });

  it("bad input resolves to 2; '-' reads the given stdin", async () => {
    const d = tmpDir('embed');
    const counts = path.join(d, 'c.npy');
    fs.writeFileSync(counts, i32npy([10, 5, 1]));
    const stdin = new PassThrough();
    stdin.end('1,2\n3,4\n'); // 2 classes, but 3 counts
    const err = sink();
    const code = await runCli(['correct', '--method', 'la', '--logits', '-', '--train-counts', counts], { stdout: sink(), stderr: err, stdin });
    expect(code).toBe(2);
    expect(err.text).toMatch(/^otlm: error: --train-counts: .*has 3 entries but the logits have 2 classes\n$/);
  });

  it("'-' without a stdin stream is a clear bad-input error", async () => {
    const err = sink();
    const code = await runCli(['correct', '--logits', '-'], { stdout: sink(), stderr: err });
    expect(code).toBe(2);
    expect(err.text).toMatch(/standard input/);
  });
});

describe('progress bar', () => {
  const args = (d: string, extra: string[] = []) => ['fit', '--logits', path.join(ROOT, 'data', 'fmnist-lt', 'val_logits.npy'), '--out', path.join(d, 'm.npz'),
    '--iterations', '5', '--sinkhorn-iters', '10', '--batch-size', '1000', '--backend', 'cpu', ...extra];
  it('is drawn on a TTY, not when piped, not with --quiet', async () => {
    const d = tmpDir('bar');
    const tty = sink(true);
    expect(await runCli(args(d), { stdout: sink(), stderr: tty, isTTY: true })).toBe(0);
    expect(tty.text).toMatch(/fitting OTLM .*5\/5 \| loss \d/);
    const piped = sink(false);
    expect(await runCli(args(d, ['--force']), { stdout: sink(), stderr: piped, isTTY: false })).toBe(0);
    expect(piped.text).not.toMatch(/fitting OTLM/);
    expect(piped.text).toMatch(/otlm fit: 5 steps/);
    const quiet = sink(true);
    expect(await runCli(args(d, ['--force', '--quiet']), { stdout: sink(), stderr: quiet, isTTY: true })).toBe(0);
    expect(quiet.text).toBe('');
    expect(fs.readdirSync(d)).toEqual(['m.npz']);
  });
});
