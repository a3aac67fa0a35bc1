/** Thrown when the addon cannot be loaded; the message says what was tried and what to run. */
export class NativeLoadError extends Error {
  readonly tried: string[];
  constructor(message: string, tried: string[], cause?: unknown) {
    super(message, { cause });
    this.name = 'NativeLoadError';
    this.tried = tried;
  }
}
