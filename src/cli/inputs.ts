/** Reading the CLI's inputs and planning its outputs (checked before any compute). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Backend, Matrix } from '../api/types.js';
import { OTLM } from '../train/otlm.js';
import { readLabels, readMatrix, readVector, writeMatrix, writeVector, parseSpec } from '../io/matrix.js';
import { assertNotInput, writeFileAtomic } from '../io/atomic.js';
import { IoError } from '../io/errors.js';
import { inputError, usageError } from './errors.js';
import type { Ctx } from './context.js';

/** Prefix an io error with the option it came from: `--logits: x.npy: no such file`. */
export function tagged<T>(option: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof IoError) throw new IoError(e.kind, e.file, `${option}: ${e.message}`, { cause: e });
    throw inputError(`${option}: ${(e as Error).message}`, e);
  }
}

async function stdinFor(ctx: Ctx, spec: string): Promise<Uint8Array | undefined> {
  return spec === '-' ? ctx.stdin() : undefined;
}

/** Logits N×K from npy / npz:name / f32 (with shape) / csv / '-'. Finite values only. */
export async function readLogitsArg(ctx: Ctx, option: string, spec: string, shape?: string): Promise<Matrix> {
  const stdin = await stdinFor(ctx, spec);
  const m = tagged(option, () => readMatrix(spec, { shape, stdin }));
  if (m.rows < 1 || m.cols < 2) throw inputError(`${option}: ${spec}: expected at least 1 row and 2 columns (classes), got ${m.rows}x${m.cols}`);
  return m;
}

export async function readLabelsArg(ctx: Ctx, option: string, spec: string, n: number, k: number): Promise<Int32Array> {
  const stdin = await stdinFor(ctx, spec);
  const y = tagged(option, () => readLabels(spec, { stdin }));
  if (y.length !== n) throw inputError(`${option}: ${spec}: has ${y.length} labels but the logits have ${n} rows`);
  for (let i = 0; i < y.length; i++) {
    if (y[i]! < 0 || y[i]! >= k) throw inputError(`${option}: ${spec}: label ${y[i]} at index ${i} is outside [0, ${k}) (the logits have ${k} classes)`);
  }
  return y;
}

/** A length-k vector of counts or probabilities, every entry > 0 (as log π needs). */
export async function readPriorArg(ctx: Ctx, option: string, spec: string, k: number): Promise<Float64Array> {
  const stdin = await stdinFor(ctx, spec);
  const v = tagged(option, () => readVector(spec, { stdin }));
  if (v.length !== k) throw inputError(`${option}: ${spec}: has ${v.length} entries but the logits have ${k} classes`);
  for (let j = 0; j < k; j++) {
    if (!(v[j]! > 0)) throw inputError(`${option}: ${spec}: entry ${j} is ${v[j]}; every class needs a count or probability > 0`);
  }
  return v;
}

/** A model from `otlm fit`, read and checked against the logits' K as an input (exit 2 naming the file). */
export function readModelArg(option: string, spec: string, k: number, backend: Backend): OTLM {
  const model = tagged(option, () => OTLM.load(spec, { backend }));
  if (model.numClasses !== k) throw inputError(`${option}: ${spec}: the model has K = ${model.numClasses} classes but the logits have ${k}`);
  return model;
}

export const normalize = (v: ArrayLike<number>): Float64Array => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]!;
  return Float64Array.from(v, (x) => x / s);
};

/** The file part of an input spec (`x.npz:W` → `x.npz`), for the 'never overwrite an input' check. */
export const inputFile = (spec: string): string => parseSpec(spec).file;

const OUT_FORMATS = new Set(['npy', 'csv', 'npz']);

/**
 * Checks outputs before any work: a known format, not an input, not existing
 * unless --force, a directory that exists and can be written. Two outputs may
 * not name the same file, and at most one may be '-'.
 */
export function preflightOutputs(outputs: Array<{ option: string; spec: string | undefined; formats?: string[] }>, inputs: string[], force: boolean): void {
  const seen = new Map<string, string>();
  for (const { option, spec, formats } of outputs) {
    if (spec === undefined) continue;
    const file = parseSpec(spec).file;
    if (file === '-') {
      if (seen.has('-')) throw usageError(`${option} and ${seen.get('-')} both write to stdout ('-')`);
      seen.set('-', option);
      continue;
    }
    const fmt = path.extname(file).slice(1).toLowerCase();
    const allowed = formats ?? [...OUT_FORMATS];
    if (!fmt || !allowed.includes(fmt)) {
      throw usageError(`${option}: ${file}: unsupported output extension '${path.extname(file) || '(none)'}'; expected ${allowed.map((f) => '.' + f).join(' or ')}`);
    }
    const abs = path.resolve(file);
    if (seen.has(abs)) throw usageError(`${option} and ${seen.get(abs)} name the same file ${file}`);
    seen.set(abs, option);
    try {
      assertNotInput(file, inputs.map(inputFile));
    } catch (e) {
      throw inputError(`${option}: ${(e as Error).message}`, e);
    }
    let st: fs.Stats | undefined;
    try { st = fs.statSync(abs); } catch { st = undefined; }
    if (st?.isDirectory()) throw inputError(`${option}: ${file}: is a directory; expected an output file name`);
    if (st && !force) throw inputError(`${option}: ${file}: already exists; use --force to replace it`);
    const dir = path.dirname(abs);
    let dst: fs.Stats | undefined;
    try { dst = fs.statSync(dir); } catch { dst = undefined; }
    if (!dst) throw inputError(`${option}: ${file}: cannot write: the directory ${path.dirname(file)} does not exist`);
    if (!dst.isDirectory()) throw inputError(`${option}: ${file}: cannot write: ${path.dirname(file)} is not a directory`);
    try {
      fs.accessSync(dir, fs.constants.W_OK);
    } catch {
      throw inputError(`${option}: ${file}: cannot write: permission denied on the directory ${path.dirname(file)}`);
    }
  }
}

const OUTPUT_PATH_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOENT', 'ENOTDIR', 'EISDIR']);

export type PendingOutput =
  | { spec: string; kind: 'matrix'; m: Matrix; header?: string[] }
  | { spec: string; kind: 'vector'; v: Int32Array | Float64Array | Float32Array }
  | { spec: string; kind: 'bytes'; bytes: Uint8Array };

/**
 * Writes every output atomically; if one fails, the ones this call created are
 * removed again, so a failed run leaves no new file behind.
 */
export function writeOutputs(ctx: Ctx, outs: PendingOutput[], inputs: string[], force: boolean): void {
  const created: string[] = [];
  const opts = { force, inputs: inputs.map(inputFile), stdout: { write: (b: Uint8Array) => ctx.io.stdout.write(b) } };
  try {
    for (const o of outs) {
      const file = parseSpec(o.spec).file;
      const existed = file !== '-' && fs.existsSync(file);
      if (o.kind === 'matrix') writeMatrix(o.spec, o.m, { ...opts, header: o.header });
      else if (o.kind === 'vector') writeVector(o.spec, o.v, opts);
      else if (file === '-') ctx.io.stdout.write(o.bytes);
      else writeFileAtomic(file, o.bytes, opts);
      if (!existed && file !== '-') created.push(file);
    }
  } catch (e) {
    for (const f of created) { try { fs.unlinkSync(f); } catch { /* already gone */ } }
    // The OS refusing the output path is the caller's input problem (exit 2); disk full etc. stays runtime (3).
    const code = ((e as { cause?: NodeJS.ErrnoException }).cause ?? (e as NodeJS.ErrnoException)).code;
    if (e instanceof IoError && e.kind === 'io' && code && OUTPUT_PATH_CODES.has(code)) throw inputError(e.message, e);
    throw e;
  }
}
