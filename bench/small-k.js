#!/usr/bin/env node
// npm run bench:small-k [-- --rounds 2] [-- --build DIR] [-- --no-peers] [-- --json]
//
// The small-K rows (issue 14), each beside its peer measured in the same run, about 3 minutes on
// 2 cores:
//   - Sinkhorn per iteration at K = 10, 100 and 1000 on the same 80 MB (2000000×10, 200000×100,
//     20000×1000): the engine's own microbenchmark (build/bench_sinkhorn_cpu, all threads and the
//     CPU time of one thread), per byte against K = 1000, and the PyTorch-CPU logsumexp loop
//     (bench/peers/torch_sinkhorn.py) at the same shapes;
//   - OTLM steps at the paper's CIFAR settings (5000×10 and 2404×100, T = 200, Adam, unrolled):
//     build/bench_otlm_cpu against PyTorch autograd + Adam (bench/peers/torch_otlm_step.py);
//   - the CIFAR-100-LT preset fit on 2404×100 (bench/fit.js);
//   - DARP, native against the float64 TypeScript reference at 8151×100 (bench/darp.js);
//   - the builtin GEMM against OpenBLAS on the OTLM products (build/bench_gemm_cpu --quick).
// Native measurements run `--rounds` times (default 2) interleaved with the others, and the best
// round is kept: on a shared VM a slow round is noise from outside, never a faster engine. PyTorch
// runs on 1 thread and on all, and the faster is kept (its OpenMP threads suffer most from load).
// Writes bench/out/small-k-<date>.json; the figures are in bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findPython, logitsFile, peer } from './common.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const arg = (name, def) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : def);
const ROUNDS = Math.max(1, Number(arg('--rounds', 2)));
const BUILD = arg('--build', join(ROOT, 'build'));
const NO_PEERS = argv.includes('--no-peers');
const NCPU = cpus().length;
const T0 = Date.now();
const log = (...a) => console.error(`[small-k ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s]`, ...a);

const bin = (name) => {
  const p = join(BUILD, name);
  if (!existsSync(p)) {
    console.error(`bench/small-k: ${p} is missing: build the C++ benchmarks (npm install builds them into build/; or cmake -S . -B build -DOTLM_TESTS=ON && cmake --build build)`);
    process.exit(1);
  }
  return p;
};
if (!existsSync(join(ROOT, 'lib', 'index.js'))) {
  console.error('bench/small-k: lib/ is missing; run `npm run build:ts`.');
  process.exit(1);
}

// Runs a command and returns the JSON objects it printed, one per line.
function jsonLines(cmd, args, timeoutS) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    const why = r.signal ? `killed (${r.signal}, limit ${timeoutS} s)` : `exit ${r.status}`;
    throw new Error(`${cmd.split('/').pop()} ${args.join(' ')}: ${why}: ${(r.stderr || '').trim().split('\n').pop()}`);
  }
  return r.stdout.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l));
}
const PY = NO_PEERS ? null : findPython('torch');
const notes = [];
if (!NO_PEERS && !PY) notes.push('PyTorch peers skipped: no python3 with torch (Debian python3-torch)');
// PyTorch on 1 thread and on all threads, the faster kept.
function torch(script, args, key) {
  if (!PY) return null;
  const runs = [...new Set([1, NCPU])].map((t) => peer(PY, script, [...args, '--threads', String(t)], 600));
  const good = runs.filter((r) => !r.error).sort((a, b) => a[key] - b[key]);
  return good[0] ? { ...good[0], byThreads: good.map((r) => ({ threads: r.threads, [key]: r[key] })) } : runs[0];
}
const best = (list, key) => list.filter((x) => x && !x.error).sort((a, b) => a[key] - b[key])[0] ?? list[0];

const result = {
  date: new Date().toISOString(),
  machine: { cpu: cpus()[0]?.model ?? '?', cores: NCPU, loadAvgStart: loadavg().map((x) => +x.toFixed(2)) },
  rounds: ROUNDS,
  sinkhorn: [],
  otlm: [],
  notes,
};

// ---------------------------------------------------------------- Sinkhorn per iteration
const SHAPES = [
  { n: 20000, k: 1000 },
  { n: 200000, k: 100 },
  { n: 2000000, k: 10 },
];
const sk = SHAPES.map(() => []);
for (let r = 0; r < ROUNDS; r++)
  SHAPES.forEach(({ n, k }, q) => {
    log(`sinkhorn ${n}x${k} (round ${r + 1}/${ROUNDS})`);
    const args = ['--n', String(n), '--k', String(k), '--repeats', '7', '--counts-n', '200', '--counts-k', '10', '--count-cap', '100', '--json'];
    sk[q].push(jsonLines(bin('bench_sinkhorn_cpu'), args, 300)[0]);
  });
SHAPES.forEach(({ n, k }, q) => {
  const nat = best(sk[q], 'iter_ms');
  const nat1 = best(sk[q], 'iter_ms_1thread_cpu');
  let peer = null;
  if (PY) {
    log(`peer torch sinkhorn ${n}x${k}`);
    peer = torch('torch_sinkhorn.py', ['--input', logitsFile(n, k), '--n', String(n), '--k', String(k), '--lam', '1', '--iters', '5', '--reps', '3', '--check-iters', '1'], 'per_iter_seconds');
  }
  result.sinkhorn.push({
    n, k, bytes: n * k * 4, iterMs: nat.iter_ms, iterMs1tCpu: nat1.iter_ms_1thread_cpu, threads: nat.threads,
    simd: nat.backend?.simd, floorMs: nat.floor_ms, rounds: sk[q].map((x) => ({ iterMs: x.iter_ms, iterMs1tCpu: x.iter_ms_1thread_cpu })),
    torch: peer,
  });
});

// ---------------------------------------------------------------- OTLM steps, preset fit
const STEPS = [
  { b: 5000, k: 10, name: 'CIFAR-10-LT' },
  { b: 2404, k: 100, name: 'CIFAR-100-LT' },
];
const st = STEPS.map(() => []);
for (let r = 0; r < ROUNDS; r++)
  STEPS.forEach(({ b, k }, q) => {
    log(`otlm step ${b}x${k} T=200 (round ${r + 1}/${ROUNDS})`);
    st[q].push(jsonLines(bin('bench_otlm_cpu'), ['--b', String(b), '--k', String(k), '--t', '200', '--reps', '7', '--json'], 300)[0]);
  });
STEPS.forEach(({ b, k, name }, q) => {
  const nat = best(st[q], 'step_unrolled_seconds');
  let peer = null;
  if (PY) {
    log(`peer torch otlm step ${b}x${k}`);
    peer = torch('torch_otlm_step.py', ['--b', String(b), '--k', String(k), '--t', '200', '--reps', '3'], 'step_seconds');
  }
  result.otlm.push({ b, k, T: 200, name, stepSeconds: nat.step_unrolled_seconds, envelopeSeconds: nat.step_envelope_seconds, threads: nat.threads, isa: nat.isa, gemm: nat.gemm, rounds: st[q].map((x) => x.step_unrolled_seconds), torch: peer });
});
log('CIFAR-100-LT preset fit 2404x100');
try {
  const fits = [];
  for (let r = 0; r < ROUNDS; r++) fits.push(jsonLines(process.execPath, [join(ROOT, 'bench', 'fit.js'), '--preset', 'cifar100-lt', '--n', '2404', '--k', '100'], 300)[0]);
  result.fit = best(fits, 'seconds');
} catch (e) {
  result.fit = { error: e.message };
}

// ---------------------------------------------------------------- DARP, GEMM
log('darp 8151x100');
try {
  // One darp.js run per round (each measures both engines); the round whose native time is lowest.
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++)
    rounds.push(JSON.parse(spawnSync(process.execPath, [join(ROOT, 'bench', 'darp.js'), '--sizes', '8151x100', '--reps', '7', '--json'], { encoding: 'utf8', timeout: 600000 }).stdout).rows[0]);
  result.darp = best(rounds, 'nativeMs');
} catch (e) {
  result.darp = { error: e.message };
}
log('gemm builtin vs OpenBLAS');
try {
  result.gemm = jsonLines(bin('bench_gemm_cpu'), ['--quick', '--threads', String(NCPU), '--json'], 600);
} catch (e) {
  result.gemm = { error: e.message };
}
result.machine.loadAvgEnd = loadavg().map((x) => +x.toFixed(2));

// ---------------------------------------------------------------- report
const ms = (s) => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1e3).toFixed(1)} ms`);
const x = (v) => (v === undefined || v === null || !isFinite(v) ? 'n/a' : `${v.toFixed(v >= 10 ? 0 : 1)}×`);
const goals = [];
const goal = (name, value, target, pass) => goals.push({ name, value, target, pass });
const out = [];
out.push(`otlm small-K benchmark ${result.date}  ${result.machine.cpu}, ${NCPU} cores, load ${result.machine.loadAvgStart[0]} → ${result.machine.loadAvgEnd[0]}, best of ${ROUNDS} round(s)`);
out.push('');
out.push('Sinkhorn iteration, 80 MB of float32 logits (λ = 1, warm):');
out.push('  shape          all threads   1 thread (CPU)   per byte vs K=1000 (all / 1 thr)   PyTorch-CPU   vs PyTorch');
const base = result.sinkhorn.find((s) => s.k === 1000);
for (const s of result.sinkhorn) {
  const pb = s.iterMs / base.iterMs, pb1 = s.iterMs1tCpu / base.iterMs1tCpu;
  const t = s.torch && !s.torch.error ? s.torch.per_iter_seconds * 1e3 : null;
  s.perByteVsK1000 = pb;
  s.perByteVsK1000OneThread = pb1;
  s.vsTorch = t ? t / s.iterMs : null;
  out.push(`  ${`${s.n}x${s.k}`.padEnd(14)} ${`${s.iterMs.toFixed(2)} ms`.padStart(11)}   ${`${s.iterMs1tCpu.toFixed(2)} ms`.padStart(14)}   ${`${pb.toFixed(2)}× / ${pb1.toFixed(2)}×`.padStart(32)}   ${(t ? `${t.toFixed(1)} ms` : s.torch?.error ?? 'n/a').padStart(11)}   ${x(s.vsTorch).padStart(9)}`);
  if (s.k !== 1000) {
    goal(`Sinkhorn per byte at K=${s.k} vs K=1000 (all threads)`, `${pb.toFixed(2)}×`, '≤ 1.5×', pb <= 1.5);
    goal(`Sinkhorn vs PyTorch-CPU at ${s.n}x${s.k}`, x(s.vsTorch), '≥ 10×', s.vsTorch === null ? null : s.vsTorch >= 10);
  }
}
out.push('');
out.push('OTLM step (Adam, full batch, T = 200, unrolled backward):');
for (const o of result.otlm) {
  const t = o.torch && !o.torch.error ? o.torch.step_seconds : null;
  o.vsTorch = t ? t / o.stepSeconds : null;
  out.push(`  ${`${o.b}x${o.k}`.padEnd(10)} ${o.name.padEnd(13)} otlm ${ms(o.stepSeconds).padStart(8)} (rounds ${o.rounds.map(ms).join(', ')})   PyTorch ${t ? ms(t) : o.torch?.error ?? 'n/a'}${o.torch?.byThreads ? ` (${o.torch.byThreads.map((b) => `${b.threads} thr ${ms(b.step_seconds)}`).join(', ')})` : ''}   ${x(o.vsTorch)}`);
  goal(`OTLM step ${o.b}x${o.k} T=200: PyTorch / otlm`, x(o.vsTorch), '≥ 5×', o.vsTorch === null ? null : o.vsTorch >= 5);
}
if (result.fit?.seconds !== undefined) {
  out.push(`  CIFAR-100-LT preset fit on 2404x100: ${ms(result.fit.seconds)} (${result.fit.steps} steps, backend ${result.fit.backend})`);
  goal('CIFAR-100-LT preset fit on 2404x100', ms(result.fit.seconds), '< 1.5 s', result.fit.seconds < 1.5);
} else out.push(`  CIFAR-100-LT preset fit: ${result.fit?.error}`);
out.push('');
if (result.darp?.speedup) {
  const d = result.darp;
  out.push(`DARP 8151x100: reference ${ms(d.referenceMs / 1e3)}, native ${ms(d.nativeMs / 1e3)} (1 thread ${ms(d.native1tMs / 1e3)}): ${x(d.speedup)}, predictions ${d.ok ? 'identical' : 'DIFFER'}`);
  goal('native DARP vs TypeScript DARP at 8151x100 (same predictions)', x(d.speedup), '≥ 20×', d.ok && d.speedup >= 20);
} else out.push(`DARP: ${result.darp?.error ?? 'n/a'}`);
if (Array.isArray(result.gemm)) {
  out.push('GEMM, builtin / OpenBLAS (median, all threads):');
  for (const g of result.gemm) out.push(`  ${g.product.padEnd(52)} ${g.builtin_over_openblas !== undefined ? `${g.builtin_over_openblas.toFixed(2)}×` : 'n/a (no OpenBLAS)'}`);
  const big = result.gemm.find((g) => g.m === 10000 && g.n === 1000 && g.k === 1000 && /nn|Φ·W|forward/i.test(g.product)) ?? result.gemm.find((g) => g.m === 10000 && g.n === 1000);
  if (big?.builtin_over_openblas !== undefined) goal('builtin GEMM / OpenBLAS on 10000x1000x1000', `${big.builtin_over_openblas.toFixed(2)}×`, '≤ 1.5×', big.builtin_over_openblas <= 1.5);
} else out.push(`GEMM: ${result.gemm?.error}`);
out.push('');
out.push('Goals (issue 14):');
for (const g of goals) out.push(`  ${g.pass === null ? '  ?  ' : g.pass ? ' PASS' : ' MISS'}  ${g.name.padEnd(62)}${String(g.value).padEnd(10)}(goal ${g.target})`);
for (const n of notes) out.push(`note: ${n}`);
result.goals = goals;

const dir = join(ROOT, 'bench', 'out');
mkdirSync(dir, { recursive: true });
const file = join(dir, `small-k-${result.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(argv.includes('--json') ? JSON.stringify(result, null, 2) : out.join('\n'));
log(`record: ${file}`);
