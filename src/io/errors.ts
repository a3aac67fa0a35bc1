/**
 * Errors raised by the file io layer. Every message names the file (or `-` for
 * stdin/stdout) and says what was expected, so the CLI can print it as is.
 *
 * `kind` lets callers map errors to exit codes without parsing messages:
 * - `bad-input`: the file's content or a read option is wrong (CLI exit 2)
 * - `not-found`: the input file does not exist (CLI exit 2)
 * - `exists`: the output exists and `force` was not given (CLI exit 2)
 * - `is-input`: the output path is one of the inputs (CLI exit 2)
 * - `io`: the operating system refused (permissions, disk full...) (CLI exit 3)
 */
export type IoErrorKind = 'bad-input' | 'not-found' | 'exists' | 'is-input' | 'io';

export class IoError extends Error {
  readonly kind: IoErrorKind;
  /** The file the error is about (`-` for stdin/stdout). */
  readonly file: string;

  constructor(kind: IoErrorKind, file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IoError';
    this.kind = kind;
    this.file = file;
  }
}

/** Shorthand for a `bad-input` error whose message starts with the file name. */
export function badInput(file: string, what: string): IoError {
  return new IoError('bad-input', file, `${file}: ${what}`);
}
