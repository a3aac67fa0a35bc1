#include "thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__EMSCRIPTEN__) && defined(OTLM_WASM_THREADS)
namespace otlm::cpu {

// The threaded WebAssembly engine (lib/wasm/otlm-mt.wasm, scripts/build-wasm.sh): no pthreads. The
// host runs instances of the same module on one shared memory, one per Web/Node worker, each
// parked in otlm_wasm_pool_loop() below; the calling instance publishes a job in this shared
// state and takes part in it. C++ globals live in the shared memory, so every instance sees the
// same pool; thread_local is real (per instance) TLS. docs/architecture.md, "WebAssembly engine".
//
// Joining is a store-then-check handshake on sequentially consistent atomics (all WebAssembly
// atomics are): worker w announces the job it means to join in g_active[w], then checks that the
// job is still open; the caller closes the job, then waits until no worker announces it. Either
// the worker sees the job open (and the caller then sees its announcement and waits for it) or
// the caller's close comes first (and the worker withdraws). No join counts to get wrong.
namespace {

constexpr int kMaxWorkers = 64;
constexpr int kSpin = 1 << 16;  // atomic loads a parked worker (or the waiting caller) spins before it sleeps

std::atomic<int> g_threads{1};                     // default thread count, set by the host
std::atomic<int> g_workers{0};                     // workers inside the loop
std::atomic<int> g_ids{0};                         // worker ids handed out
std::atomic<int> g_quit{0};                        // the host asked the workers to leave
std::atomic<int> g_may_block{0};                   // the caller may memory.atomic.wait (not a browser's main thread)
std::atomic<uint32_t> g_gen{0};                    // the latest job's number (bumped for quit too)
std::atomic<uint32_t> g_open{0};                   // the job open for joining, 0 = none
std::atomic<uint32_t> g_active[kMaxWorkers] = {};  // the job worker w is in (or about to check), 0 = none
std::atomic<int> g_busy{0};                        // one job at a time
std::atomic<int> g_wanted{0};                      // workers 0 .. g_wanted - 1 may join the current job
std::atomic<int64_t> g_next{0};
std::atomic<int> g_worker_tasks{0};  // tasks the workers ran, in all (the host's check that they work)
std::atomic<int> g_lost{0};          // workers that failed (trapped) inside the loop
std::atomic<int> g_test_trap{0};     // tests: the next task a worker takes traps (otlm_wasm_pool_test_trap)
thread_local int tl_worker = -1;     // this instance's worker id, -1 on the calling instance
int64_t g_count = 0;
const std::function<void(int64_t)>* g_fn = nullptr;
thread_local bool tl_in_task = false;  // nested parallel_for runs inline

int* addr(std::atomic<int>& a) { return reinterpret_cast<int*>(&a); }
int* addr(std::atomic<uint32_t>& a) { return reinterpret_cast<int*>(&a); }

}  // namespace

int default_threads() { return g_threads.load(); }

void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
  if (count <= 0) return;
  int t = threads > 0 ? threads : default_threads();
  if (t > count) t = int(count);
  const int workers = g_workers.load();
  if (t > workers + 1) t = workers + 1;
  int idle = 0;
  if (t <= 1 || tl_in_task || !g_busy.compare_exchange_strong(idle, 1)) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  const int lost = g_lost.load();
  uint32_t job = g_gen.load() + 1;
  if (job == 0) job = 1;  // 0 means "none"
  g_fn = &fn;
  g_count = count;
  g_next.store(0);
  g_wanted.store(t - 1);
  g_open.store(job);
  g_gen.store(job);
  __builtin_wasm_memory_atomic_notify(addr(g_gen), unsigned(t - 1));
  tl_in_task = true;
  for (int64_t i; (i = g_next.fetch_add(1)) < count;) fn(i);
  tl_in_task = false;
  // Close the job, then wait for every worker that announced it: spin, and after as long as a
  // worker spins, sleep in 1 ms waits where the host allows it (a browser's main thread may not
  // block), so that a preempted worker can get the core back.
  g_open.store(0);
  const int ids = g_ids.load();
  for (int w = 0; w < ids && w < kMaxWorkers; ++w)
    for (int s = 0; g_active[w].load() == job; ++s)
      if (s >= kSpin && g_may_block.load()) __builtin_wasm_memory_atomic_wait32(addr(g_active[w]), int(job), 1000000);
  g_fn = nullptr;
  g_busy.store(0);
  // A worker that trapped in this job left some of its tasks undone (otlm_wasm_pool_worker_failed
  // released its announcement, so the wait above ended): the call fails rather than return a
  // partial result. The exports turn the exception into OTLM_EINTERNAL.
  if (g_lost.load() != lost)
    throw std::runtime_error("a worker thread of the WebAssembly engine failed during this call (see stderr)");
}

}  // namespace otlm::cpu

// The host's side (exported by native/wasm/threads.cpp).
extern "C" void otlm_wasm_pool_set_threads(int n) { otlm::cpu::g_threads.store(n > 0 ? n : 1); }
extern "C" void otlm_wasm_pool_set_blocking(int may_block) { otlm::cpu::g_may_block.store(may_block ? 1 : 0); }
extern "C" int* otlm_wasm_pool_workers() { return otlm::cpu::addr(otlm::cpu::g_workers); }
extern "C" int otlm_wasm_pool_worker_tasks() { return otlm::cpu::g_worker_tasks.load(); }

// A worker instance's whole life: joins jobs until otlm_wasm_pool_quit().
extern "C" void otlm_wasm_pool_loop() {
  using namespace otlm::cpu;
  const int w = g_ids.fetch_add(1);
  if (w >= kMaxWorkers) return;  // more workers than the pool tracks: this one stays out
  tl_worker = w;
  std::atomic<uint32_t>& active = g_active[w];
  g_workers.fetch_add(1);
  __builtin_wasm_memory_atomic_notify(addr(g_workers), ~0u);
  uint32_t seen = g_gen.load();
  for (;;) {
    for (int s = 0; s < kSpin && g_gen.load() == seen; ++s) {
    }
    // Sleep in 20 ms slices rather than indefinitely (a parked thread then still answers V8's
    // interrupts, e.g. for the growth of the shared memory).
    if (g_gen.load() == seen) __builtin_wasm_memory_atomic_wait32(addr(g_gen), int(seen), 20000000);
    const uint32_t job = g_gen.load();
    if (job == seen) continue;
    seen = job;
    if (g_quit.load()) break;
    if (w >= g_wanted.load()) continue;
    active.store(job);
    if (g_open.load() == job) {
      tl_in_task = true;
      const int64_t count = g_count;
      const std::function<void(int64_t)>& fn = *g_fn;
      int ran = 0;
      for (int64_t i; (i = g_next.fetch_add(1)) < count; ++ran) {
        if (g_test_trap.load(std::memory_order_relaxed) && g_test_trap.exchange(0)) __builtin_trap();
        fn(i);
      }
      tl_in_task = false;
      g_worker_tasks.fetch_add(ran);
    }
    active.store(0);
    if (g_may_block.load()) __builtin_wasm_memory_atomic_notify(addr(active), 1);
  }
  g_workers.fetch_sub(1);
  __builtin_wasm_memory_atomic_notify(addr(g_workers), ~0u);
}

// The host calls this on a worker instance whose loop threw (a trap): the worker leaves the pool
// and withdraws from the job it was in, and that job's caller fails instead of waiting forever.
extern "C" void otlm_wasm_pool_worker_failed() {
  using namespace otlm::cpu;
  if (tl_worker < 0 || tl_worker >= kMaxWorkers) return;
  g_lost.fetch_add(1);
  g_workers.fetch_sub(1);
  g_active[tl_worker].store(0);
  __builtin_wasm_memory_atomic_notify(addr(g_active[tl_worker]), ~0u);
  tl_worker = -1;
}
extern "C" void otlm_wasm_pool_test_trap() { otlm::cpu::g_test_trap.store(1); }

extern "C" void otlm_wasm_pool_quit() {
  using namespace otlm::cpu;
  g_quit.store(1);
  g_gen.fetch_add(1);
  __builtin_wasm_memory_atomic_notify(addr(g_gen), ~0u);
}

#else
namespace otlm::cpu {

// A WebAssembly build without threads (scripts/build-wasm.sh) runs every job on the caller.
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define OTLM_SINGLE_THREADED 1
#else
#define OTLM_SINGLE_THREADED 0
#endif

int default_threads() {
  if (OTLM_SINGLE_THREADED) return 1;
  if (const char* env = std::getenv("OTLM_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return v;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// A job's tasks in one contiguous home range per participant (the caller is 0, pool worker w is
// w + 1), each claimed through its own counter; a participant that has emptied its range takes
// tasks from the others'. The same thread gets the same range job after job, so the rows a pass
// touches stay in the cache of the core that touched them in the pass before (with one shared
// counter, a 5000×10 OTLM backward pass read about half its rows from the other core's cache).
// Determinism comes from the task decomposition (fixed by the caller), not from who runs a task.
class Ranges {
 public:
  Ranges(int64_t count, int parts) : n_(parts < kMax ? parts : kMax) {
    for (int s = 0; s < n_; ++s) {
      slot_[s].next.store(count * s / n_, std::memory_order_relaxed);
      slot_[s].end = count * (s + 1) / n_;
    }
  }
  void run(int home, const std::function<void(int64_t)>& fn) {
    for (int q = 0; q < n_; ++q) {
      Slot& s = slot_[(home + q) % n_];
      for (int64_t i; (i = s.next.fetch_add(1, std::memory_order_relaxed)) < s.end;) fn(i);
    }
  }

 private:
  static constexpr int kMax = 64;
  struct alignas(64) Slot {  // a line each: the counters are hot
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  int n_;
  Slot slot_[kMax];
};

thread_local bool tl_in_task = false;  // nested parallel_for runs inline

// A persistent pool: starting threads per call costs ~100 µs, more than a whole
// Sinkhorn iteration on small inputs. Workers spin briefly after a job (the next
// one usually follows within microseconds), then sleep on a condition variable.
class Pool {
 public:
  // Runs one job; returns false when the pool is busy with another caller's job.
  bool run(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
    std::unique_lock<std::mutex> job_lock(job_mu_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    grow(threads - 1);
    Ranges ranges(count, threads);
    {
      std::lock_guard<std::mutex> g(mu_);
      fn_ = &fn;
      ranges_ = &ranges;
      wanted_ = threads - 1;
      joined_.store(0, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    tl_in_task = true;
    ranges.run(0, fn);
    tl_in_task = false;
    // Wait for the workers that joined this job; latecomers see the job closed and leave.
    for (;;) {
      int j = joined_.load(std::memory_order_acquire);
      if (done_.load(std::memory_order_acquire) == j) {
        // Close the job: no worker may join after this point.
        std::lock_guard<std::mutex> g(mu_);
        if (done_.load(std::memory_order_acquire) == joined_.load(std::memory_order_acquire)) {
          wanted_ = 0;
          fn_ = nullptr;
          break;
        }
      }
      cpu_relax();
    }
    return true;
  }

 private:
  void grow(int n) {
    while (int(workers_.size()) < n) {
      const int id = int(workers_.size());
      workers_.emplace_back([this, id] { loop(id); });
      workers_.back().detach();  // the pool lives for the whole process
    }
  }
  // Worker `id` joins the jobs that want more than id workers, with home range id + 1.
  void loop(int id) {
    uint64_t seen = gen_.load(std::memory_order_acquire);
    for (;;) {
      // spin ~50 µs, then sleep
      for (int s = 0; s < 20000 && gen_.load(std::memory_order_acquire) == seen; ++s) cpu_relax();
      const std::function<void(int64_t)>* fn;
      Ranges* ranges;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        seen = gen_.load(std::memory_order_acquire);
        if (!fn_ || id >= wanted_) continue;
        joined_.fetch_add(1, std::memory_order_acq_rel);
        fn = fn_;
        ranges = ranges_;
      }
      tl_in_task = true;
      ranges->run(id + 1, *fn);
      tl_in_task = false;
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  std::mutex job_mu_;  // one job at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> joined_{0}, done_{0};
  const std::function<void(int64_t)>* fn_ = nullptr;
  Ranges* ranges_ = nullptr;
  int wanted_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: no teardown race at process exit
  return *p;
}

}  // namespace

void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
  if (count <= 0) return;
  int t = threads > 0 ? threads : default_threads();
  if (t > count) t = int(count);
  if (t <= 1 || tl_in_task || OTLM_SINGLE_THREADED) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  if (pool().run(count, t, fn)) return;
  // Another caller (e.g. a second async solve) holds the pool: use one-off threads.
  Ranges ranges(count, t);
  std::vector<std::thread> extra;
  extra.reserve(size_t(t - 1));
  for (int i = 1; i < t; ++i)
    extra.emplace_back([&ranges, &fn, i] {
      tl_in_task = true;
      ranges.run(i, fn);
    });
  tl_in_task = true;
  ranges.run(0, fn);
  tl_in_task = false;
  for (auto& th : extra) th.join();
}

}  // namespace otlm::cpu
#endif  // OTLM_WASM_THREADS
