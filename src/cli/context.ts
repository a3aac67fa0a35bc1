/** The streams a CLI run talks to, and small helpers over them. */
import { SingleBar } from 'cli-progress';

/** Anything with `write(string | bytes)`: process.stdout, a PassThrough, a test sink. */
export interface WritableLike {
  write(chunk: string | Uint8Array): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** A readable stream of bytes (process.stdin or any Node Readable). */
export interface ReadableLike {
  [Symbol.asyncIterator](): AsyncIterator<unknown>;
}

/** What `runCli` needs from its host. */
export interface CliIo {
  stdout: WritableLike;
  stderr: WritableLike;
  /** Read when an input is `-`. */
  stdin?: ReadableLike;
  /** Whether stderr is an interactive terminal (progress bars); default `stderr.isTTY`. */
  isTTY?: boolean;
  /** Environment (OTLM_DEBUG...); default process.env. */
  env?: Record<string, string | undefined>;
}

export class Ctx {
  readonly io: CliIo;
  quiet = false;
  verbose = false;
  private stdinBytes?: Uint8Array;

  constructor(io: CliIo) {
    this.io = io;
  }

  get env(): Record<string, string | undefined> {
    return this.io.env ?? process.env;
  }

  get tty(): boolean {
    return this.io.isTTY ?? Boolean(this.io.stderr.isTTY);
  }

  out(text: string): void {
    this.io.stdout.write(text);
  }

  /** A human-facing note on stderr (silenced by --quiet). */
  note(text: string): void {
    if (!this.quiet) this.io.stderr.write(text.endsWith('\n') ? text : text + '\n');
  }

  private later: string[] = [];

  /** A note for when the work starts (flushNotes): a run that fails on its inputs prints only the error. */
  noteLater(text: string): void {
    this.later.push(text);
  }

  flushNotes(): void {
    for (const t of this.later.splice(0)) this.note(t);
  }

  /** All of stdin, read once (several `-` inputs would share it, which the caller forbids). */
  async stdin(): Promise<Uint8Array> {
    if (this.stdinBytes) return this.stdinBytes;
    const s = this.io.stdin;
    if (!s) throw new Error("'-' reads standard input, but none was given to this run");
    const parts: Uint8Array[] = [];
    for await (const chunk of s) {
      parts.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : (chunk as Uint8Array));
    }
    const total = parts.reduce((n, p) => n + p.length, 0);
    const all = new Uint8Array(total);
    let off = 0;
    for (const p of parts) { all.set(p, off); off += p.length; }
    this.stdinBytes = all;
    return all;
  }

  /**
   * A progress bar on stderr when it is a terminal and not --quiet; otherwise
   * a no-op. `total` steps; `update(value, {loss})`.
   */
  progress(label: string, total: number): Progress {
    if (this.quiet || !this.tty) return NO_PROGRESS;
    const bar = new SingleBar({
      stream: this.io.stderr as unknown as NodeJS.WritableStream,
      format: `${label} {bar} {value}/{total} | {info}`,
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: true,
      clearOnComplete: false,
      // The host said it is a terminal even when the stream does not know it (embedding).
      noTTYOutput: !this.io.stderr.isTTY,
      notTTYSchedule: 250,
      etaBuffer: 20,
    });
    bar.start(total, 0, { info: '' });
    return {
      update: (v, info) => bar.update(v, { info: info ?? '' }),
      stop: () => bar.stop(),
    };
  }
}

export interface Progress {
  update(value: number, info?: string): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update() {}, stop() {} };
