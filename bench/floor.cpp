// Memory floor for the Sinkhorn benchmark: the time of one streaming read of the same bytes
// as the N×K float32 matrix (one pass over it is the least any Sinkhorn iteration must do).
// Each thread sums its own contiguous slice with independent accumulators so the loop is
// bandwidth-bound, not latency-bound. Compiled and run by bench/run.js.
// Usage: floor BYTES THREADS REPS  -> one JSON line {"bytes", "threads", "seconds" (best pass), "median", "gbps"}
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: floor BYTES THREADS REPS\n");
    return 2;
  }
  const size_t n = size_t(std::atoll(argv[1])) / sizeof(float);
  const int threads = std::max(1, std::atoi(argv[2]));
  const int reps = std::max(1, std::atoi(argv[3]));
  std::vector<float> a(n);
  for (size_t i = 0; i < n; ++i) a[i] = float(i & 1023) * 1e-3f;  // touch every page
  std::vector<double> partial(size_t(threads) * 8);
  std::vector<double> times;
  double sink = 0;
  for (int r = 0; r < reps + 1; ++r) {  // first pass is a warm-up
    const double t0 = now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t lo = n * size_t(t) / size_t(threads), hi = n * size_t(t + 1) / size_t(threads);
        float s[16] = {0};
        size_t i = lo;
        for (; i + 16 <= hi; i += 16)
          for (int u = 0; u < 16; ++u) s[u] += a[i + u];
        float tot = 0;
        for (int u = 0; u < 16; ++u) tot += s[u];
        for (; i < hi; ++i) tot += a[i];
        partial[size_t(t) * 8] = tot;  // padded: no false sharing
      });
    }
    for (auto& th : pool) th.join();
    const double dt = now() - t0;
    for (int t = 0; t < threads; ++t) sink += partial[size_t(t) * 8];
    if (r > 0) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  // The floor is what the hardware can do: the best pass (the median is printed too).
  const double best = times.front(), med = times[times.size() / 2];
  std::printf("{\"bytes\":%zu,\"threads\":%d,\"reps\":%d,\"seconds\":%.9g,\"median\":%.9g,\"gbps\":%.6g,\"checksum\":%.6g}\n",
              n * sizeof(float), threads, reps, best, med, double(n * sizeof(float)) / best / 1e9, sink);
  return 0;
}
