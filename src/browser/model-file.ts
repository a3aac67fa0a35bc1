// The browser build's stand-in for src/train/model-file.ts: OTLM.save/OTLM.load read and write
// files, which a browser does not have (use model.weights / setWeights and your own storage).
export { MODEL_FORMAT, MODEL_VERSION } from '../train/model-format.js';

function noFiles(what: string): never {
  throw Object.assign(new Error(`otlm: ${what} needs a file system; in a browser keep model.weights (a Float32Array) yourself`), {
    code: 'OTLM_ENOTSUP',
  });
}
export function writeModel(): never {
  return noFiles('OTLM.save');
}
export function readModel(): never {
  return noFiles('OTLM.load');
}
