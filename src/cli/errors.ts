/**
 * Exit codes of the `otlm` command line and the mapping from errors to them.
 *
 *   0  ok
 *   1  usage: unknown command or flag, missing required option, bad flag value
 *   2  bad input: missing or corrupt file, wrong shape, NaN/Inf, label count ≠ rows,
 *      an output that exists (without --force), an output equal to an input,
 *      an output that cannot be created (no such directory, no permission)
 *   3  runtime: the engine failed (native error, non-finite result, I/O failure mid-write)
 *
 * Errors are printed as one line `otlm: error: ...` (stack traces only with OTLM_DEBUG=1).
 */
import { IoError } from '../io/errors.js';

export const EXIT_OK = 0;
export const EXIT_USAGE = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_RUNTIME = 3;

export type ExitCode = typeof EXIT_OK | typeof EXIT_USAGE | typeof EXIT_BAD_INPUT | typeof EXIT_RUNTIME;

/** An error the CLI raises on purpose, carrying its exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  constructor(exitCode: ExitCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export const usageError = (msg: string): CliError => new CliError(EXIT_USAGE, msg);
export const inputError = (msg: string, cause?: unknown): CliError => new CliError(EXIT_BAD_INPUT, msg, { cause });
export const runtimeError = (msg: string, cause?: unknown): CliError => new CliError(EXIT_RUNTIME, msg, { cause });

/**
 * Exit code for an error thrown in a given phase: while reading and checking
 * inputs everything is the input's fault (2); while computing, only io's
 * input-kind errors are, and the rest is a runtime failure (3).
 */
export function exitCodeOf(e: unknown, phase: 'input' | 'compute'): ExitCode {
  if (e instanceof CliError) return e.exitCode;
  if (e instanceof IoError) return e.kind === 'io' && phase === 'compute' ? EXIT_RUNTIME : EXIT_BAD_INPUT;
  if (phase === 'input') return EXIT_BAD_INPUT;
  return EXIT_RUNTIME;
}

/** Wraps whatever was thrown into a CliError with the code of its phase. */
export function asCliError(e: unknown, phase: 'input' | 'compute'): CliError {
  if (e instanceof CliError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new CliError(exitCodeOf(e, phase), msg, { cause: e });
}

/** Runs `fn`; anything it throws becomes a CliError of the phase's exit code. */
export async function inPhase<T>(phase: 'input' | 'compute', fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw asCliError(e, phase);
  }
}
