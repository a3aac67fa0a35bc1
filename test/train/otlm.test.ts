/**
 * The OTLM class: the loop (batches, schedules, early stopping, progress, abort), validation, divergence,
 * save/load. Backend 'reference' (float64 TS) unless a test says otherwise; the native trainer is
 * checked against it in native.test.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { OTLM, OTLM_PRESETS, OtlmDivergenceError, type OtlmProgressEvent } from '../../src/train/otlm.js';
import { BatchPlanner, mulberry32, scheduledLr } from '../../src/train/batches.js';
import { TsOptimizer } from '../../src/train/optim.js';
import { otlmLossGradReference } from '../../src/paths/reference/otlm.js';
import { encodeNpz } from '../../src/io/npz.js';
import { IoError } from '../../src/io/errors.js';
import { encodeModel } from '../../src/train/model-file.js';
import { MAX_THREADS } from '../../src/api/validate.js';
import { randn, relErr, tmpDir } from './helpers.js';

const K = 4;
function logits(n: number, seed: number, k = K) {
  const d = randn(n * k, seed, 2);
  for (let i = 0; i < n; i++) d[i * k] += 1.5; // a head class, so W has something to learn
  return { data: d, rows: n, cols: k };
}
const SMALL = { backend: 'reference', lambda: 0.5, sinkhornIters: 5, tol: 0, lr: 0.05, iterations: 8, batchSize: 16 } as const;

describe('OTLM loop (reference backend)', () => {
  it('reproduces a hand-written loop: same seeded batches, same float64 loss/grad, same Adam', async () => {
    const val = logits(40, 1);
    const model = new OTLM({ ...SMALL, weightDecay: 1e-3, seed: 42 });
    const r = await model.fit(val);
    expect(r.steps).toBe(8);
    expect(r.backend).toBe('reference');
    // Independent loop: BatchPlanner with the same seed, reference loss/grad, TsOptimizer.
    const planner = new BatchPlanner(40, 16, 42);
    const opt = new TsOptimizer({ optimizer: 'adam', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-3, momentum: 0, nesterov: false }, K * K);
    let w: Float64Array = new Float64Array(K * K);
    for (let j = 0; j < K; j++) w[j * K + j] = 1;
    const mu = new Float64Array(K).fill(1 / K);
    for (let s = 0; s < 8; s++) {
      const rows = planner.next();
      const batch = new Float32Array(16 * K);
      rows.forEach((row, i) => batch.set(val.data.subarray(row * K, row * K + K), i * K));
      const g = otlmLossGradReference({ phi: { data: batch, rows: 16, cols: K }, w, targetPrior: mu, lambda: 0.5, sinkhornIters: 5, tol: 0 });
      expect(r.losses[s]).toBe(g.loss);
      const next = opt.propose(w, g.gradW!, 0.05);
      next.commit();
      w = next.w;
    }
    expect(relErr(model.weights, Float32Array.from(w))).toBeLessThan(1e-7);
  });

  it('TsOptimizer reproduces torch.optim on the committed training fixtures (reference loss/grad, fixture batches)', async () => {
    const { loadTrainCases } = await import('./helpers.js');
    for (const c of loadTrainCases()) {
      const opt = new TsOptimizer({ optimizer: c.optimizer, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay, momentum: c.momentum, nesterov: c.nesterov }, c.k * c.k);
      let w: Float64Array = new Float64Array(c.k * c.k);
      for (let j = 0; j < c.k; j++) w[j * c.k + j] = 1;
      c.batches.forEach((rows, s) => {
        const batch = new Float64Array(rows.length * c.k);
        rows.forEach((row, i) => { for (let j = 0; j < c.k; j++) batch[i * c.k + j] = c.phi[row * c.k + j]; });
        const g = otlmLossGradReference({ phi: { data: batch, rows: rows.length, cols: c.k }, w, bias: c.bias, targetPrior: c.mu, lambda: c.lambda, sinkhornIters: c.T, tol: 0 });
        expect(Math.abs(g.loss - c.losses[s]) / Math.abs(c.losses[s]), `${c.name} step ${s + 1}`).toBeLessThan(1e-9);
        const next = opt.propose(w, g.gradW!, c.lr);
        next.commit();
        w = next.w;
      });
      expect(relErr(w, c.w_final), c.name).toBeLessThan(1e-9);
    }
  });

  it('loss decreases on a full batch, progress events are complete, and the fit is reproducible', async () => {
    const val = logits(30, 2);
    const events: OtlmProgressEvent[] = [];
    const opts = { ...SMALL, iterations: 25, batchSize: 1000, lr: 0.05 };
    const a = new OTLM({ ...opts, onProgress: (e) => events.push(e) });
    const r = await a.fit(val);
    expect(r.losses[24]).toBeLessThan(r.losses[0]);
    expect(events.map((e) => e.step)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    for (const e of events) {
      expect(e.steps).toBe(25);
      expect(Number.isFinite(e.loss) && Number.isFinite(e.marginalError) && e.msPerStep >= 0 && e.gradNorm > 0).toBe(true);
      expect(e.lr).toBe(0.05);
      expect(e.sinkhornIters).toBe(5);
    }
    const b = new OTLM(opts).fitSync(val);
    expect(Array.from(b.losses)).toEqual(Array.from(r.losses));
  });

  it('epochs: floor(N / batchSize) steps per epoch; each epoch visits distinct rows', () => {
    const p = new BatchPlanner(50, 16, 7);
    expect(p.batchesPerEpoch).toBe(3);
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) for (const r of p.next()) seen.add(r);
    expect(seen.size).toBe(48);
    const m = new OTLM({ ...SMALL, iterations: undefined, epochs: 2 });
    expect(m.fitSync(logits(50, 3)).steps).toBe(6);
    // Different seeds give different batches; the same seed the same.
    const rows = (seed: number) => Array.from(new BatchPlanner(50, 16, seed).next());
    expect(rows(1)).toEqual(rows(1));
    expect(rows(1)).not.toEqual(rows(2));
    expect(mulberry32(3)()).toBe(mulberry32(3)());
  });

  it('schedules: constant, cosine and step decay reach the steps', async () => {
    expect(scheduledLr('constant', 0.1, 5, 10)).toBe(0.1);
    expect(scheduledLr('cosine', 0.1, 0, 10)).toBeCloseTo(0.1, 15);
    expect(scheduledLr('cosine', 0.1, 5, 10)).toBeCloseTo(0.05, 15);
    expect(scheduledLr({ type: 'step', every: 3, gamma: 0.5 }, 0.1, 7, 10)).toBeCloseTo(0.025, 15);
    const lrs: number[] = [];
    await new OTLM({ ...SMALL, iterations: 4, schedule: { type: 'step', every: 2, gamma: 0.1 }, onProgress: (e) => lrs.push(e.lr) }).fit(logits(20, 4));
    expect(lrs.map((x) => +x.toPrecision(6))).toEqual([0.05, 0.05, 0.005, 0.005]);
  });

  it('early stopping ends the fit on a loss plateau', async () => {
    // A tiny lr: the loss moves by less than minDelta, so it stops after `patience` steps without improvement.
    const m = new OTLM({ ...SMALL, iterations: 50, batchSize: 1000, lr: 1e-9, earlyStopping: { patience: 3, minDelta: 1e-3 } });
    const r = await m.fit(logits(20, 5));
    expect(r.stoppedEarly).toBe(true);
    expect(r.steps).toBe(4); // step 1 sets the best; steps 2, 3, 4 do not improve by > 1e-3
  });

  it('abort between steps: resolves with aborted: true, W from the last completed step, model usable', async () => {
    const ac = new AbortController();
    const val = logits(40, 6);
    const m = new OTLM({ ...SMALL, iterations: 100, signal: ac.signal, onProgress: (e) => { if (e.step === 3) ac.abort(); } });
    const r = await m.fit(val);
    expect(r.aborted).toBe(true);
    expect(r.steps).toBe(3);
    // Same 3 steps without abort give the same W.
    const ref = new OTLM({ ...SMALL, iterations: 3 });
    await ref.fit(val);
    expect(Array.from(m.weights)).toEqual(Array.from(ref.weights));
    expect(m.steps).toBe(3);
    const a = await m.adjustedLogits(val);
    expect(a.data.every(Number.isFinite)).toBe(true);
    // An already aborted signal: no step at all.
    const r0 = await new OTLM(SMALL).fit(val, { signal: AbortSignal.abort() });
    expect(r0).toMatchObject({ steps: 0, aborted: true });
  });

  it('one fit at a time per model', async () => {
    const m = new OTLM({ ...SMALL, iterations: 3 });
    const first = m.fit(logits(20, 14));
    await expect(m.fit(logits(20, 14))).rejects.toThrow(/a fit is already running/);
    expect((await first).steps).toBe(3);
  });

  it('a diverging run stops with an error naming the step and leaves W finite', async () => {
    // lr = 1e36 with SGD: W grows by ~1e36 per step until an update overflows float32 (the model's W).
    const m = new OTLM({ ...SMALL, optimizer: 'sgd', momentum: 0, lr: 1e36, iterations: 10, batchSize: 1000 });
    const err = await m.fit(logits(20, 7)).catch((e) => e);
    expect(err).toBeInstanceOf(OtlmDivergenceError);
    expect(err.message).toMatch(/diverged at step \d+/);
    console.log(`reference divergence: ${err.message}`);
    expect(err.step).toBeGreaterThan(1);
    expect(err.message).toContain(`W is left at its value after step ${err.step - 1}`);
    expect(m.weights.every(Number.isFinite)).toBe(true);
    expect(m.steps).toBe(err.step - 1);
  });

  it('rejects bad options and inputs with errors naming the argument; nothing runs', async () => {
    expect(() => new OTLM({ batchSize: 0 })).toThrow(/options\.batchSize must be in \[1, 2147483647\]/);
    expect(() => new OTLM({ batchSize: 2.5 })).toThrow(/options\.batchSize must be an integer/);
    expect(() => new OTLM({ lr: 0 })).toThrow(/options\.lr must be > 0/);
    expect(() => new OTLM({ lr: -1 })).toThrow(/options\.lr/);
    expect(() => new OTLM({ lambda: 0 })).toThrow(/options\.lambda/);
    expect(() => new OTLM({ sinkhornIters: 0 })).toThrow(/options\.sinkhornIters/);
    expect(() => new OTLM({ momentum: 1 })).toThrow(/options\.momentum must be in \[0, 1\)/);
    expect(() => new OTLM({ iterations: 5, epochs: 1 })).toThrow(/not both/);
    expect(() => new OTLM({ optimizer: 'rmsprop' as never })).toThrow(/options\.optimizer must be one of/);
    expect(() => new OTLM({ backend: 'tfjs' })).toThrow(/options\.backend/);
    expect(() => new OTLM({ learningRate: 1 } as never)).toThrow(/unknown option 'learningRate'/);
    expect(() => new OTLM({ bias: { trainCounts: [1, 0, 3] } })).toThrow(/trainCounts\[1\] must be > 0/);
    expect(() => new OTLM({ bias: new Float32Array(3), targetPrior: [1, 1] })).toThrow(/targetPrior must have length 3/);
    expect(() => new OTLM({ schedule: { type: 'step', every: 0, gamma: 0.5 } })).toThrow(/schedule\.every/);
    expect(() => OTLM.preset('cifar10' as never)).toThrow(/preset must be one of/);

    const m = new OTLM({ ...SMALL, bias: { trainCounts: [100, 10, 5, 1] } });
    await expect(m.fit(logits(10, 8, 3))).rejects.toThrow(/valLogits has 3 columns but the model has K = 4/);
    const bad = logits(10, 8);
    bad.data[13] = NaN;
    await expect(m.fit(bad)).rejects.toThrow(/valLogits has a non-finite value \(NaN\) at row 3, column 1/);
    await expect(m.fit({ data: new Float32Array(5), rows: 2, cols: 4 })).rejects.toThrow(/valLogits\.data has length 5/);
    await expect(m.correct(logits(5, 1))).rejects.toThrow(/no weights yet; call fit\(\)/);
    expect(() => m.weights).toThrow(/no weights yet/);
    await m.fit(logits(10, 9));
    await expect(m.adjustedLogits(logits(5, 1, 3))).rejects.toThrow(/testLogits has 3 columns but the model has K = 4/);
    expect(() => m.setWeights(new Float32Array(9))).toThrow(/weights are 3×3 but the model has K = 4/);
  });

  it('correct() with W = I and no bias is exactly the OT correction of the logits; A = ΦW + b feeds otCorrect', async () => {
    const { otCorrect } = await import('../../src/methods/ot.js');
    const m = new OTLM({ ...SMALL, targetPrior: [4, 3, 2, 1] });
    m.setWeights(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]));
    const x = logits(50, 13);
    const c = await m.correct(x, { maxIter: 500, tol: 1e-6 });
    const o = await otCorrect(x, { lambda: 0.5, targetPrior: [0.4, 0.3, 0.2, 0.1], maxIter: 500, tol: 1e-6, backend: 'reference' });
    expect(Array.from(c.predictions)).toEqual(Array.from(o.predictions));
    expect(relErr(c.probabilities.data, o.probabilities.data)).toBeLessThan(1e-12);
    expect(c.error).toBeLessThan(1e-6);
  });

  it('bias b = −log π from training counts; adjusted logits A = ΦW + b', async () => {
    const m = new OTLM({ ...SMALL, bias: { trainCounts: [50, 30, 15, 5] } });
    const b = m.bias!;
    expect(b[0]).toBeCloseTo(-Math.log(0.5), 6);
    expect(b[3]).toBeCloseTo(-Math.log(0.05), 6);
    const w = new Float32Array(16);
    for (let q = 0; q < 16; q++) w[q] = (q % 5 === 0 ? 1 : 0) + 0.01 * q;
    m.setWeights(w);
    const x = logits(3, 10);
    const a = await m.adjustedLogits(x);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 4; j++) {
        let s = b[j];
        for (let q = 0; q < 4; q++) s += x.data[i * 4 + q] * w[q * 4 + j];
        expect(a.data[i * 4 + j]).toBeCloseTo(s, 5);
      }
  });

  it('presets carry the paper\'s Appendix C values; overrides apply', () => {
    expect(OTLM.preset('cifar100-lt').options).toMatchObject({ optimizer: 'adam', batchSize: 10000, weightDecay: 1e-3, iterations: 20, lr: 1e-3, lambda: 0.1, sinkhornIters: 200, tol: 1e-3 });
    expect(OTLM.preset('imagenet-lt').options).toMatchObject({ optimizer: 'sgd', batchSize: 10000, weightDecay: 1e-3, iterations: 100, lr: 0.2, lambda: 1.2, sinkhornIters: 7 });
    expect(OTLM.preset('inaturalist', { iterations: 5 }).options).toMatchObject({ optimizer: 'sgd', batchSize: 23826, weightDecay: 1e-3, lr: 0.05, lambda: 1.0, sinkhornIters: 10, iterations: 5 });
    expect(Object.isFrozen(OTLM_PRESETS['cifar100-lt'])).toBe(true);
    expect(new OTLM().options).toMatchObject({ grad: 'unrolled', schedule: 'constant', optimizer: 'adam', lambda: 0.1 });
  });
});

describe('OTLM save / load', () => {
  it('round-trips W, b, μ and the hyper-parameters; numpy reads the file', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.npz');
    const m = new OTLM({ ...SMALL, bias: { trainCounts: [50, 30, 15, 5] }, targetPrior: [1, 2, 3, 4], schedule: 'cosine' });
    await m.fit(logits(30, 11));
    m.save(file);
    const l = OTLM.load(file);
    expect(Array.from(l.weights)).toEqual(Array.from(m.weights));
    expect(Array.from(l.bias!)).toEqual(Array.from(m.bias!));
    expect(Array.from(l.targetPrior!)).toEqual(Array.from(m.targetPrior!));
    expect(l.options).toMatchObject({ lambda: 0.5, sinkhornIters: 5, lr: 0.05, schedule: 'cosine', batchSize: 16, bias: 'train-prior' });
    expect(l.steps).toBe(8);
    const x = logits(6, 12);
    expect(Array.from((await l.adjustedLogits(x)).data)).toEqual(Array.from((await m.adjustedLogits(x)).data));
    // refuses to overwrite with force: false; leaves no temporary files
    expect(() => m.save(file, { force: false })).toThrow(/already exists/);
    expect(fs.readdirSync(dir)).toEqual(['model.npz']);

    const py = spawnSync('python3', ['-c', [
      'import json, sys, numpy as np',
      'z = np.load(sys.argv[1])',
      'meta = json.loads(z["meta"].tobytes().decode("utf-8"))',
      'print(json.dumps({"W": z["W"].dtype.str + str(z["W"].shape), "b": z["b"].dtype.str, "mu": float(z["target_prior"].sum()), "k": meta["k"], "lam": meta["options"]["lambda"], "w00": float(z["W"][0, 0])}))',
    ].join('\n'), file], { encoding: 'utf8' });
    if (py.status !== 0 && /No module named|not found/.test(py.stderr ?? '')) {
      console.log('numpy not available: skipping the numpy read check');
    } else {
      expect(py.status, py.stderr).toBe(0);
      const got = JSON.parse(py.stdout);
      expect(got).toMatchObject({ W: '<f4(4, 4)', b: '<f4', k: 4, lam: 0.5 });
      expect(got.mu).toBeCloseTo(1, 12);
      expect(got.w00).toBe(m.weights[0]);
    }
  });

  it('rejects corrupt, wrong-shape and non-model files with clear errors', () => {
    const dir = tmpDir();
    const f = (name: string, bytes: Uint8Array | string) => { const p = path.join(dir, name); fs.writeFileSync(p, bytes); return p; };
    expect(() => OTLM.load(path.join(dir, 'missing.npz'))).toThrow(/missing\.npz: cannot read the model file/);
    expect(() => OTLM.load(f('text.npz', 'hello world'))).toThrow(/not a \.npz file/);
    const m = new OTLM({ ...SMALL });
    m.setWeights(new Float32Array([1, 0, 0, 1]));
    const good = path.join(dir, 'good.npz');
    m.save(good);
    const bytes = fs.readFileSync(good);
    expect(() => OTLM.load(f('trunc.npz', bytes.subarray(0, bytes.length - 40)))).toThrow(/trunc\.npz/);
    const meta = new TextEncoder().encode(JSON.stringify({ format: 'otlm-model', version: 1, library: 'x', k: 3, trainedSteps: 0, options: {} }));
    const u8 = (d: Uint8Array) => { const hdr = `{'descr': '|u1', 'fortran_order': False, 'shape': (${d.length},), }`.padEnd(117, ' ') + '\n'; const o = new Uint8Array(128 + d.length); o.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 118, 0]); for (let i = 0; i < hdr.length; i++) o[10 + i] = hdr.charCodeAt(i); o.set(d, 128); return o; };
    const npz = (arrays: Parameters<typeof encodeNpz>[0], m8 = meta) => encodeNpz(arrays, { extra: { 'meta.npy': u8(m8) } });
    expect(() => OTLM.load(f('rect.npz', npz({ W: { data: new Float32Array(6), shape: [3, 2] }, b: new Float32Array(3), target_prior: new Float64Array(3).fill(1 / 3) }))))
      .toThrow(/W must be a square float matrix \(K, K\), got <f4 of shape \(3, 2\)/);
    const w3 = { data: new Float32Array(9), shape: [3, 3] };
    expect(() => OTLM.load(f('b.npz', npz({ W: w3, b: new Float32Array(4), target_prior: new Float64Array(3).fill(1 / 3) }))))
      .toThrow(/b must be a float vector of shape \(3,\)/);
    expect(() => OTLM.load(f('mu.npz', npz({ W: w3, b: new Float32Array(3), target_prior: new Float64Array([0.5, 0.5, 0.5]) }))))
      .toThrow(/target_prior must sum to 1/);
    expect(() => OTLM.load(f('nob.npz', npz({ W: w3, target_prior: new Float64Array(3).fill(1 / 3) }))))
      .toThrow(/no array 'b'/);
    const nanW = new Float32Array(9); nanW[4] = NaN;
    expect(() => OTLM.load(f('nan.npz', npz({ W: { data: nanW, shape: [3, 3] }, b: new Float32Array(3), target_prior: new Float64Array(3).fill(1 / 3) }))))
      .toThrow(/W\[1, 1\] is not finite/);
    expect(() => OTLM.load(f('fmt.npz', npz({ W: w3, b: new Float32Array(3), target_prior: new Float64Array(3).fill(1 / 3) }, new TextEncoder().encode('{"format":"other"}')))))
      .toThrow(/not an OTLM model/);
    expect(() => OTLM.load(f('nometa.npz', encodeNpz({ W: w3 })))).toThrow(/no array 'meta'/);
    // save before any weights: error and no file
    expect(() => new OTLM().save(path.join(dir, 'none.npz'))).toThrow(/no weights yet/);
    expect(fs.existsSync(path.join(dir, 'none.npz'))).toBe(false);
  });
});

describe('hyper-parameters: one range for the constructor, model files and load overrides (issue 13)', () => {
  // A K = 2 model file with the given meta.options, as another tool (or an older otlm) could write it.
  const modelFile = (dir: string, name: string, options: Record<string, unknown>): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, encodeModel({
      w: new Float32Array([1, 0, 0, 1]), b: new Float32Array(2), targetPrior: new Float64Array([0.5, 0.5]),
      meta: { format: 'otlm-model', version: 1, library: 'test', k: 2, trainedSteps: 0, options },
    }));
    return file;
  };
  const thrown = (fn: () => unknown): Error => { try { fn(); } catch (e) { return e as Error; } throw new Error('did not throw'); };

  it('threads beyond the native limit: refused by the constructor, in a model file, and as a load override', () => {
    expect(() => new OTLM({ threads: 1e9 })).toThrow(new RangeError('options.threads must be in [0, 4096], got 1000000000'));
    expect(new OTLM({ threads: MAX_THREADS }).options.threads).toBe(MAX_THREADS);
    const dir = tmpDir();
    const e = thrown(() => OTLM.load(modelFile(dir, 'threads.npz', { threads: 1e9 })));
    expect(e).toBeInstanceOf(IoError);
    expect(e.message).toMatch(/threads\.npz: the model's meta\.options are invalid: options\.threads must be in \[0, 4096\]/);
    // A bad override is the caller's error, not the file's.
    const o = thrown(() => OTLM.load(modelFile(dir, 'good.npz', {}), { threads: 1e9 }));
    expect(o).toBeInstanceOf(RangeError);
    expect(o.message).toBe('options.threads must be in [0, 4096], got 1000000000');
  });

  it('every numeric hyper-parameter: the same range in the constructor and in a model file', () => {
    const dir = tmpDir();
    const bad: Array<[string, number]> = [
      ['lambda', 0], ['lambda', -1], ['tol', -1e-3], ['sinkhornIters', 2 ** 31], ['lr', 0], ['weightDecay', -1],
      ['momentum', 1], ['beta1', 1.5], ['beta2', 1], ['eps', 0], ['batchSize', -4], ['batchSize', 2 ** 31],
      ['iterations', 2 ** 31], ['seed', -1], ['seed', 2 ** 32], ['threads', -1], ['threads', 4097],
    ];
    for (const [key, v] of bad) {
      expect(() => new OTLM({ [key]: v }), `${key} = ${v}`).toThrow(new RegExp(`^options\\.${key} must be`));
      expect(() => OTLM.load(modelFile(dir, `${key}.npz`, { [key]: v })), `${key} = ${v} in a file`)
        .toThrow(new RegExp(`${key}\\.npz: the model's meta\\.options are invalid: options\\.${key} must be`));
    }
    expect(() => new OTLM({ schedule: { type: 'step', every: 1, gamma: 2 } })).toThrow(/options\.schedule\.gamma must be in \(0, 1\]/);
  });

  it('a long step decay floors lr at the smallest double: the engine refuses lr = 0', () => {
    expect(scheduledLr({ type: 'step', every: 1, gamma: 1e-200 }, 1e-3, 5, 10)).toBeGreaterThan(0);
  });

  it('a huge step count (epochs × batches > 2^32) allocates nothing up front (abort after the first step)', async () => {
    const ac = new AbortController();
    const { iterations: _, ...small } = SMALL;
    const r = await new OTLM({ ...small, batchSize: 4, epochs: 2 ** 31 - 1, signal: ac.signal, onProgress: () => ac.abort() }).fit(logits(20, 3));
    expect(r.aborted).toBe(true);
    expect(r.steps).toBe(1);
    expect(r.losses.length).toBe(1);
  });
});
