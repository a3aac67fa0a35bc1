// The threaded WebAssembly engine's extra exports and its allocator lock (lib/wasm/otlm-mt.wasm only;
// scripts/build-wasm.sh compiles this file into that variant alone). docs/architecture.md,
// "WebAssembly engine", says how the host starts the worker instances.
//
// The variant is built without pthreads (Emscripten's pthread runtime needs its JavaScript glue):
// the objects are compiled with the atomics and bulk-memory features, linked on a shared imported
// memory with the single-threaded system libraries. Of those libraries the kernels' tasks reach
// only the allocator (thread_local scratch vectors grow inside tasks), so malloc and its family are
// replaced here by the same dlmalloc behind a spin lock. A lock that waits would be no better: the
// calling thread may be a browser's main thread, which must not block, and holds are short.
#include <cerrno>
#include <cstddef>

extern "C" {
// dlmalloc's own entry points (weak aliases of the same functions in Emscripten's libc).
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* emscripten_builtin_memalign(size_t, size_t);
// Synthesised by wasm-ld for a shared memory with TLS: points this instance's TLS at `block` and
// copies the initial values there.
void __wasm_init_tls(void* block);
// native/cpu/thread_pool.cpp (its OTLM_WASM_THREADS part).
void otlm_wasm_pool_set_threads(int n);
void otlm_wasm_pool_set_blocking(int may_block);
int* otlm_wasm_pool_workers();
int otlm_wasm_pool_worker_tasks();
void otlm_wasm_pool_loop();
void otlm_wasm_pool_quit();
void otlm_wasm_pool_worker_failed();
void otlm_wasm_pool_test_trap();
}

namespace {
int g_heap_lock = 0;
struct HeapLock {
  HeapLock() {
    while (__atomic_exchange_n(&g_heap_lock, 1, __ATOMIC_ACQUIRE))
      while (__atomic_load_n(&g_heap_lock, __ATOMIC_RELAXED)) {
      }
  }
  ~HeapLock() { __atomic_store_n(&g_heap_lock, 0, __ATOMIC_RELEASE); }
};
}  // namespace

extern "C" {
void* malloc(size_t n) {
  HeapLock g;
  return __libc_malloc(n);
}
void free(void* p) {
  if (!p) return;
  HeapLock g;
  __libc_free(p);
}
void* calloc(size_t a, size_t b) {
  HeapLock g;
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  HeapLock g;
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  HeapLock g;
  return emscripten_builtin_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1))) return EINVAL;
  void* p = memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}

#define OTLM_WASM_EXPORT(name) extern "C" __attribute__((used, export_name(#name)))

// The TLS block a worker instance needs (the host allocates it, zeroed, with malloc).
OTLM_WASM_EXPORT(otlm_wasm_tls_size) int otlm_wasm_tls_size() { return int(__builtin_wasm_tls_size()); }
OTLM_WASM_EXPORT(otlm_wasm_tls_align) int otlm_wasm_tls_align() { return int(__builtin_wasm_tls_align()); }
// The calling instance's own TLS block (its __tls_base starts at 0, where nothing else lives, but
// a block of its own is tidier), set once after _initialize, before any call.
OTLM_WASM_EXPORT(otlm_wasm_thread_init) void otlm_wasm_thread_init(void* tls) { __wasm_init_tls(tls); }
// A worker instance, once its stack pointer is set (stackRestore): its own TLS, then the pool loop,
// which returns after otlm_wasm_pool_quit().
OTLM_WASM_EXPORT(otlm_wasm_worker_run) void otlm_wasm_worker_run(void* tls) {
  __wasm_init_tls(tls);
  otlm_wasm_pool_loop();
}
OTLM_WASM_EXPORT(otlm_wasm_set_threads) void otlm_wasm_set_threads(int n) { otlm_wasm_pool_set_threads(n); }
// Whether the calling thread may block in memory.atomic.wait while its workers finish (Node, a
// Web Worker: yes; a browser's main thread: no, it only spins).
OTLM_WASM_EXPORT(otlm_wasm_set_blocking) void otlm_wasm_set_blocking(int may_block) { otlm_wasm_pool_set_blocking(may_block); }
// Address of the count of workers inside the loop (an int32 the host may Atomics.wait on).
OTLM_WASM_EXPORT(otlm_wasm_workers) int* otlm_wasm_workers() { return otlm_wasm_pool_workers(); }
// Tasks the workers have run since the start (a host's check that the pool takes part).
OTLM_WASM_EXPORT(otlm_wasm_worker_tasks) int otlm_wasm_worker_tasks() { return otlm_wasm_pool_worker_tasks(); }
OTLM_WASM_EXPORT(otlm_wasm_quit) void otlm_wasm_quit() { otlm_wasm_pool_quit(); }
// Called by the host on a worker instance whose otlm_wasm_worker_run threw (a trap).
OTLM_WASM_EXPORT(otlm_wasm_worker_failed) void otlm_wasm_worker_failed() { otlm_wasm_pool_worker_failed(); }
// Tests only: the next task a worker takes traps (how test/wasm checks that a lost worker fails
// its caller's call instead of hanging it).
OTLM_WASM_EXPORT(otlm_wasm_test_trap) void otlm_wasm_test_trap() { otlm_wasm_pool_test_trap(); }
