// A fixed pool of worker threads for the CPU backend.
// Work is split into tasks whose boundaries never depend on the thread count,
// so reductions merged in task order are bit-identical for any `threads`.
#pragma once
#include <cstdint>
#include <functional>

namespace otlm::cpu {

// Number of hardware threads (>= 1); OTLM_THREADS in the environment overrides it.
int default_threads();

// Runs fn(task) for task in [0, count) on up to `threads` threads (0 = default_threads()),
// the caller included. Returns when all tasks are done. Tasks must not throw.
void parallel_for(int64_t count, int threads, const std::function<void(int64_t task)>& fn);

}  // namespace otlm::cpu
