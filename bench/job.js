// One benchmark measurement in its own process (so each has its own peak RSS and its own tfjs
// state). Spawned by bench/run.js: node bench/job.js '<json spec>'. Prints one JSON line.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { ROOT, costFromLogits, longTailedLogits, median, readF32, readI32, sampleRows, writeTyped } from './common.js';

const spec = JSON.parse(process.argv[2]);
const lib = (p) => import(pathToFileURL(join(ROOT, 'lib', p)).href);
const now = () => performance.now() / 1000;

// The native addon, or the WebAssembly engine behind the same interface (src/native/wasm.ts).
async function engine(path) {
  // spec.wasmBuild 'single' | 'threads': that build, called on this thread (bench/run.js's two wasm rows).
  if (path === 'wasm') {
    const w = await lib('native/wasm-node.js');
    return spec.wasmBuild ? w.createWasmEngine(spec.wasmBuild) : w.loadWasm();
  }
  return (await lib('native/loader.js')).loadNative();
}

// ---------------------------------------------------------------- solvers, one interface
// solve(x, {inputKind, maxIter, checkEvery, plan, predictions}) → {f, g, plan?, predictions?, iterations}
async function makeSolver(path) {
  const lambda = spec.lambda ?? 1;
  const col = new Float64Array(spec.k).fill(spec.n / spec.k);
  if (path === 'native' || path === 'wasm') {
    const native = await engine(path);
    return {
      native,
      solve: (x, o) =>
        native.sinkhorn({
          backend: spec.device ?? 'cpu', x, n: spec.n, k: spec.k, inputKind: o.inputKind, lambda,
          maxIter: o.maxIter, tol: 0, checkEvery: o.checkEvery ?? o.maxIter, threads: spec.threads ?? 0,
          colMarginal: col, plan: o.plan ?? false, predictions: o.predictions ?? false,
        }),
    };
  }
  if (path === 'tfjs-wasm' || path === 'tfjs-cpu') {
    const { tfjsSinkhorn, tfjsRuntimeInfo } = await lib('paths/tfjs/index.js');
    const tfBackend = path === 'tfjs-wasm' ? 'wasm' : 'cpu';
    const rt = await tfjsRuntimeInfo(tfBackend);
    return {
      runtime: rt,
      solve: (x, o) =>
        tfjsSinkhorn({ data: x, rows: spec.n, cols: spec.k }, {
          inputKind: o.inputKind, lambda, maxIter: o.maxIter, tol: 0, checkEvery: o.checkEvery ?? o.maxIter,
          colMarginal: col, plan: o.plan ?? false, predictions: o.predictions ?? false, tfBackend,
        }),
    };
  }
  if (path === 'reference') {
    // The project's float64 path (src/paths/reference/sinkhorn.ts); the bench's own loop if it is absent.
    if (existsSync(join(ROOT, 'lib/paths/reference/sinkhorn.js'))) {
      const { referenceSinkhorn } = await lib('paths/reference/sinkhorn.js');
      return {
        impl: 'lib/paths/reference/sinkhorn.js',
        solve: async (x, o) =>
          referenceSinkhorn({
            x, n: spec.n, k: spec.k, inputKind: o.inputKind, lambda, maxIter: o.maxIter, tol: 0,
            checkEvery: o.checkEvery ?? o.maxIter, colMarginal: col, plan: o.plan ?? false, predictions: o.predictions ?? false,
          }),
      };
    }
    const { sinkhornF64 } = await import('./ref64.js');
    return { impl: 'bench/ref64.js (lib/paths/reference/sinkhorn.js not built)', solve: async (x, o) => sinkhornF64(x, spec.n, spec.k, col, lambda, o) };
  }
  throw new Error(`unknown path ${path}`);
}

// ---------------------------------------------------------------- agreement with native
function checkAgainst(refDir, tag, res) {
  const preds = readI32(join(refDir, `${tag}.pred.i32`));
  const ref = JSON.parse(readFileSync(join(refDir, `${tag}.json`), 'utf8'));
  let agree = 0;
  for (let i = 0; i < preds.length; i++) if (preds[i] === res.predictions[i]) agree++;
  let planMaxAbs = 0;
  if (res.plan && ref.rows) {
    ref.rows.forEach((r, t) => {
      for (let j = 0; j < spec.k; j++) planMaxAbs = Math.max(planMaxAbs, Math.abs(res.plan[r * spec.k + j] - ref.plan[t][j]));
    });
  }
  let fOk = true;
  for (const v of res.plan ?? []) if (!Number.isFinite(v)) { fOk = false; break; }
  return { agree, total: preds.length, planMaxAbs, finite: fOk };
}

function saveRef(refDir, tag, res) {
  writeTyped(join(refDir, `${tag}.pred.i32`), res.predictions);
  const rows = res.plan ? sampleRows(spec.n) : null;
  const plan = rows ? rows.map((r) => Array.from(res.plan.subarray(r * spec.k, (r + 1) * spec.k))) : null;
  writeFileSync(join(refDir, `${tag}.json`), JSON.stringify({ rows, plan }));
}

function rss() {
  return process.resourceUsage().maxRSS * 1024;
}

// ---------------------------------------------------------------- tasks
async function sinkhornTask() {
  const phi = readF32(spec.file, spec.n * spec.k);
  const s = await makeSolver(spec.path);
  const out = { runtime: s.runtime, impl: s.impl };
  // Check run (doubles as the warm-up): fixed iterations from g = 0, logits input, plan + predictions.
  const tc = now();
  const chk = await s.solve(phi, { inputKind: 'logits', maxIter: spec.checkIters, plan: true, predictions: true });
  const checkSeconds = now() - tc;
  const tag = `sinkhorn-${spec.n}x${spec.k}-it${spec.checkIters}`;
  if (spec.makeRef) saveRef(spec.refDir, tag, chk);
  else out.check = checkAgainst(spec.refDir, tag, chk);
  // Also store predictions after more iterations for the peers (POT starts from the other side).
  if (spec.makeRef && spec.peerCheckIters) {
    const r2 = await s.solve(phi, { inputKind: 'logits', maxIter: spec.peerCheckIters, predictions: true });
    writeTyped(join(spec.refDir, `sinkhorn-${spec.n}x${spec.k}-it${spec.peerCheckIters}.pred.i32`), r2.predictions);
  }
  if (spec.reps === 0) {
    // Too slow to time separately: the check run's time / its iterations, an upper bound (it also
    // converts the logits and writes the plan and the predictions).
    return { ...out, perIter: checkSeconds / spec.checkIters, fromCheck: true, times: [], iters: spec.checkIters, reps: 0, maxRss: rss() };
  }
  const cost = costFromLogits(phi, spec.n, spec.k);
  const times = [];
  let engineSeconds;
  for (let r = 0; r < spec.reps; r++) {
    const t0 = now();
    const res = await s.solve(cost, { inputKind: 'cost', maxIter: spec.iters });
    times.push((now() - t0) / spec.iters);
    if (res.seconds !== undefined) engineSeconds = res.seconds / spec.iters;
  }
  return { ...out, perIter: median(times), times, engineSecondsPerIter: engineSeconds, iters: spec.iters, reps: spec.reps, maxRss: rss() };
}

async function otTask() {
  const phi = readF32(spec.file, spec.n * spec.k);
  const s = await makeSolver(spec.path);
  const plan = new Float32Array(spec.n * spec.k);
  const times = [];
  let last;
  for (let r = 0; r < spec.reps + (spec.warmup ? 1 : 0); r++) {
    const t0 = now();
    last = await s.solve(phi, { inputKind: 'logits', maxIter: 100, checkEvery: 10, plan, predictions: true });
    if (r > 0 || !spec.warmup) times.push(now() - t0);
  }
  const tag = `ot-${spec.n}x${spec.k}`;
  const out = { runtime: s.runtime, impl: s.impl };
  last.plan = plan;
  if (spec.makeRef) saveRef(spec.refDir, tag, last);
  else out.check = checkAgainst(spec.refDir, tag, last);
  return { ...out, seconds: median(times), times, iterations: last.iterations, maxRss: rss() };
}

async function otlmTask() {
  const B = spec.n, K = spec.k;
  const phi = readF32(spec.file, B * K);
  const w = new Float32Array(K * K);
  for (let j = 0; j < K; j++) w[j * K + j] = 1;
  const mu = new Float64Array(K).fill(1 / K);
  const hp = { lambda: 1.2, sinkhornIters: 7, tol: 0 };
  const times = [];
  let res;
  if (spec.path === 'native' || spec.path === 'wasm') {
    const native = await engine(spec.path);
    const base = { backend: spec.device ?? 'cpu', k: K, ...hp, grad: 'unrolled', threads: spec.threads ?? 0 };
    // Agreement: loss and dL/dW at W = I (the same evaluation every path makes).
    const lg = await native.lossGrad({ ...base, phi, b: B, w, targetPrior: mu, wantGrad: true });
    res = { loss: lg.loss, gradW: lg.gradW };
    // Timed: a full trainer step (forward, unrolled backward, Adam), as the PyTorch peer does.
    const tr = new native.Trainer({ ...base, optimizer: 'adam', weightDecay: 1e-3, phi, n: B, targetPrior: mu });
    const rows = Int32Array.from({ length: B }, (_, i) => i);
    await tr.step(rows, 1e-3); // warm-up
    for (let r = 0; r < spec.reps; r++) {
      const t0 = now();
      await tr.step(rows, 1e-3);
      times.push(now() - t0);
    }
    tr.close();
  } else if (spec.path.startsWith('tfjs')) {
    const { tfjsOtlmStep } = await lib('paths/tfjs/index.js');
    const tfBackend = spec.path === 'tfjs-wasm' ? 'wasm' : 'cpu';
    for (let r = 0; r < spec.reps + 1; r++) {
      const t0 = now();
      res = await tfjsOtlmStep({ data: phi, rows: B, cols: K }, w, { ...hp, targetPrior: mu, tfBackend });
      if (r > 0) times.push(now() - t0);
    }
  } else {
    const { otlmLossGradReference } = await lib('paths/reference/otlm.js');
    const t0 = now();
    res = otlmLossGradReference({ phi: { data: phi, rows: B, cols: K }, w, targetPrior: mu, ...hp, grad: 'unrolled' });
    times.push(now() - t0);
  }
  const tag = `otlm-${B}x${K}`;
  const out = {};
  if (spec.makeRef) {
    writeTyped(join(spec.refDir, `${tag}.grad.f32`), res.gradW);
    writeFileSync(join(spec.refDir, `${tag}.json`), JSON.stringify({ loss: res.loss }));
  } else {
    const ref = JSON.parse(readFileSync(join(spec.refDir, `${tag}.json`), 'utf8'));
    const g = readF32(join(spec.refDir, `${tag}.grad.f32`));
    let num = 0, den = 0;
    for (let i = 0; i < g.length; i++) {
      num += (res.gradW[i] - g[i]) ** 2;
      den += g[i] ** 2;
    }
    out.check = { lossRel: Math.abs(res.loss - ref.loss) / Math.max(1e-12, Math.abs(ref.loss)), gradRel: Math.sqrt(num / den) };
  }
  return { ...out, seconds: median(times), times, loss: res.loss, maxRss: rss() };
}

async function gemmTask() {
  const { loadNative } = await lib('native/loader.js');
  const native = loadNative();
  const m = spec.n, kk = spec.k, n = spec.k;
  const a = readF32(spec.file, m * kk);
  const b = new Float32Array(kk * n).map((_, i) => ((i * 2654435761) % 1000) / 20000 - 0.025);
  await native.gemm({ backend: spec.device ?? 'cpu', a, b, m, n, kk, threads: spec.threads ?? 0 });
  const times = [];
  for (let r = 0; r < spec.reps; r++) {
    const t0 = now();
    await native.gemm({ backend: spec.device ?? 'cpu', a, b, m, n, kk, threads: spec.threads ?? 0 });
    times.push(now() - t0);
  }
  const s = median(times);
  return { seconds: s, gflops: (2 * m * n * kk) / s / 1e9, times };
}

async function evloopTask() {
  const { loadNative } = await lib('native/loader.js');
  const native = loadNative();
  const x = readF32(spec.file, spec.n * spec.k);
  const col = new Float64Array(spec.k).fill(spec.n / spec.k);
  const args = { x, n: spec.n, k: spec.k, inputKind: 'logits', lambda: 1, maxIter: spec.iters, tol: 0, checkEvery: 10, colMarginal: col, threads: 0 };
  const measure = async (fn) => {
    const h = monitorEventLoopDelay({ resolution: 1 });
    const tick = setInterval(() => {}, 1);
    h.enable();
    await new Promise((r) => setTimeout(r, 20));
    const t0 = now();
    await fn();
    const dt = now() - t0;
    await new Promise((r) => setTimeout(r, 20));
    h.disable();
    clearInterval(tick);
    return { seconds: dt, maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, meanMs: h.mean / 1e6 };
  };
  const asyncRun = await measure(() => native.sinkhorn(args));
  // The machine's own scheduling noise: the same monitor for as long, with nothing running.
  const idle = await measure(() => new Promise((r) => setTimeout(r, asyncRun.seconds * 1000)));
  // The same solve on the main thread, to show the monitor does see a blocked loop.
  const syncRun = await measure(async () => native.sinkhornSync(args));
  return { async: asyncRun, idle, sync: syncRun, iters: spec.iters };
}

// Native per-iteration time over a grid of sizes and over thread counts (generated in-process).
async function scalingTask() {
  const { loadNative } = await lib('native/loader.js');
  const native = loadNative();
  const perIter = async (n, k, threads, cost) => {
    const col = new Float64Array(k).fill(n / k);
    const run = (iters) => native.sinkhorn({ backend: spec.device ?? 'cpu', x: cost, n, k, inputKind: 'cost', lambda: 1, maxIter: iters, tol: 0, checkEvery: iters, threads, colMarginal: col });
    let t0 = now();
    await run(2);
    const est = (now() - t0) / 2;
    const iters = Math.max(2, Math.min(200, Math.round(spec.targetSeconds / Math.max(est, 1e-6))));
    const ts = [];
    for (let r = 0; r < spec.reps; r++) {
      t0 = now();
      await run(iters);
      ts.push((now() - t0) / iters);
    }
    return median(ts);
  };
  const grid = [];
  for (const n of spec.ns) {
    for (const k of spec.ks) {
      const cost = costFromLogits(longTailedLogits(n, k, 7), n, k);
      grid.push({ n, k, perIter: await perIter(n, k, 0, cost) });
    }
  }
  const threads = [];
  const [tn, tk] = spec.threadSize;
  const cost = costFromLogits(longTailedLogits(tn, tk, 7), tn, tk);
  for (const t of spec.threadCounts) threads.push({ threads: t, perIter: await perIter(tn, tk, t, cost) });
  return { grid, threads, threadSize: spec.threadSize };
}

const tasks = { scaling: scalingTask, sinkhorn: sinkhornTask, ot: otTask, otlm: otlmTask, gemm: gemmTask, evloop: evloopTask };
try {
  const r = await tasks[spec.task]();
  process.stdout.write(JSON.stringify({ ok: true, ...r }) + '\n');
  process.exit(0);
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e?.message ?? e), code: e?.code }) + '\n');
  process.exit(0);
}
