// The WebAssembly engine suite (suite.ts) on the single-threaded build, lib/wasm/otlm.wasm.
import './single-thread-env.js';

import { wasmSuite } from './suite.js';

wasmSuite('single');
