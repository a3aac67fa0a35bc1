/**
 * CSV (and whitespace-separated text, as np.savetxt writes by default) and
 * raw little-endian `.f32` files.
 */
import { badInput } from './errors.js';

// ---------------------------------------------------------------------------
// Raw float32

/**
 * Parse a shape given on the command line: `5000,10`, `5000x10` or `5000 10`.
 * One dimension may be `-1`, inferred from the data length.
 */
export function parseShape(text: string, arg = '--shape'): [number, number] {
  const parts = text.trim().split(/\s*[,xX×\s]\s*/);
  const nums = parts.map((p) => (/^-?\d+$/.test(p) ? Number(p) : NaN));
  if (nums.length !== 2 || nums.some((n) => !Number.isSafeInteger(n) || n < -1) || nums.filter((n) => n === -1).length > 1) {
    throw badInput(arg, `expected ROWS,COLS (non-negative integers, at most one -1 to infer), got '${text}'`);
  }
  return nums as [number, number];
}

/** Interpret raw little-endian float32 bytes as a rows×cols matrix (one dimension may be -1). */
export function parseF32(bytes: Uint8Array, file: string, shape: readonly [number, number]): { data: Float32Array; rows: number; cols: number } {
  if (bytes.length % 4 !== 0) throw badInput(file, `raw float32 data length ${bytes.length} is not a multiple of 4 bytes`);
  const n = bytes.length / 4;
  let [rows, cols] = shape;
  if (rows === -1 && cols === -1) throw badInput(file, 'shape: at most one dimension may be -1');
  if (rows === -1) {
    if (cols === 0 || n % cols !== 0) throw badInput(file, `${n} float32 values do not fill rows of ${cols} columns`);
    rows = n / cols;
  } else if (cols === -1) {
    if (rows === 0 || n % rows !== 0) throw badInput(file, `${n} float32 values do not fill ${rows} rows`);
    cols = n / rows;
  }
  if (rows * cols !== n) {
    throw badInput(file, `shape ${rows}x${cols} needs ${rows * cols * 4} bytes (${rows * cols} float32 values), file has ${bytes.length}`);
  }
  const data = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) data[i] = dv.getFloat32(i * 4, true);
  return { data, rows, cols };
}

/** Raw little-endian bytes of a float32 array. */
export function encodeF32(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i]!, true);
  return out;
}

// ---------------------------------------------------------------------------
// CSV

export interface CsvReadOptions {
  /** `true`: the first line is a header; `false`: it is data; `'auto'` (default): a header if any field is not a number. */
  header?: boolean | 'auto';
  /** Accept nan / inf / -inf fields (default false: rejected). */
  allowNonFinite?: boolean;
  /** Field separator; default: ',' if the first line has one, else tab if it has one, else runs of whitespace. */
  delimiter?: string;
}

export interface CsvTable {
  /** Values in row-major order (float64; callers narrow). */
  data: Float64Array;
  rows: number;
  cols: number;
  header?: string[];
}

const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NONFINITE: Record<string, number> = { nan: NaN, '+nan': NaN, '-nan': NaN, inf: Infinity, '+inf': Infinity, '-inf': -Infinity, infinity: Infinity, '+infinity': Infinity, '-infinity': -Infinity };

function parseNumber(field: string): number | undefined {
  const f = field.trim();
  if (NUM_RE.test(f)) return Number(f);
  const nf = NONFINITE[f.toLowerCase()];
  return nf;
}

/** Split one line on `delim`, honouring double-quoted fields ("" is a quote). */
function splitLine(line: string, delim: string | null): string[] {
  if (delim === null) return line.trim().split(/\s+/);
  const out: string[] = [];
  let cur = '';
  let inQ = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (inQ) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (c === '"') inQ = false; else cur += c;
    } else if (c === '"' && cur.trim() === '') { inQ = true; cur = ''; } else if (line.startsWith(delim, i)) {
      out.push(cur); cur = ''; i += delim.length - 1;
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Parse CSV text of numbers. Errors name the file, the line and the field. */
export function parseCsv(text: string, file: string, opts: CsvReadOptions = {}): CsvTable {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // UTF-8 BOM
  const lines = text.split(/\r?\n/);
  const firstIdx = lines.findIndex((l) => l.trim() !== '');
  if (firstIdx < 0) throw badInput(file, 'CSV file is empty; expected rows of numbers');
  const first = lines[firstIdx]!;
  const delim = opts.delimiter ?? (first.includes(',') ? ',' : first.includes('\t') ? '\t' : null);

  let header: string[] | undefined;
  let start = firstIdx;
  const firstFields = splitLine(first, delim);
  const isHeader = opts.header === true ||
    ((opts.header ?? 'auto') === 'auto' && firstFields.some((f) => parseNumber(f) === undefined));
  if (isHeader) {
    header = firstFields.map((f) => f.trim());
    start = firstIdx + 1;
  }
  const values: number[] = [];
  let cols = header ? header.length : -1;
  let rows = 0;
  for (let li = start; li < lines.length; li++) {
    const line = lines[li]!;
    if (line.trim() === '') {
      // Blank lines are tolerated only at the end (a trailing newline).
      if (lines.slice(li).every((l) => l.trim() === '')) break;
      throw badInput(file, `line ${li + 1}: empty line inside the data`);
    }
    const fields = splitLine(line, delim);
    if (cols === -1) cols = fields.length;
    if (fields.length !== cols) {
      throw badInput(file, `line ${li + 1}: ${fields.length} columns, expected ${cols} (as ${header ? 'in the header' : `on line ${firstIdx + 1}`})`);
    }
    for (let j = 0; j < fields.length; j++) {
      const v = parseNumber(fields[j]!);
      if (v === undefined) {
        throw badInput(file, `line ${li + 1}, column ${j + 1}: '${fields[j]!.trim()}' is not a number` +
          (li === firstIdx && opts.header === false ? ' (the file seems to have a header; drop header=false)' : ''));
      }
      if (!Number.isFinite(v) && !opts.allowNonFinite) {
        throw badInput(file, `line ${li + 1}, column ${j + 1}: non-finite value '${fields[j]!.trim()}'; expected finite numbers`);
      }
      values.push(v);
    }
    rows++;
  }
  if (cols === -1) cols = 0;
  return { data: Float64Array.from(values), rows, cols, ...(header ? { header } : {}) };
}

/** Shortest decimal that reads back as the same float32 (so CSV round trips are exact). */
export function formatFloat32(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (Number.isInteger(x) && Math.abs(x) <= 16777216) return String(x); // exact float32 integers
  const f = Math.fround(x);
  for (let p = 1; p < 10; p++) {
    const s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) return String(Number(s));
  }
  return String(f);
}

function formatFloat64(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  return String(x);
}

/** Encode a rows×cols table as CSV text (comma separated, '\n' line ends, optional header). */
export function encodeCsv(data: Float32Array | Float64Array | Int32Array, rows: number, cols: number, header?: readonly string[]): string {
  if (header && header.length !== cols) throw new RangeError(`encodeCsv: header has ${header.length} names for ${cols} columns`);
  const fmt = data instanceof Float32Array ? formatFloat32 : data instanceof Float64Array ? formatFloat64 : String;
  const parts: string[] = [];
  if (header) parts.push(header.map((h) => (/[",\n]/.test(h) ? `"${h.replace(/"/g, '""')}"` : h)).join(','));
  const row: string[] = new Array<string>(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) row[j] = fmt(data[i * cols + j]!);
    parts.push(row.join(','));
  }
  return parts.join('\n') + '\n';
}
