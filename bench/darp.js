#!/usr/bin/env node
// node bench/darp.js [--reps 21] [--sizes 5000x10,8151x100] [--json]
//
// DARP (issue 14): the float64 TypeScript reference (backend 'reference', what DARP ran on before
// issue 14) against the native CPU engine (backend 'cpu', all threads and 1 thread), in one run, on
// the bench's seeded long-tailed logits (bench/common.js) with the defaults (entropy weights, uniform
// target, tol 1e-6). Wall time of the public darpSync call, median over the repeats after a warm-up.
// Before a time is reported the native answer is checked against the reference: identical
// predictions, probabilities within 1e-6, the same number of sweeps. Needs lib/ (npm run build:ts)
// and the addon (OTLM_NATIVE_PATH selects a build).
import { cpus, loadavg } from 'node:os';

import { darpSync, info } from '../lib/index.js';
import { longTailedLogits, median } from './common.js';

const argv = process.argv.slice(2);
const arg = (name, def) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : def);
const REPS = Number(arg('--reps', 21));
const REF_REPS = Math.max(3, Math.round(REPS / 4));
const SIZES = arg('--sizes', '5000x10,8151x100').split(',').map((s) => s.split('x').map(Number));
const JSON_OUT = argv.includes('--json');

function time(fn, reps) {
  fn(); // warm-up (JIT, pool threads, page faults)
  const ts = [];
  let last;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    last = fn();
    ts.push(performance.now() - t0);
  }
  return { ms: median(ts), min: Math.min(...ts), result: last };
}

function compare(a, b) {
  let mism = 0;
  for (let i = 0; i < a.predictions.length; i++) if (a.predictions[i] !== b.predictions[i]) mism++;
  let dp = 0;
  const pa = a.probabilities.data, pb = b.probabilities.data;
  for (let t = 0; t < pa.length; t++) dp = Math.max(dp, Math.abs(pa[t] - pb[t]));
  return { predictionMismatches: mism, maxProbDiff: dp, sameIterations: a.iterations === b.iterations };
}

const inf = info();
const machine = {
  cpu: cpus()[0]?.model ?? '?',
  cores: cpus().length,
  simd: inf.cpu?.simd ?? '?',
  threads: inf.cpu?.threads ?? '?',
  load: loadavg()[0].toFixed(2),
  node: process.version,
};
const rows = [];
for (const [n, k] of SIZES) {
  const m = { data: longTailedLogits(n, k), rows: n, cols: k };
  const ref = time(() => darpSync(m, { backend: 'reference' }), REF_REPS);
  const nat = time(() => darpSync(m, { backend: 'cpu' }), REPS);
  const nat1 = time(() => darpSync(m, { backend: 'cpu', threads: 1 }), REPS);
  const check = compare(nat.result, ref.result);
  const ok = check.predictionMismatches === 0 && check.maxProbDiff <= 1e-6;
  rows.push({
    n, k, sweeps: ref.result.iterations, referenceMs: ref.ms, nativeMs: nat.ms, native1tMs: nat1.ms,
    speedup: ref.ms / nat.ms, speedup1t: ref.ms / nat1.ms, ok, ...check,
  });
}

if (JSON_OUT) {
  console.log(JSON.stringify({ machine, reps: REPS, refReps: REF_REPS, rows }, null, 2));
} else {
  console.log(`DARP: float64 TypeScript reference vs native CPU (${machine.cpu}, ${machine.cores} cores, ${machine.threads} threads, ${machine.simd}, load ${machine.load}, node ${machine.node})`);
  console.log(`median of ${REPS} runs (reference: ${REF_REPS}) after a warm-up; defaults: entropy weights, uniform μ, tol 1e-6`);
  console.log('size         sweeps  reference   native (all)  native (1 t)  speedup  speedup 1t  check');
  for (const r of rows) {
    const check = r.ok
      ? `same predictions, max |Δp| ${r.maxProbDiff.toExponential(1)}${r.sameIterations ? ', same sweeps' : ', sweeps differ'}`
      : `WRONG: ${r.predictionMismatches} predictions differ, max |Δp| ${r.maxProbDiff.toExponential(1)}`;
    console.log(
      `${`${r.n}x${r.k}`.padEnd(12)} ${String(r.sweeps).padStart(6)}  ${r.referenceMs.toFixed(1).padStart(7)} ms  ${r.nativeMs.toFixed(2).padStart(9)} ms  ${r.native1tMs.toFixed(2).padStart(9)} ms  ${r.ok ? `${r.speedup.toFixed(1)}×`.padStart(7) : 'WRONG'.padStart(7)}  ${r.ok ? `${r.speedup1t.toFixed(1)}×`.padStart(10) : ''}  ${check}`,
    );
  }
}
if (rows.some((r) => !r.ok)) process.exitCode = 1;
