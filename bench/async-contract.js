// What the async memory contract costs (docs/architecture.md, "Memory contract"): an async call
// snapshots an input on a plain ArrayBuffer at the call (on the main thread) and stages a
// caller-supplied output, copied back as it settles; a SharedArrayBuffer input is used in place.
// For each size: the main thread's time inside the call (call → Promise returned), the time to
// settle, and the same for sinkhornSync and for SharedArrayBuffer views, in one run.
//   node bench/async-contract.js [--sizes 20000x1000,24426x8142] [--iters 20]
import { otCorrect, otCorrectSync } from '../lib/index.js';
import { longTailedLogits, median } from './common.js';

const argv = process.argv.slice(2);
const arg = (name, def) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : def);
const sizes = arg('--sizes', '20000x1000,24426x8142').split(',').map((s) => s.split('x').map(Number));
const iters = Number(arg('--iters', '20'));
const REPEATS = 3;
const ms = (s) => `${(s * 1e3).toFixed(1)} ms`;

function onShared(a) {
  const s = new Float32Array(new SharedArrayBuffer(a.byteLength));
  s.set(a);
  return s;
}

console.log(`async memory contract: otCorrect, cpu, λ = 1, ${iters} iterations (tol 0), out supplied; median of ${REPEATS}`);
console.log('| size | form | main thread in the call | call to settled | vs sync |');
console.log('|---|---|---|---|---|');
for (const [n, k] of sizes) {
  const logits = longTailedLogits(n, k, 1);
  const opts = { backend: 'cpu', lambda: 1, tol: 0, maxIter: iters };
  const forms = {
    sync: { data: logits, out: new Float32Array(n * k) },
    'async, ArrayBuffer views (snapshot + staged out)': { data: logits, out: new Float32Array(n * k) },
    'async, SharedArrayBuffer views (in place)': { data: onShared(logits), out: new Float32Array(new SharedArrayBuffer(n * k * 4)) },
  };
  const rows = [];
  for (const [form, { data, out }] of Object.entries(forms)) {
    const m = { data, rows: n, cols: k };
    const inCall = [];
    const total = [];
    for (let r = 0; r <= REPEATS; r++) {
      const t0 = performance.now();
      if (form === 'sync') {
        otCorrectSync(m, { ...opts, out });
        const t = (performance.now() - t0) / 1e3;
        if (r) inCall.push(t), total.push(t);
      } else {
        const p = otCorrect(m, { ...opts, out });
        const t1 = performance.now();
        await p;
        if (r) inCall.push((t1 - t0) / 1e3), total.push((performance.now() - t0) / 1e3);
      }
    }
    rows.push({ form, inCall: median(inCall), total: median(total) });
  }
  const sync = rows[0].total;
  for (const r of rows) console.log(`| ${n}×${k} | ${r.form} | ${ms(r.inCall)} | ${ms(r.total)} | ${(r.total / sync).toFixed(3)}× |`);
}
