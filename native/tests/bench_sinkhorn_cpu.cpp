// Microbenchmark of the CPU Sinkhorn engine (issue 3 / issue 6 figures).
//
//   bench_sinkhorn_cpu [--n 20000] [--k 1000] [--repeats 5] [--counts-n 10000] [--counts-k 100]
//                      [--npy logits.npy] [--count-cap 400000] [--json]
//
// Measured in one run, on the same buffer:
//   - per-iteration time of the fused solver (all threads and 1 thread): the
//     difference between a 12- and a 2-iteration warm-started solve / 10, median
//     of the repeats (excludes the first pass and the final pass);
//   - the memory floor: one streaming read (sum) of the same n·k floats with all
//     threads, and the ratio iteration / floor (goal: <= 3);
//   - a full OT correction: logits in, λ = 1, 100 iterations, plan + predictions
//     written (goal: < 2 s at 20000x1000);
//   - iterations to tol 1e-6 at λ = 0.1 and 0.01, plain vs accelerated
//     (overrelax 1.5: Newton on the semi-dual for k <= 64, Anderson mixing above;
//     without and with epsScaling 0.5), with the plan differences, on synthetic
//     long-tailed logits of --counts-n x --counts-k (default 10000x100) or on --npy
//     logits (float32 2-D .npy). Capped at --count-cap iterations (default 400000:
//     plain needs ~224000 at λ = 0.01 on the Fashion-MNIST-LT test logits, ~45 s).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <time.h>
#include <vector>

#include "otlm/otlm.h"
#include "thread_pool.h"

using clk = std::chrono::steady_clock;
static double secs(clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); }

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Long-tailed synthetic logits: the test set is balanced (labels uniform), the
// "classifier" favours head classes with a bias that decays over the class index.
static std::vector<float> lt_logits(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_int_distribution<int64_t> cls(0, k - 1);
  std::vector<float> phi(size_t(n * k));
  for (int64_t i = 0; i < n; ++i) {
    int64_t y = cls(rng);
    for (int64_t j = 0; j < k; ++j) {
      float head_bias = 3.0f * std::exp(-4.0f * float(j) / float(k));
      phi[size_t(i * k + j)] = 1.5f * nd(rng) + head_bias + (j == y ? 3.0f : 0.0f);
    }
  }
  return phi;
}

// Minimal .npy reader: little-endian float32, C order, 2-D.
static bool read_npy(const char* path, std::vector<float>& out, int64_t& n, int64_t& k) {
  FILE* fp = std::fopen(path, "rb");
  if (!fp) return false;
  char magic[8];
  if (std::fread(magic, 1, 8, fp) != 8 || std::memcmp(magic, "\x93NUMPY", 6)) { std::fclose(fp); return false; }
  uint32_t hlen = 0;
  if (magic[6] == 1) { uint16_t h; if (std::fread(&h, 2, 1, fp) != 1) { std::fclose(fp); return false; } hlen = h; }
  else if (std::fread(&hlen, 4, 1, fp) != 1) { std::fclose(fp); return false; }
  std::string hdr(hlen, ' ');
  if (std::fread(&hdr[0], 1, hlen, fp) != hlen) { std::fclose(fp); return false; }
  if (hdr.find("'<f4'") == std::string::npos || hdr.find("'fortran_order': False") == std::string::npos) {
    std::fclose(fp);
    return false;
  }
  size_t sp = hdr.find("'shape': (");
  if (sp == std::string::npos || std::sscanf(hdr.c_str() + sp + 10, "%lld, %lld", (long long*)&n, (long long*)&k) != 2) {
    std::fclose(fp);
    return false;
  }
  out.resize(size_t(n * k));
  bool ok = std::fread(out.data(), 4, out.size(), fp) == out.size();
  std::fclose(fp);
  return ok;
}

// CPU time of the calling thread: with threads = 1 every pass runs on it, so this is the solve's
// cost even when other processes share the cores (wall time is not, on a loaded machine).
static double thread_cpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Solve {
  otlm_sinkhorn_report rep{};
  otlm_status st = OTLM_OK;
  double wall = 0, cpu = 0;
};

static Solve run(const std::vector<float>& x, int64_t n, int64_t k, const std::vector<double>& c,
                 double lambda, int maxit, double tol, int check, int threads, double omega, double eps,
                 std::vector<double>& f, std::vector<double>& g, bool warm, float* plan, int32_t* pred) {
  otlm_sinkhorn_params p{};
  p.n = n; p.k = k; p.input_kind = OTLM_INPUT_LOGITS; p.lambda = lambda; p.max_iter = maxit; p.tol = tol;
  p.check_every = check; p.threads = threads; p.warm_start = warm ? 1 : 0; p.eps_scaling = eps; p.overrelax = omega;
  otlm_sinkhorn_buffers io{};
  io.x = x.data(); io.col_marginal = c.data(); io.f = f.data(); io.g = g.data(); io.plan = plan; io.predictions = pred;
  otlm_error err{};
  Solve s;
  auto t = clk::now();
  const double c0 = thread_cpu();
  s.st = otlm_cpu_backend()->sinkhorn(&p, &io, &s.rep, &err);
  s.cpu = thread_cpu() - c0;
  s.wall = secs(t);
  if (s.st != OTLM_OK) std::fprintf(stderr, "sinkhorn failed: %s\n", err.message);
  return s;
}

// One streaming read of the buffer with all threads (fixed chunks, like the solver).
static double stream_sum(const float* x, int64_t total, int threads) {
  const int64_t chunks = 128, per = (total + chunks - 1) / chunks;
  std::vector<double> part(chunks);
  otlm::cpu::parallel_for(chunks, threads, [&](int64_t c) {
    typedef float v8 __attribute__((vector_size(32)));
    int64_t a = c * per, b = std::min(total, a + per);
    v8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
    int64_t i = a;
    for (; i + 32 <= b; i += 32) {
      v8 t0, t1, t2, t3;
      std::memcpy(&t0, x + i, 32); std::memcpy(&t1, x + i + 8, 32);
      std::memcpy(&t2, x + i + 16, 32); std::memcpy(&t3, x + i + 24, 32);
      s0 += t0; s1 += t1; s2 += t2; s3 += t3;
    }
    v8 s = (s0 + s1) + (s2 + s3);
    double acc = 0;
    for (int q = 0; q < 8; ++q) acc += s[q];
    for (; i < b; ++i) acc += x[i];
    part[size_t(c)] = acc;
  });
  double t = 0;
  for (double v : part) t += v;
  return t;
}

int main(int argc, char** argv) {
  int64_t n = 20000, k = 1000, count_n = 10000, count_k = 100;
  int repeats = 5, count_cap = 400000;
  bool json = false;
  const char* npy = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--n") && i + 1 < argc) n = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--k") && i + 1 < argc) k = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--npy") && i + 1 < argc) npy = argv[++i];
    else if (!std::strcmp(argv[i], "--counts-n") && i + 1 < argc) count_n = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--counts-k") && i + 1 < argc) count_k = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--count-cap") && i + 1 < argc) count_cap = std::max(1, std::atoi(argv[++i]));
    else { std::fprintf(stderr, "usage: %s [--n N] [--k K] [--repeats R] [--counts-n N] [--counts-k K] [--npy logits.npy] [--count-cap N] [--json]\n", argv[0]); return 2; }
  }
  const int threads = otlm::cpu::default_threads();
  otlm_error err{};
  otlm_backend_info bi{};
  otlm_cpu_backend()->info(&bi, &err);
  char info[512];  // the same JSON object as before, for bench/run.js
  std::snprintf(info, sizeof info, "{\"simd\":\"%s\",\"threads\":%d,\"gemm\":\"%s\",\"compiler\":\"%s\"}",
                bi.simd, bi.threads, bi.gemm, bi.compiler);

  std::vector<float> x = lt_logits(n, k, 42);
  std::vector<double> c(static_cast<size_t>(k), double(n) / double(k)), f(static_cast<size_t>(n)),
      g(static_cast<size_t>(k));

  // ---- memory floor
  std::vector<double> tf;
  volatile double sink = 0;
  for (int r = 0; r < repeats + 1; ++r) {
    auto t = clk::now();
    sink = sink + stream_sum(x.data(), n * k, threads);
    if (r) tf.push_back(secs(t));  // first read warms the pool and the TLB
  }
  const double floor_s = median(tf);

  // ---- per-iteration time (warm start: the solver's steady state, no fallbacks)
  run(x, n, k, c, 1.0, 30, 0, 1000000, threads, 1, 0, f, g, false, nullptr, nullptr);
  const std::vector<double> f0 = f, g0 = g;
  double it_one_cpu = 0;
  auto per_iter = [&](int th) {
    std::vector<double> a, b, ac, bc;
    for (int r = 0; r < repeats; ++r) {
      f = f0; g = g0;
      Solve s2 = run(x, n, k, c, 1.0, 2, 0, 1000000, th, 1, 0, f, g, true, nullptr, nullptr);
      f = f0; g = g0;
      Solve s12 = run(x, n, k, c, 1.0, 12, 0, 1000000, th, 1, 0, f, g, true, nullptr, nullptr);
      a.push_back(s2.wall); b.push_back(s12.wall); ac.push_back(s2.cpu); bc.push_back(s12.cpu);
    }
    if (th == 1) it_one_cpu = (median(bc) - median(ac)) / 10.0;
    return (median(b) - median(a)) / 10.0;
  };
  const double it_all = per_iter(threads);
  const double it_one = per_iter(1);

  // ---- full OT correction: cold, λ = 1, 100 iterations, plan + predictions
  std::vector<float> plan(size_t(n * k));
  std::vector<int32_t> pred(static_cast<size_t>(n));
  std::vector<double> tfull;
  Solve full;
  for (int r = 0; r < std::max(1, repeats / 2); ++r) {
    full = run(x, n, k, c, 1.0, 100, 0, 10, threads, 1, 0, f, g, false, plan.data(), pred.data());
    tfull.push_back(full.wall);
  }
  const double full_s = median(tfull);

  // ---- iterations to tol 1e-6: plain vs accelerated (overrelax 1.5: Newton on the
  // semi-dual for k <= 64, Anderson above) without and with ε-scaling 0.5
  std::vector<float> X;
  int64_t cn = count_n, ck = count_k;
  const char* counts_on = "synthetic";
  if (npy) {
    if (read_npy(npy, X, cn, ck)) counts_on = npy;
    else std::fprintf(stderr, "could not read %s (float32 2-D .npy); using the synthetic logits\n", npy);
  }
  if (X.empty()) { cn = count_n; ck = count_k; X = lt_logits(cn, ck, 7); }
  std::vector<double> C(static_cast<size_t>(ck), double(cn) / double(ck)), F(static_cast<size_t>(cn)),
      G(static_cast<size_t>(ck));
  std::vector<float> P0(size_t(cn * ck)), P1(size_t(cn * ck)), P2(size_t(cn * ck)), Pref(size_t(cn * ck));
  auto maxdiff = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0, m = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      d = std::max(d, double(std::fabs(a[i] - b[i])));
      m = std::max(m, double(std::fabs(b[i])));
    }
    return m > 0 ? d / m : d;
  };
  struct Count {
    double lambda; int plain, acc, acc_eps; double s_plain, s_acc, s_acc_eps;
    double d_acc, d_acc_eps, d_plain_ref, d_acc_ref;
  };
  std::vector<Count> counts;
  for (double lam : {0.1, 0.01}) {
    Count ct{lam, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    Solve a = run(X, cn, ck, C, lam, count_cap, 1e-6, 1, threads, 1, 0, F, G, false, P0.data(), nullptr);
    ct.plain = a.rep.converged ? a.rep.iterations : -a.rep.iterations;
    ct.s_plain = a.wall;
    Solve b = run(X, cn, ck, C, lam, count_cap, 1e-6, 1, threads, 1.5, 0, F, G, false, P1.data(), nullptr);
    ct.acc = b.rep.converged ? b.rep.iterations : -b.rep.iterations;
    ct.s_acc = b.wall;
    Solve e = run(X, cn, ck, C, lam, count_cap, 1e-6, 1, threads, 1.5, 0.5, F, G, false, P2.data(), nullptr);
    ct.acc_eps = e.rep.converged ? e.rep.iterations : -e.rep.iterations;
    ct.s_acc_eps = e.wall;
    // the fixed point, as near as float32 allows: accelerated to 1e-9
    run(X, cn, ck, C, lam, count_cap, 1e-9, 1, threads, 1.5, 0, F, G, false, Pref.data(), nullptr);
    ct.d_acc = maxdiff(P1, P0);
    ct.d_acc_eps = maxdiff(P2, P0);
    ct.d_plain_ref = maxdiff(P0, Pref);
    ct.d_acc_ref = std::max(maxdiff(P1, Pref), maxdiff(P2, Pref));
    counts.push_back(ct);
  }

  if (json) {
    std::printf("{\"bench\":\"sinkhorn_cpu\",\"n\":%lld,\"k\":%lld,\"threads\":%d,\"backend\":%s,"
                "\"iter_ms\":%.4f,\"iter_ms_1thread\":%.4f,\"iter_ms_1thread_cpu\":%.4f,\"floor_ms\":%.4f,\"ratio_to_floor\":%.3f,"
                "\"floor_GBps\":%.2f,\"full_ot_100_s\":%.4f,\"full_ot_mode\":%d,\"counts_on\":\"%s\",\"counts\":[",
                (long long)n, (long long)k, threads, info, it_all * 1e3, it_one * 1e3, it_one_cpu * 1e3, floor_s * 1e3,
                it_all / floor_s, double(n * k) * 4 / floor_s / 1e9, full_s, full.rep.mode, counts_on);
    for (size_t q = 0; q < counts.size(); ++q) {
      const Count& t = counts[q];
      std::printf("%s{\"lambda\":%g,\"plain\":%d,\"accelerated\":%d,\"accelerated_eps\":%d,\"plain_s\":%.3f,"
                  "\"accelerated_s\":%.3f,\"accelerated_eps_s\":%.3f,\"plan_diff\":%.3e,\"plan_diff_eps\":%.3e,"
                  "\"plain_to_fixed_point\":%.3e,\"accelerated_to_fixed_point\":%.3e}",
                  q ? "," : "", t.lambda, t.plain, t.acc, t.acc_eps, t.s_plain, t.s_acc, t.s_acc_eps, t.d_acc,
                  t.d_acc_eps, t.d_plain_ref, t.d_acc_ref);
    }
    std::printf("]}\n");
  } else {
    std::printf("CPU Sinkhorn, %lldx%lld float32 logits, %d threads, %s\n", (long long)n, (long long)k, threads, info);
    std::printf("  %-44s %10.3f ms\n", "iteration (all threads, median)", it_all * 1e3);
    std::printf("  %-44s %10.3f ms\n", "iteration (1 thread, median)", it_one * 1e3);
    std::printf("  %-44s %10.3f ms\n", "iteration (1 thread, its CPU time)", it_one_cpu * 1e3);
    std::printf("  %-44s %10.3f ms  (%.1f GB/s)\n", "memory floor: one streaming read", floor_s * 1e3,
                double(n * k) * 4 / floor_s / 1e9);
    std::printf("  %-44s %10.2f x   (goal <= 3)\n", "iteration / floor", it_all / floor_s);
    std::printf("  %-44s %10.3f s   (goal < 2 s; mode %d)\n", "full OT correction, 100 iters, plan+pred", full_s,
                full.rep.mode);
    std::printf("  iterations to tol 1e-6 on %s (%lldx%lld, uniform target); negative = not converged at %d;\n"
                "  accelerated = overrelax 1.5 (Newton for k <= 64, else Anderson), +eps = with epsScaling 0.5;\n"
                "  plan diffs are max |ΔY| / max Y; 'fixed point' = the accelerated plan at tol 1e-9:\n",
                counts_on, (long long)cn, (long long)ck, count_cap);
    std::printf("    %-7s %8s %6s %6s %9s %9s %9s %9s %9s %16s\n", "lambda", "plain", "acc", "+eps", "speedup",
                "acc-plain", "eps-plain", "plain-fp", "acc-fp", "time p/a/e s");
    for (const Count& t : counts)
      std::printf("    %-7g %8d %6d %6d %8.0fx %9.1e %9.1e %9.1e %9.1e %6.2f/%.3f/%.3f\n", t.lambda, t.plain, t.acc,
                  t.acc_eps, double(std::abs(t.plain)) / std::max(std::abs(t.acc), std::abs(t.acc_eps)), t.d_acc,
                  t.d_acc_eps, t.d_plain_ref, t.d_acc_ref, t.s_plain, t.s_acc, t.s_acc_eps);
  }
  (void)sink;
  return 0;
}
