import * as fs from 'node:fs';
import fsCjs from 'node:fs'; // the mutable CommonJS object: spied on, then synced into ESM namespaces
import * as path from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeFileAtomic } from '../../src/io/atomic.js';
import { IoError } from '../../src/io/errors.js';
import { tmpDir } from './helpers.js';

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
