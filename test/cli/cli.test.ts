/**
 * The built `otlm` binary as a subprocess: happy paths of every command and the
 * documented exit codes for bad input (with no partial output left behind).
 * References are computed here in float64 (softmax, LA, a small log-domain
 * Sinkhorn) or taken from data/fmnist-lt/PROVENANCE.md (numpy), never from otlm.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { BIN, DATA, ensureBuilt, f32npy, i32npy, listDir, otlm, readNpy, ROOT, tmpDir } from './helpers.js';
import { encodeModel } from '../../src/train/model-file.js';

// Synthetic long-tailed logits: N rows, K classes, head-biased, deterministic.
const N = 240;
const K = 4;
const COUNTS = [400, 120, 40, 10];
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
const rand = lcg(7);
const LABELS = Array.from({ length: N }, (_, i) => i % K);
const LOGITS = LABELS.flatMap((y) => Array.from({ length: K }, (_, j) => (j === y ? 1.5 : 0) + Math.log(COUNTS[j]! / 570) + (rand() - 0.5) * 3));

function softmaxRows(x: number[], k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < x.length / k; i++) {
    const r = x.slice(i * k, i * k + k);
    const m = Math.max(...r);
    const e = r.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((v) => v / s));
  }
  return out;
}
const argmaxRows = (x: ArrayLike<number>, k: number): number[] =>
  Array.from({ length: x.length / k }, (_, i) => { let b = 0; for (let j = 1; j < k; j++) if (x[i * k + j]! > x[i * k + b]!) b = j; return b; });

/** Log-domain Sinkhorn in float64 (docs/architecture.md), the reference for `--method ot`. */
function sinkhornRef(logits: number[], k: number, lambda: number, mu: number[], iters: number): number[] {
  const n = logits.length / k;
  const logZ = softmaxRows(logits, k).map(Math.log);
  const M = logZ.map((v) => -v);
  const f = new Array<number>(n).fill(0);
  const g = new Array<number>(k).fill(0);
  const lse = (a: number[]) => { const m = Math.max(...a); return m + Math.log(a.reduce((s, v) => s + Math.exp(v - m), 0)); };
  for (let t = 0; t < iters; t++) {
    for (let i = 0; i < n; i++) f[i] = -lambda * lse(g.map((gj, j) => (gj - M[i * k + j]!) / lambda));
    for (let j = 0; j < k; j++) g[j] = lambda * Math.log(n * mu[j]!) - lambda * lse(f.map((fi, i) => (fi - M[i * k + j]!) / lambda));
  }
  for (let i = 0; i < n; i++) f[i] = -lambda * lse(g.map((gj, j) => (gj - M[i * k + j]!) / lambda));
  return M.map((m, idx) => Math.exp((f[Math.floor(idx / k)]! + g[idx % k]! - m) / lambda));
}

let dir: string;
let logitsPath: string;
let labelsPath: string;
let countsPath: string;

beforeAll(() => {
  ensureBuilt();
  dir = tmpDir('cli');
  logitsPath = path.join(dir, 'logits.npy');
  labelsPath = path.join(dir, 'labels.npy');
  countsPath = path.join(dir, 'counts.npy');
  fs.writeFileSync(logitsPath, f32npy(N, K, LOGITS));
  fs.writeFileSync(labelsPath, i32npy(LABELS));
  fs.writeFileSync(countsPath, i32npy(COUNTS));
});

const fresh = (name: string) => { const d = tmpDir(name); return d; };
const ERR_LINE = /^otlm: error: .+\n$/;

describe('otlm: usage and info', () => {
  it('--help documents the exit codes (exit 0)', () => {
    const r = otlm(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Exit codes:[\s\S]*1 +usage[\s\S]*2 +bad input[\s\S]*3 +runtime/);
  });
  it('--version prints package.json version', () => {
    const r = otlm(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  });
  it('unknown command, unknown flag, missing option, bad value: exit 1 with one error line', () => {
    for (const args of [['frobnicate'], ['info', '--bogus'], ['correct'], ['correct', '--logits', logitsPath, '--lambda', 'abc'], ['correct', '--logits', logitsPath, '--method', 'xx']]) {
      const r = otlm(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(/^otlm: error: /);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });
  it('info prints backends and CPU, --json is parseable', () => {
    const r = otlm(['info']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backends +.*cpu|backends +.*reference/);
    expect(r.stdout).toMatch(/CUDA +compiled: (yes|no), driver: (yes|no)/);
    const j = otlm(['info', '--json']);
    expect(j.code).toBe(0);
    const info = JSON.parse(j.stdout);
    expect(info.version).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(info.backends).toContain('reference');
  });
});

describe('otlm correct', () => {
  it('--method la writes softmax(Φ − log π) and argmax predictions', () => {
    const d = fresh('la');
    const out = path.join(d, 'p.npy');
    const pred = path.join(d, 'y.csv');
    const r = otlm(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', out, '--predictions-out', pred, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/error/);
    const p = readNpy(fs.readFileSync(out));
    expect(p.shape).toEqual([N, K]);
    const total = COUNTS.reduce((a, b) => a + b, 0);
    const ref = softmaxRows(LOGITS.map((v, i) => v - Math.log(COUNTS[i % K]! / total)), K);
    for (let i = 0; i < ref.length; i++) expect(p.data[i]).toBeCloseTo(ref[i]!, 5);
    const y = fs.readFileSync(pred, 'utf8').trim().split('\n').map(Number);
    expect(y).toEqual(argmaxRows(ref, K));
    expect(JSON.parse(r.stdout).method).toBe('la');
    expect(listDir(d)).toEqual(['p.npy', 'y.csv']);
  });

  it('--method ot matches a float64 log-domain Sinkhorn and the target marginal', () => {
    const d = fresh('ot');
    const out = path.join(d, 'p.npy');
    const r = otlm(['correct', '--method', 'ot', '--logits', logitsPath, '--lambda', '0.5', '--max-iter', '500', '--tol', '1e-6', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = readNpy(fs.readFileSync(out));
    const ref = sinkhornRef(LOGITS, K, 0.5, new Array(K).fill(1 / K), 500);
    let maxDiff = 0;
    for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(p.data[i]! - ref[i]!));
    expect(maxDiff).toBeLessThan(2e-3);
    const col = new Array(K).fill(0);
    for (let i = 0; i < N; i++) for (let j = 0; j < K; j++) col[j] += p.data[i * K + j]!;
    for (const c of col) expect(Math.abs(c / N - 1 / K)).toBeLessThan(1e-3);
    const s = JSON.parse(r.stdout);
    expect(s.converged).toBe(true);
  });

  it('--method darp runs and writes predictions (stdout "-" as npy)', () => {
    const r = otlm(['correct', '--method', 'darp', '--logits', logitsPath, '--predictions-out', '-']);
    expect(r.code, r.stderr).toBe(0);
    const y = readNpy(r.stdoutBytes);
    expect(y.descr).toBe('<i4');
    expect(y.shape).toEqual([N]);
    for (const v of y.data) expect(v >= 0 && v < K).toBe(true);
  });

  it('reads logits from stdin (-) as CSV', () => {
    const csv = Array.from({ length: N }, (_, i) => LOGITS.slice(i * K, i * K + K).join(',')).join('\n') + '\n';
    const r = otlm(['correct', '--method', 'la', '--logits', '-', '--train-counts', countsPath, '--json'], { input: csv });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).n).toBe(N);
  });

  it('fit then --method otlm --model', () => {
    const d = fresh('otlm');
    const model = path.join(d, 'model.npz');
    const f = otlm(['fit', '--logits', logitsPath, '--train-counts', countsPath, '--out', model, '--iterations', '30', '--lr', '0.01', '--batch-size', '1000', '--sinkhorn-iters', '50', '--json']);
    expect(f.code, f.stderr).toBe(0);
    const s = JSON.parse(f.stdout);
    expect(s.steps).toBe(30);
    expect(s.finalLoss).toBeLessThan(s.firstLoss);
    expect(fs.readFileSync(model).subarray(0, 2).toString('latin1')).toBe('PK');
    expect(listDir(d)).toEqual(['model.npz']);
    const out = path.join(d, 'p.csv');
    const r = otlm(['correct', '--method', 'otlm', '--model', model, '--logits', logitsPath, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => l.split(',').map(Number));
    expect(rows.length).toBe(N);
    for (const row of rows) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
  });
});

describe('quiet on machines without a GPU (issue 16)', () => {
  // Where a usable GPU exists (bench/gpu-check.sh) 'auto' runs on it, silently too.
  it('a run with the default backend says nothing about CUDA; --verbose says which backend runs and why', () => {
    const d = fresh('quiet');
    const r = otlm(['correct', '--method', 'ot', '--logits', logitsPath, '--out', path.join(d, 'p.npy')]);
    expect(r.code, r.stderr).toBe(0);
    const i = JSON.parse(otlm(['info', '--json']).stdout) as { cuda: { driver: boolean; usable: boolean } };
    if (!i.cuda.driver || i.cuda.usable) expect(r.stderr).not.toMatch(/CUDA|note:/);
    const v = otlm(['correct', '--method', 'ot', '--logits', logitsPath, '--out', path.join(d, 'q.npy'), '--verbose']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).toMatch(i.cuda.usable ? /^note: running on CUDA/ : /^note: running on the CPU; CUDA not used: /);
  });
  it('the library emits no process warning for an auto solve without a CUDA driver', () => {
    const script = `import { otCorrectSync, info } from ${JSON.stringify(path.join(ROOT, 'lib', 'index.js'))};
      otCorrectSync({ data: new Float32Array([0, 1, 1, 0]), rows: 2, cols: 2 });
      console.log(JSON.stringify(info().cuda));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, OTLM_QUIET: '' } });
    expect(r.status, r.stderr).toBe(0);
    const cuda = JSON.parse(r.stdout) as { driver: boolean };
    if (!cuda.driver) expect(r.stderr).toBe('');
  });
});

describe('otlm eval / demo / report', () => {
  it('eval --json: CE and LA accuracies equal the ones computed here', () => {
    const r = otlm(['eval', '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath, '--val-logits', logitsPath, '--iterations', '10', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const byName = Object.fromEntries(j.methods.map((m: { method: string }) => [m.method, m]));
    expect(Object.keys(byName)).toEqual(['CE', 'LA', 'DARP', 'OT', 'OTLM']);
    const acc = (pred: number[]) => pred.filter((p, i) => p === LABELS[i]).length / N;
    expect(byName.CE.metrics.top1).toBeCloseTo(acc(argmaxRows(LOGITS, K)), 10);
    const total = COUNTS.reduce((a, b) => a + b, 0);
    expect(byName.LA.metrics.top1).toBeCloseTo(acc(argmaxRows(LOGITS.map((v, i) => v - Math.log(COUNTS[i % K]! / total)), K)), 10);
  });

  it('eval and correct compute the same LA with a target prior (prior-shift form); μ = π gives CE back', () => {
    const d = fresh('la-shift');
    const ev = JSON.parse(otlm(['eval', '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath, '--target-prior', countsPath, '--methods', 'CE,LA', '--json']).stdout);
    const byName = Object.fromEntries(ev.methods.map((m: { method: string }) => [m.method, m]));
    expect(byName.LA.metrics.top1).toBe(byName.CE.metrics.top1);
    const pred = path.join(d, 'y.csv');
    const r = otlm(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--target-prior', countsPath, '--predictions-out', pred]);
    expect(r.code, r.stderr).toBe(0);
    const y = fs.readFileSync(pred, 'utf8').trim().split('\n').map(Number);
    expect(y.filter((p, i) => p === LABELS[i]).length / N).toBeCloseTo(byName.LA.metrics.top1, 12);
  });

  it('fit + correct --model, correct --method otlm --val-logits and eval build the same OTLM from the same flags; eval --lambda is OT\'s only', () => {
    const d = fresh('otlm-same');
    const flags = ['--iterations', '8', '--otlm-lambda', '0.5', '--seed', '3'];
    const evalRun = (extra: string[]) => JSON.parse(otlm(['eval', '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath, '--val-logits', logitsPath, '--methods', 'OTLM', ...flags, ...extra, '--json']).stdout);
    const top1 = (e: { methods: Array<{ metrics: { top1: number } }> }) => e.methods[0]!.metrics.top1;
    const e1 = evalRun([]);
    expect(top1(evalRun(['--lambda', '0.05']))).toBe(top1(e1));  // OT's λ leaves OTLM alone
    const acc = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').map(Number).filter((p, i) => p === LABELS[i]).length / N;
    const y1 = path.join(d, 'y1.csv');
    const c1 = otlm(['correct', '--method', 'otlm', '--logits', logitsPath, '--val-logits', logitsPath, '--train-counts', countsPath, ...flags, '--predictions-out', y1]);
    expect(c1.code, c1.stderr).toBe(0);
    const model = path.join(d, 'm.npz');
    const f = otlm(['fit', '--logits', logitsPath, '--train-counts', countsPath, '--out', model, '--iterations', '8', '--lambda', '0.5', '--seed', '3']);
    expect(f.code, f.stderr).toBe(0);
    const y2 = path.join(d, 'y2.csv');
    const c2 = otlm(['correct', '--method', 'otlm', '--logits', logitsPath, '--model', model, '--predictions-out', y2]);
    expect(c2.code, c2.stderr).toBe(0);
    expect(fs.readFileSync(y1, 'utf8')).toBe(fs.readFileSync(y2, 'utf8'));
    expect(acc(y1)).toBeCloseTo(top1(e1), 12);
  });

  it('demo prints the table on the bundled data, with provenance, in under 30 s', () => {
    const t0 = Date.now();
    const r = otlm(['demo']);
    const secs = (Date.now() - t0) / 1000;
    expect(r.code, r.stderr).toBe(0);
    expect(secs).toBeLessThan(30);
    expect(r.stderr).toMatch(/PROVENANCE\.md/);
    for (const m of ['CE', 'LA', 'DARP', 'OT', 'OTLM']) expect(r.stdout).toMatch(new RegExp(`^${m} `, 'm'));
    // The plain and LA rows must reproduce the numpy figures of PROVENANCE.md (test split).
    expect(r.stdout).toMatch(/^CE +81\.48 +81\.48/m);
    expect(r.stdout).toMatch(/^LA +85\.56 +85\.56/m);
  });

  it('report writes one self-contained HTML file', () => {
    const d = fresh('report');
    const out = path.join(d, 'r.html');
    const r = otlm(['report', '--out', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const html = fs.readFileSync(out, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThanOrEqual(5);
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)|@import|url\(/);
    expect(listDir(d)).toEqual(['r.html']);
  });
});

describe('otlm bench', () => {
  it("runs the bench suite's quick mode and passes extra flags through", () => {
    const r = otlm(['bench', '--no-peers', '--sizes', '200x10']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Goals/);
    expect(r.stdout).toMatch(/Python peers skipped \(--no-peers\)/);
  }, 180_000);
});

describe('bad input: exit 2, one error line, no output left behind', () => {
  const expectBad = (args: string[], msg: RegExp, d: string, before: string[] = []) => {
    const r = otlm(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(ERR_LINE);
    expect(r.stderr).toMatch(msg);
    expect(listDir(d)).toEqual(before);
  };

  it('missing input file', () => {
    const d = fresh('bad');
    expectBad(['correct', '--method', 'ot', '--logits', path.join(d, 'nope.npy'), '--out', path.join(d, 'p.npy')], /--logits: .*nope\.npy: no such file/, d);
  });
  it('corrupt .npy', () => {
    const d = fresh('bad');
    fs.writeFileSync(path.join(d, 'bad.npy'), Buffer.from('\x93NUMPY\x01\x00garbage', 'latin1'));
    expectBad(['correct', '--logits', path.join(d, 'bad.npy'), '--out', path.join(d, 'p.npy')], /bad\.npy/, d, ['bad.npy']);
  });
  it('NaN logits', () => {
    const d = fresh('bad');
    const x = [...LOGITS]; x[5] = NaN;
    fs.writeFileSync(path.join(d, 'nan.npy'), f32npy(N, K, x));
    expectBad(['correct', '--logits', path.join(d, 'nan.npy'), '--out', path.join(d, 'p.npy')], /non-finite value NaN at row 1, column 1/, d, ['nan.npy']);
  });
  it('wrong shape: 1-D logits, .f32 with a shape that does not fit, train counts of the wrong length', () => {
    const d = fresh('bad');
    fs.writeFileSync(path.join(d, 'v.npy'), i32npy([1, 2, 3]));
    expectBad(['correct', '--logits', path.join(d, 'v.npy')], /expected a 2-D array/, d, ['v.npy']);
    fs.writeFileSync(path.join(d, 'x.f32'), Buffer.from(Float32Array.from(LOGITS).buffer));
    expectBad(['correct', '--logits', path.join(d, 'x.f32'), '--shape', '7,5'], /shape 7x5/, d, ['v.npy', 'x.f32']);
    expectBad(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', path.join(d, 'v.npy')], /has 3 entries but the logits have 4 classes/, d, ['v.npy', 'x.f32']);
  });
  it('label count != rows', () => {
    const d = fresh('bad');
    fs.writeFileSync(path.join(d, 'y.npy'), i32npy(LABELS.slice(1)));
    expectBad(['eval', '--logits', logitsPath, '--labels', path.join(d, 'y.npy'), '--train-counts', countsPath], /has 239 labels but the logits have 240 rows/, d, ['y.npy']);
  });
  it('unwritable output: missing directory, read-only directory', () => {
    const d = fresh('bad');
    expectBad(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', path.join(d, 'no', 'p.npy')], /does not exist/, d);
    if (process.getuid?.() === 0) {
      // root ignores directory modes; sysfs refuses new files even to root.
      const r = otlm(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', '/sys/otlm-test-out.npy', '--quiet']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^otlm: error: .*\/sys\/otlm-test-out\.npy: cannot .*(permission denied|not permitted)/);
      expect(fs.existsSync('/sys/otlm-test-out.npy')).toBe(false);
    } else {
      const ro = path.join(d, 'ro');
      fs.mkdirSync(ro);
      fs.chmodSync(ro, 0o555);
      try {
        const r = otlm(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', path.join(ro, 'p.npy')]);
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(/permission denied/);
        expect(fs.readdirSync(ro)).toEqual([]);
      } finally {
        fs.chmodSync(ro, 0o755);
      }
    }
  });
  it('existing output without --force is kept; --force replaces it', () => {
    const d = fresh('bad');
    const out = path.join(d, 'p.npy');
    fs.writeFileSync(out, 'keep me');
    expectBad(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', out], /already exists; use --force/, d, ['p.npy']);
    expect(fs.readFileSync(out, 'utf8')).toBe('keep me');
    const r = otlm(['correct', '--method', 'la', '--logits', logitsPath, '--train-counts', countsPath, '--out', out, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(readNpy(fs.readFileSync(out)).shape).toEqual([N, K]);
    expect(listDir(d)).toEqual(['p.npy']);
  });
  it('output equal to an input is refused even with --force', () => {
    const d = fresh('bad');
    const inp = path.join(d, 'x.npy');
    fs.writeFileSync(inp, f32npy(N, K, LOGITS));
    const before = fs.readFileSync(inp);
    expectBad(['correct', '--method', 'la', '--logits', inp, '--train-counts', countsPath, '--out', inp, '--force'], /inputs are never overwritten/, d, ['x.npy']);
    expect(fs.readFileSync(inp).equals(before)).toBe(true);
  });
  it('a failing fit leaves no model file (bad prior → exit 2)', () => {
    const d = fresh('bad');
    fs.writeFileSync(path.join(d, 'c.npy'), i32npy([5, 0, 3, 1]));
    expectBad(['fit', '--logits', logitsPath, '--train-counts', path.join(d, 'c.npy'), '--out', path.join(d, 'm.npz')], /entry 1 is 0/, d, ['c.npy']);
  });
  it('OTLM_DEBUG=1 adds a stack trace', () => {
    const r = otlm(['correct', '--logits', path.join(DATA, 'nope.npy')], { env: { OTLM_DEBUG: '1' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});

describe('exit codes follow the phase; flags check what the library checks (issue 13)', () => {
  /** A model file of K classes with the given meta.options (W = I, no bias, uniform μ). */
  const model = (d: string, name: string, k: number, options: Record<string, unknown> = {}): string => {
    const file = path.join(d, name);
    const w = new Float32Array(k * k);
    for (let j = 0; j < k; j++) w[j * k + j] = 1;
    fs.writeFileSync(file, encodeModel({
      w, b: new Float32Array(k), targetPrior: new Float64Array(k).fill(1 / k),
      meta: { format: 'otlm-model', version: 1, library: 'test', k, trainedSteps: 0, options },
    }));
    return file;
  };

  it('a flag value the library would refuse is a usage error (exit 1) naming the flag', () => {
    const d = fresh('flags');
    fs.writeFileSync(path.join(d, 'x.f32'), Buffer.from(Float32Array.from(LOGITS).buffer));
    const m = path.join(d, 'm.npz');
    const cases: Array<[string[], RegExp]> = [
      [['correct', '--logits', logitsPath, '--max-iter', '1e12'], /--max-iter must be in \[1, 2147483647\]/],
      [['eval', '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath, '--max-iter', '3e9'], /--max-iter must be in \[1, 2147483647\]/],
      [['fit', '--logits', logitsPath, '--out', m, '--sinkhorn-iters', '1e12'], /--sinkhorn-iters must be in \[1, 2147483647\]/],
      [['fit', '--logits', logitsPath, '--out', m, '--seed', '-1'], /--seed must be in \[0, 4294967295\]/],
      [['fit', '--logits', logitsPath, '--out', m, '--seed', '4294967296'], /--seed must be in \[0, 4294967295\]/],
      [['fit', '--logits', logitsPath, '--out', m, '--backend', 'tfjs'], /--backend/],
      [['correct', '--method', 'otlm', '--logits', logitsPath, '--val-logits', logitsPath, '--backend', 'tfjs'], /--backend tfjs runs OT only/],
      [['eval', '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath, '--val-logits', logitsPath, '--backend', 'tfjs'], /--backend tfjs runs OT only/],
      [['correct', '--logits', path.join(d, 'x.f32'), '--shape', 'abc'], /--shape: expected ROWS,COLS/],
    ];
    for (const [args, msg] of cases) {
      const r = otlm(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(ERR_LINE);
      expect(r.stderr).toMatch(msg);
    }
    expect(listDir(d)).toEqual(['x.f32']);
  });

  it('a model with another K than the logits is bad input (exit 2) naming the model file', () => {
    const d = fresh('model-k');
    const k5 = model(d, 'k5.npz', 5);
    const out = path.join(d, 'p.npy');
    const msg = /^otlm: error: --model: .*k5\.npz: the model has K = 5 classes but the logits have 4\n$/;
    for (const args of [
      ['correct', '--method', 'otlm', '--model', k5, '--logits', logitsPath, '--out', out],
      ['eval', '--model', k5, '--logits', logitsPath, '--labels', labelsPath, '--train-counts', countsPath],
    ]) {
      const r = otlm(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    expect(listDir(d)).toEqual(['k5.npz']);
  });

  it('a model file whose options the library refuses (threads 1e9) is bad input (exit 2) naming --model and the file', () => {
    const d = fresh('model-threads');
    const f = model(d, 'threads.npz', K, { threads: 1e9 });
    const r = otlm(['correct', '--method', 'otlm', '--model', f, '--logits', logitsPath, '--out', path.join(d, 'p.npy')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^otlm: error: --model: .*threads\.npz: the model's meta\.options are invalid: options\.threads must be in \[0, 4096\]/);
    expect(listDir(d)).toEqual(['threads.npz']);
  });

  it('--estimate-prior bbse with single-class validation labels is bad input (exit 2)', () => {
    const d = fresh('bbse');
    fs.writeFileSync(path.join(d, 'y0.npy'), i32npy(new Array(N).fill(0)));
    const r = otlm(['correct', '--logits', logitsPath, '--train-counts', countsPath, '--estimate-prior', 'bbse',
      '--val-logits', logitsPath, '--val-labels', path.join(d, 'y0.npy'), '--out', path.join(d, 'p.npy')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^otlm: error: --estimate-prior bbse: .*confusion matrix is singular/);
    expect(listDir(d)).toEqual(['y0.npy']);
  });

  it('a reader that closes the pipe early (| head -c 100) ends the run quietly: exit 0, nothing on stderr', async () => {
    // 4 MB of probabilities overflow the pipe's buffers, so the write is still going when the reader leaves.
    const d = fresh('pipe');
    const n = 250_000;
    fs.writeFileSync(path.join(d, 'big.npy'), f32npy(n, K, Array.from({ length: n * K }, (_, i) => LOGITS[i % LOGITS.length]!)));
    const child = spawn(process.execPath, [BIN, 'correct', '--method', 'la', '--logits', path.join(d, 'big.npy'),
      '--train-counts', countsPath, '--out', '-', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OTLM_DEBUG: '' } });
    let stderr = '';
    let got = 0;
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.stdout.on('data', (b: Buffer) => { got += b.length; if (got >= 100) child.stdout.destroy(); });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('close', (c, s) => res([c, s])));
    expect(got).toBeGreaterThanOrEqual(100);
    expect(stderr).toBe('');
    expect([code, signal]).toEqual([0, null]);
  });
});
