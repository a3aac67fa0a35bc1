/**
 * One entry point for reading and writing the project's matrices
 * (`{ data: Float32Array, rows, cols }`, row-major), label vectors (Int32Array)
 * and numeric vectors, whatever the file format:
 *
 * | spec            | format                                              |
 * |-----------------|-----------------------------------------------------|
 * | `x.npy`         | NumPy array (C order; f4 f8 i* u* b1, either endian) |
 * | `x.npz:name`    | array `name` of an `.npz` (or `opts.array`; the only array if there is one) |
 * | `x.f32`         | raw little-endian float32, needs `opts.shape`        |
 * | `x.csv`/`.tsv`/`.txt` | text of numbers; header row auto-detected      |
 * | `-`             | `opts.stdin` bytes; format from `opts.format` or sniffed |
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { badInput, IoError } from './errors.js';
import { encodeNpy, npyToFloat32, npyToFloat64, npyToInt32, parseNpy, type NpyArray } from './npy.js';
import { encodeNpz, listNpz, readNpzArray } from './npz.js';
import { encodeCsv, encodeF32, parseCsv, parseF32, parseShape, type CsvTable } from './text.js';
import { writeFileAtomic, type AtomicWriteOptions } from './atomic.js';

import type { Matrix } from '../api/types.js';

export type { Matrix };

export type FileFormat = 'npy' | 'npz' | 'f32' | 'csv';

export interface ReadOptions {
  /** Force a format instead of going by the extension (needed for unknown extensions; optional for `-`). */
  format?: FileFormat;
  /** Array name inside an `.npz` (overridden by a `file.npz:name` spec). */
  array?: string;
  /** Shape for raw `.f32` input: `[rows, cols]` or a string like `5000,10`; one dimension may be -1. */
  shape?: readonly [number, number] | string;
  /** The bytes of standard input, when the spec is `-` (the library never reads process.stdin itself). */
  stdin?: Uint8Array;
  /** CSV header row: `'auto'` (default), `true` or `false`. */
  header?: boolean | 'auto';
  /** Accept NaN and ±Inf values (default false: rejected, naming the first position). */
  allowNonFinite?: boolean;
}

/** Split `file.npz:name` into file and array name (a plain path is returned as is). */
export function parseSpec(spec: string): { file: string; array?: string } {
  const m = /^(.*\.npz):([^/\\:]+)$/i.exec(spec);
  return m ? { file: m[1]!, array: m[2]! } : { file: spec };
}

/** Format of a path by extension, or undefined when unknown. */
export function formatOf(file: string): FileFormat | undefined {
  const ext = path.extname(file).toLowerCase();
  return ({ '.npy': 'npy', '.npz': 'npz', '.f32': 'f32', '.csv': 'csv', '.tsv': 'csv', '.txt': 'csv' } as const)[ext as '.npy'];
}

function readBytes(file: string, opts: ReadOptions): Uint8Array {
  if (file === '-') {
    if (!opts.stdin) throw badInput('-', 'reading from stdin needs the input bytes (opts.stdin)');
    return opts.stdin;
  }
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new IoError('not-found', file, `${file}: no such file`);
    if (code === 'EISDIR') throw badInput(file, 'is a directory; expected a file');
    throw new IoError('io', file, `${file}: cannot read: ${(e as Error).message}`, { cause: e });
  }
}

function detectFormat(file: string, bytes: Uint8Array, opts: ReadOptions): FileFormat {
  if (opts.format) return opts.format;
  if (file === '-') {
    if (bytes[0] === 0x93 && bytes[1] === 0x4e) return 'npy';
    if (bytes[0] === 0x50 && bytes[1] === 0x4b) return 'npz';
    return opts.shape !== undefined ? 'f32' : 'csv';
  }
  const f = formatOf(file);
  if (!f) {
    throw badInput(file, `unknown file extension '${path.extname(file) || '(none)'}'; expected .npy, .npz, .f32 (with a shape) or .csv`);
  }
  return f;
}

type Loaded = { kind: 'npy'; arr: NpyArray } | { kind: 'table'; table: CsvTable } | { kind: 'f32'; m: Matrix };

function load(spec: string, opts: ReadOptions): { name: string; loaded: Loaded } {
  const { file, array } = parseSpec(spec);
  const bytes = readBytes(file, opts);
  const fmt = detectFormat(file, bytes, opts);
  switch (fmt) {
    case 'npy':
      return { name: file, loaded: { kind: 'npy', arr: parseNpy(bytes, file) } };
    case 'npz': {
      let name = array ?? opts.array;
      if (name === undefined) {
        const names = listNpz(bytes, file);
        if (names.length !== 1) {
          throw badInput(file, `holds ${names.length} arrays (${names.join(', ') || 'none'}); name one as ${file}:NAME`);
        }
        name = names[0]!;
      }
      const arr = readNpzArray(bytes, file, name);
      return { name: arr.file, loaded: { kind: 'npy', arr } };
    }
    case 'f32': {
      if (opts.shape === undefined) throw badInput(file, 'raw .f32 input needs a shape (--shape ROWS,COLS)');
      const shape = typeof opts.shape === 'string' ? parseShape(opts.shape) : opts.shape;
      return { name: file, loaded: { kind: 'f32', m: parseF32(bytes, file, shape) } };
    }
    case 'csv': {
      const text = new TextDecoder('utf-8').decode(bytes);
      return { name: file, loaded: { kind: 'table', table: parseCsv(text, file, { header: opts.header ?? 'auto', allowNonFinite: true }) } };
    }
    default:
      throw badInput(file, `unknown format '${String(fmt)}'; expected npy, npz, f32 or csv`);
  }
}

function checkFinite(name: string, data: Float32Array | Float64Array, cols: number, allow: boolean | undefined): void {
  if (allow) return;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      const where = cols > 0 ? `row ${Math.floor(i / cols)}, column ${i % cols}` : `element ${i}`;
      throw badInput(name, `non-finite value ${data[i]} at ${where} (0-based); expected finite numbers`);
    }
  }
}

/** Read a 2-D matrix (rows × cols) as float32. */
export function readMatrix(spec: string, opts: ReadOptions = {}): Matrix {
  const { name, loaded } = load(spec, opts);
  let m: Matrix;
  if (loaded.kind === 'npy') {
    const a = loaded.arr;
    if (a.shape.length !== 2) throw badInput(name, `expected a 2-D array (rows x columns), got shape (${a.shape.join(', ')})`);
    m = { data: npyToFloat32(a), rows: a.shape[0]!, cols: a.shape[1]! };
  } else if (loaded.kind === 'table') {
    const t = loaded.table;
    m = { data: Float32Array.from(t.data), rows: t.rows, cols: t.cols };
  } else {
    m = loaded.m;
  }
  // Checked after narrowing to float32, so float64 values beyond float32's range are caught too.
  checkFinite(name, m.data, m.cols, opts.allowNonFinite);
  return m;
}

function vectorOf(name: string, shape: readonly number[]): number {
  const nontrivial = shape.filter((n) => n !== 1);
  if (shape.length > 2 || nontrivial.length > 1) {
    throw badInput(name, `expected a vector (shape (n,), (n, 1) or (1, n)), got shape (${shape.join(', ')})`);
  }
  return shape.reduce((p, n) => p * n, 1);
}

/** Read a numeric vector (class counts, a prior...) as float64. Accepts (n,), (n,1) and (1,n). */
export function readVector(spec: string, opts: ReadOptions = {}): Float64Array {
  const { name, loaded } = load(spec, opts);
  let v: Float64Array;
  if (loaded.kind === 'npy') {
    vectorOf(name, loaded.arr.shape);
    v = npyToFloat64(loaded.arr);
  } else if (loaded.kind === 'table') {
    vectorOf(name, [loaded.table.rows, loaded.table.cols]);
    v = loaded.table.data;
  } else {
    vectorOf(name, [loaded.m.rows, loaded.m.cols]);
    v = Float64Array.from(loaded.m.data);
  }
  checkFinite(name, v, 0, opts.allowNonFinite);
  return v;
}

/** Read integer labels as int32. Integer, bool and integral float data are accepted. */
export function readLabels(spec: string, opts: ReadOptions = {}): Int32Array {
  const { name, loaded } = load(spec, opts);
  if (loaded.kind === 'npy') {
    vectorOf(name, loaded.arr.shape);
    return npyToInt32(loaded.arr, 'labels');
  }
  const src = loaded.kind === 'table' ? loaded.table : loaded.m;
  vectorOf(name, [src.rows, src.cols]);
  const out = new Int32Array(src.data.length);
  for (let i = 0; i < out.length; i++) {
    const x = src.data[i]!;
    if (!Number.isInteger(x) || x < -2147483648 || x > 2147483647) {
      throw badInput(name, `labels must be integers; element ${i} is ${x}`);
    }
    out[i] = x;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writing

/** Something with a `write(bytes)` method, e.g. process.stdout or a runCli stream. */
export interface ByteSink {
  write(chunk: Uint8Array): unknown;
}

export interface WriteOptions extends AtomicWriteOptions {
  /** Format; default by the extension (`.npy`, `.npz`, `.f32`, `.csv`), and npy for `-`. */
  format?: FileFormat;
  /** Column names for CSV output. */
  header?: readonly string[];
  /** Where `-` writes to. */
  stdout?: ByteSink;
  /** DEFLATE an `.npz` output (default false). */
  compress?: boolean;
  /** Array name for `.npz` output (overridden by `file.npz:name`; default `arr_0`, as np.savez). */
  array?: string;
}

type Writable = Float32Array | Float64Array | Int32Array;

function encode(file: string, array: string | undefined, data: Writable, shape: number[], opts: WriteOptions): Uint8Array {
  const fmt = opts.format ?? (file === '-' ? 'npy' : formatOf(file));
  switch (fmt) {
    case 'npy': return encodeNpy(data, shape);
    case 'npz': return encodeNpz({ [array ?? opts.array ?? 'arr_0']: { data, shape } }, { compress: opts.compress });
    case 'csv': {
      const cols = shape.length === 2 ? shape[1]! : 1;
      return new TextEncoder().encode(encodeCsv(data, shape[0] ?? 1, cols, opts.header));
    }
    case 'f32':
      if (!(data instanceof Float32Array)) throw badInput(file, 'raw .f32 output holds float32 data only; use .npy or .csv for integers');
      return encodeF32(data);
    default:
      throw badInput(file, `unknown output extension '${path.extname(file) || '(none)'}'; expected .npy, .npz, .f32 or .csv`);
  }
}

function emit(file: string, bytes: Uint8Array, opts: WriteOptions): void {
  if (file === '-') {
    if (!opts.stdout) throw badInput('-', 'writing to stdout needs a stream (opts.stdout)');
    opts.stdout.write(bytes);
    return;
  }
  writeFileAtomic(file, bytes, opts);
}

/** Encode a matrix in the format its path names (see `writeMatrix`), without writing it. */
export function encodeMatrix(spec: string, m: Matrix, opts: WriteOptions = {}): Uint8Array {
  if (m.data.length !== m.rows * m.cols) {
    throw new RangeError(`writeMatrix: data has ${m.data.length} values, expected rows*cols = ${m.rows}*${m.cols}`);
  }
  const { file, array } = parseSpec(spec);
  return encode(file, array, m.data, [m.rows, m.cols], opts);
}

/**
 * Write a matrix atomically (or to `opts.stdout` for `-`). Refuses to replace
 * an existing file without `force` and to write onto any of `opts.inputs`.
 */
export function writeMatrix(spec: string, m: Matrix, opts: WriteOptions = {}): void {
  const bytes = encodeMatrix(spec, m, opts);
  emit(parseSpec(spec).file, bytes, opts);
}

/** Write a vector (predictions as Int32Array, a prior as Float64Array...) as a 1-D array or a one-column CSV. */
export function writeVector(spec: string, v: Writable, opts: WriteOptions = {}): void {
  const { file, array } = parseSpec(spec);
  emit(file, encode(file, array, v, [v.length], opts), opts);
}
