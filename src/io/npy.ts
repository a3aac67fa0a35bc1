/**
 * NumPy `.npy` reading and writing (format versions 1.0, 2.0 and 3.0).
 *
 * Format (numpy.lib.format): magic `\x93NUMPY`, major and minor version bytes,
 * header length (uint16 LE in 1.0, uint32 LE in 2.0/3.0), then an ASCII
 * (latin-1 in 1.0/2.0, UTF-8 in 3.0) Python dict literal
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
 * spaces and a newline, then the raw array bytes.
 *
 * Reading supports the numeric dtypes f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 and b1 in
 * either byte order, C order only. Fortran order, structured, object, string,
 * complex and half-precision arrays are rejected with an error naming the file.
 */
import { badInput } from './errors.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export type NpyKind = 'f' | 'i' | 'u' | 'b';

/** A parsed `.npy` array: the header's facts (see NpyHeader) plus a view of its raw data bytes. */
export interface NpyArray extends Pick<NpyHeader, 'descr' | 'kind' | 'itemSize' | 'littleEndian' | 'shape' | 'version' | 'size'> {
  /** File name used in error messages. */
  file: string;
  /** Exactly `size * itemSize` bytes (a view into the input, not a copy). */
  data: Uint8Array;
}

// ---------------------------------------------------------------------------
// A tiny parser for the Python literal subset numpy headers use.

type PyValue = string | number | boolean | null | PyTuple | PyList | PyDict;
interface PyTuple { t: 'tuple'; items: PyValue[] }
interface PyList { t: 'list'; items: PyValue[] }
interface PyDict { t: 'dict'; entries: Map<string, PyValue> }

/** Nesting a real header never needs; deeper input would otherwise overflow the stack (a RangeError, not an IoError). */
const MAX_DEPTH = 32;
const INT_RE = /[-+]?\d+L?/y; // 'L': Python 2 long, seen in old files
const FLOAT_TAIL_RE = /[.eE]/y;

class LiteralParser {
  private i = 0;
  private depth = 0;
  constructor(private readonly s: string, private readonly file: string) {}

  parseTop(): PyValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail(`unexpected text after the header dict at offset ${this.i}`);
    return v;
  }

  private fail(msg: string): never {
    throw badInput(this.file, `corrupt .npy header: ${msg} (header: ${JSON.stringify(this.s.slice(0, 200))})`);
  }

  private ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === undefined) this.fail('unexpected end of header');
    if (c === '{' || c === '(' || c === '[') {
      if (++this.depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
      const v = c === '{' ? this.dict() : c === '(' ? this.seq(')', 'tuple') : this.seq(']', 'list');
      this.depth--;
      return v;
    }
    if (c === "'" || c === '"') return this.str();
    if (/[-+0-9]/.test(c)) return this.num();
    for (const [word, v] of [['True', true], ['False', false], ['None', null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.fail(`unexpected character ${JSON.stringify(c)} at offset ${this.i}`);
  }

  private dict(): PyDict {
    this.i++; // {
    const entries = new Map<string, PyValue>();
    for (;;) {
      this.ws();
      if (this.s[this.i] === '}') { this.i++; return { t: 'dict', entries }; }
      const k = this.value();
      if (typeof k !== 'string') this.fail('dict keys must be strings');
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ':' after key '${k}'`);
      this.i++;
      if (entries.has(k)) this.fail(`duplicate key '${k}'`);
      entries.set(k, this.value());
      this.ws();
      if (this.s[this.i] === ',') { this.i++; continue; }
      if (this.s[this.i] === '}') { this.i++; return { t: 'dict', entries }; }
      this.fail(`expected ',' or '}' at offset ${this.i}`);
    }
  }

  private seq(close: string, t: 'tuple' | 'list'): PyTuple | PyList {
    this.i++;
    const items: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) { this.i++; return { t, items }; }
      items.push(this.value());
      this.ws();
      if (this.s[this.i] === ',') { this.i++; continue; }
      if (this.s[this.i] === close) { this.i++; return { t, items }; }
      this.fail(`expected ',' or '${close}' at offset ${this.i}`);
    }
  }

  private str(): string {
    const q = this.s[this.i]!;
    this.i++;
    let out = '';
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined) this.fail('unterminated string');
      this.i++;
      if (c === q) return out;
      if (c !== '\\') { out += c; continue; }
      const e = this.s[this.i++];
      const simple: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t', r: '\r', '0': '\0' };
      if (e !== undefined && e in simple) { out += simple[e]; continue; }
      const hexLen = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
      const hex = this.s.slice(this.i, this.i + hexLen);
      if (hexLen === 0 || !/^[0-9a-fA-F]+$/.test(hex) || hex.length !== hexLen) this.fail('bad escape in string');
      out += String.fromCodePoint(parseInt(hex, 16));
      this.i += hexLen;
    }
  }

  // Sticky regexes: no slice per number, so a long header parses in linear time.
  private num(): number {
    INT_RE.lastIndex = this.i;
    const m = INT_RE.exec(this.s);
    if (!m) this.fail(`bad number at offset ${this.i}`);
    this.i += m[0].length;
    FLOAT_TAIL_RE.lastIndex = this.i;
    if (FLOAT_TAIL_RE.test(this.s)) this.fail(`only integers are expected in a header (offset ${this.i})`);
    const v = Number(m[0].replace('L', ''));
    if (!Number.isSafeInteger(v)) this.fail(`integer ${m[0]} is too large`);
    return v;
  }
}

// ---------------------------------------------------------------------------

const SUPPORTED: Record<string, number[]> = { f: [4, 8], i: [1, 2, 4, 8], u: [1, 2, 4, 8], b: [1] };

function parseDescr(file: string, descr: PyValue): { descr: string; kind: NpyKind; itemSize: number; littleEndian: boolean } {
  if (typeof descr !== 'string') {
    if (descr !== null && typeof descr === 'object' && descr.t === 'list') {
      const names = descr.items
        .map((f) => (typeof f === 'object' && f !== null && f.t === 'tuple' && typeof f.items[0] === 'string' ? f.items[0] : '?'))
        .join(', ');
      throw badInput(file, `structured dtype with fields (${names}) is not supported; expected a plain numeric array`);
    }
    throw badInput(file, `corrupt .npy header: 'descr' must be a dtype string, got ${JSON.stringify(descr)}`);
  }
  const m = /^([<>|=]?)([a-zA-Z])(\d*)$/.exec(descr);
  if (!m) throw badInput(file, `unsupported dtype '${descr}'; expected one of f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`);
  const [, order, kindChar, sizeStr] = m as unknown as [string, string, string, string];
  if (kindChar === 'O') throw badInput(file, `object arrays (dtype '${descr}') are not supported; expected a numeric array`);
  const itemSize = Number(sizeStr);
  const sizes = SUPPORTED[kindChar];
  if (!sizes || !sizes.includes(itemSize)) {
    throw badInput(file, `unsupported dtype '${descr}'; expected one of f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`);
  }
  if (order === '=' ) throw badInput(file, `dtype '${descr}' has native byte order '=', which is ambiguous in a file; expected '<', '>' or '|'`);
  if (order === '|' && itemSize !== 1) throw badInput(file, `dtype '${descr}' has no byte order but ${itemSize}-byte items; expected '<' or '>'`);
  if (order === '' && itemSize !== 1) throw badInput(file, `dtype '${descr}' has no byte order; expected '<' or '>'`);
  return { descr, kind: kindChar as NpyKind, itemSize, littleEndian: order !== '>' };
}

/** numpy itself refuses headers over 10000 bytes by default; this is far beyond any real header. */
export const NPY_HEADER_MAX = 1 << 20;

/** What a `.npy` header says: everything but the data. */
export interface NpyHeader {
  /** The dtype string as written in the header, e.g. `<f4`. */
  descr: string;
  kind: NpyKind;
  itemSize: number;
  littleEndian: boolean;
  /** Shape in C order; `[]` for a 0-d array. */
  shape: number[];
  version: [number, number];
  /** Number of elements (product of the shape). */
  size: number;
  /** Offset of the data, and the data's length in bytes as the shape and dtype imply. */
  dataStart: number;
  nbytes: number;
}

/**
 * Parse a `.npy` header from the first bytes of a file. With `partial`,
 * returns undefined when `bytes` ends before the header does (used to check a
 * compressed member's declared size against its shape before inflating it).
 */
export function parseNpyHeader(bytes: Uint8Array, file: string, partial = false): NpyHeader | undefined {
  if (partial && bytes.length < 12) return undefined;
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw badInput(file, 'not a .npy file (bad magic; expected the bytes \\x93NUMPY at the start)');
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (![1, 2, 3].includes(major) || minor !== 0) {
    throw badInput(file, `unsupported .npy format version ${major}.${minor}; expected 1.0, 2.0 or 3.0`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) throw badInput(file, 'truncated .npy header');
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = 8 + lenBytes;
  // Checked before the length check so a lying length cannot make a caller wait for (or allocate) it.
  if (headerLen > NPY_HEADER_MAX) {
    throw badInput(file, `corrupt .npy header: its length field says ${headerLen} bytes; at most ${NPY_HEADER_MAX} are accepted`);
  }
  if (start + headerLen > bytes.length) {
    if (partial) return undefined;
    throw badInput(file, `truncated .npy header: header says ${headerLen} bytes but the file has ${bytes.length - start} after it`);
  }
  const headerBytes = bytes.subarray(start, start + headerLen);
  // 1.0 and 2.0 headers are latin-1; 3.0 allows UTF-8 (e.g. unicode field names).
  let header: string;
  try {
    header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1', { fatal: major === 3 }).decode(headerBytes);
  } catch {
    throw badInput(file, 'corrupt .npy header: not valid UTF-8 (format 3.0)');
  }
  const parsed = new LiteralParser(header, file).parseTop();
  if (parsed === null || typeof parsed !== 'object' || parsed.t !== 'dict') {
    throw badInput(file, `corrupt .npy header: expected a dict literal, got ${JSON.stringify(header.trim().slice(0, 80))}`);
  }
  const d = parsed.entries;
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!d.has(key)) throw badInput(file, `corrupt .npy header: missing key '${key}'`);
  }
  for (const key of d.keys()) {
    if (!['descr', 'fortran_order', 'shape'].includes(key)) throw badInput(file, `corrupt .npy header: unexpected key '${key}'`);
  }
  const dt = parseDescr(file, d.get('descr')!);
  const fo = d.get('fortran_order');
  if (typeof fo !== 'boolean') throw badInput(file, `corrupt .npy header: 'fortran_order' must be True or False`);
  const shapeV = d.get('shape');
  if (shapeV === null || typeof shapeV !== 'object' || shapeV.t !== 'tuple' ||
      !shapeV.items.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    throw badInput(file, `corrupt .npy header: 'shape' must be a tuple of non-negative integers`);
  }
  const shape = shapeV.items as number[];
  if (fo) {
    throw badInput(file, `Fortran-order (column-major) arrays are not supported; expected C order ` +
      `(save with np.save(path, np.ascontiguousarray(a)))`);
  }
  // An empty dimension makes the array empty however large the others are.
  let size = shape.includes(0) ? 0 : 1;
  for (const n of shape) {
    if (size === 0) break;
    size *= n;
    if (!Number.isSafeInteger(size * dt.itemSize)) throw badInput(file, `shape (${shape.join(', ')}) is too large`);
  }
  return { ...dt, shape, version: [major, minor], size, dataStart: start + headerLen, nbytes: size * dt.itemSize };
}

/**
 * Parse the bytes of a `.npy` file. `file` is only used in error messages.
 * Throws `IoError` (kind `bad-input`) for anything that is not a supported
 * C-order numeric array whose data length matches its shape.
 */
export function parseNpy(bytes: Uint8Array, file: string): NpyArray {
  const { dataStart, nbytes, ...h } = parseNpyHeader(bytes, file)!;
  const have = bytes.length - dataStart;
  if (have < nbytes) {
    throw badInput(file, `truncated data: shape (${h.shape.join(', ')}) of ${h.descr} needs ${nbytes} bytes, file has ${have}`);
  }
  if (have > nbytes) {
    throw badInput(file, `data length mismatch: shape (${h.shape.join(', ')}) of ${h.descr} needs ${nbytes} bytes, file has ${have}`);
  }
  return { file, ...h, data: bytes.subarray(dataStart) };
}

// ---------------------------------------------------------------------------
// Conversions. Each returns a fresh, owned typed array in host byte order.

function reader(a: NpyArray): (i: number) => number | bigint {
  const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const le = a.littleEndian;
  switch (a.kind + a.itemSize) {
    case 'f4': return (i) => dv.getFloat32(i * 4, le);
    case 'f8': return (i) => dv.getFloat64(i * 8, le);
    case 'i1': return (i) => dv.getInt8(i);
    case 'i2': return (i) => dv.getInt16(i * 2, le);
    case 'i4': return (i) => dv.getInt32(i * 4, le);
    case 'i8': return (i) => dv.getBigInt64(i * 8, le);
    case 'u1': return (i) => dv.getUint8(i);
    case 'u2': return (i) => dv.getUint16(i * 2, le);
    case 'u4': return (i) => dv.getUint32(i * 4, le);
    case 'u8': return (i) => dv.getBigUint64(i * 8, le);
    case 'b1': return (i) => (dv.getUint8(i) !== 0 ? 1 : 0);
    default: throw badInput(a.file, `unsupported dtype '${a.descr}'`);
  }
}

/** True when the raw bytes can be copied as they are into a host typed array. */
function isNative(a: NpyArray, kind: NpyKind, size: number): boolean {
  return a.kind === kind && a.itemSize === size && (a.littleEndian === HOST_LE || size === 1);
}

/** Copy the data bytes into a fresh ArrayBuffer (also fixes alignment). */
function copyBytes(a: NpyArray): ArrayBuffer {
  const buf = new ArrayBuffer(a.data.byteLength);
  new Uint8Array(buf).set(a.data);
  return buf;
}

/** Values as float32 (float64 and integers are converted; int64 beyond 2^53 loses precision as float32 would anyway). */
export function npyToFloat32(a: NpyArray): Float32Array {
  if (isNative(a, 'f', 4)) return new Float32Array(copyBytes(a));
  const out = new Float32Array(a.size);
  const get = reader(a);
  for (let i = 0; i < a.size; i++) out[i] = Number(get(i));
  return out;
}

/** Values as float64 (exact for every supported dtype except int64/uint64 beyond 2^53). */
export function npyToFloat64(a: NpyArray): Float64Array {
  if (isNative(a, 'f', 8)) return new Float64Array(copyBytes(a));
  const out = new Float64Array(a.size);
  const get = reader(a);
  for (let i = 0; i < a.size; i++) out[i] = Number(get(i));
  return out;
}

/**
 * Values as int32, for labels and counts. Integer and bool dtypes must fit in
 * int32; float dtypes are accepted only when every value is an integer.
 */
export function npyToInt32(a: NpyArray, what = 'values'): Int32Array {
  if (isNative(a, 'i', 4)) return new Int32Array(copyBytes(a));
  const out = new Int32Array(a.size);
  const get = reader(a);
  for (let i = 0; i < a.size; i++) {
    const v = get(i);
    const n = typeof v === 'bigint' ? (v >= -2147483648n && v <= 2147483647n ? Number(v) : NaN) : v;
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) {
      throw badInput(a.file, `${what} must be integers in the int32 range; element ${i} is ${String(v)} (dtype ${a.descr})`);
    }
    out[i] = n;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing.

export type NpyWritable = Float32Array | Float64Array | Int32Array | Uint8Array;

function descrOf(data: NpyWritable): string {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof Uint8Array) return '|u1';
  throw new TypeError('encodeNpy: data must be a Float32Array, Float64Array, Int32Array or Uint8Array');
}

/**
 * Encode a C-order array as `.npy` bytes (format 1.0; 2.0 only if the header
 * would not fit in 64 KiB). The header is padded with spaces so that the data
 * starts at a multiple of 64 bytes, as numpy does.
 */
export function encodeNpy(data: NpyWritable, shape: readonly number[]): Uint8Array {
  const descr = descrOf(data);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new RangeError(`encodeNpy: shape must be non-negative integers, got [${shape.join(', ')}]`);
  }
  const size = shape.reduce((p, n) => p * n, 1);
  if (size !== data.length) {
    throw new RangeError(`encodeNpy: shape [${shape.join(', ')}] has ${size} elements but data has ${data.length}`);
  }
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  let major = 1;
  let pre = 10;
  let total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  if (total - pre > 0xffff) {
    major = 2;
    pre = 12;
    total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  }
  const headerLen = total - pre;
  const header = dict + ' '.repeat(headerLen - dict.length - 1) + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, headerLen, true);
  else dv.setUint32(8, headerLen, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  if (HOST_LE) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  } else {
    const setter =
      data instanceof Float32Array ? dv.setFloat32.bind(dv)
      : data instanceof Float64Array ? dv.setFloat64.bind(dv)
      : data instanceof Int32Array ? dv.setInt32.bind(dv)
      : (o: number, v: number) => dv.setUint8(o, v);
    for (let i = 0; i < data.length; i++) setter(total + i * data.BYTES_PER_ELEMENT, data[i]!, true);
  }
  return out;
}
