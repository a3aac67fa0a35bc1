// Whether the native CPU Sinkhorn can run here; the reason when not (native tests skip and print it).
import { sinkhornSync } from '../../src/methods/sinkhorn.js';
import { loadWasm } from '../../src/native/wasm-node.js';
import { mulberry32 } from '../../src/train/batches.js';

export function nativeSinkhornUnavailable(): string | null {
  try {
    sinkhornSync({ data: new Float32Array([0, 1, 1, 0]), rows: 2, cols: 2 }, { backend: 'cpu' });
    return null;
  } catch (e) {
    return `native CPU Sinkhorn unavailable: ${(e as Error).message}`;
  }
}

/** Seeded PRNG in [0, 1): the trainer's own mulberry32, so tests are reproducible. */
export const rng = mulberry32;

/** Head-biased logits: Gaussian noise × scale, a margin on a "true" class, plus log of a skewed prior. */
export function longTailedLogits(seed: number, n: number, k: number, scale = 1.5): Float32Array {
  const u = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(u() + 1e-300)) * Math.cos(2 * Math.PI * u());
  const prior = Array.from({ length: k }, (_, j) => Math.exp(-j / Math.max(1, k / 3)));
  const z = prior.reduce((s, v) => s + v, 0);
  const x = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const y = Math.floor(u() ** 2 * k);
    for (let j = 0; j < k; j++) x[i * k + j] = gauss() * scale + Math.log(prior[j] / z) + (j === y ? 2 * scale : 0);
  }
  return x;
}

/**
 * Whether the WebAssembly engine (lib/wasm/otlm.wasm, `npm run build:wasm`) loads; the reason
 * when not. Under CI (which installs Emscripten) a missing engine is a failure, not a skip.
 */
export function wasmUnavailable(): string | null {
  try {
    loadWasm();
    return null;
  } catch (e) {
    if (process.env.CI) throw e;
    return (e as Error).message;
  }
}
