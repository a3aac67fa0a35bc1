/**
 * The `otlm` command line: `runCli(argv, io)` runs one command against the
 * given streams and resolves to its exit code. It never calls process.exit;
 * bin/otlm.js is the only place that sets the process's exit code.
 *
 * Exit codes (also in `otlm --help`): 0 ok · 1 usage · 2 bad input · 3 runtime.
 * See ./errors.ts for what falls in each class.
 */
import { Command, CommanderError } from 'commander';
import { Ctx, type CliIo, type WritableLike } from './context.js';
import { EXIT_OK, EXIT_USAGE, asCliError } from './errors.js';
import { registerCommands } from './commands.js';
import { packageVersion } from '../native/package-root.js';

export type { CliIo, WritableLike, ReadableLike } from './context.js';
export { EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_RUNTIME, CliError } from './errors.js';

const EPILOG = `
Exit codes:
  0  ok
  1  usage error (unknown command or flag, missing required option, bad flag value)
  2  bad input (missing or corrupt file, wrong shape, NaN/Inf, label count != rows,
     output exists without --force, output equal to an input, output not writable)
  3  runtime error (the engine failed)

Files: .npy, .npz (FILE.npz:NAME), raw .f32 (with --shape ROWS,COLS), .csv; '-' = stdin/stdout.
Set OTLM_DEBUG=1 to print stack traces.`;

function buildProgram(ctx: Ctx): Command {
  const program = new Command('otlm');
  program
    .description('Optimal-transport post-hoc correction for long-tailed classifiers (OT, OTLM, Logit Adjustment, DARP).')
    .version(packageVersion(), '-V, --version')
    .addHelpText('after', EPILOG)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.io.stdout.write(s),
      writeErr: (s) => ctx.io.stderr.write(s),
      outputError: (s, write) => write(`otlm: ${s.replace(/^error: /, 'error: ').trimEnd()}\n`),
    });
  registerCommands(program, ctx, (cmd) => cmd.exitOverride().addHelpText('after', EPILOG));
  return program;
}

/**
 * Runs the otlm CLI with `argv` (the arguments after the program name, e.g.
 * `['eval', '--logits', 'x.npy', ...]`) on the given streams. Resolves to the
 * exit code: 0 ok, 1 usage, 2 bad input, 3 runtime. Never throws, never exits.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  guardClosedPipe(io.stdout);
  guardClosedPipe(io.stderr);
  const ctx = new Ctx(io);
  let program: Command;
  try {
    program = buildProgram(ctx);
  } catch (e) {
    io.stderr.write(`otlm: error: ${(e as Error).message}\n`);
    return 3;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its message (or the help / version).
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const err = asCliError(e, 'compute');
    io.stderr.write(`otlm: error: ${oneLine(err.message)}\n`);
    if (ctx.env.OTLM_DEBUG === '1') {
      let c: unknown = err;
      while (c instanceof Error) {
        io.stderr.write(`${c.stack ?? c.message}\n`);
        c = c.cause;
        if (c) io.stderr.write('caused by: ');
      }
    }
    return err.exitCode;
  }
}

const guarded = new WeakSet<object>();

/**
 * A reader that goes away (`otlm correct --out - | head -c 100`) ends the output quietly, as in
 * other Unix tools: EPIPE, and the failed writes after it, are ignored without a message, and the
 * run keeps its exit code. The listener stays for the stream's life, because the error of the last
 * write arrives after runCli has returned; other stream errors are rethrown as if it were absent.
 */
function guardClosedPipe(s: WritableLike): void {
  const em = s as unknown as Partial<NodeJS.EventEmitter>;
  if (typeof em.on !== 'function' || guarded.has(s)) return;
  guarded.add(s);
  em.on('error', (e: NodeJS.ErrnoException) => {
    if (e?.code !== 'EPIPE' && e?.code !== 'ERR_STREAM_DESTROYED') throw e;
  });
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

