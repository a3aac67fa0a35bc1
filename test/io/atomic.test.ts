import * as fs from 'node:fs';
import fsCjs from 'node:fs'; // the mutable CommonJS object: spied on, then synced into ESM namespaces
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeFileAtomic } from '../../src/io/atomic.js';
import { IoError } from '../../src/io/errors.js';
import { REPO, tmpDir } from './helpers.js';

const bytes = (s: string) => new TextEncoder().encode(s);

function catchIo(fn: () => void): IoError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(IoError); return e as IoError; }
  throw new Error('expected an IoError');
}

/** Names in a directory other than the ones we expect (i.e. stray temp files). */
const listing = (d: string) => fs.readdirSync(d).sort();

describe('writeFileAtomic', () => {
  afterEach(() => { vi.restoreAllMocks(); syncBuiltinESMExports(); });

  it('writes a new file and leaves no temp file behind', () => {
    const d = tmpDir();
    const f = path.join(d, 'out.npy');
    writeFileAtomic(f, bytes('hello'));
    expect(fs.readFileSync(f, 'utf8')).toBe('hello');
    expect(listing(d)).toEqual(['out.npy']);
  });

  it('refuses to replace an existing file without force, and replaces it with force', () => {
    const d = tmpDir();
    const f = path.join(d, 'out.csv');
    fs.writeFileSync(f, 'old');
    const e = catchIo(() => writeFileAtomic(f, bytes('new')));
    expect(e.kind).toBe('exists');
    expect(e.message).toBe(`${f}: already exists; use --force to replace it`);
    expect(fs.readFileSync(f, 'utf8')).toBe('old');
    writeFileAtomic(f, bytes('new'), { force: true });
    expect(fs.readFileSync(f, 'utf8')).toBe('new');
    expect(listing(d)).toEqual(['out.csv']);
  });

  it('keeps the permissions of a replaced file', () => {
    const d = tmpDir();
    const f = path.join(d, 'out.csv');
    fs.writeFileSync(f, 'old');
    fs.chmodSync(f, 0o640);
    writeFileAtomic(f, bytes('new'), { force: true });
    expect(fs.statSync(f).mode & 0o777).toBe(0o640);
  });

  it('never writes onto an input, even with force, whatever the spelling (relative, .., symlink, hard link)', () => {
    const d = tmpDir();
    const inp = path.join(d, 'logits.npy');
    fs.writeFileSync(inp, 'input');
    fs.mkdirSync(path.join(d, 'sub'));
    fs.symlinkSync(inp, path.join(d, 'link.npy'));
    fs.linkSync(inp, path.join(d, 'hard.npy'));
    const rel = path.relative(process.cwd(), inp);
    for (const out of [inp, rel, path.join(d, 'sub', '..', 'logits.npy'), path.join(d, 'link.npy'), path.join(d, 'hard.npy')]) {
      const e = catchIo(() => writeFileAtomic(out, bytes('x'), { force: true, inputs: ['-', inp] }));
      expect(e.kind).toBe('is-input');
      expect(e.message).toMatch(/refusing to write the output onto an input file .*inputs are never overwritten/);
    }
    // and in the other direction: an input given through a link protects its target
    const e2 = catchIo(() => writeFileAtomic(inp, bytes('x'), { force: true, inputs: [path.join(d, 'link.npy')] }));
    expect(e2.kind).toBe('is-input');
    expect(fs.readFileSync(inp, 'utf8')).toBe('input');
  });

  it('a missing directory is an io error naming the file, with nothing left behind', () => {
    const d = tmpDir();
    const f = path.join(d, 'nope', 'out.npy');
    const e = catchIo(() => writeFileAtomic(f, bytes('x')));
    expect(e.kind).toBe('io');
    expect(e.message).toBe(`${f}: cannot create the output file: the directory does not exist`);
    expect(listing(d)).toEqual([]);
  });

  it('a directory as output is refused', () => {
    const d = tmpDir();
    const e = catchIo(() => writeFileAtomic(d, bytes('x'), { force: true }));
    expect(e.kind).toBe('bad-input');
    expect(e.message).toMatch(/is a directory; expected an output file name/);
  });

  it.skipIf(process.getuid?.() === 0)('an unwritable directory is an io error (permission denied)', () => {
    const d = tmpDir();
    fs.chmodSync(d, 0o555);
    try {
      const e = catchIo(() => writeFileAtomic(path.join(d, 'o.npy'), bytes('x')));
      expect(e.kind).toBe('io');
      expect(e.message).toMatch(/permission denied/);
    } finally {
      fs.chmodSync(d, 0o755);
    }
  });

  it('a failure while writing removes the temp file and leaves an existing output untouched', () => {
    const d = tmpDir();
    const f = path.join(d, 'out.npy');
    fs.writeFileSync(f, 'old');
    // Simulate a full disk at fsync time (the namespace import sees the mock after syncBuiltinESMExports).
    vi.spyOn(fsCjs, 'fsyncSync').mockImplementation(() => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    });
    syncBuiltinESMExports();
    const e = catchIo(() => writeFileAtomic(f, bytes('new'), { force: true }));
    expect(e.kind).toBe('io');
    expect(e.message).toBe(`${f}: cannot write the output file: no space left on the device`);
    vi.restoreAllMocks();
    syncBuiltinESMExports();
    expect(fs.readFileSync(f, 'utf8')).toBe('old');
    expect(listing(d)).toEqual(['out.npy']);
  });

  it('a failed no-clobber move (file appeared meanwhile) reports exists and cleans up', () => {
    const d = tmpDir();
    const f = path.join(d, 'out.npy');
    const realLink = fsCjs.linkSync;
    vi.spyOn(fsCjs, 'linkSync').mockImplementation((a, b) => {
      fs.writeFileSync(f, 'racer'); // another process wins the race
      realLink(a, b);
    });
    syncBuiltinESMExports();
    const e = catchIo(() => writeFileAtomic(f, bytes('mine')));
    expect(e.kind).toBe('exists');
    vi.restoreAllMocks();
    syncBuiltinESMExports();
    expect(fs.readFileSync(f, 'utf8')).toBe('racer');
    expect(listing(d)).toEqual(['out.npy']);
  });
});

describe('writeFileAtomic: long names and stale temp files', () => {
  afterEach(() => { vi.restoreAllMocks(); syncBuiltinESMExports(); });

  /** Run a write while recording the temp path it opens. */
  function tempNameOf(f: string, data: Uint8Array): string {
    let tmp = '';
    const realOpen = fsCjs.openSync;
    vi.spyOn(fsCjs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
      if (String(p).endsWith('.tmp')) tmp = String(p);
      return (realOpen as (...a: unknown[]) => number)(p, ...rest);
    }) as typeof fs.openSync);
    syncBuiltinESMExports();
    writeFileAtomic(f, data);
    vi.restoreAllMocks();
    syncBuiltinESMExports();
    return path.basename(tmp);
  }

  it.each([
    ['a 255-byte ASCII name', 'a'.repeat(251) + '.npy'],
    ['a 253-byte name of 3-byte characters', '語'.repeat(83) + '.npy'],
    ['a 255-byte name mixing 1-, 2- and 4-byte characters', 'é'.repeat(60) + '😀'.repeat(30) + 'x'.repeat(11) + '.npy'],
  ])('%s can be written; the temp name stays within 255 bytes and whole characters', (_, name) => {
    expect(Buffer.byteLength(name)).toBeGreaterThan(250);
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
    const d = tmpDir();
    const f = path.join(d, name);
    const tmp = tempNameOf(f, bytes('long'));
    expect(fs.readFileSync(f, 'utf8')).toBe('long');
    expect(listing(d)).toEqual([name]);
    expect(Buffer.byteLength(tmp)).toBeLessThanOrEqual(255);
    expect(tmp).not.toContain('\ufffd');
    // recognisably the target's: a dot, then the name cut on a character boundary
    const base = tmp.replace(/\.\d+\.[0-9a-f]{12}\.tmp$/, '').slice(1);
    expect(name.startsWith(base)).toBe(true);
    expect(Buffer.byteLength(base)).toBeGreaterThan(200);
  });

  it('a short name keeps the plain temp name .NAME.<pid>.<hex>.tmp', () => {
    const d = tmpDir();
    expect(tempNameOf(path.join(d, 'out.npy'), bytes('x'))).toMatch(new RegExp(`^\\.out\\.npy\\.${process.pid}\\.[0-9a-f]{12}\\.tmp$`));
  });

  /**
   * A child process writes 16 MiB through the compiled io module (lib/, built
   * by `npm run build:ts`) with write() slowed to 1 MiB per call and stalled
   * after the second call, so the SIGKILL lands mid-write, deterministically.
   */
  async function killMidWrite(f: string, force: boolean): Promise<string> {
    const lib = pathToFileURL(path.join(REPO, 'lib/io/index.js')).href;
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import fs from 'node:fs';
      import { syncBuiltinESMExports } from 'node:module';
      const real = fs.writeSync;
      let calls = 0;
      fs.writeSync = (fd, buf, off, len, ...rest) => {
        if (++calls > 2) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // stall forever
        return real(fd, buf, off, Math.min(len, 1 << 20), ...rest);
      };
      syncBuiltinESMExports();
      const { writeFileAtomic } = await import(${JSON.stringify(lib)});
      writeFileAtomic(${JSON.stringify(f)}, new Uint8Array(16 << 20).fill(7), { force: ${force} });
    `], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c) => { stderr += c; });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    const dir = path.dirname(f);
    const isTemp = (n: string) => n.startsWith(`.${path.basename(f)}.${child.pid}.`) && n.endsWith('.tmp');
    let tmp: string | undefined;
    for (let t = 0; t < 1000 && !tmp; t++) { // up to ~20 s on a loaded machine
      tmp = fs.readdirSync(dir).find((n) => isTemp(n) && fs.statSync(path.join(dir, n)).size >= 2 << 20);
      if (!tmp) await new Promise((r) => setTimeout(r, 20));
      if (child.exitCode !== null) throw new Error(`child exited early: ${stderr}`);
    }
    expect(tmp, stderr).toBeDefined();
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    return tmp!;
  }

  it('kill -9 mid-write: never a partial output; the next write of that file removes the stale temp', async () => {
    const d = tmpDir();
    const f = path.join(d, 'logits.npy');
    const stale = await killMidWrite(f, false);
    expect(fs.existsSync(f)).toBe(false); // absent, not partial
    expect(fs.statSync(path.join(d, stale)).size).toBe(2 << 20); // the killed writer's leftover
    // a temp file of a live process (ours) and another file's stale temp are left alone
    const live = `.logits.npy.${process.pid}.0123456789ab.tmp`;
    const other = `.other.npy.${stale.split('.')[3]}.0123456789ab.tmp`;
    fs.writeFileSync(path.join(d, live), 'live');
    fs.writeFileSync(path.join(d, other), 'other');
    const full = new Uint8Array(3 << 20).fill(9);
    writeFileAtomic(f, full);
    expect(Buffer.from(fs.readFileSync(f)).equals(Buffer.from(full))).toBe(true);
    expect(listing(d)).toEqual([live, other, 'logits.npy'].sort());
  });

  it('kill -9 mid-write over an existing file (force) leaves the old content complete', async () => {
    const d = tmpDir();
    const f = path.join(d, 'model.npz');
    fs.writeFileSync(f, 'old complete content');
    const stale = await killMidWrite(f, true);
    expect(fs.readFileSync(f, 'utf8')).toBe('old complete content');
    expect(listing(d)).toEqual([stale, 'model.npz'].sort());
    writeFileAtomic(f, bytes('new'), { force: true });
    expect(fs.readFileSync(f, 'utf8')).toBe('new');
    expect(listing(d)).toEqual(['model.npz']);
  });
});
