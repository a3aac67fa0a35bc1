/**
 * The HTML report in a real browser (headless Chromium via playwright-core):
 * every chart renders with content, no console errors, no network requests;
 * a screenshot goes to test/out/report.png.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureBuilt, otlm, ROOT } from '../cli/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.log(`[skip] report browser test: ${CHROMIUM} is missing (install Debian's chromium)`);

const OUT = path.join(ROOT, 'test', 'out');
const HTML = path.join(OUT, 'report.html');

describe.skipIf(!haveChromium)('otlm report in headless Chromium', () => {
  beforeAll(() => {
    ensureBuilt();
    fs.mkdirSync(OUT, { recursive: true });
    const r = otlm(['report', '--out', HTML, '--force', '--quiet']);
    if (r.code !== 0) throw new Error(`otlm report failed (${r.code}): ${r.stderr}`);
  });

  it('renders every chart, without console errors or network requests', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('request', (r) => requests.push(r.url()));
      await page.goto('file://' + HTML, { waitUntil: 'load' });

      const charts = await page.$$eval('svg.chart', (svgs) => svgs.map((s) => {
        const box = (s as SVGSVGElement).getBoundingClientRect();
        return {
          label: s.getAttribute('aria-label') ?? '',
          width: box.width, height: box.height,
          rects: s.querySelectorAll('rect').length,
          lines: s.querySelectorAll('polyline').length,
          points: Array.from(s.querySelectorAll('polyline')).map((p: Element) => (p.getAttribute('points') ?? '').trim().split(/\s+/).filter(Boolean).length),
          texts: s.querySelectorAll('text').length,
          nan: /NaN|undefined/.test(s.outerHTML),
        };
      }));
      const find = (re: RegExp) => charts.find((c) => re.test(c.label));
      const perClass = find(/^Per-class accuracy/);
      const marginal = find(/^Predicted class marginal/);
      const sinkhorn = find(/^Sinkhorn convergence/);
      const loss = find(/^OTLM training loss/);
      const heat = find(/^Learned cost map W/);
      for (const c of [perClass, marginal, sinkhorn, loss, heat]) {
        expect(c, JSON.stringify(charts.map((x) => x.label))).toBeDefined();
        expect(c!.width).toBeGreaterThan(200);
        expect(c!.height).toBeGreaterThan(150);
        expect(c!.nan, c!.label).toBe(false);
        expect(c!.texts).toBeGreaterThan(5);
      }
      // K = 10 classes × 4 methods bars (CE, LA, OT, OTLM), 5 methods in the marginal chart.
      expect(perClass!.rects).toBeGreaterThanOrEqual(40);
      expect(marginal!.rects).toBeGreaterThanOrEqual(50);
      expect(sinkhorn!.points[0]).toBeGreaterThan(1);
      expect(loss!.points[0]).toBeGreaterThan(1);
      expect(heat!.rects).toBeGreaterThanOrEqual(100); // all of W for K = 10
      const rows = await page.$$eval('table.summary tbody tr', (trs) => trs.map((t) => t.querySelector('th')!.textContent!.trim()));
      expect(rows).toEqual(['CE', 'LA', 'DARP', 'OT', 'OTLM']);

      await page.screenshot({ path: path.join(OUT, 'report.png'), fullPage: true });
      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
      expect(requests.length).toBe(1); // the page itself: no fonts, scripts or images
    } finally {
      await browser.close();
    }
  });
});
