/**
 * Tiny hand-written SVG chart kit for the self-contained report: scales, axes,
 * legends, bar/line/heat-map charts. No dependencies, no script: native
 * <title> tooltips give exact values on hover.
 */

export const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f = (x: number): string => (Math.round(x * 100) / 100).toString();

export interface Scale { (v: number): number; ticks: number[]; fmt: (v: number) => string }

/** Rounded-step linear scale over [d0, d1] mapped to [r0, r1]. */
export function linear(d0: number, d1: number, r0: number, r1: number, nTicks = 5, fmt?: (v: number) => string): Scale {
  if (d1 === d0) d1 = d0 + 1;
  const raw = (d1 - d0) / nTicks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(d0 / step - 1e-9) * step; t <= d1 + 1e-9 * step; t += step) ticks.push(Math.abs(t) < 1e-12 ? 0 : t);
  const s = ((v: number) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0)) as Scale;
  s.ticks = ticks;
  const dec = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  s.fmt = fmt ?? ((v) => v.toFixed(dec));
  return s;
}

/** Log10 scale with ticks at powers of ten. */
export function log10(d0: number, d1: number, r0: number, r1: number): Scale {
  const l0 = Math.floor(Math.log10(d0));
  const l1 = Math.ceil(Math.log10(d1));
  const hi = l1 === l0 ? l0 + 1 : l1;
  const s = ((v: number) => r0 + ((Math.log10(Math.max(v, 10 ** l0)) - l0) / (hi - l0)) * (r1 - r0)) as Scale;
  s.ticks = [];
  const every = Math.max(1, Math.ceil((hi - l0) / 6));
  for (let e = l0; e <= hi; e += every) s.ticks.push(10 ** e);
  s.fmt = (v) => {
    const e = Math.round(Math.log10(v));
    return e >= 0 && e <= 4 ? String(10 ** e) : `10${sup(e)}`;
  };
  return s;
}

const SUP: Record<string, string> = { '-': '⁻', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };
const sup = (e: number): string => String(e).split('').map((c) => SUP[c] ?? c).join('');

export interface Frame { width: number; height: number; left: number; right: number; top: number; bottom: number }
export const inner = (fr: Frame) => ({ x0: fr.left, x1: fr.width - fr.right, y0: fr.height - fr.bottom, y1: fr.top });

export function svgOpen(fr: Frame, label: string, cls = 'chart'): string {
  return `<svg class="${cls}" role="img" aria-label="${esc(label)}" viewBox="0 0 ${fr.width} ${fr.height}" width="${fr.width}" height="${fr.height}" xmlns="http://www.w3.org/2000/svg">`;
}

/** Horizontal grid lines and y tick labels, plus the axis title. */
export function yAxis(fr: Frame, y: Scale, title: string): string {
  const { x0, x1 } = inner(fr);
  let s = '<g class="axis y">';
  for (const t of y.ticks) {
    const py = f(y(t));
    s += `<line class="grid" x1="${x0}" x2="${x1}" y1="${py}" y2="${py}"/><text x="${x0 - 6}" y="${py}" dy="0.32em" text-anchor="end">${esc(y.fmt(t))}</text>`;
  }
  const cy = (fr.top + fr.height - fr.bottom) / 2;
  s += `<text class="title" transform="translate(${14},${f(cy)}) rotate(-90)" text-anchor="middle">${esc(title)}</text></g>`;
  return s;
}

/** x ticks for a continuous axis. */
export function xAxis(fr: Frame, x: Scale, title: string): string {
  const { y0, x0, x1 } = inner(fr);
  let s = `<g class="axis x"><line class="domain" x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}"/>`;
  for (const t of x.ticks) {
    const px = f(x(t));
    s += `<line class="tick" x1="${px}" x2="${px}" y1="${y0}" y2="${y0 + 4}"/><text x="${px}" y="${y0 + 16}" text-anchor="middle">${esc(x.fmt(t))}</text>`;
  }
  s += `<text class="title" x="${f((x0 + x1) / 2)}" y="${fr.height - 6}" text-anchor="middle">${esc(title)}</text></g>`;
  return s;
}

export interface Series { name: string; color: string; dash?: string }

/** A legend row of swatches as HTML (wraps nicely, readable at any width). */
export function legendHtml(series: Array<Series & { kind?: 'bar' | 'line' }>): string {
  return `<div class="legend">${series.map((s) => {
    const sw = s.kind === 'line'
      ? `<svg width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/></svg>`
      : `<span class="sw" style="background:${s.color}"></span>`;
    return `<span class="item">${sw}${esc(s.name)}</span>`;
  }).join('')}</div>`;
}

/**
 * Grouped bar chart: one group per category, one bar per series; optional
 * per-category reference marks (e.g. the target prior) drawn as dashed ticks.
 */
export function groupedBars(opts: {
  label: string; categories: string[]; sublabels?: string[]; series: Series[]; values: number[][]; yMax?: number; yTitle: string;
  yFmt?: (v: number) => string; valueFmt: (v: number) => string; reference?: { name: string; values: number[] }; width?: number; height?: number;
}): string {
  const nC = opts.categories.length;
  const fr: Frame = { width: opts.width ?? Math.max(1040, 70 * nC + 80), height: opts.height ?? 300, left: 58, right: 12, top: 14, bottom: opts.sublabels ? 58 : 44 };
  const { x0, x1, y0, y1 } = inner(fr);
  const all = opts.values.flat().concat(opts.reference?.values ?? []).filter(Number.isFinite);
  const y = linear(0, opts.yMax ?? Math.max(...all) * 1.08, y0, y1, 5, opts.yFmt);
  const gw = (x1 - x0) / nC;
  const pad = gw * 0.14;
  const bw = (gw - 2 * pad) / opts.series.length;
  let s = svgOpen(fr, opts.label) + yAxis(fr, y, opts.yTitle);
  s += `<g class="bars">`;
  for (let c = 0; c < nC; c++) {
    const gx = x0 + c * gw;
    if (c % 2 === 1) s += `<rect class="band" x="${f(gx)}" y="${y1}" width="${f(gw)}" height="${f(y0 - y1)}"/>`;
    for (let k = 0; k < opts.series.length; k++) {
      const raw = opts.values[k]![c]!;
      const v = Number.isFinite(raw) ? raw : 0; // e.g. the recall of a class absent from the labels
      const top = y(Math.max(0, v));
      s += `<rect x="${f(gx + pad + k * bw)}" y="${f(top)}" width="${f(Math.max(bw - 1, 1))}" height="${f(Math.max(y0 - top, 0))}" fill="${opts.series[k]!.color}"><title>${esc(`${opts.categories[c]} · ${opts.series[k]!.name}: ${Number.isFinite(raw) ? opts.valueFmt(raw) : 'n/a'}`)}</title></rect>`;
    }
    if (opts.reference) {
      const ry = f(y(opts.reference.values[c]!));
      s += `<line class="ref" x1="${f(gx + pad * 0.5)}" x2="${f(gx + gw - pad * 0.5)}" y1="${ry}" y2="${ry}"><title>${esc(`${opts.categories[c]} · ${opts.reference.name}: ${opts.valueFmt(opts.reference.values[c]!)}`)}</title></line>`;
    }
    s += `<text class="cat" x="${f(gx + gw / 2)}" y="${y0 + 16}" text-anchor="middle">${esc(opts.categories[c]!)}</text>`;
    if (opts.sublabels) s += `<text class="sub" x="${f(gx + gw / 2)}" y="${y0 + 30}" text-anchor="middle">${esc(opts.sublabels[c]!)}</text>`;
  }
  s += `</g><line class="domain" x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}"/></svg>`;
  return s;
}

/** Line chart, linear or log y, optional horizontal reference line. */
export function lineChart(opts: {
  label: string; series: Array<Series & { x: number[]; y: number[] }>; xTitle: string; yTitle: string; logY?: boolean;
  hline?: { y: number; label: string }; width?: number; height?: number; yFmt?: (v: number) => string; markers?: boolean;
}): string {
  const fr: Frame = { width: opts.width ?? 460, height: opts.height ?? 280, left: 62, right: 14, top: 14, bottom: 44 };
  const { x0, x1, y0, y1 } = inner(fr);
  const xs = opts.series.flatMap((s) => s.x);
  const ys = opts.series.flatMap((s) => s.y).filter((v) => Number.isFinite(v) && (!opts.logY || v > 0));
  if (opts.hline) ys.push(opts.hline.y);
  const x = linear(Math.min(...xs), Math.max(...xs), x0, x1, 6, (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const padY = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  const y = opts.logY ? log10(lo, hi, y0, y1) : linear(lo - padY, hi + padY, y0, y1, 5, opts.yFmt);
  let s = svgOpen(fr, opts.label) + yAxis(fr, y, opts.yTitle) + xAxis(fr, x, opts.xTitle);
  if (opts.hline) {
    const hy = f(y(opts.hline.y));
    s += `<line class="ref" x1="${x0}" x2="${x1}" y1="${hy}" y2="${hy}"/><text class="reflabel" x="${x0 + 6}" y="${hy}" dy="1.1em" text-anchor="start">${esc(opts.hline.label)}</text>`;
  }
  for (const se of opts.series) {
    const pts: string[] = [];
    for (let i = 0; i < se.x.length; i++) {
      const v = se.y[i]!;
      if (!Number.isFinite(v) || (opts.logY && v <= 0)) continue;
      pts.push(`${f(x(se.x[i]!))},${f(y(v))}`);
    }
    s += `<polyline class="series" fill="none" stroke="${se.color}" stroke-width="2.2" stroke-linejoin="round"${se.dash ? ` stroke-dasharray="${se.dash}"` : ''} points="${pts.join(' ')}"><title>${esc(se.name)}</title></polyline>`;
    if (opts.markers || se.x.length <= 40) {
      for (let i = 0; i < se.x.length; i++) {
        const v = se.y[i]!;
        if (!Number.isFinite(v) || (opts.logY && v <= 0)) continue;
        s += `<circle cx="${f(x(se.x[i]!))}" cy="${f(y(v))}" r="2.6" fill="${se.color}"><title>${esc(`${se.name} · ${se.x[i]}: ${v.toPrecision(4)}`)}</title></circle>`;
      }
    }
  }
  return s + '</svg>';
}

/** Diverging colour (blue ← 0 → orange-red), from ColorBrewer's colour-blind-safe RdBu / PuOr ends. */
export function diverging(t: number): string {
  // t in [-1, 1]; interpolate white → #2166ac (negative) or white → #b2182b (positive).
  const a = Math.min(1, Math.abs(t));
  const end = t < 0 ? [33, 102, 172] : [178, 24, 43];
  const c = [247, 247, 247].map((w, i) => Math.round(w + (end[i]! - w) * a));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** K×K heat map with a colour bar, values in the cells when K is small. */
export function heatmap(opts: { label: string; k: number; data: ArrayLike<number>; rowLabels: string[]; colLabels: string[]; rowTitle: string; colTitle: string; showRowLabels?: boolean }): string {
  const { k } = opts;
  const cell = k <= 12 ? 34 : Math.max(6, Math.floor(400 / k));
  const left = opts.showRowLabels === false ? 30 : 120;
  const top = 86;
  const w = left + cell * k + 72;
  const h = top + cell * k + 16;
  let vmax = 0;
  for (let i = 0; i < k * k; i++) vmax = Math.max(vmax, Math.abs(opts.data[i]!));
  vmax = vmax || 1;
  let s = `<svg class="chart heat" role="img" aria-label="${esc(opts.label)}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">`;
  s += `<text class="title" x="${left + (cell * k) / 2}" y="14" text-anchor="middle">${esc(opts.colTitle)}</text>`;
  s += `<text class="title" transform="translate(14,${top + (cell * k) / 2}) rotate(-90)" text-anchor="middle">${esc(opts.rowTitle)}</text>`;
  for (let j = 0; j < k; j++) {
    const cx = left + j * cell + cell / 2;
    s += `<text class="cat" transform="translate(${f(cx)},${top - 6}) rotate(-50)" text-anchor="start">${esc(opts.colLabels[j]!)}</text>`;
  }
  for (let i = 0; i < k; i++) {
    const cy = top + i * cell + cell / 2;
    if (opts.showRowLabels !== false) s += `<text class="cat" x="${left - 6}" y="${f(cy)}" dy="0.32em" text-anchor="end">${esc(opts.rowLabels[i]!)}</text>`;
    for (let j = 0; j < k; j++) {
      const v = opts.data[i * k + j]!;
      s += `<rect class="cell" x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="${diverging(v / vmax)}"><title>${esc(`W[${i}, ${j}] = ${v.toPrecision(4)}`)}</title></rect>`;
      if (k <= 12) s += `<text class="val${Math.abs(v / vmax) > 0.55 ? ' inv' : ''}" x="${left + j * cell + cell / 2}" y="${top + i * cell + cell / 2}" dy="0.32em" text-anchor="middle">${fix2(v)}</text>`;
    }
  }
  // Colour bar.
  const bx = left + cell * k + 16;
  const bh = cell * k;
  const steps = 40;
  for (let t = 0; t < steps; t++) {
    const v = 1 - (2 * t) / (steps - 1);
    s += `<rect x="${bx}" y="${f(top + (t * bh) / steps)}" width="14" height="${f(bh / steps + 0.5)}" fill="${diverging(v)}"/>`;
  }
  s += `<rect x="${bx}" y="${top}" width="14" height="${bh}" fill="none" stroke="#888" stroke-width="0.5"/>`;
  for (const [v, yy] of [[vmax, top], [0, top + bh / 2], [-vmax, top + bh]] as const) {
    s += `<text class="tick" x="${bx + 20}" y="${f(yy)}" dy="0.32em">${v === 0 ? '0' : fix2(v)}</text>`;
  }
  return s + '</svg>';
}

/** Two decimals without a negative zero. */
export function fix2(v: number): string {
  const t = v.toFixed(2);
  return t === '-0.00' ? '0.00' : t;
}
