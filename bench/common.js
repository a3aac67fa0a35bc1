// Shared helpers of the benchmark (bench/run.js and bench/job.js): the seeded long-tailed
// logit generator, raw float32 files, statistics.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The trainer's seeded PRNG (the bench runs on the built lib/).
import { mulberry32 } from '../lib/train/batches.js';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(BENCH_DIR);
export const OUT_DIR = join(BENCH_DIR, 'out');
export const CACHE_DIR = join(OUT_DIR, 'cache');

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

/**
 * The benchmark's long-tailed logits: a classifier trained on a prior π_j ∝ ρ^(−j/(K−1)) (ρ = 100,
 * the usual imbalance ratio) evaluated on a balanced set: true class y ~ U(K),
 * Φ_ij = 2·[j = y] + log π_j + ε_ij, ε ~ N(0, 1). Head classes are over-predicted, which is
 * what the OT correction fixes. Deterministic for a seed.
 */
export function longTailedLogits(n, k, seed = 1) {
  const rand = mulberry32(seed * 1000003 + n * 31 + k);
  const logPi = new Float64Array(k);
  let z = 0;
  for (let j = 0; j < k; j++) z += Math.pow(100, -j / Math.max(1, k - 1));
  for (let j = 0; j < k; j++) logPi[j] = Math.log(Math.pow(100, -j / Math.max(1, k - 1)) / z);
  const data = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const y = Math.min(k - 1, Math.floor(rand() * k));
    const row = i * k;
    for (let j = 0; j < k; j += 2) {
      // Box–Muller: two normals per pair of uniforms.
      const u = Math.max(rand(), 1e-12), v = rand();
      const rr = Math.sqrt(-2 * Math.log(u));
      data[row + j] = logPi[j] + rr * Math.cos(2 * Math.PI * v);
      if (j + 1 < k) data[row + j + 1] = logPi[j + 1] + rr * Math.sin(2 * Math.PI * v);
    }
    data[row + y] += 2;
  }
  return data;
}

/** Path of the cached logits file for a size (generated on first use). */
export function logitsFile(n, k, seed = 1) {
  mkdirSync(CACHE_DIR, { recursive: true });
  const f = join(CACHE_DIR, `logits-${n}x${k}-s${seed}.f32`);
  if (!existsSync(f)) {
    const d = longTailedLogits(n, k, seed);
    writeFileSync(f + '.tmp', new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    renameSync(f + '.tmp', f);
  }
  return f;
}

export function readF32(file, expected) {
  const b = readFileSync(file);
  if (expected !== undefined && b.byteLength !== expected * 4)
    throw new Error(`${file}: expected ${expected} float32 values, found ${b.byteLength / 4}`);
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(new Uint8Array(b).buffer);
}

export function readI32(file) {
  const b = new Uint8Array(readFileSync(file));
  return new Int32Array(b.buffer, 0, b.byteLength / 4);
}

export function writeTyped(file, arr) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
}

/** M = −log_softmax(Φ) row-wise, float32 (computed in float64 per row). */
export function costFromLogits(phi, n, k) {
  const m = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    let mx = -Infinity;
    for (let j = 0; j < k; j++) if (phi[o + j] > mx) mx = phi[o + j];
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(phi[o + j] - mx);
    const lse = mx + Math.log(s);
    for (let j = 0; j < k; j++) m[o + j] = lse - phi[o + j];
  }
  return m;
}

/** Rows sampled for the plan agreement check (fixed, spread over the matrix). */
export function sampleRows(n, count = 64) {
  const out = [];
  for (let t = 0; t < Math.min(n, count); t++) out.push(Math.floor(((t + 0.5) * n) / Math.min(n, count)));
  return out;
}

/** A python3 that imports `mod` and numpy ($OTLM_BENCH_PYTHON first), or null. */
export function findPython(mod) {
  for (const py of [process.env.OTLM_BENCH_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean)) {
    const r = spawnSync(py, ['-c', `import ${mod}, numpy`], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

/** Runs bench/peers/<script> and returns the JSON object on its last line, or { error }. */
export function peer(py, script, args, timeoutS) {
  const r = spawnSync(py, [join(BENCH_DIR, 'peers', script), ...args], { encoding: 'utf8', timeout: Math.round(timeoutS * 1000) });
  if (r.error || r.signal) return { error: `${script}: ${r.signal ? 'timed out' : String(r.error)}` };
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `${script} exit ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
  }
}
