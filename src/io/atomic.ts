/**
 * Atomic output files: the bytes go to a temporary file in the target's
 * directory, are fsynced, then moved into place in one step, so a reader (or a
 * crash) never sees a half-written output, and a failed write leaves nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { IoError } from './errors.js';

export interface AtomicWriteOptions {
  /** Replace an existing file (default false: refuse). */
  force?: boolean;
  /** Paths read by this run; the output may never be one of them, even with `force`. */
  inputs?: readonly string[];
}

/** Identity of a path for "is this the same file" checks: resolved real path plus device/inode when it exists. */
function identity(p: string): { real: string; ino?: string } {
  const abs = path.resolve(p);
  try {
    const st = fs.statSync(abs);
    return { real: fs.realpathSync(abs), ino: `${st.dev}:${st.ino}` };
  } catch {
    // Not existing yet: resolve the directory's real path so 'a/../b' and symlinked dirs compare equal.
    try {
      return { real: path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs)) };
    } catch {
      return { real: abs };
    }
  }
}

/** Throw `is-input` if `out` names the same file as any of `inputs` (by path, symlink or hard link). */
export function assertNotInput(out: string, inputs: readonly string[] = []): void {
  const o = identity(out);
  for (const inp of inputs) {
    if (inp === '-') continue;
    const i = identity(inp);
    if (i.real === o.real || (i.ino !== undefined && i.ino === o.ino)) {
      throw new IoError('is-input', out, `${out}: refusing to write the output onto an input file (${inp}); inputs are never overwritten`);
    }
  }
}

function osError(file: string, e: unknown, doing: string): IoError {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'operation not permitted', ENOENT: 'the directory does not exist',
    ENOTDIR: 'a parent path is not a directory', EISDIR: 'the path is a directory', ENOSPC: 'no space left on the device',
    EROFS: 'read-only file system', EDQUOT: 'disk quota exceeded',
  };
  const reason = (err.code && why[err.code]) ?? err.message;
  return new IoError('io', file, `${file}: cannot ${doing}: ${reason}`, { cause: e });
}

/*
 * Temp files are `.<base>.<pid>.<12 hex>.tmp` next to the target. <base> is the
 * target's name cut to TMP_BASE_MAX UTF-8 bytes (never inside a character), so
 * that the temp name fits NAME_MAX (255 bytes) for any pid up to 10 digits even
 * when the target's own name is 255 bytes long. The cut does not depend on the
 * pid, so a later write of the same target can recognise its stale temp files.
 */
const NAME_MAX = 255;
const TMP_BASE_MAX = NAME_MAX - '.'.length - '.4294967295.000000000000.tmp'.length;

function tmpBase(name: string): string {
  if (Buffer.byteLength(name) <= TMP_BASE_MAX) return name;
  let out = '';
  let n = 0;
  for (const ch of name) {
    n += Buffer.byteLength(ch);
    if (n > TMP_BASE_MAX) break;
    out += ch;
  }
  return out;
}

function pidIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'; // EPERM: alive, someone else's
  }
}

/**
 * A writer killed between creating its temp file and moving it into place
 * (SIGKILL, OOM killer, power loss) leaves the temp file behind. Before writing,
 * remove the temp files of this target (same naming scheme, same <base>) whose
 * writer pid no longer exists. A live pid, ours included (worker threads), is
 * never touched. Best effort: failures here never fail the write.
 */
function removeStaleTemps(dir: string, base: string): void {
  const prefix = `.${base}.`;
  let names: fs.Dirent[];
  try { names = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  for (const d of names) {
    if (!d.isFile() || !d.name.startsWith(prefix)) continue;
    const m = /^(\d{1,10})\.[0-9a-f]{12}\.tmp$/.exec(d.name.slice(prefix.length));
    const pid = m ? Number(m[1]) : 0;
    if (pid > 0 && pid !== process.pid && pidIsGone(pid)) {
      try { fs.unlinkSync(path.join(dir, d.name)); } catch { /* raced with another cleaner */ }
    }
  }
}

/**
 * Write `bytes` to `file` atomically. Refuses (kind `exists`) to replace an
 * existing file unless `force`, and (kind `is-input`) to write onto any of
 * `opts.inputs`. On any failure the temporary file is removed; temp files
 * left by killed writers of the same target are removed too (see above).
 */
export function writeFileAtomic(file: string, bytes: Uint8Array, opts: AtomicWriteOptions = {}): void {
  assertNotInput(file, opts.inputs);
  const abs = path.resolve(file);
  let st: fs.Stats | undefined;
  try { st = fs.statSync(abs); } catch { st = undefined; }
  if (st?.isDirectory()) throw new IoError('bad-input', file, `${file}: is a directory; expected an output file name`);
  if (st && !opts.force) throw new IoError('exists', file, `${file}: already exists; use --force to replace it`);

  const dir = path.dirname(abs);
  const base = tmpBase(path.basename(abs));
  removeStaleTemps(dir, base);
  const tmp = path.join(dir, `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    try {
      fd = fs.openSync(tmp, 'wx', st ? st.mode & 0o777 : 0o666);
    } catch (e) {
      throw osError(file, e, 'create the output file');
    }
    try {
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off);
      fs.fsyncSync(fd);
    } catch (e) {
      throw osError(file, e, 'write the output file');
    } finally {
      fs.closeSync(fd);
      fd = undefined;
    }
    if (opts.force) {
      try { fs.renameSync(tmp, abs); } catch (e) { throw osError(file, e, 'move the output file into place'); }
    } else {
      // link() fails with EEXIST if the target appeared meanwhile: a no-clobber rename without a race.
      try {
        fs.linkSync(tmp, abs);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw new IoError('exists', file, `${file}: already exists; use --force to replace it`);
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
          // File systems without hard links: fall back to check-then-rename.
          if (fs.existsSync(abs)) throw new IoError('exists', file, `${file}: already exists; use --force to replace it`);
          try { fs.renameSync(tmp, abs); } catch (e2) { throw osError(file, e2, 'move the output file into place'); }
        } else {
          throw osError(file, e, 'move the output file into place');
        }
      }
    }
    syncDir(dir);
  } finally {
    if (fd !== undefined) { try { fs.closeSync(fd); } catch { /* already failing */ } }
    // After link() both names exist and the temp one must go; after rename() it is already gone.
    try { fs.unlinkSync(tmp); } catch { /* not there */ }
  }
}

/** Persist the directory entry (best effort: not every platform can fsync a directory). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* ignore */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
