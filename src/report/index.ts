/**
 * The self-contained HTML report of `otlm report`: one file, inline CSS and
 * inline SVG only (no script, no fonts, no network), readable offline.
 */
import type { EvalOutput, MethodName } from '../evaluate.js';
import type { MetricsResult } from '../metrics.js';
import { esc, groupedBars, heatmap, legendHtml, lineChart, type Series } from './svg.js';

/** One method's row: its summary metrics (see `metrics`) with the per-class arrays as plain numbers. */
export interface ReportMethod
  extends Pick<MetricsResult, 'top1' | 'balancedAccuracy' | 'geometricMeanRecall' | 'many' | 'medium' | 'few' | 'klMarginal' | 'ece'> {
  name: string;
  seconds: number;
  /** OT/OTLM: ECE of softmax(Φ + g), their 'calibrated' probabilities; null for the others. */
  eceCalibrated: number | null;
  perClass: number[];
  predictedMarginal: number[];
}

/** Everything the report draws; plain numbers so it can also be built by hand. */
export interface ReportData {
  title: string;
  /** Where the data came from (one sentence). */
  source: string;
  generated: string;
  version?: string;
  n: number;
  k: number;
  classNames: string[];
  trainCounts: number[];
  targetPrior: number[];
  methods: ReportMethod[];
  /** OT solve: column-marginal error after each recorded iteration. */
  sinkhorn?: { error: number[]; lambda?: number; tol?: number };
  /** OTLM training: loss and marginal error per step. */
  loss?: { step: number[]; loss: number[]; marginalError: number[] };
  /** Learned W, K×K row-major. */
  weights?: number[];
}

/** Okabe–Ito colours (colour-blind safe), one per method. */
export const METHOD_COLORS: Record<string, string> = {
  CE: '#8a8a8a', LA: '#E69F00', DARP: '#009E73', OT: '#56B4E9', OTLM: '#D55E00',
};
const colorOf = (m: string, i: number): string => METHOD_COLORS[m] ?? ['#0072B2', '#CC79A7', '#000000'][i % 3]!;

const num = (x: ArrayLike<number> | undefined): number[] => (x ? Array.from(x, Number) : []);

/** Collects a report's data from an evaluation. */
export function reportDataFrom(ev: EvalOutput, meta: { title: string; source: string; classNames?: string[]; version?: string; tol?: number }): ReportData {
  return {
    title: meta.title,
    source: meta.source,
    generated: new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
    version: meta.version,
    n: ev.n,
    k: ev.k,
    classNames: meta.classNames ?? Array.from({ length: ev.k }, (_, j) => `class ${j}`),
    trainCounts: num(ev.trainCounts),
    targetPrior: num(ev.targetPrior),
    methods: ev.results.map((r) => ({
      name: r.method,
      top1: r.metrics.top1,
      balancedAccuracy: r.metrics.balancedAccuracy,
      geometricMeanRecall: r.metrics.geometricMeanRecall,
      many: r.metrics.many,
      medium: r.metrics.medium,
      few: r.metrics.few,
      klMarginal: r.metrics.klMarginal,
      ece: r.metrics.ece,
      eceCalibrated: r.eceCalibrated ?? null,
      seconds: r.seconds,
      perClass: num(r.metrics.perClass),
      predictedMarginal: num(r.metrics.predictedMarginal),
    })),
    sinkhorn: ev.otTrace?.length ? { error: ev.otTrace, lambda: ev.otLambda, tol: meta.tol ?? 1e-3 } : undefined,
    loss: ev.lossCurve?.length
      ? { step: ev.lossCurve.map((e) => e.step), loss: ev.lossCurve.map((e) => e.loss), marginalError: ev.lossCurve.map((e) => e.marginalError) }
      : undefined,
    weights: ev.weights ? num(ev.weights) : undefined,
  };
}

const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(2));

function summaryTable(d: ReportData): string {
  const cols: Array<[string, (m: ReportMethod) => number | null, 'pct' | 'kl' | 's', boolean]> = [
    ['Top-1 %', (m) => m.top1, 'pct', true], ['Balanced acc. %', (m) => m.balancedAccuracy, 'pct', true],
    ['GM recall %', (m) => m.geometricMeanRecall, 'pct', true], ['Many %', (m) => m.many, 'pct', true],
    ['Medium %', (m) => m.medium, 'pct', true], ['Few %', (m) => m.few, 'pct', true],
    ['KL(p̂ ‖ μ)', (m) => m.klMarginal, 'kl', false], ['ECE %', (m) => m.ece, 'pct', false],
    ['ECE calibrated %', (m) => m.eceCalibrated, 'pct', false], ['Time', (m) => m.seconds, 's', false],
  ];
  const best = cols.map(([, get, kind, higher]) => {
    if (kind === 's') return NaN;
    const v = d.methods.map(get).filter((x): x is number => x !== null && Number.isFinite(x));
    return v.length ? (higher ? Math.max(...v) : Math.min(...v)) : NaN;
  });
  const fmt = (v: number | null, kind: string) => (v === null || !Number.isFinite(v) ? '–' : kind === 'pct' ? pct(v) : kind === 'kl' ? v.toFixed(4) : fmtSeconds(v));
  // A column where every method ties has no winner to highlight.
  const ties = cols.map(([, get]) => new Set(d.methods.map((m) => { const v = get(m); return v === null ? 'x' : v.toFixed(6); })).size === 1);
  let s = '<table class="summary"><thead><tr><th>Method</th>' + cols.map(([h]) => `<th>${esc(h)}</th>`).join('') + '</tr></thead><tbody>';
  for (const [i, m] of d.methods.entries()) {
    s += `<tr><th><span class="sw" style="background:${colorOf(m.name, i)}"></span>${esc(m.name)}</th>`;
    cols.forEach(([, get, kind], j) => {
      const v = get(m);
      const isBest = v !== null && Number.isFinite(v) && v === best[j] && d.methods.length > 1 && !ties[j];
      s += `<td${isBest ? ' class="best"' : ''}>${fmt(v, kind)}</td>`;
    });
    s += '</tr>';
  }
  return s + '</tbody></table>';
}

const CSS = `
:root{--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;--bg:#fbfbfd;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:17px;margin:0 0 2px}
p.sub,p.note{color:var(--muted);margin:0 0 10px}
p.note{font-size:13px}
header{margin-bottom:20px}
.meta{color:var(--muted);font-size:13px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px 14px;margin:16px 0;box-shadow:0 1px 2px rgba(20,30,50,.04)}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.grid2 section.card{margin:0}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
svg.chart{max-width:100%;height:auto;display:block;margin-top:6px}
svg text{font-family:inherit;font-size:11.5px;fill:#3b4252}
svg .title{font-size:12px;fill:var(--muted)}
svg .sub{font-size:10.5px;fill:var(--muted)}
svg .grid{stroke:#eceef2}
svg .domain,svg .tick{stroke:#9aa1ad}
svg .band{fill:#f6f7fa}
svg .ref{stroke:#1d2330;stroke-width:1.6;stroke-dasharray:5 3}
svg .reflabel{font-size:11px;fill:#1d2330}
svg .cell{stroke:#fff;stroke-width:1}
svg .val{font-size:10px;fill:#1d2330}
svg .val.inv{fill:#fff}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:13px;color:#3b4252;margin:6px 0 0}
.legend .item{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.legend .sw{margin-right:0}
table.summary{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:14px}
table.summary th,table.summary td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
table.summary thead th{font-weight:600;color:var(--muted);font-size:12.5px;border-bottom:1.5px solid #cfd4dc}
table.summary tbody th{text-align:left;font-weight:600}
table.summary td.best{font-weight:700;background:#fff4e6}
figure{margin:0}\n.heats{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:flex-start}\nfooter{color:var(--muted);font-size:12px;margin-top:24px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;background:#f1f3f6;padding:1px 4px;border-radius:4px}
`;

/** Renders the report as one HTML document. */
export function renderReport(d: ReportData): string {
  const order = d.trainCounts.map((c, j) => [c, j] as const).sort((a, b) => b[0] - a[0]).map(([, j]) => j);
  const cats = order.map((j) => d.classNames[j]!);
  const counts = order.map((j) => `n=${d.trainCounts[j]}`);
  const shown = d.methods.filter((m) => ['CE', 'LA', 'OT', 'OTLM'].includes(m.name));
  const accMethods = shown.length ? shown : d.methods;
  const seriesOf = (ms: ReportMethod[]): Series[] => ms.map((m) => ({ name: m.name, color: colorOf(m.name, d.methods.indexOf(m)) }));

  const accChart = groupedBars({
    label: 'Per-class accuracy by method, classes sorted by training count',
    categories: cats, sublabels: counts, series: seriesOf(accMethods),
    values: accMethods.map((m) => order.map((j) => m.perClass[j]!)),
    yMax: 1, yTitle: 'per-class accuracy', yFmt: (v) => `${Math.round(v * 100)}%`, valueFmt: (v) => `${(100 * v).toFixed(1)}%`,
  });
  const margMethods = d.methods;
  const margChart = groupedBars({
    label: 'Predicted class marginal by method against the target prior',
    categories: cats, series: seriesOf(margMethods),
    values: margMethods.map((m) => order.map((j) => m.predictedMarginal[j]!)),
    reference: { name: 'target μ', values: order.map((j) => d.targetPrior[j]!) },
    yTitle: 'share of predictions', yFmt: (v) => `${Math.round(v * 100)}%`, valueFmt: (v) => `${(100 * v).toFixed(2)}%`, height: 280,
  });

  let sinkhorn = '<p class="note">No OT solve in this run.</p>';
  if (d.sinkhorn?.error.length) {
    const e = d.sinkhorn.error;
    sinkhorn = lineChart({
      label: 'Sinkhorn convergence: marginal error against iteration (log scale)',
      series: [{ name: 'OT (test logits)', color: colorOf('OT', 0), x: e.map((_, i) => i + 1), y: e }],
      xTitle: 'Sinkhorn iteration', yTitle: '‖Yᵀ1 − Nμ‖₁ / N  (log)', logY: true,
      hline: d.sinkhorn.tol ? { y: d.sinkhorn.tol, label: `tol Δ = ${d.sinkhorn.tol}` } : undefined,
    }) + `<p class="note">${e.length} iteration${e.length === 1 ? '' : 's'}; final error ${e[e.length - 1]!.toExponential(2)}${d.sinkhorn.lambda ? `, λ = ${d.sinkhorn.lambda}` : ''}. As in the paper's Figure 2 (left).</p>`;
  }

  let loss = '<p class="note">OTLM was not fitted in this run.</p>';
  if (d.loss?.step.length) {
    loss = lineChart({
      label: 'OTLM training loss against step',
      series: [{ name: 'loss', color: colorOf('OTLM', 0), x: d.loss.step, y: d.loss.loss }],
      xTitle: 'optimisation step', yTitle: 'loss  −⟨Y, log Z⟩ + λ⟨Y, log Y⟩', markers: false,
    }) + `<p class="note">${d.loss.step.length} steps; loss ${d.loss.loss[0]!.toFixed(4)} → ${d.loss.loss[d.loss.loss.length - 1]!.toFixed(4)}; final batch marginal error ${d.loss.marginalError[d.loss.marginalError.length - 1]!.toExponential(2)}.</p>`;
  }

  let heat = '<p class="note">No learned W in this run.</p>';
  if (d.weights?.length === d.k * d.k) {
    const b = Math.min(d.k, 20);
    const block = new Array<number>(b * b);
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) block[i * b + j] = d.weights[order[i]! * d.k + order[j]!]!;
    const labels = order.slice(0, b).map((j) => d.classNames[j]!);
    const delta = block.map((v, idx) => v - (Math.floor(idx / b) === idx % b ? 1 : 0));
    const what = b === d.k ? 'all of W' : `the first ${b}×${b} block`;
    heat = `<div class="heats"><figure>${heatmap({ label: `Learned cost map W (${what}), classes sorted by training count`, k: b, data: block, rowLabels: labels, colLabels: labels, rowTitle: 'input logit (row of W)', colTitle: 'W' })}</figure>` +
      `<figure>${heatmap({ label: 'W minus the identity (what training changed)', k: b, data: delta, rowLabels: labels, colLabels: labels, rowTitle: '', colTitle: 'W − I (change from the start)', showRowLabels: false })}</figure></div>` +
      `<p class="note">Showing ${what}, classes sorted by training count. A = ΦW + b: entry (i, j) is how much logit i feeds class j. W starts at the identity, so the right panel (own colour scale) is what OTLM learned. As the paper's Figure 2 (right).</p>`;
  }

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(d.title)}</title><style>${CSS}</style></head>
<body><main>
<header><h1>${esc(d.title)}</h1>
<p class="sub">${esc(d.source)}</p>
<p class="meta">${d.n.toLocaleString('en')} test samples · ${d.k} classes · target prior ${isUniform(d.targetPrior) ? 'uniform' : 'given'} · generated ${esc(d.generated)}${d.version ? ` · otlm ${esc(d.version)}` : ''}</p></header>
<section class="card" id="summary"><h2>Summary</h2><p class="note">Accuracies in %; best value of each column highlighted. Many/medium/few: classes with &gt; 100, 20–100, &lt; 20 training images.</p>${summaryTable(d)}</section>
<section class="card" id="per-class"><h2>Per-class accuracy against training frequency</h2><p class="note">Classes sorted from most to fewest training images (n). Post-hoc corrections trade head-class accuracy for tail-class accuracy.</p>${legendHtml(seriesOf(accMethods))}${accChart}</section>
<section class="card" id="marginal"><h2>Predicted class marginal against the target</h2><p class="note">Share of test samples predicted as each class; dashed marks: the target prior μ. OT and OTLM match it by construction.</p>${legendHtml([...seriesOf(margMethods), { name: 'target μ', color: '#1d2330', dash: '5 3', kind: 'line' as const }])}${margChart}</section>
<div class="grid2">
<section class="card" id="sinkhorn"><h2>Sinkhorn convergence</h2>${sinkhorn}</section>
<section class="card" id="loss"><h2>OTLM training loss</h2>${loss}</section>
</div>
<section class="card" id="weights"><h2>Learned cost map W</h2>${heat}</section>
<footer>Generated by <code>otlm report</code>. Self-contained: no scripts, fonts or network requests.</footer>
</main></body></html>
`;
}

export function fmtSeconds(v: number): string {
  return v < 0.01 ? `${(v * 1000).toFixed(1)} ms` : v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(2)} s`;
}

function isUniform(p: number[]): boolean {
  return p.every((x) => Math.abs(x - 1 / p.length) < 1e-9);
}

export type { MethodName };
