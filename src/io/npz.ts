/**
 * NumPy `.npz` archives: a zip of `.npy` members, one per array, named
 * `<name>.npy` (np.savez stores them uncompressed, np.savez_compressed with
 * DEFLATE). Reading goes through the strict reader in zip.ts (CRC-32, sizes
 * and inflation capped by the `.npy` header's shape); writing is fflate's.
 */
import { zipSync, type Zippable } from 'fflate';
import { badInput } from './errors.js';
import { encodeNpy, parseNpy, parseNpyHeader, type NpyArray, type NpyWritable } from './npy.js';
import { extractZipEntry, readZipEntries, type SizeFromPrefix, type ZipEntry } from './zip.js';

/** Fixed timestamp so that writing the same arrays gives the same bytes. */
const ZIP_MTIME = new Date(1980, 0, 2, 0, 0, 0);

function entries(bytes: Uint8Array, file: string): ZipEntry[] {
  if (bytes.length < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    throw badInput(file, 'not a .npz file (expected a zip archive starting with "PK")');
  }
  return readZipEntries(bytes, file);
}

/** A `.npy` member's size as its header's shape and dtype imply, from its first inflated bytes. */
const npySize = (label: string): SizeFromPrefix => (prefix) => {
  const h = parseNpyHeader(prefix, label, true);
  return h && { size: h.dataStart + h.nbytes, what: `its .npy header (shape (${h.shape.join(', ')}) of ${h.descr})` };
};

function readArray(bytes: Uint8Array, file: string, ent: ZipEntry): NpyArray {
  const label = `${file}:${ent.name.slice(0, -4)}`;
  return parseNpy(extractZipEntry(bytes, file, ent, npySize(label)), label);
}

/** All member names of the archive, in archive order. */
export function listNpzMembers(bytes: Uint8Array, file: string): string[] {
  return entries(bytes, file).map((e) => e.name);
}

/** Names of the arrays in an `.npz` (members ending in `.npy`, suffix removed), in archive order. */
export function listNpz(bytes: Uint8Array, file: string): string[] {
  return listNpzMembers(bytes, file).filter((n) => n.endsWith('.npy')).map((n) => n.slice(0, -4));
}

/** Read one array by name (`W` or `W.npy`). The error lists the names that exist. */
export function readNpzArray(bytes: Uint8Array, file: string, name: string): NpyArray {
  const member = name.endsWith('.npy') ? name : `${name}.npy`;
  const all = entries(bytes, file);
  const ent = all.find((e) => e.name === member);
  if (!ent) {
    const names = all.filter((e) => e.name.endsWith('.npy')).map((e) => e.name.slice(0, -4));
    throw badInput(file, `no array named '${name}' in the archive; it has: ${names.length ? names.join(', ') : '(no arrays)'}`);
  }
  return readArray(bytes, file, ent);
}

/** Read every array of an `.npz`, keyed by name. */
export function readNpzAll(bytes: Uint8Array, file: string): Map<string, NpyArray> {
  const out = new Map<string, NpyArray>();
  for (const ent of entries(bytes, file)) {
    if (ent.name.endsWith('.npy')) out.set(ent.name.slice(0, -4), readArray(bytes, file, ent));
  }
  return out;
}

/** Raw bytes of a non-array member (e.g. `meta.json`), an owned copy, or undefined when absent. */
export function readNpzMember(bytes: Uint8Array, file: string, member: string): Uint8Array | undefined {
  const ent = entries(bytes, file).find((e) => e.name === member);
  if (!ent) return undefined;
  const data = extractZipEntry(bytes, file, ent);
  return ent.method === 0 ? data.slice() : data; // stored members come back as views into `bytes`
}

export interface NpzArrayInput {
  data: NpyWritable;
  /** Shape in C order; defaults to `[data.length]`. Use `[]` for a scalar. */
  shape?: readonly number[];
}

export interface EncodeNpzOptions {
  /** DEFLATE the members like np.savez_compressed (default false: stored, like np.savez). */
  compress?: boolean;
  /**
   * Extra non-array members, e.g. `{ 'meta.json': JSON.stringify(...) }`.
   * np.load returns such members as bytes, so the archive stays numpy-readable.
   */
  extra?: Record<string, Uint8Array | string>;
}

function checkName(name: string): void {
  if (!name || name.startsWith('/') || name.split('/').includes('..') || name.includes('\\')) {
    throw new RangeError(`encodeNpz: bad member name '${name}'; expected a relative name without '..' or backslashes`);
  }
}

/**
 * Encode arrays as an `.npz` archive (numbers are stored as 0-d arrays by
 * passing `{ data: Float64Array.of(x), shape: [] }`).
 */
export function encodeNpz(arrays: Record<string, NpzArrayInput | NpyWritable>, opts: EncodeNpzOptions = {}): Uint8Array {
  const level = opts.compress ? 6 : 0;
  const files: Zippable = {};
  for (const [name, v] of Object.entries(arrays)) {
    checkName(name);
    const input: NpzArrayInput = ArrayBuffer.isView(v) ? { data: v as NpyWritable } : (v as NpzArrayInput);
    files[`${name}.npy`] = [encodeNpy(input.data, input.shape ?? [input.data.length]), { level, mtime: ZIP_MTIME }];
  }
  for (const [member, v] of Object.entries(opts.extra ?? {})) {
    checkName(member);
    if (member in files) throw new RangeError(`encodeNpz: member '${member}' given twice`);
    const data = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    files[member] = [data, { level, mtime: ZIP_MTIME }];
  }
  return zipSync(files, { level, mtime: ZIP_MTIME });
}
