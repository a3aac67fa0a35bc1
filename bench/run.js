#!/usr/bin/env node
// npm run bench [-- --quick] [-- --no-peers] [-- --sizes 10000x100,20000x1000]
//
// Times, in one run and on the same seeded long-tailed logits, the Sinkhorn iteration, a
// 100-iteration OT correction and one OTLM step on every path present here: native CPU (all
// threads and 1 thread), CUDA (when info().cuda.usable), the WebAssembly engine, tfjs-wasm, tfjs-cpu and the float64
// reference; the Python peers (PyTorch, POT) where /usr/bin/python3 has them; the memory floor
// (one streaming read of the same bytes, bench/floor.cpp); scaling in N, K and threads; and the
// event-loop delay during an async solve. Every path's answer is checked against the native one
// (predictions, sampled plan rows, OTLM loss and gradient) before its time is reported: a fast
// wrong answer is printed as WRONG, not as a time. Each measurement runs in its own child process
// (bench/job.js) so that its peak RSS is its own. Medians over repeats after a warm-up.
// Output: a table on stdout and JSON in bench/out/<date>.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

import { BENCH_DIR, OUT_DIR, ROOT, findPython, logitsFile, peer, readI32 } from './common.js';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const NO_PEERS = argv.includes('--no-peers');
const sizesArg = argv.includes('--sizes') ? argv[argv.indexOf('--sizes') + 1] : null;
const NCPU = cpus().length;
const T_START = Date.now();
const log = (...a) => console.error(`[bench ${((Date.now() - T_START) / 1000).toFixed(0).padStart(4)} s]`, ...a);

if (!existsSync(join(ROOT, 'lib', 'index.js'))) {
  console.error('bench: lib/ is missing; run `npm run build:ts` (npm install does it through the prepare script).');
  process.exit(1);
}

// ------------------------------------------------------------------ configuration
const ALL_SIZES = [
  { n: 2404, k: 100, name: 'CIFAR-100-LT (OTLM batch)' },
  { n: 10000, k: 100, name: 'CIFAR-100-LT' },
  { n: 20000, k: 1000, name: 'ImageNet-LT' },
  { n: 24426, k: 8142, name: 'iNaturalist' },
];
let SIZES = QUICK ? ALL_SIZES.slice(0, 1) : ALL_SIZES;
if (sizesArg) {
  SIZES = sizesArg.split(',').map((s) => {
    const [n, k] = s.split('x').map(Number);
    return ALL_SIZES.find((z) => z.n === n && z.k === k) ?? { n, k, name: 'custom' };
  });
}
// Estimated budget of one measurement; beyond it the measurement is skipped with a note. The
// ImageNet-LT size gets more, since the issues' ratios are stated there.
const jobBudget = (n, k) => (QUICK ? 6 : n === 20000 && k === 1000 ? 130 : 60);
const otBudget = (n, k) => (QUICK ? 3 : n === 20000 && k === 1000 ? 75 : 60); // a single measurement's estimated budget; beyond it: skipped with a note
const CHECK_ITERS = 2; // the agreement check: f, g, f from g = 0 on every path
const PEER_CHECK_ITERS = 15; // POT starts from the other side: compare after more iterations
const LAMBDA = 1;
// Prior guesses of seconds per matrix element per Sinkhorn iteration, replaced by measurements.
const rate = { native: 2e-9, 'native-1t': 4e-9, cuda: 1e-10, wasm: 4e-9, 'wasm-mt': 2.5e-9, 'tfjs-wasm': 2.5e-8, 'tfjs-cpu': 9e-7, reference: 6e-8 };

mkdirSync(OUT_DIR, { recursive: true });
const refDir = mkdtempSync(join(OUT_DIR, '.ref-'));

function job(spec, timeoutS) {
  const r = spawnSync(process.execPath, ['--max-old-space-size=16384', join(BENCH_DIR, 'job.js'), JSON.stringify({ refDir, lambda: LAMBDA, ...spec })], {
    encoding: 'utf8',
    timeout: Math.round(Math.max(30, timeoutS) * 1000),
    maxBuffer: 64 << 20,
    env: { ...process.env, OTLM_QUIET: '1' },
  });
  if (r.error || r.signal) return { ok: false, error: r.signal ? `killed by ${r.signal} (timeout ${timeoutS} s or out of memory)` : String(r.error) };
  const line = r.stdout.trim().split('\n').pop();
  try {
    return JSON.parse(line);
  } catch {
    return { ok: false, error: `no result (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  }
}

// ------------------------------------------------------------------ machine
function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
const flags = (cpuinfo.match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/);
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: NCPU,
  flags: ['sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni'].filter((f) => flags.includes(f)),
  memGiB: +(totalmem() / 2 ** 30).toFixed(1),
  freeGiB: +(freemem() / 2 ** 30).toFixed(1),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  loadAvgStart: loadavg().map((x) => +x.toFixed(2)),
  gpu: sh('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader']) ?? 'none',
};
const gitRev = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']) ?? 'unknown';
const gitDirty = (sh('git', ['-C', ROOT, 'status', '--porcelain']) ?? '').length > 0;

const { loadNative } = await import(new URL('../lib/native/loader.js', import.meta.url).href);
let nativeInfo = null;
let nativeError = null;
try {
  const ni = loadNative().info();
  nativeInfo = { cpu: ni.cpu, cuda: ni.cuda };
} catch (e) {
  nativeError = e.message;
}
const cudaUsable = Boolean(nativeInfo?.cuda?.usable);

const PATHS = [
  { id: 'native', label: `native CPU (${NCPU} thr)`, path: 'native', threads: 0 },
  { id: 'native-1t', label: 'native CPU (1 thr)', path: 'native', threads: 1 },
  ...(cudaUsable ? [{ id: 'cuda', label: 'native CUDA', path: 'native', device: 'cuda' }] : []),
  // The WebAssembly engine's two builds (lib/wasm/otlm.wasm, lib/wasm/otlm-mt.wasm with a pool of
  // NCPU - 1 worker threads), each called on the job's own thread.
  { id: 'wasm', label: 'otlm wasm (1 thr)', path: 'wasm', wasmBuild: 'single' },
  { id: 'wasm-mt', label: `otlm wasm (${NCPU} thr)`, path: 'wasm', wasmBuild: 'threads' },
  { id: 'tfjs-wasm', label: 'tfjs-wasm', path: 'tfjs-wasm' },
  { id: 'tfjs-cpu', label: 'tfjs-cpu', path: 'tfjs-cpu' },
  { id: 'reference', label: 'reference f64', path: 'reference' },
];

const result = {
  date: new Date().toISOString(),
  command: `npm run bench${argv.length ? ' -- ' + argv.join(' ') : ''}`,
  git: { rev: gitRev, dirty: gitDirty },
  machine,
  native: nativeInfo ?? { error: nativeError },
  cudaNote: cudaUsable ? null : `CUDA not used: ${nativeInfo?.cuda?.reason ?? nativeError}`,
  lambda: LAMBDA,
  checkIters: CHECK_ITERS,
  floor: {},
  sizes: [],
  otlm: null,
  gemm: null,
  peers: {},
  scaling: null,
  eventLoop: null,
  notes: [],
  goals: [],
};
const note = (s) => {
  result.notes.push(s);
  log('note:', s);
};

// ------------------------------------------------------------------ memory floor
let floorBin = null;
{
  const bin = join(OUT_DIR, 'floor');
  const src = join(BENCH_DIR, 'floor.cpp');
  const cxx = process.env.CXX || 'c++';
  const r = spawnSync(cxx, ['-O3', '-march=native', '-ffast-math', '-std=c++17', '-pthread', src, '-o', bin], { encoding: 'utf8' });
  if (r.status === 0) floorBin = bin;
  else note(`memory floor not measured: cannot compile bench/floor.cpp with ${cxx} (${(r.stderr || String(r.error)).trim().split('\n')[0]})`);
}
function floor(bytes, threads) {
  if (!floorBin) return null;
  const r = spawnSync(floorBin, [String(bytes), String(threads), '7'], { encoding: 'utf8' });
  try {
    return JSON.parse(r.stdout.trim());
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ Sinkhorn + OT per size
const PRED_MIN = 0.999; // predictions agreeing with native (float32 near-ties may flip a few)
const PLAN_TOL = 5e-4; // max |ΔY| on the sampled rows
function verdict(check) {
  if (!check) return { ok: true, text: 'oracle' };
  const frac = check.agree / check.total;
  const ok = frac >= PRED_MIN && check.planMaxAbs <= PLAN_TOL && check.finite !== false;
  return { ok, text: `${(100 * frac).toFixed(2)}% pred, |ΔY|≤${check.planMaxAbs.toExponential(1)}` };
}

for (const size of SIZES) {
  const { n, k } = size;
  const nk = n * k;
  const entry = { ...size, bytes: nk * 4, floor: null, paths: {} };
  result.sizes.push(entry);
  log(`size ${n}x${k}: generating logits`);
  const file = logitsFile(n, k);
  entry.floor = { all: floor(nk * 4, NCPU), one: floor(nk * 4, 1) };
  // The floor is the faster of the two (on a loaded machine more threads can be slower).
  entry.floor.best = [entry.floor.all, entry.floor.one].filter(Boolean).sort((a, b) => a.seconds - b.seconds)[0] ?? null;
  let oracle = null;
  for (const p of PATHS) {
    const e = { label: p.label };
    entry.paths[p.id] = e;
    const est = rate[p.id] * nk; // s per iteration
    // Memory: wasm32 cannot address more than 4 GiB; the tfjs loop holds ~5 N×K float32 temporaries.
    if (p.path === 'wasm' && 2 * nk * 4 > 3.5 * 2 ** 30) {
      e.skipped = `wasm32 memory is limited to 4 GiB; the ${(nk * 4 / 2 ** 20).toFixed(0)} MB matrix and its plan do not fit`;
      continue;
    }
    if (p.path === 'tfjs-wasm' && 5 * nk * 4 > 4 * 2 ** 30) {
      e.skipped = `wasm32 heap is limited to 4 GiB; the ${(nk * 4 / 2 ** 20).toFixed(0)} MB matrix and its temporaries do not fit`;
      continue;
    }
    const needBytes = (p.path === 'reference' ? 3 * 8 : p.path.startsWith('tfjs') ? 6 * 4 : 4 * 4) * nk;
    if (needBytes > 0.8 * freemem()) {
      e.skipped = `needs ~${(needBytes / 2 ** 30).toFixed(1)} GiB, ${(freemem() / 2 ** 30).toFixed(1)} GiB free`;
      continue;
    }
    const checkCost = (CHECK_ITERS + 1.5) * est;
    const slow = p.path === 'tfjs-cpu' || p.path === 'reference' || p.path === 'tfjs-wasm';
    const iters = Math.max(1, Math.min(50, Math.round((slow ? (QUICK ? 0.4 : 1.5) : QUICK ? 0.25 : 0.5) / est)));
    const reps = est * iters > 5 ? 1 : slow ? (QUICK ? 2 : 3) : QUICK ? 3 : 5;
    let total = checkCost + reps * iters * est;
    // Very slow paths (tfjs-cpu at 20000×1000): time the check run itself rather than skip.
    let fromCheck = false;
    if (total > jobBudget(n, k) && est > 5 && checkCost <= 1.5 * jobBudget(n, k) && n * k <= 2e7 && !QUICK) {
      fromCheck = true;
      total = checkCost;
    }
    if (total > jobBudget(n, k) && !fromCheck) {
      e.skipped = `estimated ${total.toFixed(0)} s (${est.toFixed(2)} s/iteration from the measured rate) > ${jobBudget(n, k)} s budget${QUICK ? ' (--quick)' : ''}`;
      e.estimatedPerIter = est;
      continue;
    }
    log(`  sinkhorn ${p.label}: ${fromCheck ? 'timed from the check run' : `${iters} it x ${reps}`}`);
    const r = job({ task: 'sinkhorn', path: p.path, device: p.device, threads: p.threads, wasmBuild: p.wasmBuild, n, k, file, iters, reps: fromCheck ? 0 : reps, checkIters: CHECK_ITERS, makeRef: !oracle, peerCheckIters: !oracle && !NO_PEERS && !QUICK ? PEER_CHECK_ITERS : 0 }, total * 4 + 30);
    if (!r.ok) {
      e.error = r.error;
      continue;
    }
    if (!oracle) oracle = p.id;
    e.oracle = oracle;
    const v = verdict(r.check);
    e.check = { ...r.check, ok: v.ok, text: oracle === p.id ? 'oracle' : v.text };
    if (!v.ok) {
      e.error = `WRONG: disagrees with ${oracle} (${v.text})`;
      continue;
    }
    e.perIter = r.perIter;
    e.fromCheck = r.fromCheck ?? false;
    e.times = r.times;
    e.iters = r.iters;
    e.reps = r.reps;
    e.maxRss = r.maxRss;
    e.runtime = r.runtime;
    e.impl = r.impl;
    rate[p.id] = r.perIter / nk;
  }
  // 100-iteration OT correction (logits in, plan and predictions written).
  let otOracle = null;
  for (const p of PATHS) {
    const e = entry.paths[p.id];
    if (e.skipped || e.error) continue;
    const est = 100 * rate[p.id] * nk + (p.path === 'reference' ? 0 : 0.05);
    const reps = est > 5 ? 1 : QUICK ? 2 : 3;
    const warmup = est < 5;
    if (est * (reps + (warmup ? 1 : 0)) > otBudget(n, k) || (p.id === 'native-1t' && nk > 5e7)) {
      e.ot = { skipped: `estimated ${est.toFixed(0)} s (100 × the per-iteration time)`, estimated: est };
      continue;
    }
    log(`  ot ${p.label}: ${reps} rep(s)`);
    const r = job({ task: 'ot', path: p.path, device: p.device, threads: p.threads, wasmBuild: p.wasmBuild, n, k, file, reps, warmup, makeRef: !otOracle }, est * (reps + 1) * 4 + 30);
    if (!r.ok) {
      e.ot = { error: r.error };
      continue;
    }
    if (!otOracle) otOracle = p.id;
    const v = verdict(r.check);
    e.ot = v.ok ? { seconds: r.seconds, times: r.times, maxRss: r.maxRss, check: r.check ? v.text : 'oracle' } : { error: `WRONG: disagrees with ${otOracle} (${v.text})` };
  }
}

// ------------------------------------------------------------------ OTLM step, GEMM
{
  const B = 10000, K = 1000;
  const file = logitsFile(B, K, 2);
  const otlm = { b: B, k: K, T: 7, lambda: 1.2, paths: {} };
  result.otlm = otlm;
  let oracle = null;
  const est = { native: 1.0, 'native-1t': 1.8, cuda: 0.1, wasm: 6, 'wasm-mt': 3.5, 'tfjs-wasm': 25, 'tfjs-cpu': 400, reference: 150 };
  for (const p of PATHS) {
    const e = { label: p.label };
    otlm.paths[p.id] = e;
    const reps = est[p.id] > 10 ? 1 : QUICK ? 1 : 3;
    const total = est[p.id] * (reps + 1);
    if (total > 75 || (QUICK && p.id !== 'native')) {
      e.skipped = `estimated ~${est[p.id]} s per step${QUICK ? ' (--quick)' : ''}`;
      continue;
    }
    log(`  otlm ${p.label}`);
    const r = job({ task: 'otlm', path: p.path, device: p.device, threads: p.threads, wasmBuild: p.wasmBuild, n: B, k: K, file, reps, makeRef: !oracle }, total * 4 + 60);
    if (!r.ok) {
      e.error = r.error;
      continue;
    }
    if (!oracle) oracle = p.id;
    if (r.check && !(r.check.lossRel <= 1e-3 && r.check.gradRel <= 1e-2)) {
      e.error = `WRONG: disagrees with ${oracle} (loss rel ${r.check.lossRel.toExponential(1)}, grad rel ${r.check.gradRel.toExponential(1)})`;
      continue;
    }
    Object.assign(e, { seconds: r.seconds, times: r.times, maxRss: r.maxRss, loss: r.loss, check: r.check ?? 'oracle' });
    if (p.path === 'native' && p.device !== 'cuda') {
      const paths = p.id === 'native' ? ['native'] : [];
      if (paths.length && !result.gemm) {
        const g = job({ task: 'gemm', path: 'native', threads: 0, n: B, k: K, file, reps: QUICK ? 2 : 5 }, 120);
        result.gemm = g.ok ? { m: B, n: K, kk: K, seconds: g.seconds, gflops: g.gflops } : { error: g.error };
      }
    }
  }
}

// ------------------------------------------------------------------ Python peers
function peerAgreement(predFile, refFile) {
  if (!existsSync(refFile) || !existsSync(predFile)) return null;
  const a = readI32(predFile), b = readI32(refFile);
  let s = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) s++;
  return s / b.length;
}
if (NO_PEERS) note('Python peers skipped (--no-peers)');
else {
  const size = QUICK ? ALL_SIZES[0] : ALL_SIZES[1];
  const inSizes = result.sizes.find((s) => s.n === size.n && s.k === size.k);
  const file = logitsFile(size.n, size.k);
  const common = ['--input', file, '--n', String(size.n), '--k', String(size.k), '--lam', String(LAMBDA)];
  const tpy = findPython('torch');
  if (!tpy) note('PyTorch peers skipped: no python3 with torch (Debian python3-torch)');
  else {
    log(`  peer torch sinkhorn ${size.n}x${size.k}`);
    const pred = join(refDir, 'torch.pred.i32');
    // PyTorch's OpenMP threads suffer badly on a loaded machine: time 1 thread and all, keep the faster.
    const runs = [...new Set([1, NCPU])].map((t) =>
      peer(tpy, 'torch_sinkhorn.py', [...common, '--iters', QUICK ? '3' : '10', '--reps', QUICK ? '2' : '3', '--threads', String(t), '--check-iters', String(CHECK_ITERS), '--pred-out', pred], 300));
    const good = runs.filter((x) => !x.error).sort((a, b) => a.per_iter_seconds - b.per_iter_seconds);
    const r = good[0] ? { ...good[0], byThreads: good.map((x) => ({ threads: x.threads, per_iter_seconds: x.per_iter_seconds })) } : runs[0];
    const agree = peerAgreement(pred, join(refDir, `sinkhorn-${size.n}x${size.k}-it${CHECK_ITERS}.pred.i32`));
    result.peers.torchSinkhorn = { size: `${size.n}x${size.k}`, ...r, agreement: agree };
    if (agree !== null && agree < PRED_MIN) result.peers.torchSinkhorn.error = `WRONG: predictions agree ${(100 * agree).toFixed(2)}% with native`;
    if (!inSizes) note(`torch peer ran at ${size.n}x${size.k}, which this run did not time natively`);
    if (!QUICK) {
      log('  peer torch otlm step');
      const runs = [...new Set([1, NCPU])].map((t) => peer(tpy, 'torch_otlm_step.py', ['--b', '10000', '--k', '1000', '--t', '7', '--reps', '2', '--threads', String(t)], 300));
      const good = runs.filter((x) => !x.error).sort((a, b) => a.step_seconds - b.step_seconds);
      result.peers.torchOtlm = good[0]
        ? { ...good[0], sgemm_gflops: Math.max(...good.map((x) => x.sgemm_gflops)), byThreads: good.map((x) => ({ threads: x.threads, step_seconds: x.step_seconds, sgemm_gflops: x.sgemm_gflops })) }
        : runs[0];
    } else note('PyTorch OTLM step peer skipped in --quick mode (about 10 s)');
  }
  const ppy = QUICK ? null : findPython('ot');
  if (QUICK) note('POT peer skipped in --quick mode (about 1 s per iteration at 20000x1000)');
  else if (!ppy) note('POT peer skipped: no python3 with POT (Debian python3-pot)');
  else {
    log(`  peer POT sinkhorn_log ${size.n}x${size.k}`);
    const pred = join(refDir, 'pot.pred.i32');
    const r = peer(ppy, 'pot_sinkhorn.py', [...common, '--iters', '5', '--reps', '1', '--check-iters', String(PEER_CHECK_ITERS), '--pred-out', pred], 400);
    const agree = peerAgreement(pred, join(refDir, `sinkhorn-${size.n}x${size.k}-it${PEER_CHECK_ITERS}.pred.i32`));
    result.peers.potSinkhorn = { size: `${size.n}x${size.k}`, ...r, agreement: agree };
    if (agree !== null && agree < 0.99) result.peers.potSinkhorn.error = `WRONG: predictions agree ${(100 * agree).toFixed(2)}% with native`;
  }
}

// ------------------------------------------------------------------ the engine's C++ microbenchmark
// native/tests/bench_sinkhorn_cpu (built by cmake-js into build/) measures the iteration from inside
// the engine (no N-API call) and its own floor: a cross-check of the figures above.
{
  const bin = join(ROOT, 'build', 'bench_sinkhorn_cpu');
  if (!argv.includes('--cpp-bench')) note('C++ microbenchmark build/bench_sinkhorn_cpu not run (add --cpp-bench; it also times convergence at small λ, minutes on 2 cores)');
  else if (!existsSync(bin)) note('C++ microbenchmark build/bench_sinkhorn_cpu not built (cmake-js compile --out build)');
  else {
    log('  C++ bench_sinkhorn_cpu 20000x1000');
    const r = spawnSync(bin, ['--n', '20000', '--k', '1000', '--repeats', '3', '--json'], { encoding: 'utf8', timeout: 600000 });
    try {
      result.cppBench = JSON.parse(r.stdout.trim().split('\n').pop());
    } catch {
      result.cppBench = { error: r.signal ? 'timed out (600 s)' : `exit ${r.status}: ${(r.stderr || '').trim().split('\n').pop()}` };
    }
  }
}

// ------------------------------------------------------------------ scaling, event loop
if (result.sizes.some((s) => s.paths.native?.perIter)) {
  log('  scaling');
  const spec = QUICK
    ? { ns: [2500, 5000, 10000], ks: [10, 100, 400], threadSize: [10000, 400], reps: 2, targetSeconds: 0.05 }
    : { ns: [2500, 5000, 10000, 20000], ks: [10, 32, 100, 316, 1000], threadSize: [20000, 1000], reps: 3, targetSeconds: 0.25 };
  const threadCounts = [...new Set([1, 2, 4, 8, 16, 32, NCPU].filter((t) => t <= NCPU))];
  const r = job({ task: 'scaling', path: 'native', ...spec, threadCounts, n: 0, k: 0 }, 300);
  if (r.ok) {
    // Least squares of log t = a + b·log(N·K), and of log t = a + bN·log N + bK·log K.
    const pts = r.grid.map((g) => ({ x: Math.log(g.n * g.k), ln: Math.log(g.n), lk: Math.log(g.k), y: Math.log(g.perIter) }));
    const mean = (f) => pts.reduce((s, p) => s + f(p), 0) / pts.length;
    const mx = mean((p) => p.x), my = mean((p) => p.y);
    const slope = mean((p) => (p.x - mx) * (p.y - my)) / mean((p) => (p.x - mx) ** 2);
    const mn = mean((p) => p.ln), mk = mean((p) => p.lk);
    const snn = mean((p) => (p.ln - mn) ** 2), skk = mean((p) => (p.lk - mk) ** 2), snk = mean((p) => (p.ln - mn) * (p.lk - mk));
    const sny = mean((p) => (p.ln - mn) * (p.y - my)), sky = mean((p) => (p.lk - mk) * (p.y - my));
    const det = snn * skk - snk * snk;
    result.scaling = { ...r, exponentNK: slope, exponentN: (sny * skk - sky * snk) / det, exponentK: (sky * snn - sny * snk) / det };
    delete result.scaling.ok;
  } else result.scaling = { error: r.error };
  const big = result.sizes.find((s) => s.n === 20000 && s.paths.native?.perIter) ?? result.sizes.find((s) => s.paths.native?.perIter);
  const iters = Math.max(20, Math.min(500, Math.round((QUICK ? 0.8 : 1.5) / big.paths.native.perIter)));
  log(`  event loop (${big.n}x${big.k}, ${iters} it)`);
  const ev = job({ task: 'evloop', path: 'native', n: big.n, k: big.k, file: logitsFile(big.n, big.k), iters }, 300);
  result.eventLoop = ev.ok ? { size: `${big.n}x${big.k}`, ...ev } : { error: ev.error };
} else note('scaling and event-loop checks skipped: the native CPU Sinkhorn did not run');

rmSync(refDir, { recursive: true, force: true });
machine.loadAvgEnd = loadavg().map((x) => +x.toFixed(2));

// ------------------------------------------------------------------ goals (the issues' numbers)
const s2 = result.sizes.find((s) => s.n === 20000 && s.k === 1000);
const nat2 = s2?.paths.native?.perIter;
const goal = (name, value, target, pass) => result.goals.push({ name, value, target, pass });
const fmtx = (x) => (x === undefined || x === null || !Number.isFinite(x) ? 'n/a' : `${x.toFixed(x < 10 ? 2 : 0)}×`);
if (nat2) {
  const w = s2.paths['tfjs-wasm']?.perIter, c = s2.paths['tfjs-cpu']?.perIter;
  goal('native vs tfjs-wasm per iteration at 20000x1000', fmtx(w / nat2), '≥ 50×', w ? w / nat2 >= 50 : null);
  goal('native vs tfjs-cpu per iteration at 20000x1000', (s2.paths['tfjs-cpu']?.fromCheck ? '≤' : '') + fmtx(c / nat2), '≥ 500×', c ? c / nat2 >= 500 : null);
  const fl = s2.floor?.best?.seconds;
  goal('native per iteration / memory floor at 20000x1000', fmtx(nat2 / fl), '≤ 3×', fl ? nat2 / fl <= 3 : null);
  const t = result.peers.torchSinkhorn?.per_iter_seconds;
  goal('native vs PyTorch-CPU logsumexp loop per iteration', fmtx(t / nat2), '≥ 10×', t && !result.peers.torchSinkhorn.error ? t / nat2 >= 10 : null);
  const pp = result.peers.potSinkhorn?.per_iter_seconds;
  goal('native vs POT sinkhorn_log (float64) per iteration', fmtx(pp / nat2), '≥ 30×', pp && !result.peers.potSinkhorn.error ? pp / nat2 >= 30 : null);
  const ot = s2.paths.native?.ot?.seconds;
  goal('OT correction 20000x1000, 100 iterations, plan + predictions', ot ? `${ot.toFixed(2)} s` : 'n/a', '< 2 s', ot ? ot < 2 : null);
}
// The WebAssembly engine (issue 15): against the reference path and tfjs-wasm, at both sizes, on
// one thread and on the threaded build (the goal: ≥ 20× the reference with threads where the host
// allows them).
for (const s of result.sizes.filter((x) => (x.n === 20000 && x.k === 1000) || (x.n === 2404 && x.k === 100))) {
  const ref = s.paths.reference?.perIter, tw = s.paths['tfjs-wasm']?.perIter;
  for (const [id, what] of [['wasm', 'otlm wasm 1 thr'], ['wasm-mt', `otlm wasm ${NCPU} thr`]]) {
    const w = s.paths[id]?.perIter;
    if (!w) continue;
    goal(`${what} vs reference f64 per iteration at ${s.n}x${s.k}`, (s.paths.reference?.fromCheck ? '≤' : '') + fmtx(ref / w), '≥ 20×', ref ? ref / w >= 20 : null);
    goal(`${what} vs tfjs-wasm per iteration at ${s.n}x${s.k}`, fmtx(tw / w), '≥ 5×', tw ? tw / w >= 5 : null);
  }
}
const on = result.otlm?.paths.native?.seconds, ot2 = result.peers.torchOtlm?.step_seconds;
if (on) goal('OTLM step B=10000 K=1000 T=7: PyTorch autograd / native', fmtx(ot2 / on), '≥ 5×', ot2 ? ot2 / on >= 5 : null);
if (result.gemm?.gflops && result.peers.torchOtlm?.sgemm_gflops)
  goal('native GEMM / PyTorch sgemm throughput (10000x1000x1000)', `${((100 * result.gemm.gflops) / result.peers.torchOtlm.sgemm_gflops).toFixed(0)}%`, '≥ 70%', result.gemm.gflops / result.peers.torchOtlm.sgemm_gflops >= 0.7);
if (result.scaling?.exponentNK !== undefined) goal('fitted exponent of time in N·K', result.scaling.exponentNK.toFixed(2), '≈ 1', Math.abs(result.scaling.exponentNK - 1) < 0.15);
if (result.eventLoop?.async) goal('event-loop delay max during an async solve', `${result.eventLoop.async.maxMs.toFixed(1)} ms`, '< 20 ms', result.eventLoop.async.maxMs < 20);

// ------------------------------------------------------------------ output
const ms = (s) => (s === undefined || s === null ? '' : s >= 1 ? `${s.toFixed(2)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(2)} ms` : `${(s * 1e6).toFixed(0)} µs`);
const mb = (b) => (b ? `${(b / 2 ** 20).toFixed(0)} MB` : '');
const pad = (s, w) => String(s).padEnd(w);
const out = [];
out.push(`otlm benchmark ${result.date}  git ${gitRev}${gitDirty ? '+dirty' : ''}  ${machine.cpu}, ${NCPU} cores [${machine.flags.join(' ')}], GPU: ${machine.gpu}`);
out.push(`load average at start ${machine.loadAvgStart.join(' ')}, at end ${machine.loadAvgEnd.join(' ')} (a shared machine: other processes compete for the cores)`);
out.push(`command: ${result.command}    λ = ${LAMBDA}; medians after warm-up; ratio = path time / native CPU (${NCPU} thr) time`);
if (result.cudaNote) out.push(result.cudaNote);
for (const s of result.sizes) {
  const base = s.paths.native;
  out.push('');
  out.push(`${s.n}×${s.k} (${s.name}, ${(s.bytes / 1e6).toFixed(0)} MB)  memory floor (best streaming read of the same bytes): ${ms(s.floor?.best?.seconds)} (${s.floor?.best?.gbps?.toFixed(1) ?? '?'} GB/s; ${NCPU} thr ${ms(s.floor?.all?.seconds)}, 1 thr ${ms(s.floor?.one?.seconds)})`);
  out.push(`  ${pad('path', 22)}${pad('Sinkhorn/iter', 15)}${pad('ratio', 10)}${pad('OT 100 it', 13)}${pad('ratio', 10)}${pad('peak RSS', 10)}check`);
  for (const [id, e] of Object.entries(s.paths)) {
    if (e.skipped) {
      out.push(`  ${pad(e.label, 22)}skipped: ${e.skipped}`);
      continue;
    }
    if (e.error) {
      out.push(`  ${pad(e.label, 22)}ERROR: ${e.error}`);
      continue;
    }
    const r = base?.perIter ? `${(e.perIter / base.perIter).toFixed(2)}×` : '';
    const ot = e.ot?.seconds ? ms(e.ot.seconds) : e.ot?.skipped ? `(est ${ms(e.ot.estimated)})` : e.ot?.error ? 'ERROR' : '';
    const otr = e.ot?.seconds && base?.ot?.seconds ? `${(e.ot.seconds / base.ot.seconds).toFixed(2)}×` : '';
    out.push(`  ${pad(e.label, 22)}${pad((e.fromCheck ? '≤' : '') + ms(e.perIter), 15)}${pad(r, 10)}${pad(ot, 13)}${pad(otr, 10)}${pad(mb(Math.max(e.maxRss ?? 0, e.ot?.maxRss ?? 0)), 10)}${id === e.oracle ? 'oracle' : e.check?.text ?? ''}`);
    if (e.ot?.error) out.push(`    OT: ${e.ot.error}`);
  }
  if (base?.perIter && s.floor?.best?.seconds) out.push(`  native per iteration / memory floor: ${(base.perIter / s.floor.best.seconds).toFixed(2)}× (${NCPU} thr)${s.paths['native-1t']?.perIter ? `, ${(s.paths['native-1t'].perIter / s.floor.best.seconds).toFixed(2)}× (1 thr)` : ''}`);
}
if (result.otlm) {
  out.push('');
  out.push(`OTLM step B=10000 K=1000 T=7 λ=1.2 (native: trainer step with Adam; tfjs/reference: loss + unrolled dL/dW)`);
  const base = result.otlm.paths.native;
  for (const e of Object.values(result.otlm.paths)) {
    if (e.skipped) out.push(`  ${pad(e.label, 22)}skipped: ${e.skipped}`);
    else if (e.error) out.push(`  ${pad(e.label, 22)}ERROR: ${e.error}`);
    else
      out.push(`  ${pad(e.label, 22)}${pad(ms(e.seconds), 12)}${pad(base?.seconds ? (e.seconds / base.seconds).toFixed(2) + '×' : '', 10)}${pad(mb(e.maxRss), 10)}${typeof e.check === 'string' ? e.check : `loss rel ${e.check.lossRel.toExponential(1)}, grad rel ${e.check.gradRel.toExponential(1)}`}`);
  }
  if (result.gemm?.gflops) out.push(`  native GEMM 10000×1000×1000: ${ms(result.gemm.seconds)} (${result.gemm.gflops.toFixed(1)} GFLOP/s)`);
}
const pr = result.peers;
if (Object.keys(pr).length) {
  out.push('');
  out.push('Python peers (same run, same logits)');
  if (pr.torchSinkhorn) {
    const t = pr.torchSinkhorn;
    const nat = result.sizes.find((z) => `${z.n}x${z.k}` === t.size)?.paths.native?.perIter;
    const threads = t.byThreads ? ` (${t.byThreads.map((b) => `${b.threads} thr ${ms(b.per_iter_seconds)}`).join(', ')})` : '';
    const ratio = nat && t.per_iter_seconds ? `, native ${(t.per_iter_seconds / nat).toFixed(1)}× faster` : '';
    const agree = t.agreement != null ? `, predictions agree ${(100 * t.agreement).toFixed(2)}%` : '';
    out.push(`  PyTorch-CPU f32 logsumexp loop ${t.size}: ${t.error ?? ms(t.per_iter_seconds) + '/iter'}${threads}${ratio}${agree}`);
  }
  if (pr.potSinkhorn) out.push(`  POT sinkhorn_log f64 ${pr.potSinkhorn.size}: ${pr.potSinkhorn.error ?? ms(pr.potSinkhorn.per_iter_seconds) + '/iter'}${nat2 && pr.potSinkhorn.per_iter_seconds ? `, native ${(pr.potSinkhorn.per_iter_seconds / nat2).toFixed(1)}× faster` : ''}${pr.potSinkhorn.agreement != null ? `, predictions agree ${(100 * pr.potSinkhorn.agreement).toFixed(2)}% (after ${PEER_CHECK_ITERS} it)` : ''}`);
  if (pr.torchOtlm) out.push(`  PyTorch autograd OTLM step (+Adam) B=10000 K=1000 T=7: ${pr.torchOtlm.error ?? `${ms(pr.torchOtlm.step_seconds)}, sgemm ${pr.torchOtlm.sgemm_gflops?.toFixed(1)} GFLOP/s${pr.torchOtlm.byThreads ? ` (${pr.torchOtlm.byThreads.map((t) => `${t.threads} thr ${ms(t.step_seconds)}`).join(', ')})` : ''}`}`);
}
if (result.cppBench) out.push(`\nC++ bench_sinkhorn_cpu 20000×1000 (inside the engine, no N-API): ${JSON.stringify(result.cppBench)}`);
if (result.scaling?.grid) {
  out.push('');
  out.push(`Scaling (native, ${NCPU} thr): fitted exponent in N·K = ${result.scaling.exponentNK.toFixed(3)} (N: ${result.scaling.exponentN.toFixed(3)}, K: ${result.scaling.exponentK.toFixed(3)})`);
  const ks = [...new Set(result.scaling.grid.map((g) => g.k))];
  out.push(`  ${pad('N \\ K', 10)}${ks.map((k) => pad(k, 12)).join('')}`);
  for (const n of [...new Set(result.scaling.grid.map((g) => g.n))])
    out.push(`  ${pad(n, 10)}${ks.map((k) => pad(ms(result.scaling.grid.find((g) => g.n === n && g.k === k).perIter), 12)).join('')}`);
  const t1 = result.scaling.threads[0]?.perIter;
  out.push(`  threads at ${result.scaling.threadSize.join('×')}: ${result.scaling.threads.map((t) => `${t.threads}: ${ms(t.perIter)} (${(t1 / t.perIter).toFixed(2)}×)`).join(', ')}`);
} else if (result.scaling?.error) out.push(`Scaling: ERROR ${result.scaling.error}`);
if (result.eventLoop?.async)
  out.push(`Event loop during async native solve (${result.eventLoop.size}, ${result.eventLoop.iters} it, ${ms(result.eventLoop.async.seconds)}): max delay ${result.eventLoop.async.maxMs.toFixed(1)} ms, p99 ${result.eventLoop.async.p99Ms.toFixed(1)} ms; idle baseline (no solve, same length): max ${result.eventLoop.idle.maxMs.toFixed(1)} ms, p99 ${result.eventLoop.idle.p99Ms.toFixed(1)} ms; the same solve with sinkhornSync: max ${result.eventLoop.sync.maxMs.toFixed(0)} ms`);
else if (result.eventLoop?.error) out.push(`Event loop: ERROR ${result.eventLoop.error}`);
if (result.goals.length) {
  out.push('');
  out.push('Goals');
  for (const g of result.goals) out.push(`  ${g.pass === null ? '  ?  ' : g.pass ? ' PASS' : ' MISS'}  ${pad(g.name, 62)}${pad(g.value, 12)}(goal ${g.target})`);
}
if (result.notes.length) {
  out.push('');
  out.push('Notes');
  for (const n of result.notes) out.push(`  - ${n}`);
}
console.log(out.join('\n'));
const stamp = result.date.replace(/[:]/g, '-').replace(/\..*$/, '');
const jsonFile = join(OUT_DIR, `${stamp}${QUICK ? '-quick' : ''}.json`);
result.wallSeconds = (Date.now() - T_START) / 1000;
writeFileSync(jsonFile, JSON.stringify(result, null, 2) + '\n');
console.log(`\nJSON: ${jsonFile}  (${result.wallSeconds.toFixed(0)} s)`);
