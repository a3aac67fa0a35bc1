// The browser build's stand-in for src/paths/tfjs/index.ts: the browser entry runs the WebAssembly
// engine and the reference path; backend 'tfjs' is a Node feature of the main entry.
function unavailable(): never {
  throw Object.assign(new Error("otlm: backend 'tfjs' is not part of the browser entry; use 'wasm' (the default) or 'reference'"), {
    code: 'OTLM_ENOTSUP',
  });
}
export const tfjsSinkhorn = unavailable;
export const tfjsOtCorrect = unavailable;
export const tfjsOtlmStep = unavailable;
export const tfjsRuntimeInfo = unavailable;
