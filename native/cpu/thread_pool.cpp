#include "thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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

// Tasks are claimed dynamically from an atomic counter; determinism comes from the
// task decomposition (fixed by the caller), not from which thread runs a task.
void run_tasks(std::atomic<int64_t>& next, int64_t count, const std::function<void(int64_t)>& fn) {
  for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) fn(i);
}

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
    std::atomic<int64_t> next{0};
    {
      std::lock_guard<std::mutex> g(mu_);
      fn_ = &fn;
      next_ = &next;
      count_ = count;
      wanted_ = threads - 1;
      joined_.store(0, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    tl_in_task = true;
    run_tasks(next, count, fn);
    tl_in_task = false;
    // Wait for the workers that joined this job; latecomers see wanted_ reached and leave.
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
      workers_.emplace_back([this] { loop(); });
      workers_.back().detach();  // the pool lives for the whole process
    }
  }
  void loop() {
    uint64_t seen = gen_.load(std::memory_order_acquire);
    for (;;) {
      // spin ~50 µs, then sleep
      for (int s = 0; s < 20000 && gen_.load(std::memory_order_acquire) == seen; ++s) cpu_relax();
      const std::function<void(int64_t)>* fn;
      std::atomic<int64_t>* next;
      int64_t count;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        seen = gen_.load(std::memory_order_acquire);
        if (!fn_ || joined_.load(std::memory_order_relaxed) >= wanted_) continue;
        joined_.fetch_add(1, std::memory_order_acq_rel);
        fn = fn_;
        next = next_;
        count = count_;
      }
      tl_in_task = true;
      run_tasks(*next, count, *fn);
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
  std::atomic<int64_t>* next_ = nullptr;
  int64_t count_ = 0;
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
  std::atomic<int64_t> next{0};
  std::vector<std::thread> extra;
  extra.reserve(size_t(t - 1));
  for (int i = 1; i < t; ++i)
    extra.emplace_back([&] {
      tl_in_task = true;
      run_tasks(next, count, fn);
    });
  tl_in_task = true;
  run_tasks(next, count, fn);
  tl_in_task = false;
  for (auto& th : extra) th.join();
}

}  // namespace otlm::cpu
