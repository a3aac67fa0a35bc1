// The browser build's stand-in for src/native/package-root.ts (no file system: the version is
// compiled in by scripts/build-browser.mjs).
declare const __OTLM_VERSION__: string;

export function packageVersion(): string {
  return __OTLM_VERSION__;
}
export function packageRoot(): string {
  throw new Error('otlm: no package directory in a browser');
}
