/**
 * A small, strict zip reader for `.npz` archives: stored and DEFLATE members,
 * ZIP64 sizes and offsets, data descriptors. Unlike a general unzip it checks
 * everything it can before trusting a member:
 * - the central directory and the member's local header agree (name, method,
 *   CRC-32 and both sizes), members do not overlap, and their data lies inside
 *   the file;
 * - the declared uncompressed size is possible (stored: equal to the data;
 *   DEFLATE: at most 1032 times the compressed size, the format's limit) and,
 *   through `sizeFromPrefix`, equal to what the content itself implies (for
 *   `.npy`: the header's shape and dtype), found from the first inflated bytes,
 *   before the output is allocated;
 * - inflation stops as soon as it passes the declared size, so a bomb costs a
 *   few chunks of memory, not its inflated size;
 * - the CRC-32 of what was read matches.
 * Every failure is an `IoError` of kind `bad-input` naming the file and member.
 */
import { Inflate } from 'fflate';
import { badInput, IoError } from './errors.js';

const MAX32 = 0xffffffff;
/** DEFLATE's best case is 258 bytes per 2 bits; anything beyond (plus slack for headers) is impossible. */
const DEFLATE_MAX_RATIO = 1032;
/**
 * Compressed bytes per inflate step, which bounds what one step can produce
 * (~1032x, plus fflate's buffer doubling): small until the declared size is
 * known to be right (usually one step: a .npy header is ~128 bytes).
 */
const STEP_HEAD = 1 << 10;
const STEP = 32 << 10;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (IEEE, as zip and zlib); pass the previous value as `crc` to continue over several chunks. */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const hex32 = (x: number) => `0x${x.toString(16).padStart(8, '0')}`;
const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
/** Exact below 2^53; larger values fail the bounds checks that follow every read. */
const u64 = (b: Uint8Array, o: number) => u32(b, o) + u32(b, o + 4) * 2 ** 32;

export interface ZipEntry {
  name: string;
  /** 0: stored, 8: DEFLATE (others are refused on extraction). */
  method: number;
  flags: number;
  crc: number;
  compSize: number;
  /** Declared uncompressed size. */
  size: number;
  /** Offsets of the member's local header and of its data (after that header). */
  localOffset: number;
  dataStart: number;
}

/** The ZIP64 extended-information extra field (id 1) as a reader of its 8-byte values, in order. */
function zip64Fields(b: Uint8Array, start: number, len: number, fail: (what: string) => IoError): () => number {
  for (let p = start; p + 4 <= start + len;) {
    const id = u16(b, p);
    const n = u16(b, p + 2);
    if (p + 4 + n > start + len) break;
    if (id === 1) {
      let q = p + 4;
      return () => {
        if (q + 8 > p + 4 + n) throw fail('ZIP64 extra field is too short for the sizes it must hold');
        const v = u64(b, q);
        q += 8;
        return v;
      };
    }
    p += 4 + n;
  }
  return () => { throw fail('sizes are marked as ZIP64 but there is no ZIP64 extra field'); };
}

function decodeName(raw: Uint8Array, flags: number): string {
  // Bit 11: UTF-8 names; otherwise CP437, of which numpy only ever writes the ASCII part.
  return new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(raw);
}

/**
 * Parse the central directory and every local header. Throws (bad-input) for
 * anything inconsistent; the entries are returned in directory order.
 */
export function readZipEntries(bytes: Uint8Array, file: string): ZipEntry[] {
  const bad = (what: string) => badInput(file, `corrupt .npz (zip) archive: ${what}`);
  // End of central directory: the last signature whose comment fits in the file.
  let e = -1;
  for (let i = bytes.length - 22; i >= 0 && i >= bytes.length - 22 - 0xffff; i--) {
    if (u32(bytes, i) === 0x06054b50 && i + 22 + u16(bytes, i + 20) <= bytes.length) { e = i; break; }
  }
  if (e < 0) throw bad('no end-of-central-directory record (the file is truncated or not a zip archive)');
  if (u16(bytes, e + 4) !== 0 || u16(bytes, e + 6) !== 0) throw bad('multi-disk (spanned) archives are not supported');
  let count = u16(bytes, e + 10);
  let cdSize = u32(bytes, e + 12);
  let cdOff = u32(bytes, e + 16);
  let cdLimit = e;
  if (e >= 20 && u32(bytes, e - 20) === 0x07064b50) {
    const z = u64(bytes, e - 12);
    if (z + 56 > e - 20 || u32(bytes, z) !== 0x06064b50) throw bad('the ZIP64 end-of-central-directory record is missing or misplaced');
    count = u64(bytes, z + 32);
    cdSize = u64(bytes, z + 40);
    cdOff = u64(bytes, z + 48);
    cdLimit = z;
  }
  if (cdOff + cdSize > cdLimit) throw bad(`the central directory (${cdSize} bytes at offset ${cdOff}) lies outside the file`);
  const cdEnd = cdOff + cdSize;

  const entries: ZipEntry[] = [];
  const seen = new Set<string>();
  let p = cdOff;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cdEnd || u32(bytes, p) !== 0x02014b50) throw bad(`central directory entry ${n + 1} of ${count} is missing or truncated`);
    const flags = u16(bytes, p + 8);
    const method = u16(bytes, p + 10);
    const crc = u32(bytes, p + 16);
    let compSize = u32(bytes, p + 20);
    let size = u32(bytes, p + 24);
    const nl = u16(bytes, p + 28);
    const xl = u16(bytes, p + 30);
    let local = u32(bytes, p + 42);
    const next = p + 46 + nl + xl + u16(bytes, p + 32);
    if (next > cdEnd) throw bad(`central directory entry ${n + 1} of ${count} is truncated`);
    const nameRaw = bytes.subarray(p + 46, p + 46 + nl);
    const name = decodeName(nameRaw, flags);
    const fail = (what: string) => badInput(file, `member '${name}': ${what}`);
    if (seen.has(name)) throw fail('appears twice in the archive; the file is corrupt');
    seen.add(name);
    // ZIP64 extra in the directory: only the saturated fields, in this order.
    if (size === MAX32 || compSize === MAX32 || local === MAX32) {
      const next64 = zip64Fields(bytes, p + 46 + nl, xl, fail);
      if (size === MAX32) size = next64();
      if (compSize === MAX32) compSize = next64();
      if (local === MAX32) local = next64();
    }

    // The local header must agree with the directory.
    if (local + 30 > cdOff || u32(bytes, local) !== 0x04034b50) throw fail(`no local header at offset ${local}; the file is corrupt`);
    const lnl = u16(bytes, local + 26);
    const lxl = u16(bytes, local + 28);
    const lname = bytes.subarray(local + 30, local + 30 + lnl);
    if (lnl !== nl || !lname.every((c, i) => c === nameRaw[i])) throw fail('the local header names a different member; the file is corrupt');
    if (u16(bytes, local + 8) !== method) throw fail('the local header and the central directory disagree on the compression method; the file is corrupt');
    if (!(u16(bytes, local + 6) & 8)) {
      // Without a data descriptor (bit 3) the local header carries CRC and sizes too.
      let lcomp = u32(bytes, local + 18);
      let lsize = u32(bytes, local + 22);
      if (lsize === MAX32 || lcomp === MAX32) {
        const next64 = zip64Fields(bytes, local + 30 + lnl, lxl, fail); // the local ZIP64 field holds both sizes
        lsize = next64();
        lcomp = next64();
      }
      const lcrc = u32(bytes, local + 14);
      if (lcrc !== crc || lsize !== size || lcomp !== compSize) {
        throw fail(`the local header (CRC-32 ${hex32(lcrc)}, ${lcomp} bytes compressed, ${lsize} uncompressed) disagrees with ` +
          `the central directory (CRC-32 ${hex32(crc)}, ${compSize} bytes compressed, ${size} uncompressed); the file is corrupt`);
      }
    }
    const dataStart = local + 30 + lnl + lxl;
    if (dataStart + compSize > cdOff) {
      throw fail(`its ${compSize} bytes of data at offset ${dataStart} run past the end of the member data; the file is truncated or corrupt`);
    }
    entries.push({ name, method, flags, crc, compSize, size, localOffset: local, dataStart });
    p = next;
  }
  // Members sharing bytes are the classic way to multiply a bomb (and never written by a real zip writer).
  const byPos = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  for (let i = 1; i < byPos.length; i++) {
    const prev = byPos[i - 1]!;
    if (prev.dataStart + prev.compSize > byPos[i]!.localOffset) {
      throw bad(`members '${prev.name}' and '${byPos[i]!.name}' overlap; the file is corrupt or a zip bomb`);
    }
  }
  return entries;
}

/**
 * What the content itself says its size must be, given its first bytes:
 * `undefined` while more bytes are needed. Throws when the prefix is invalid.
 */
export type SizeFromPrefix = (prefix: Uint8Array) => { size: number; what: string } | undefined;

/**
 * Extract one member, verified (see the file comment). Stored members are
 * returned as a view into `bytes`; inflated ones in a buffer of exactly the
 * declared size.
 */
export function extractZipEntry(bytes: Uint8Array, file: string, ent: ZipEntry, sizeFromPrefix?: SizeFromPrefix): Uint8Array {
  const fail = (what: string) => badInput(file, `member '${ent.name}': ${what}`);
  if (ent.flags & 1) throw fail('is encrypted; encrypted archives are not supported');
  const comp = bytes.subarray(ent.dataStart, ent.dataStart + ent.compSize);
  let out: Uint8Array;
  if (ent.method === 0) {
    if (ent.size !== ent.compSize) throw fail(`is stored uncompressed but declares ${ent.size} bytes for ${ent.compSize} bytes of data; the file is corrupt`);
    out = comp;
  } else if (ent.method === 8) {
    if (ent.size > ent.compSize * DEFLATE_MAX_RATIO + 1024) {
      throw fail(`declares ${ent.size} bytes from ${ent.compSize} compressed bytes, more than DEFLATE can produce; ` +
        `the file is corrupt or a zip bomb`);
    }
    out = inflateCapped(comp, ent.size, fail, sizeFromPrefix);
  } else {
    throw fail(`uses compression method ${ent.method}; expected stored (0) or DEFLATE (8), as numpy writes`);
  }
  const got = crc32(out);
  if (got !== ent.crc) throw fail(`CRC-32 mismatch (stored ${hex32(ent.crc)}, computed ${hex32(got)}); the file is corrupt`);
  return out;
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** Inflate into exactly `size` bytes, allocated only once the content's own size (if any) agrees. */
function inflateCapped(comp: Uint8Array, size: number, fail: (what: string) => IoError, sizeFromPrefix?: SizeFromPrefix): Uint8Array {
  let out: Uint8Array | undefined;
  let head: Uint8Array[] = [];
  let got = 0;
  const allocate = () => {
    try { out = new Uint8Array(size); } catch { throw fail(`is too large to load (${size} bytes)`); }
    let o = 0;
    for (const h of head) { out.set(h, o); o += h.length; }
    head = [];
  };
  const inf = new Inflate((chunk) => {
    if (got + chunk.length > size) throw fail(`inflates to more than its declared ${size} bytes; the file is corrupt or a zip bomb`);
    if (out) { out.set(chunk, got); got += chunk.length; return; }
    head.push(chunk);
    got += chunk.length;
    const want = sizeFromPrefix ? sizeFromPrefix(concat(head, got)) : { size, what: '' };
    if (want === undefined) return;
    if (want.size !== size) throw fail(`declares ${size} bytes uncompressed but ${want.what} implies ${want.size}; the file is corrupt`);
    allocate();
  });
  try {
    if (comp.length === 0) inf.push(comp, true);
    for (let i = 0; i < comp.length;) {
      const j = i + (out ? STEP : STEP_HEAD);
      inf.push(comp.subarray(i, j), j >= comp.length);
      i = j;
    }
  } catch (e) {
    if (e instanceof IoError) throw e;
    throw fail(`corrupt DEFLATE data (${(e as Error).message})`);
  }
  if (got !== size) throw fail(`inflates to ${got} bytes but declares ${size}; the file is corrupt`);
  if (!out) allocate(); // content too short to tell its own size: the caller's parser reports it
  return out!;
}
