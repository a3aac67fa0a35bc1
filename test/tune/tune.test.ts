// otlm tune / tune(): cross-validated choice of the correction (issue 16). Checked on the bundled
// Fashion-MNIST-LT validation logits, against invariants that hold whatever the fold split:
// LA with τ = 0 and a uniform μ predicts as CE does, the winner is the best row, and a CLI choice
// applied by `correct --tuned` is exactly the corresponding `correct` call.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { readLabels, readMatrix, readVector } from '../../src/io/index.js';
import { tune } from '../../src/tune.js';
import { DATA, ensureBuilt, otlm, tmpDir } from '../cli/helpers.js';

const val = () => readMatrix(path.join(DATA, 'val_logits.npy'));
const valLabels = () => readLabels(path.join(DATA, 'val_labels.npy'));
const counts = () => readVector(path.join(DATA, 'train_counts.npy'));

describe('tune()', () => {
  it('scores every candidate by fold; CE equals LA τ = 0; the winner is the best mean and beats CE on long-tailed data', async () => {
    const r = await tune(val(), valLabels(), counts(), { tauGrid: [0, 1], lambdaGrid: [0.1, 1], folds: 4 });
    expect(r.table.map((t) => `${t.method}${JSON.stringify(t.params)}`)).toEqual(['CE{}', 'LA{"tau":0}', 'LA{"tau":1}', 'OT{"lambda":0.1}', 'OT{"lambda":1}']);
    for (const t of r.table) expect(t.folds.length).toBe(4);
    expect(r.table[1]!.folds).toEqual(r.table[0]!.folds);
    const best = Math.max(...r.table.map((t) => t.cvScore));
    expect(r.cvScore).toBe(best);
    expect(r.table[r.chosen]!.cvScore).toBe(best);
    expect(r.cvScore).toBeGreaterThan(r.table[0]!.cvScore + 0.02);
  });
  it("a given or 'estimate' target prior, and bad arguments", async () => {
    const e = await tune(val(), valLabels(), counts(), { methods: ['LA'], tauGrid: [1], folds: 3, targetPrior: 'estimate' });
    expect(e.method).toBe('LA');
    await expect(tune(val(), valLabels().slice(1), counts())).rejects.toThrow(/labels has 4999 entries, expected 5000/);
    await expect(tune(val(), valLabels(), counts(), { folds: 1 })).rejects.toThrow(/tune: folds must be in \[2, 5000\]/);
    await expect(tune(val(), valLabels(), counts(), { methods: ['XX' as never] })).rejects.toThrow(/unknown method 'XX'/);
    await expect(tune(val(), valLabels(), counts(), { lambdaGrid: [0] })).rejects.toThrow(/lambdaGrid\[0\] must be > 0/);
  });
});

describe('otlm tune and correct --tuned', () => {
  beforeAll(() => ensureBuilt());
  const args = ['--logits', path.join(DATA, 'val_logits.npy'), '--labels', path.join(DATA, 'val_labels.npy'), '--train-counts', path.join(DATA, 'train_counts.npy')];

  it('--json names the method and its parameters; --out is applied by correct --tuned exactly', () => {
    const d = tmpDir('tune');
    const choice = path.join(d, 'tuned.json');
    const r = otlm(['tune', ...args, '--lambda-grid', '0.5,2', '--tau-grid', '1', '--json', '--out', choice]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(['CE', 'LA', 'OT']).toContain(j.method);
    expect(j.table).toHaveLength(4);
    expect(JSON.parse(fs.readFileSync(choice, 'utf8'))).toEqual({ method: j.method, params: j.params, cvScore: j.cvScore });
    const test = path.join(DATA, 'test_logits.npy');
    const tc = path.join(DATA, 'train_counts.npy');
    const a = otlm(['correct', '--tuned', choice, '--logits', test, '--train-counts', tc, '--predictions-out', path.join(d, 'a.csv')]);
    expect(a.code, a.stderr).toBe(0);
    const direct = j.method === 'OT' ? ['--method', 'ot', '--lambda', String(j.params.lambda)] : j.method === 'LA' ? ['--method', 'la', '--tau', String(j.params.tau)] : ['--method', 'la', '--tau', '0'];
    const b = otlm(['correct', ...direct, '--logits', test, '--train-counts', tc, '--predictions-out', path.join(d, 'b.csv')]);
    expect(b.code, b.stderr).toBe(0);
    expect(fs.readFileSync(path.join(d, 'a.csv'), 'utf8')).toBe(fs.readFileSync(path.join(d, 'b.csv'), 'utf8'));
  });
  it('the table marks the chosen row; bad flags and files get their exit codes', () => {
    const d = tmpDir('tune-bad');
    const r = otlm(['tune', ...args, '--lambda-grid', '1', '--tau-grid', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\*\s+(CE|LA|OT)\b/m);
    expect(r.stdout).toMatch(/chosen: /);
    expect(otlm(['tune', ...args, '--folds', '1']).code).toBe(1);
    expect(otlm(['tune', ...args, '--lambda-grid', '0,1']).code).toBe(1);
    const bad = path.join(d, 'bad.json');
    fs.writeFileSync(bad, '{"method": "SVM"}');
    const c = otlm(['correct', '--tuned', bad, '--logits', path.join(DATA, 'test_logits.npy')]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--tuned: .*bad\.json: method must be CE, LA, OT or OTLM/);
    const ok = path.join(d, 'ot.json');
    fs.writeFileSync(ok, '{"method": "OT", "params": {"lambda": 2}}');
    const both = otlm(['correct', '--tuned', ok, '--lambda', '1', '--logits', path.join(DATA, 'test_logits.npy')]);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/--tuned sets --lambda \(2\); do not give both/);
  });
});
