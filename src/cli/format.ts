/** Plain-text tables for the terminal. */
import type { OtlmInfo } from '../api/info.js';
import type { EvalOutput } from './evaluate.js';

const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(2));

/** Left-aligned first column, right-aligned others. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j]!.length)));
  const line = (r: string[]) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  ');
  return [line(head), w.map((n) => '─'.repeat(n)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

/** The paper-style comparison table (accuracies in %, KL in nats). */
export function evalTable(ev: EvalOutput): string {
  const head = ['method', 'top-1', 'bal.acc', 'GM', 'many', 'medium', 'few', 'KL(p̂‖μ)', 'ECE', 'time'];
  const rows = ev.results.map((r) => [
    r.method,
    pct(r.metrics.top1), pct(r.metrics.balancedAccuracy), pct(r.metrics.geometricMeanRecall),
    pct(r.metrics.many), pct(r.metrics.medium), pct(r.metrics.few),
    Number.isFinite(r.metrics.klMarginal) ? r.metrics.klMarginal.toFixed(4) : '–',
    pct(r.metrics.ece),
    r.seconds < 1 ? `${(r.seconds * 1000).toFixed(0)} ms` : `${r.seconds.toFixed(2)} s`,
  ]);
  let s = table(head, rows);
  for (const sk of ev.skipped) s += `(${sk.method} skipped: ${sk.reason})\n`;
  return s;
}

/** JSON-friendly form of an evaluation (typed arrays → plain arrays, predictions left out). */
export function evalJson(ev: EvalOutput): Record<string, unknown> {
  const arr = (a: ArrayLike<number> | undefined) => (a ? Array.from(a) : undefined);
  return {
    n: ev.n,
    k: ev.k,
    trainCounts: arr(ev.trainCounts),
    targetPrior: arr(ev.targetPrior),
    methods: ev.results.map((r) => ({
      method: r.method,
      seconds: r.seconds,
      ...r.detail,
      metrics: Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v])),
    })),
    skipped: ev.skipped,
  };
}

/** `otlm info` for people. */
export function infoText(i: OtlmInfo): string {
  const L: string[] = [];
  const kv = (k: string, v: string) => L.push(`${k.padEnd(14)}${v}`);
  kv('otlm', `${i.version} (node ${i.node}, ${i.platform})`);
  kv('backends', `${i.backends.join(', ')}  (auto → ${i.active})`);
  if (i.native.loaded) kv('native addon', `${i.native.path ?? '?'} [${i.native.source ?? '?'}]`);
  else kv('native addon', `not loaded: ${i.native.reason ?? 'unknown reason'}`);
  if (i.cpu) {
    kv('CPU', `SIMD ${i.cpu.simd}, ${i.cpu.threads} thread${i.cpu.threads === 1 ? '' : 's'}`);
    kv('GEMM', i.cpu.gemm);
    kv('compiler', i.cpu.compiler);
  }
  const c = i.cuda;
  kv('CUDA', `compiled: ${c.compiled ? 'yes' : 'no'}, driver: ${c.driver ? 'yes' : 'no'}, usable: ${c.usable ? 'yes' : 'no'}`);
  if (c.library) kv('', `library ${c.library}`);
  if (c.driverVersion || c.runtimeVersion) kv('', `driver ${c.driverVersion ?? '?'}, runtime ${c.runtimeVersion ?? '?'}`);
  for (const d of c.devices) kv('', `device: ${d.name}, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB, sm_${String(d.computeCapability).replace('.', '')}`);
  if (c.reason) kv('', `not used: ${c.reason}`);
  return L.join('\n') + '\n';
}
