#include "thread_pool.h"

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

namespace otlm::cpu {

int default_threads() {
  if (const char* env = std::getenv("OTLM_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return v;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

// Simple version: threads are started per call. Tasks are claimed dynamically;
// determinism comes from the task decomposition, not from which thread runs a task.
void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
  if (count <= 0) return;
  int t = threads > 0 ? threads : default_threads();
  if (t > count) t = int(count);
  if (t <= 1) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (int i = 1; i < t; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

}  // namespace otlm::cpu
