// A whole OTLM fit at ImageNet-LT size: the paper's preset (SGD, batch 10k, 100 steps, T = 7,
// λ = 1.2) on the bench's seeded 20000×1000 long-tailed logits. Prints time, losses and peak RSS.
// Usage: node bench/fit.js [--preset imagenet-lt] [--n 20000] [--k 1000]   (after npm run build)
import { OTLM } from '../lib/index.js';
import { longTailedLogits } from './common.js';

const arg = (name, def) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : def);
const n = Number(arg('--n', 20000));
const k = Number(arg('--k', 1000));
const preset = arg('--preset', 'imagenet-lt');
const x = { data: longTailedLogits(n, k, 1), rows: n, cols: k };
const model = OTLM.preset(preset);
const t0 = performance.now();
const r = await model.fit(x);
console.log(JSON.stringify({
  preset, n, k, steps: r.steps, backend: r.backend, seconds: (performance.now() - t0) / 1000,
  firstLoss: r.losses[0], finalLoss: r.finalLoss, peakRssMB: process.resourceUsage().maxRSS / 1024,
}));
