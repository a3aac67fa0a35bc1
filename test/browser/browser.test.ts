/**
 * The browser entry (lib/otlm.browser.js + lib/wasm/) in headless Chromium via playwright-core,
 * served over HTTP from this package twice: without cross-origin isolation (so no
 * SharedArrayBuffer, as on most sites: the single-threaded lib/wasm/otlm.wasm must run), and with
 * COOP/COEP headers (crossOriginIsolated: the threaded lib/wasm/otlm-mt.wasm with a pool of Web
 * Workers must run, and its workers must take part). On the bundled real long-tailed logits each
 * must give the predictions of the engine that runs in Node (identical) and its plans within
 * 1e-5, fit OTLM, make no request outside the page's origin and log no error; the two pages must
 * give bit-identical plans.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readMatrix } from '../../src/io/index.js';
import { otCorrectSync } from '../../src/methods/ot.js';
import { OTLM } from '../../src/train/otlm.js';
import { nativeSinkhornUnavailable, wasmUnavailable } from '../methods/native-status.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const bundle = path.join(ROOT, 'lib', 'otlm.browser.js');
const noWasm = wasmUnavailable();
const why = !haveChromium ? `${CHROMIUM} is missing (install Debian's chromium)` : noWasm ?? (fs.existsSync(bundle) ? null : `${bundle} is missing (npm run build:ts)`);
if (why) {
  if (process.env.CI) throw new Error(`browser test cannot run under CI: ${why}`);
  console.log(`[skip] browser test: ${why}`);
}
// Node's side of the comparison: the native CPU engine where it loads, else the same wasm engine.
const nodeBackend = nativeSinkhornUnavailable() === null ? 'cpu' : 'wasm';

const N = 2000;
const test = readMatrix(path.join(ROOT, 'data/fmnist-lt/test_logits.npy'));
const val = readMatrix(path.join(ROOT, 'data/fmnist-lt/val_logits.npy'));
const rows = (m: { data: Float32Array; cols: number }, n: number) => ({ data: m.data.slice(0, n * m.cols), rows: n, cols: m.cols });
const testN = rows(test, N);
const valN = rows(val, N);

const PAGE = `<!doctype html><meta charset="utf-8"><title>otlm</title><script type="module">
import * as otlm from '/lib/otlm.browser.js';
async function f32(url) { return new Float32Array(await (await fetch(url)).arrayBuffer()); }
window.run = async (k) => {
  const before = otlm.info().active;
  await otlm.init();
  const test = { data: await f32('/test.f32'), rows: ${N}, cols: k };
  const val = { data: await f32('/val.f32'), rows: ${N}, cols: k };
  const sync = otlm.otCorrectSync(test, { lambda: 0.5 });
  const asyncR = await otlm.otCorrect(test, { lambda: 0.5 });
  const model = new otlm.OTLM({ iterations: 5, sinkhornIters: 50, lambda: 0.5, lr: 1e-2, batchSize: ${N}, seed: 3 });
  const fit = await model.fit(val);
  const corrected = await model.correct(test);
  let saveError = '';
  try { await model.save('m.npz'); } catch (e) { saveError = e.code; }
  return {
    before, info: otlm.info(), isolated: self.crossOriginIsolated === true, shared: typeof SharedArrayBuffer, backend: sync.backend,
    predictions: Array.from(sync.predictions), asyncSame: asyncR.predictions.every((p, i) => p === sync.predictions[i]),
    probabilities: Array.from(sync.probabilities.data), fitBackend: fit.backend, weights: Array.from(model.weights),
    otlmPredictions: Array.from(corrected.predictions), saveError,
  };
};
</script>`;

describe.skipIf(why !== null)('browser entry in headless Chromium', () => {
  let server: http.Server;
  let origin = '';
  beforeAll(async () => {
    const files: Record<string, [string, () => Buffer]> = {
      '/': ['text/html', () => Buffer.from(PAGE)],
      '/isolated': ['text/html', () => Buffer.from(PAGE)],
      '/lib/otlm.browser.js': ['text/javascript', () => fs.readFileSync(bundle)],
      '/lib/wasm/otlm.wasm': ['application/wasm', () => fs.readFileSync(path.join(ROOT, 'lib/wasm/otlm.wasm'))],
      '/lib/wasm/otlm-mt.wasm': ['application/wasm', () => fs.readFileSync(path.join(ROOT, 'lib/wasm/otlm-mt.wasm'))],
      '/test.f32': ['application/octet-stream', () => Buffer.from(testN.data.buffer, testN.data.byteOffset, testN.data.byteLength)],
      '/val.f32': ['application/octet-stream', () => Buffer.from(valN.data.buffer, valN.data.byteOffset, valN.data.byteLength)],
    };
    server = http.createServer((req, res) => {
      const where = new URL(req.url ?? '/', 'http://x').pathname;
      if (where === '/favicon.ico') return void res.writeHead(204).end();
      const f = files[where];
      if (!f) return void res.writeHead(404).end();
      // The /isolated page is cross-origin isolated; its same-origin subresources need no more.
      const isolation = where === '/isolated' ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
      res.writeHead(200, { 'content-type': f[0], ...isolation }).end(f[1]());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('runs OT and OTLM on the WebAssembly engine with the Node results: single-threaded, and threaded where cross-origin isolated', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const open = async (where: string) => {
      const page = await browser.newPage();
      const problems: string[] = [];
      const foreign: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      // blob: URLs of this origin are the pool workers' script, made in the page.
      page.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith(`blob:${origin}/`)) foreign.push(r.url()); });
      await page.goto(origin + where, { waitUntil: 'load' });
      await page.waitForFunction(() => typeof (window as unknown as { run?: unknown }).run === 'function');
      const got = await page.evaluate((k) => (window as unknown as { run(k: number): Promise<Record<string, unknown>> }).run(k), test.cols);
      await page.close();
      return { got, problems, foreign };
    };
    try {
      const plain = await open('/');
      const isolated = await open('/isolated');
      const ref = otCorrectSync(testN, { lambda: 0.5, backend: nodeBackend });
      const model = new OTLM({ iterations: 5, sinkhornIters: 50, lambda: 0.5, lr: 1e-2, batchSize: N, seed: 3, backend: nodeBackend });
      await model.fit(valN);
      const corrected = await model.correct(testN);
      for (const { got, problems, foreign } of [plain, isolated]) {
        expect(problems).toEqual([]);
        expect(foreign).toEqual([]);
        expect(got.before).toBe('reference');
        expect(got.info).toMatchObject({ active: 'wasm', wasm: { available: true, simd: 'wasm-simd128' } });
        expect(got.backend).toBe('wasm');
        expect(got.fitBackend).toBe('wasm');
        expect(got.asyncSame).toBe(true);
        expect(got.saveError).toBe('OTLM_ENOTSUP');

        expect(got.predictions).toEqual(Array.from(ref.predictions));
        const p = got.probabilities as number[];
        let d = 0, m = 0;
        for (let i = 0; i < p.length; i++) {
          d = Math.max(d, Math.abs(p[i] - ref.probabilities.data[i]));
          m = Math.max(m, Math.abs(ref.probabilities.data[i]));
        }
        expect(d / m).toBeLessThanOrEqual(1e-5);

        const w = got.weights as number[];
        let dw = 0;
        for (let i = 0; i < w.length; i++) dw = Math.max(dw, Math.abs(w[i] - model.weights[i]));
        expect(dw).toBeLessThanOrEqual(1e-4);
        const op = got.otlmPredictions as number[];
        let same = 0;
        for (let i = 0; i < N; i++) same += op[i] === corrected.predictions[i] ? 1 : 0;
        expect(same / N).toBeGreaterThanOrEqual(0.999);
      }
      // Not cross-origin isolated: no SharedArrayBuffer, and the engine must not need it.
      expect(plain.got.isolated).toBe(false);
      expect(plain.got.shared).toBe('undefined');
      expect(plain.got.info).toMatchObject({ wasm: { variant: 'single', threads: 1 } });
      // Cross-origin isolated: the threaded build, its workers taking part, the same bits.
      expect(isolated.got.isolated).toBe(true);
      const wi = (isolated.got.info as { wasm: { variant: string; threads: number; workers: number; workerTasks: number } }).wasm;
      expect(wi.variant).toBe('threads');
      expect(wi.threads).toBeGreaterThan(1);
      expect(wi.workers).toBe(wi.threads - 1);
      expect(wi.workerTasks).toBeGreaterThan(0);
      expect(isolated.got.probabilities).toEqual(plain.got.probabilities);
      expect(isolated.got.weights).toEqual(plain.got.weights);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
