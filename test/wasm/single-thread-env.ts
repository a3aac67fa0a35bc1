// Imported first by wasm-single.test.ts: OTLM_THREADS=1 before anything loads the engine, so the
// single-threaded build (lib/wasm/otlm.wasm) is the one that runs in this test process.
process.env.OTLM_THREADS = '1';
