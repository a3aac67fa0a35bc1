/** The otlm subcommands. Each reads and checks every input first (exit 2), then computes (exit 3). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Command, Option } from 'commander';
import type { Backend, Matrix } from '../api/types.js';
import { info } from '../api/info.js';
import { packageRoot } from '../native/package-root.js';
import type { Ctx } from './context.js';
import { inPhase, inputError, runtimeError, usageError } from './errors.js';
import { normalize, preflightOutputs, readLabelsArg, readLogitsArg, readModelArg, readPriorArg, tagged, writeOutputs, type PendingOutput } from './inputs.js';
import { darp } from '../methods/darp.js';
import { logitAdjust } from '../methods/la.js';
import { otCorrect } from '../methods/ot.js';
import { estimatePrior } from '../prior/estimate.js';
import { OTLM, OTLM_PRESETS, type FitResult, type OtlmPreset, type OtlmProgressEvent } from '../train/otlm.js';
import { tune, type TuneMethod } from '../tune.js';
import { defined } from '../api/options.js';
import { evaluateAll, ALL_METHODS, type EvalInput, type EvalOutput, type MethodName } from '../evaluate.js';
import { evalJson, evalTable, infoText, tuneTable } from './format.js';
import { hyper, shape } from './parse.js';
import { renderReport, reportDataFrom } from '../report/index.js';

type Opts = Record<string, unknown> & { quiet?: boolean; json?: boolean; force?: boolean };

// tfjs runs plain Sinkhorn only: `fit` (OTLM) does not offer it.
const backendOption = (choices = ['auto', 'cpu', 'cuda', 'wasm', 'tfjs', 'reference']) => new Option('--backend <name>', 'where the math runs').choices(choices).default('auto');
const solverOptions = (c: Command) => c
  .option('--lambda <x>', 'entropic regularisation λ of the OT solve (paper: 0.005–2)', hyper('--lambda', 'lambda'))
  .option('--max-iter <n>', 'maximum Sinkhorn iterations', hyper('--max-iter', 'maxIter'))
  .option('--tol <x>', 'stop when the column-marginal error ‖Yᵀ1 − Nμ‖₁/N < tol (paper Δ = 1e-3)', hyper('--tol', 'tol'));

/** Bundled Fashion-MNIST-LT data (see data/fmnist-lt/PROVENANCE.md). */
export function bundledData(): { dir: string; val: string; valLabels: string; test: string; testLabels: string; trainCounts: string } {
  const dir = path.join(packageRoot(), 'data', 'fmnist-lt');
  return {
    dir,
    val: path.join(dir, 'val_logits.npy'),
    valLabels: path.join(dir, 'val_labels.npy'),
    test: path.join(dir, 'test_logits.npy'),
    testLabels: path.join(dir, 'test_labels.npy'),
    trainCounts: path.join(dir, 'train_counts.npy'),
  };
}

const BUNDLED_SOURCE = 'Fashion-MNIST-LT (imbalance ratio 100, K = 10): logits of a small CNN trained with plain cross-entropy on a long-tailed subset of Debian\'s dataset-fashion-mnist; 5000 validation + 5000 test images (see data/fmnist-lt/PROVENANCE.md)';

type CommandFactory = (name: string, desc: string) => Command;

/** Registers every subcommand; each has its own function below, so one command's flags read in one screen. */
export function registerCommands(program: Command, ctx: Ctx, setup: (c: Command) => Command): void {
  const cmd: CommandFactory = (name, desc) => {
    const c = setup(program.command(name).description(desc));
    c.option('-q, --quiet', 'no progress bars or notes on stderr');
    c.option('-v, --verbose', 'also say which backend runs and why (e.g. why CUDA is not used)');
    c.hook('preAction', (_t, action) => {
      ctx.quiet = Boolean(action.opts().quiet);
      ctx.verbose = Boolean(action.opts().verbose);
    });
    return c;
  };
  registerInfo(cmd, ctx);
  registerCorrect(cmd, ctx);
  registerFit(cmd, ctx);
  registerEval(cmd, ctx);
  registerDemo(cmd, ctx);
  registerReport(cmd, ctx);
  registerBench(cmd, ctx);
  registerTune(cmd, ctx);
}

function registerInfo(cmd: CommandFactory, ctx: Ctx): void {
  cmd('info', 'version, backends, CPU SIMD/threads/GEMM, CUDA status and why it is not used')
    .option('--json', 'machine-readable output on stdout')
    .action(async (o: Opts) => {
      const i = await inPhase('compute', () => info());
      ctx.out(o.json ? JSON.stringify(i, null, 2) + '\n' : infoText(i));
    });
}

function registerCorrect(cmd: CommandFactory, ctx: Ctx): void {
  otlmFitOptions(solverOptions(cmd('correct', 'correct test logits post hoc (LA, OT, OTLM or DARP); write probabilities and/or predictions')
    .addOption(new Option('--method <m>', 'correction method').choices(['la', 'ot', 'otlm', 'darp']).default('ot'))
    .requiredOption('--logits <file>', 'logits N×K (.npy, .npz:NAME, .f32 with --shape, .csv, - for stdin)')
    .option('--shape <rows,cols>', 'shape of raw .f32 logits', shape('--shape'))
    .option('--train-counts <file>', 'training class counts (length K)')
    .option('--train-prior <file>', 'training class prior (length K; normalised)')
    .option('--target-prior <file>', 'target class prior μ (default uniform)')
    .addOption(new Option('--estimate-prior <method>', 'estimate μ from the logits').choices(['em', 'bbse']))
    .option('--val-logits <file>', 'validation logits (fit OTLM here; labeled ones for bbse)')
    .option('--val-labels <file>', 'validation labels (for --estimate-prior bbse)')
    .option('--model <file>', 'a model from `otlm fit` (method otlm)')
    .option('--tau <x>', 'logit-adjustment strength τ (default 1)', hyper('--tau', 'tau'))
    .option('--tuned <file>', 'apply the method and parameter chosen by `otlm tune --out FILE`')))
    .option('--out <file>', 'corrected probabilities N×K (.npy or .csv; - for stdout)')
    .option('--predictions-out <file>', 'predicted classes (.npy int32 or .csv; - for stdout)')
    .option('--force', 'replace existing output files')
    .option('--json', 'summary as JSON on stdout')
    .addOption(backendOption())
    .action(async (o: Opts) => cmdCorrect(ctx, o));
}

function registerFit(cmd: CommandFactory, ctx: Ctx): void {
  cmd('fit', 'learn the OTLM cost map W on unlabeled validation logits; save it as .npz')
    .requiredOption('--logits <file>', 'unlabeled validation logits N×K')
    .option('--shape <rows,cols>', 'shape of raw .f32 logits', shape('--shape'))
    .requiredOption('--out <file>', 'model file (.npz: W, b, hyper-parameters)')
    .option('--train-counts <file>', 'training class counts (bias b = −log π)')
    .option('--train-prior <file>', 'training class prior (bias b = −log π)')
    .option('--target-prior <file>', 'target class prior μ (default uniform)')
    .addOption(new Option('--preset <name>', "the paper's Appendix C settings").choices(['cifar100-lt', 'imagenet-lt', 'inaturalist']))
    .option('--lr <x>', 'learning rate', hyper('--lr', 'lr'))
    .option('--iterations <n>', 'optimisation steps', hyper('--iterations', 'iterations'))
    .option('--batch-size <n>', 'rows per mini-batch (full batch when ≥ N)', hyper('--batch-size', 'batchSize'))
    .option('--lambda <x>', 'entropic regularisation λ', hyper('--lambda', 'lambda'))
    .option('--sinkhorn-iters <n>', 'Sinkhorn iterations T per step', hyper('--sinkhorn-iters', 'sinkhornIters'))
    .option('--tol <x>', 'Sinkhorn tolerance Δ', hyper('--tol', 'tol'))
    .addOption(new Option('--grad <mode>', 'gradient through Sinkhorn').choices(['unrolled', 'envelope']))
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['adam', 'adamw', 'sgd']))
    .option('--weight-decay <x>', 'L2 weight decay', hyper('--weight-decay', 'weightDecay'))
    .option('--seed <n>', 'shuffling seed', hyper('--seed', 'seed'))
    .option('--force', 'replace an existing model file')
    .option('--json', 'summary as JSON on stdout')
    .addOption(backendOption(['auto', 'cpu', 'cuda', 'wasm', 'reference']))
    .action(async (o: Opts) => cmdFit(ctx, o));
}

function registerEval(cmd: CommandFactory, ctx: Ctx): void {
  const evalCmd = solverOptions(cmd('eval', 'a paper-style table of every method (CE, LA, DARP, OT, OTLM) on labeled test logits'))
    .requiredOption('--logits <file>', 'test logits N×K')
    .requiredOption('--labels <file>', 'test labels (N integers in [0, K))')
    .option('--shape <rows,cols>', 'shape of raw .f32 logits', shape('--shape'));
  addEvalOptions(evalCmd).option('--json', 'results as JSON on stdout')
    .action(async (o: Opts) => {
      const ev = await runEval(ctx, o);
      if (o.json) ctx.out(JSON.stringify(evalJson(ev), null, 2) + '\n');
      else ctx.out(evalTable(ev));
    });
}

function registerTune(cmd: CommandFactory, ctx: Ctx): void {
  const list = (flag: string, key: 'tau' | 'lambda') => (s: string) => {
    const parse = hyper(flag, key);
    return s.split(',').map((x) => parse(x.trim()));
  };
  cmd('tune', 'choose the correction and its λ/τ by k-fold cross-validated balanced accuracy on labeled validation logits')
    .requiredOption('--logits <file>', 'validation logits N×K')
    .requiredOption('--labels <file>', 'their labels (N integers in [0, K))')
    .requiredOption('--train-counts <file>', 'training class counts (LA, OTLM bias)')
    .option('--shape <rows,cols>', 'shape of raw .f32 logits', shape('--shape'))
    .option('--target-prior <file>', "target class prior μ, or 'estimate' (EM on each fold; default uniform)")
    .option('--methods <list>', 'candidates among CE,LA,OT,OTLM (default CE,LA,OT; OTLM fits once per fold)')
    .option('--tau-grid <list>', 'LA τ values, comma-separated', list('--tau-grid', 'tau'))
    .option('--lambda-grid <list>', 'OT λ values, comma-separated', list('--lambda-grid', 'lambda'))
    .option('--folds <n>', 'number of folds (default 5)', (s: string) => {
      const v = Number(s);
      if (!Number.isInteger(v) || v < 2) throw usageError(`--folds must be an integer >= 2, got ${s}`);
      return v;
    })
    .option('--seed <n>', 'fold assignment seed', hyper('--seed', 'seed'))
    .option('--out <file>', 'the choice as JSON, for `correct --tuned FILE`')
    .option('--force', 'replace an existing --out file')
    .option('--json', '{ method, params, cvScore, table } on stdout')
    .addOption(backendOption())
    .action(async (o: Opts) => cmdTune(ctx, o));
}

async function cmdTune(ctx: Ctx, o: Opts): Promise<void> {
  const methods = o.methods === undefined ? undefined : String(o.methods).split(',').map((m) => m.trim().toUpperCase());
  for (const m of methods ?? []) if (!['CE', 'LA', 'OT', 'OTLM'].includes(m)) throw usageError(`--methods: unknown method '${m}'; expected some of CE, LA, OT, OTLM`);
  const inputs = ['logits', 'labels', 'trainCounts', 'targetPrior'].map((k) => o[k]).filter((v): v is string => typeof v === 'string');
  const force = Boolean(o.force);
  preflightOutputs([{ option: '--out', spec: o.out as string | undefined, formats: ['json'] }], inputs, force);
  const inp = await inPhase('input', async () => {
    const logits = await readLogitsArg(ctx, '--logits', String(o.logits), o.shape as string | undefined);
    const labels = await readLabelsArg(ctx, '--labels', String(o.labels), logits.rows, logits.cols);
    const trainCounts = await readPriorArg(ctx, '--train-counts', String(o.trainCounts), logits.cols);
    const targetPrior = o.targetPrior === undefined ? undefined
      : o.targetPrior === 'estimate' ? ('estimate' as const) : normalize(await readPriorArg(ctx, '--target-prior', String(o.targetPrior), logits.cols));
    return { logits, labels, trainCounts, targetPrior };
  });
  const backend = resolveBackend(ctx, o.backend);
  ctx.flushNotes();
  const r = await inPhase('compute', () => tune(inp.logits, inp.labels, inp.trainCounts, defined({
    methods: methods as TuneMethod[] | undefined, tauGrid: o.tauGrid as number[] | undefined, lambdaGrid: o.lambdaGrid as number[] | undefined,
    folds: o.folds as number | undefined, seed: o.seed as number | undefined, targetPrior: inp.targetPrior, backend,
  })));
  const choice = { method: r.method, params: r.params, cvScore: r.cvScore };
  if (o.out) await inPhase('compute', () => writeOutputs(ctx, [{ spec: String(o.out), kind: 'bytes', bytes: new TextEncoder().encode(JSON.stringify(choice, null, 2) + '\n') }], inputs, force));
  if (o.json) ctx.out(JSON.stringify({ ...choice, table: r.table }, null, 2) + '\n');
  else ctx.out(tuneTable(r));
}

/**
 * `correct --tuned FILE`: the method and parameter `otlm tune --out FILE` chose. CE (no
 * correction) is LA with τ = 0. The chosen parameter replaces a flag, so giving both is an error.
 */
function applyTuned(o: Opts): void {
  if (o.tuned === undefined) return;
  const file = String(o.tuned);
  let t: { method?: unknown; params?: Record<string, unknown> };
  try {
    t = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw inputError(`--tuned: ${file}: ${(e as Error).message}`);
  }
  const params = t.params ?? {};
  const set = (flag: string, key: string, v: unknown) => {
    if (o[key] !== undefined) throw usageError(`--tuned sets ${flag} (${String(v)}); do not give both`);
    o[key] = v;
  };
  try {
    if (t.method === 'CE') { o.method = 'la'; set('--tau', 'tau', 0); }
    else if (t.method === 'LA') { o.method = 'la'; set('--tau', 'tau', hyper('--tau', 'tau')(String(params.tau))); }
    else if (t.method === 'OT') { o.method = 'ot'; set('--lambda', 'lambda', hyper('--lambda', 'lambda')(String(params.lambda))); }
    else if (t.method === 'OTLM') {
      if (typeof params.preset !== 'string' || !(params.preset in OTLM_PRESETS)) throw new Error(`unknown preset ${JSON.stringify(params.preset)}`);
      o.method = 'otlm';
      set('--preset', 'preset', params.preset);
    } else throw new Error(`method must be CE, LA, OT or OTLM, got ${JSON.stringify(t.method)}`);
  } catch (e) {
    if ((e as { exitCode?: number }).exitCode === 1 && String((e as Error).message).startsWith('--tuned sets')) throw e;
    throw inputError(`--tuned: ${file}: ${(e as Error).message}`);
  }
}

function registerDemo(cmd: CommandFactory, ctx: Ctx): void {
  solverOptions(cmd('demo', 'fit OTLM and compare every method on the bundled Fashion-MNIST-LT logits'))
    .option('--json', 'results as JSON on stdout')
    .addOption(backendOption())
    .action(async (o: Opts) => {
      const d = bundledData();
      ctx.note(`Data: ${BUNDLED_SOURCE}.`);
      ctx.note('OTLM is fitted on the unlabeled validation logits; every method is scored on the test logits (uniform target prior).');
      const ev = await runEval(ctx, { ...o, logits: d.test, labels: d.testLabels, trainCounts: d.trainCounts, valLogits: d.val });
      if (o.json) ctx.out(JSON.stringify({ data: d.dir, source: BUNDLED_SOURCE, ...evalJson(ev) }, null, 2) + '\n');
      else ctx.out(evalTable(ev));
    });
}

function registerReport(cmd: CommandFactory, ctx: Ctx): void {
  const reportCmd = solverOptions(cmd('report', 'write a self-contained HTML report with charts (bundled data unless --logits is given)'))
    .requiredOption('--out <file>', 'the HTML file to write')
    .option('--logits <file>', 'test logits (default: the bundled Fashion-MNIST-LT data)')
    .option('--labels <file>', 'test labels')
    .option('--shape <rows,cols>', 'shape of raw .f32 logits', shape('--shape'))
    .option('--title <text>', 'report title')
    .option('--force', 'replace an existing file');
  addEvalOptions(reportCmd).action(async (o: Opts) => cmdReport(ctx, o));
}

function registerBench(cmd: CommandFactory, ctx: Ctx): void {
  cmd('bench', "run the benchmark suite's quick mode (bench/run.js --quick)")
    .allowUnknownOption(true)
    .argument('[args...]', 'extra arguments for bench/run.js')
    .action(async (args: string[], o: Opts) => cmdBench(ctx, args, o));
}

function addEvalOptions(c: Command): Command {
  return otlmFitOptions(c)
    .option('--train-counts <file>', 'training class counts (length K; needed for many/medium/few)')
    .option('--target-prior <file>', 'target class prior μ (default uniform)')
    .option('--val-logits <file>', 'unlabeled validation logits to fit OTLM on')
    .option('--model <file>', 'a fitted OTLM model (instead of --val-logits)')
    .option('--tau <x>', 'logit-adjustment strength τ (default 1)', hyper('--tau', 'tau'))
    .option('--methods <list>', `comma-separated subset of ${ALL_METHODS.join(',')}`)
    .addOption(backendOption());
}

/**
 * 'auto' resolved here. Most machines have no GPU: running on the CPU there is said only with
 * --verbose. A CUDA driver whose GPU cannot be used is a misconfiguration worth a note (when the work
 * starts; silenced by --quiet). `otlm info` always explains.
 */
function resolveBackend(ctx: Ctx, b: unknown): Backend {
  const want = (b ?? 'auto') as Backend;
  if (want !== 'auto') return want;
  const i = info();
  if (!i.native.loaded) return 'auto';
  if (i.cuda.usable) {
    if (ctx.verbose) ctx.noteLater(`note: running on CUDA (${i.cuda.devices[0]?.name ?? 'device 0'})`);
    return 'cuda';
  }
  if (ctx.verbose || (i.cuda.compiled && i.cuda.driver))
    ctx.noteLater(`note: running on the CPU; CUDA not used: ${i.cuda.reason ?? 'no usable device'}`);
  return 'cpu';
}

function parseMethods(s: unknown): MethodName[] | undefined {
  if (s === undefined) return undefined;
  const list = String(s).split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
  for (const m of list) if (!ALL_METHODS.includes(m as MethodName)) throw usageError(`--methods: unknown method '${m}'; expected some of ${ALL_METHODS.join(', ')}`);
  if (!list.length) throw usageError('--methods: give at least one method');
  return list as MethodName[];
}

/**
 * The OTLM hyper-parameters given by flags (only those given, so the defaults and presets apply
 * otherwise). In `fit` (which only fits OTLM) λ is --lambda; in `eval`
 * and `correct`, where --lambda is the OT solve's λ, OTLM's is --otlm-lambda.
 */
function fitOverrides(o: Opts, lambdaFlag: 'lambda' | 'otlmLambda'): Record<string, unknown> {
  const map: Record<string, string> = { lr: 'lr', iterations: 'iterations', batchSize: 'batchSize', [lambdaFlag]: 'lambda', sinkhornIters: 'sinkhornIters', grad: 'grad', optimizer: 'optimizer', weightDecay: 'weightDecay', seed: 'seed' };
  if (lambdaFlag === 'lambda') map.tol = 'tol';
  const out: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(map)) if (o[flag] !== undefined) out[key] = o[flag];
  return out;
}

/**
 * The one rule by which `fit`, `eval` and `correct --method otlm --val-logits` build the model to
 * fit: the preset (or the defaults, the paper's CIFAR-100-LT settings), the flags over it, and the
 * bias b = −log π exactly when training counts or a training prior are given.
 */
function otlmModel(o: Opts, lambdaFlag: 'lambda' | 'otlmLambda', base: { trainPrior?: Float64Array; targetPrior?: Float64Array; backend: Backend }): OTLM {
  const opts = defined({ ...fitOverrides(o, lambdaFlag), ...base });
  return o.preset ? OTLM.preset(o.preset as OtlmPreset, opts) : new OTLM(opts);
}

/** The flags that shape an OTLM fit in `eval` and `correct` (`fit` has its own, fuller set). */
function otlmFitOptions(c: Command): Command {
  return c
    .addOption(new Option('--preset <name>', "OTLM preset for the fit (the paper's Appendix C settings)").choices(['cifar100-lt', 'imagenet-lt', 'inaturalist']))
    .option('--otlm-lambda <x>', "OTLM's λ, for its fit and its correction (default: the preset's)", hyper('--otlm-lambda', 'lambda'))
    .option('--lr <x>', 'OTLM learning rate', hyper('--lr', 'lr'))
    .option('--iterations <n>', 'OTLM steps', hyper('--iterations', 'iterations'))
    .option('--seed <n>', 'OTLM shuffling seed', hyper('--seed', 'seed'));
}

async function fitProgressBar(ctx: Ctx) {
  let bar: ReturnType<Ctx['progress']> | undefined;
  return {
    on: (e: OtlmProgressEvent, total: number) => {
      bar ??= ctx.progress('fitting OTLM', Math.max(total, 1));
      bar.update(e.step, `loss ${e.loss.toFixed(4)} · marginal err ${e.marginalError.toExponential(1)} · ${e.msPerStep.toFixed(1)} ms/step`);
    },
    stop: () => bar?.stop(),
  };
}

async function runEval(ctx: Ctx, o: Opts): Promise<EvalOutput> {
  const methods = parseMethods(o.methods);
  if (o.model && o.valLogits) throw usageError('give --model or --val-logits, not both');
  if (o.backend === 'tfjs' && (o.model || o.valLogits) && (methods ?? ALL_METHODS).includes('OTLM'))
    throw usageError('--backend tfjs runs OT only; OTLM needs auto, cpu, cuda or reference');
  const inp = await inPhase('input', async (): Promise<EvalInput> => {
    const test = await readLogitsArg(ctx, '--logits', String(o.logits), o.shape as string | undefined);
    const labels = await readLabelsArg(ctx, '--labels', String(o.labels), test.rows, test.cols);
    if (!o.trainCounts) throw usageError('--train-counts is required (training class counts, for LA and the many/medium/few split)');
    const trainCounts = await readPriorArg(ctx, '--train-counts', String(o.trainCounts), test.cols);
    const targetPrior = o.targetPrior ? normalize(await readPriorArg(ctx, '--target-prior', String(o.targetPrior), test.cols)) : undefined;
    let val: Matrix | undefined;
    if (o.valLogits) {
      val = await readLogitsArg(ctx, '--val-logits', String(o.valLogits));
      if (val.cols !== test.cols) throw inputError(`--val-logits: ${o.valLogits}: has ${val.cols} classes but --logits has ${test.cols}`);
    }
    const backend = resolveBackend(ctx, o.backend);
    const model = o.model ? readModelArg('--model', String(o.model), test.cols, backend) : undefined;
    // Without flags OTLM runs with its defaults: the paper's CIFAR-100-LT settings (Appendix C).
    const fit = fitOverrides(o, 'otlmLambda');
    if (o.preset) (fit as Record<string, unknown>).preset = o.preset;
    return {
      test, labels, trainCounts, targetPrior, val, model, methods,
      lambda: o.lambda as number | undefined, maxIter: o.maxIter as number | undefined, tol: o.tol as number | undefined,
      tau: o.tau as number | undefined, backend, fit,
    };
  });
  const bar = await fitProgressBar(ctx);
  inp.onFitProgress = bar.on;
  try {
    ctx.flushNotes();
    return await inPhase('compute', () => evaluateAll(inp));
  } finally {
    bar.stop();
  }
}

function checkFiniteResult(what: string, m: Matrix): void {
  for (let i = 0; i < m.data.length; i++) {
    if (!Number.isFinite(m.data[i]!)) throw runtimeError(`${what} produced a non-finite probability at row ${Math.floor(i / m.cols)}; try a larger --lambda`);
  }
}

/** The flag combinations `correct` refuses before reading anything. */
function checkCorrectFlags(o: Opts): void {
  const method = String(o.method);
  if (o.trainCounts && o.trainPrior) throw usageError('give --train-counts or --train-prior, not both');
  if (o.targetPrior && o.estimatePrior) throw usageError('give --target-prior or --estimate-prior, not both');
  const hasTrain = Boolean(o.trainCounts || o.trainPrior);
  if ((method === 'la' || o.estimatePrior) && !hasTrain) throw usageError(`${o.estimatePrior ? '--estimate-prior' : '--method la'} needs --train-counts or --train-prior`);
  if (method === 'otlm' && !o.model && !o.valLogits) throw usageError('--method otlm needs --model FILE (from `otlm fit`) or --val-logits to fit on');
  if (o.estimatePrior === 'bbse' && !(o.valLogits && o.valLabels)) throw usageError('--estimate-prior bbse needs labeled validation data: --val-logits and --val-labels');
  if (o.json && (o.out === '-' || o.predictionsOut === '-')) throw usageError("--json prints on stdout, so no output may be '-'");
  if (method === 'otlm' && o.backend === 'tfjs') throw usageError('--backend tfjs runs OT only; --method otlm needs auto, cpu, cuda or reference');
}

interface CorrectInputs {
  logits: Matrix;
  k: number;
  trainPrior?: Float64Array;
  targetPrior?: Float64Array;
  val?: Matrix;
  valLabels?: Int32Array;
  model?: OTLM;
  /** From --estimate-prior: the estimate, also the target prior. */
  estimated?: Float64Array;
  backend: Backend;
}

/** --train-counts or --train-prior (π) and --target-prior (μ), normalised; undefined when not given. */
async function readPriorFlags(ctx: Ctx, o: Opts, k: number): Promise<{ trainPrior?: Float64Array; targetPrior?: Float64Array }> {
  let trainPrior: Float64Array | undefined;
  if (o.trainCounts) trainPrior = normalize(await readPriorArg(ctx, '--train-counts', String(o.trainCounts), k));
  if (o.trainPrior) trainPrior = normalize(await readPriorArg(ctx, '--train-prior', String(o.trainPrior), k));
  const targetPrior = o.targetPrior ? normalize(await readPriorArg(ctx, '--target-prior', String(o.targetPrior), k)) : undefined;
  return { trainPrior, targetPrior };
}

/** Reads and checks every input of `correct`, including the model and the estimated prior: their failures are the inputs' fault (exit 2). */
async function readCorrectInputs(ctx: Ctx, o: Opts): Promise<CorrectInputs> {
  const logits = await readLogitsArg(ctx, '--logits', String(o.logits), o.shape as string | undefined);
  const k = logits.cols;
  const { trainPrior, targetPrior: given } = await readPriorFlags(ctx, o, k);
  let targetPrior = given;
  let val: Matrix | undefined;
  let valLabels: Int32Array | undefined;
  if (o.valLogits) {
    val = await readLogitsArg(ctx, '--val-logits', String(o.valLogits));
    if (val.cols !== k) throw inputError(`--val-logits: ${o.valLogits}: has ${val.cols} classes but --logits has ${k}`);
    if (o.valLabels) valLabels = await readLabelsArg(ctx, '--val-labels', String(o.valLabels), val.rows, k);
  }
  const backend = resolveBackend(ctx, o.backend);
  const model = o.model ? readModelArg('--model', String(o.model), k, backend) : undefined;
  let estimated: Float64Array | undefined;
  if (o.estimatePrior) {
    const method = o.estimatePrior as 'em' | 'bbse';
    estimated = tagged(`--estimate-prior ${method}`, () => estimatePrior(logits, trainPrior!, defined({
      method, validation: val && valLabels ? { logits: val, labels: valLabels } : undefined,
    })).prior);
    targetPrior = normalize(estimated);
  }
  return { logits, k, trainPrior, targetPrior, val, valLabels, model, estimated, backend };
}

/** Runs the chosen correction on the test logits. */
async function applyMethod(ctx: Ctx, o: Opts, inp: CorrectInputs, targetPrior: Float64Array | undefined):
  Promise<{ probabilities: Matrix; predictions: Int32Array; detail: Record<string, unknown> }> {
  const method = String(o.method);
  const common = { lambda: o.lambda as number | undefined, maxIter: o.maxIter as number | undefined, tol: o.tol as number | undefined, backend: inp.backend };
  let probabilities: Matrix;
  let predictions: Int32Array;
  const detail: Record<string, unknown> = {};
  if (method === 'la') {
    const r = await logitAdjust(inp.logits, inp.trainPrior!, defined({ tau: (o.tau as number | undefined) ?? 1, targetPrior }));
    ({ probabilities, predictions } = r);
  } else if (method === 'darp') {
    const r = await darp(inp.logits, defined({ targetPrior, maxIter: common.maxIter, tol: common.tol }));
    ({ probabilities, predictions } = r);
    Object.assign(detail, { iterations: r.iterations, converged: r.converged });
  } else if (method === 'ot') {
    const r = await otCorrect(inp.logits, defined({ ...common, targetPrior }));
    ({ probabilities, predictions } = r);
    Object.assign(detail, { iterations: r.iterations, error: r.error, converged: r.converged, classOffsets: Array.from(r.classOffsets) });
  } else {
    let model: OTLM;
    if (inp.model) model = inp.model;
    else {
      model = otlmModel(o, 'otlmLambda', { trainPrior: inp.trainPrior, targetPrior, backend: common.backend });
      const bar = await fitProgressBar(ctx);
      try { await model.fit(inp.val!, { onProgress: (e: OtlmProgressEvent) => bar.on(e, Number(e.steps ?? model.options?.iterations ?? 0)) }); } finally { bar.stop(); }
    }
    const r = await model.correct(inp.logits, defined({ maxIter: common.maxIter, tol: common.tol, targetPrior }));
    ({ probabilities, predictions } = r);
    Object.assign(detail, { iterations: r.iterations, error: r.error, converged: r.converged });
  }
  return { probabilities, predictions, detail };
}

async function cmdCorrect(ctx: Ctx, o: Opts): Promise<void> {
  applyTuned(o);
  const method = String(o.method);
  checkCorrectFlags(o);
  const inputs = ['logits', 'trainCounts', 'trainPrior', 'targetPrior', 'model', 'valLogits', 'valLabels'].map((k) => o[k]).filter((v): v is string => typeof v === 'string');
  if (inputs.filter((s) => s === '-').length > 1) throw usageError("only one input can be '-' (stdin)");
  const force = Boolean(o.force);
  preflightOutputs([
    { option: '--out', spec: o.out as string | undefined, formats: ['npy', 'csv'] },
    { option: '--predictions-out', spec: o.predictionsOut as string | undefined, formats: ['npy', 'csv'] },
  ], inputs, force);

  const inp = await inPhase('input', () => readCorrectInputs(ctx, o));

  ctx.flushNotes();
  const t0 = performance.now();
  const res = await inPhase('compute', async () => {
    const { probabilities, predictions, detail } = await applyMethod(ctx, o, inp, inp.targetPrior);
    checkFiniteResult(`--method ${method}`, probabilities);
    return { probabilities, predictions, detail, targetPrior: inp.targetPrior, estimated: inp.estimated };
  });
  const seconds = (performance.now() - t0) / 1000;

  const outs: PendingOutput[] = [];
  if (o.out) outs.push({ spec: String(o.out), kind: 'matrix', m: res.probabilities });
  if (o.predictionsOut) outs.push({ spec: String(o.predictionsOut), kind: 'vector', v: res.predictions });
  await inPhase('compute', () => writeOutputs(ctx, outs, inputs, force));

  const k = inp.k;
  const marg = new Float64Array(k);
  for (const p of res.predictions) marg[p]! += 1 / res.predictions.length;
  const summary = {
    method, n: inp.logits.rows, k, seconds, ...res.detail,
    targetPrior: res.targetPrior ? Array.from(res.targetPrior) : 'uniform',
    ...(res.estimated ? { estimatedPrior: Array.from(normalize(res.estimated)) } : {}),
    predictedMarginal: Array.from(marg),
    outputs: { probabilities: o.out ?? null, predictions: o.predictionsOut ?? null },
  };
  if (o.json) ctx.out(JSON.stringify(summary, null, 2) + '\n');
  else {
    const extra = res.detail.iterations !== undefined ? `, ${res.detail.iterations} iterations${res.detail.converged === false ? ' (NOT converged)' : ''}` : '';
    ctx.note(`otlm correct: ${method} on ${inp.logits.rows}×${k} logits in ${seconds.toFixed(3)} s${extra}` +
      (o.out ? `; probabilities → ${o.out}` : '') + (o.predictionsOut ? `; predictions → ${o.predictionsOut}` : ''));
  }
}

async function cmdFit(ctx: Ctx, o: Opts): Promise<void> {
  if (o.trainCounts && o.trainPrior) throw usageError('give --train-counts or --train-prior, not both');
  const inputs = ['logits', 'trainCounts', 'trainPrior', 'targetPrior'].map((k) => o[k]).filter((v): v is string => typeof v === 'string');
  const force = Boolean(o.force);
  preflightOutputs([{ option: '--out', spec: String(o.out), formats: ['npz'] }], inputs, force);
  const inp = await inPhase('input', async () => {
    const val = await readLogitsArg(ctx, '--logits', String(o.logits), o.shape as string | undefined);
    return { val, ...(await readPriorFlags(ctx, o, val.cols)) };
  });
  const base = { trainPrior: inp.trainPrior, targetPrior: inp.targetPrior, backend: resolveBackend(ctx, o.backend) };
  const model: OTLM = await inPhase('input', () => otlmModel(o, 'lambda', base));
  const curve: OtlmProgressEvent[] = [];
  const bar = await fitProgressBar(ctx);
  ctx.flushNotes();
  const t0 = performance.now();
  let fitResult: FitResult | undefined;
  try {
    fitResult = await inPhase('compute', () => model.fit(inp.val, {
      onProgress: (e: OtlmProgressEvent) => { curve.push(e); bar.on(e, Number(e.steps ?? model.options?.iterations ?? o.iterations ?? 0)); },
    }));
  } finally {
    bar.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  // Save to a temporary name next to the output, then publish it with the same no-clobber rules as every output.
  const out = String(o.out);
  const tmp = path.join(path.dirname(path.resolve(out)), `.${path.basename(out)}.${process.pid}.${Date.now()}.fit.npz`);
  try {
    await inPhase('compute', () => model.save(tmp));
    const bytes = fs.readFileSync(tmp);
    await inPhase('compute', () => writeOutputs(ctx, [{ spec: out, kind: 'bytes', bytes }], inputs, force));
  } finally {
    try { fs.unlinkSync(tmp); } catch { /* not there */ }
  }
  const last = curve[curve.length - 1];
  const summary = { out, n: inp.val.rows, k: inp.val.cols, steps: curve.length, seconds, backend: fitResult?.backend ?? null, stoppedEarly: fitResult?.stoppedEarly ?? false, firstLoss: curve[0]?.loss ?? null, finalLoss: last?.loss ?? null, finalMarginalError: last?.marginalError ?? null, options: model.options ?? null };
  if (o.json) ctx.out(JSON.stringify(summary, null, 2) + '\n');
  else ctx.note(`otlm fit: ${curve.length} steps in ${seconds.toFixed(2)} s, loss ${summary.firstLoss?.toFixed(4) ?? '?'} → ${summary.finalLoss?.toFixed(4) ?? '?'}; model → ${out}`);
}

async function cmdReport(ctx: Ctx, o: Opts): Promise<void> {
  const useBundled = o.logits === undefined;
  if (!useBundled && !o.labels) throw usageError('--labels is required with --logits');
  const d = bundledData();
  const args: Opts = useBundled
    ? { ...o, logits: d.test, labels: d.testLabels, trainCounts: o.trainCounts ?? d.trainCounts, valLogits: o.valLogits ?? (o.model ? undefined : d.val) }
    : o;
  const inputs = ['logits', 'labels', 'trainCounts', 'targetPrior', 'valLogits', 'model'].map((k) => args[k]).filter((v): v is string => typeof v === 'string');
  const force = Boolean(o.force);
  preflightOutputs([{ option: '--out', spec: String(o.out), formats: ['html'] }], inputs, force);
  if (useBundled) ctx.note(`Data: ${BUNDLED_SOURCE}.`);
  const ev = await runEval(ctx, args);
  const html = await inPhase('compute', () => renderReport(reportDataFrom(ev, {
    title: (o.title as string | undefined) ?? (useBundled ? 'otlm report — Fashion-MNIST-LT' : 'otlm report'),
    source: useBundled ? BUNDLED_SOURCE : `test logits ${String(o.logits)}, labels ${String(o.labels)}`,
    classNames: useBundled ? FMNIST_CLASSES : undefined,
  })));
  await inPhase('compute', () => writeOutputs(ctx, [{ spec: String(o.out), kind: 'bytes', bytes: new TextEncoder().encode(html) }], inputs, force));
  ctx.note(`otlm report: wrote ${String(o.out)} (${(html.length / 1024).toFixed(0)} KiB)`);
}

const FMNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

async function cmdBench(ctx: Ctx, args: string[], _o: Opts): Promise<void> {
  const script = path.join(packageRoot(), 'bench', 'run.js');
  if (!fs.existsSync(script)) throw runtimeError(`the benchmark suite is not in this install (${script} is missing)`);
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--quick', ...args], { cwd: packageRoot(), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (b: Buffer) => ctx.io.stdout.write(b));
    child.stderr.on('data', (b: Buffer) => ctx.io.stderr.write(b));
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  if (code !== 0) throw runtimeError(`the benchmark suite failed (bench/run.js exited with ${code})`);
}
