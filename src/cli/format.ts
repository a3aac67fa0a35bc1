/** Plain-text tables for the terminal. */
import type { OtlmInfo } from '../api/info.js';
import type { EvalOutput } from '../evaluate.js';
import type { TuneResult } from '../tune.js';

const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(2));

/** Left-aligned first column, right-aligned others. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j]!.length)));
  const line = (r: string[]) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  ');
  return [line(head), w.map((n) => '─'.repeat(n)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

/** The paper-style comparison table (accuracies in %, KL in nats). */
export function evalTable(ev: EvalOutput): string {
  const head = ['method', 'top-1', 'bal.acc', 'GM', 'many', 'medium', 'few', 'KL(p̂‖μ)', 'ECE', 'ECE cal.', 'time'];
  const rows = ev.results.map((r) => [
    r.method,
    pct(r.metrics.top1), pct(r.metrics.balancedAccuracy), pct(r.metrics.geometricMeanRecall),
    pct(r.metrics.many), pct(r.metrics.medium), pct(r.metrics.few),
    Number.isFinite(r.metrics.klMarginal) ? r.metrics.klMarginal.toFixed(4) : '–',
    pct(r.metrics.ece), pct(r.eceCalibrated),
    r.seconds < 1 ? `${(r.seconds * 1000).toFixed(0)} ms` : `${r.seconds.toFixed(2)} s`,
  ]);
  let s = table(head, rows);
  for (const sk of ev.skipped) s += `(${sk.method} skipped: ${sk.reason})\n`;
  return s;
}

/** The tune table: every candidate's cross-validated balanced accuracy, the chosen one marked. */
export function tuneTable(r: TuneResult): string {
  const head = ['', 'method', 'params', 'CV bal.acc', '± std'];
  const rows = r.table.map((t, i) => [
    i === r.chosen ? '*' : '', t.method, Object.entries(t.params).map(([k, v]) => `${k}=${v}`).join(' ') || '–',
    pct(t.cvScore), pct(t.cvStd),
  ]);
  const best = r.table[r.chosen]!;
  return table(head, rows) + `chosen: ${best.method}${Object.keys(best.params).length ? ' ' + Object.entries(best.params).map(([k, v]) => `${k}=${v}`).join(' ') : ''} (${(r.table[0]!.folds.length)}-fold CV balanced accuracy ${pct(best.cvScore)}%)\n`;
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
      ...(r.eceCalibrated !== undefined ? { eceCalibrated: r.eceCalibrated } : {}),
      ...r.detail,
      metrics: Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v])),
    })),
    skipped: ev.skipped,
  };
}

/** `otlm info` for people: every value printed is known (no NaN / undefined). */
export function infoText(i: OtlmInfo): string {
  const L: string[] = [];
  const kv = (k: string, v: string) => L.push(`${k.padEnd(14)}${v}`);
  const c = i.cuda;
  kv('otlm', `${i.version} (node ${i.node}, ${i.platform})`);
  kv('backends', `${i.backends.join(', ')}  (auto → ${i.active}${i.active === 'cuda' && c.emulated ? ', EMULATED on the CPU' : ''})`);
  if (i.native.loaded) kv('native addon', `${i.native.path ?? '(path unknown)'} [${i.native.source ?? 'unknown source'}]`);
  else kv('native addon', `not loaded: ${i.native.reason ?? 'unknown reason'}`);
  if (i.cpu) {
    kv('CPU', `SIMD ${i.cpu.simd}, ${i.cpu.threads} thread${i.cpu.threads === 1 ? '' : 's'}`);
    kv('GEMM', i.cpu.gemm);
    kv('compiler', i.cpu.compiler);
  }
  kv('CUDA', `compiled: ${c.compiled ? 'yes' : 'no'}, driver: ${c.driver ? 'yes' : 'no'}, usable: ${c.usable ? 'yes' : 'no'}` +
    (c.emulated ? ' — EMULATED: the otlm CUDA emulator runs on the CPU, not a GPU' : ''));
  if (c.library) kv('', `library ${c.library}`);
  const versions: string[] = [];
  if (c.driverVersion) versions.push(`driver ${c.driverVersion}`);
  if (c.runtimeVersion) versions.push(`runtime ${c.runtimeVersion}`);
  if (c.arch && !c.emulated) versions.push(`built for ${c.arch}`);
  if (c.gemm) versions.push(`GEMM ${c.gemm}`);
  if (versions.length) kv('', versions.join(', '));
  for (const d of c.devices) {
    const use = d.index === c.device ? (c.usable ? '  [in use]' : '  [refused]') : '';
    kv('', `device ${d.index}: ${d.name}, ${gib(d.memoryBytes)}, sm_${d.computeCapability.replace('.', '')}, ` +
      `${d.smCount} SMs${d.tf32 ? ', TF32' : ''}${use}`);
  }
  if (c.deviceCount !== undefined && c.deviceCount > c.devices.length) kv('', `(${c.deviceCount - c.devices.length} more devices not listed)`);
  if (c.reason) kv('', `not used: ${c.reason}`);
  const w = i.wasm;
  kv('wasm', w.available ? `SIMD ${w.simd}, GEMM ${w.gemm}, ${w.variant === 'threads' ? `${w.threads} threads` : `single-threaded${w.variantReason ? ` (${w.variantReason})` : ''}`} (${w.path})` : `not available: ${w.reason}`);
  if (i.active !== 'cuda' && i.active !== 'cpu') kv('', `auto → ${i.active}: ${i.activeReason}`);
  const t = i.tfjs;
  kv('tfjs', t.available ? `@tensorflow/tfjs: yes, wasm backend: ${t.wasm ? 'yes' : 'no'}` : 'not available');
  if (t.reason) kv('', t.reason);
  return L.join('\n') + '\n';
}

function gib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : 'memory unknown';
}
