// Microbenchmark of the CPU OTLM step (issue 4): one trainer step (GEMM, log-softmax, T Sinkhorn
// iterations, backward, Adam) at the paper's ImageNet-LT shape B = 10000, K = 1000, T = 7, and the
// GEMM alone on that shape. Peer: bench/peers/torch_otlm_step.py (PyTorch-CPU autograd).
// Usage: bench_otlm_cpu [--json] [--b N] [--k K] [--t T] [--reps R] [--threads N] [--gemm builtin]
//   --gemm builtin: the step runs the builtin GEMM even where OpenBLAS is linked (gemm_set_prefer_builtin).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <sys/resource.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu_internal.h"
#include "gemm_builtin.h"
#include "otlm/otlm.h"
#include "otlm_kernels.h"
#include "thread_pool.h"

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// Process CPU time (all threads): under contention from other processes it still shows the work done.
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int64_t B = 10000, K = 1000;
  int T = 7, reps = 5, threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoll(argv[++i]) : 0; };
    if (a == "--json") json = true;
    else if (a == "--b") B = next();
    else if (a == "--k") K = next();
    else if (a == "--t") T = int(next());
    else if (a == "--reps") reps = int(next());
    else if (a == "--threads") threads = int(next());
    else if (a == "--gemm" && i + 1 < argc && std::string(argv[i + 1]) == "builtin") {
      otlm::cpu::gemm_set_prefer_builtin(true);
      ++i;
    }
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const int nthreads = threads > 0 ? threads : otlm::cpu::default_threads();
  const otlm_backend* be = otlm_cpu_backend();
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd(0, 2);
  std::vector<float> phi(static_cast<size_t>(B * K));
  for (auto& x : phi) x = nd(rng);
  std::vector<double> mu(size_t(K), 1.0 / double(K));
  std::vector<float> bias(static_cast<size_t>(K));
  for (auto& x : bias) x = 0.3f * nd(rng);
  otlm_error err{};

  // GEMM alone: Φ (B×K) · W (K×K)
  std::vector<float> w(static_cast<size_t>(K * K)), c(size_t(B * K));
  for (auto& x : w) x = nd(rng) * 0.05f;
  be->gemm(B, K, K, phi.data(), w.data(), nullptr, c.data(), threads, &err);  // warm-up
  std::vector<double> gt, gc;
  for (int r = 0; r < reps; ++r) {
    double t0 = now(), c0 = cpu_now();
    be->gemm(B, K, K, phi.data(), w.data(), nullptr, c.data(), threads, &err);
    gt.push_back(now() - t0);
    gc.push_back(cpu_now() - c0);
  }
  const double gemm_s = median(gt), gflops = 2.0 * double(B) * double(K) * double(K) / gemm_s / 1e9;

  const double gemm_cpu = median(gc);
  struct Row { const char* name; double step_s, cpu_s, sinkhorn_iters, loss; };
  std::vector<Row> rows;
  for (int mode : {OTLM_GRAD_UNROLLED, OTLM_GRAD_ENVELOPE}) {
    otlm_train_params p{};
    p.k = K;
    p.lambda = 1.2;  // ImageNet-LT preset (Appendix C)
    p.sinkhorn_iters = T;
    p.tol = 0;
    p.grad_mode = mode;
    p.optimizer = OTLM_OPT_ADAM;
    p.beta1 = 0.9;
    p.beta2 = 0.999;
    p.eps = 1e-8;
    p.weight_decay = 1e-3;
    p.threads = threads;
    otlm_trainer* t = nullptr;
    if (be->trainer_create(&p, phi.data(), B, bias.data(), mu.data(), &t, &err) != OTLM_OK) {
      std::fprintf(stderr, "trainer_create: %s\n", err.message);
      return 1;
    }
    std::vector<int32_t> idx(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) idx[size_t(i)] = int32_t(i);
    otlm_step_report rep{};
    std::vector<double> st, sc;
    for (int r = 0; r <= reps; ++r) {  // first step is the warm-up (allocations)
      std::shuffle(idx.begin(), idx.end(), rng);
      double t0 = now(), c0 = cpu_now();
      if (be->trainer_step(t, idx.data(), B, 1e-3, &rep, &err) != OTLM_OK) {
        std::fprintf(stderr, "trainer_step: %s\n", err.message);
        return 1;
      }
      if (r > 0) {
        st.push_back(now() - t0);
        sc.push_back(cpu_now() - c0);
      }
    }
    rows.push_back({mode == OTLM_GRAD_UNROLLED ? "unrolled" : "envelope", median(st), median(sc), double(rep.sinkhorn_iters),
                    rep.loss});
    be->trainer_destroy(t);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak_mb = double(ru.ru_maxrss) / 1024.0;  // Linux: KiB
  if (json) {
    std::printf("{\"bench\":\"otlm_step_cpu\",\"b\":%lld,\"k\":%lld,\"T\":%d,\"threads\":%d,\"isa\":\"%s\","
                "\"gemm\":\"%s\",\"gemm_seconds\":%.6f,\"sgemm_gflops\":%.2f,\"step_unrolled_seconds\":%.6f,"
                "\"step_envelope_seconds\":%.6f,\"gemm_cpu_seconds\":%.6f,\"step_unrolled_cpu_seconds\":%.6f,"
                "\"step_envelope_cpu_seconds\":%.6f,\"peak_rss_mb\":%.1f,\"reps\":%d}\n",
                (long long)B, (long long)K, T, nthreads, otlm::cpu::otlm_kernels().isa, otlm::cpu::gemm_provider(),
                gemm_s, gflops, rows[0].step_s, rows[1].step_s, gemm_cpu, rows[0].cpu_s, rows[1].cpu_s, peak_mb, reps);
  } else {
    std::printf("OTLM CPU step, B=%lld K=%lld T=%d, %d threads, kernels %s, GEMM %s (median of %d)\n", (long long)B,
                (long long)K, T, nthreads, otlm::cpu::otlm_kernels().isa, otlm::cpu::gemm_provider(), reps);
    std::printf("  %-22s %10s   %10s\n", "", "wall", "CPU (all threads)");
    std::printf("  %-22s %10.4f s %10.4f s  %8.1f GFLOP/s\n", "gemm Φ·W", gemm_s, gemm_cpu, gflops);
    for (auto& r : rows)
      std::printf("  %-22s %10.4f s %10.4f s  (loss %.6f, %d Sinkhorn iterations)\n",
                  (std::string("step (") + r.name + ")").c_str(), r.step_s, r.cpu_s, r.loss, int(r.sinkhorn_iters));
    std::printf("  peak RSS %.1f MB (Φ %.1f MB in the benchmark + its copy in the trainer + workspace)\n", peak_mb,
                double(B) * double(K) * 4 / 1048576.0);
  }
  return 0;
}
