// Builtin GEMM vs OpenBLAS in one run (issue 14), on the products of the OTLM engine: the forward
// Φ_B·W (gemm_nn, B×K by K×K) and the gradient Φ_Bᵀ·D (gemm_tn, K×K reduced over B rows), at
// 10000×1000×1000 and at the OTLM shapes K = 10 (B = 5000), 100 (B = 2404), 1000 (B = 10000) and
// 8142 (B = 2000). Both run through the engine's own entry points (gemm_nn, gemm_tn: OpenBLAS on fixed
// row panels of our pool; gemm_set_prefer_builtin switches them to the builtin), timed alternately, for each
// thread count: the median (and the fastest run) after a warm-up.
// Usage: bench_gemm_cpu [--threads 1,2] [--reps R] [--min-seconds S] [--quick] [--all-levels] [--only TEXT]
//                       [--json]
//   --quick  skips K = 8142;  --all-levels  also times the builtin's AVX2 and baseline kernels;
//   --only   runs the products whose name contains TEXT (e.g. "tn 1000"); --builtin-only  (profiling).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_internal.h"
#include "gemm_builtin.h"
#include "otlm_engine.h"
#include "thread_pool.h"

using otlm::cpu::GemmIsa;

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  std::string name;
  bool tn;            // gemm_tn(m, p = n, q = n) else gemm_nn(m, n, kk)
  int64_t m, n, kk;   // nn: A m×kk, B kk×n. tn: A m×n, B m×n, C n×n (kk = m)
};

// One provider: "openblas" (the engine's OpenBLAS path), "builtin" (the engine's builtin path) or a
// forced builtin level.
struct Provider {
  std::string name;
  bool builtin;
  bool forced_level;
  GemmIsa isa;
};

void call(const Provider& p, const Case& c, const float* a, const float* b, const float* bias, float* out,
          int threads) {
  if (p.forced_level) {
    if (c.tn) otlm::cpu::gemm_tn_builtin(c.m, c.n, c.n, a, b, out, threads, p.isa);
    else otlm::cpu::gemm_nn_builtin(c.m, c.n, c.kk, a, b, bias, out, threads, nullptr, p.isa);
    return;
  }
  otlm::cpu::gemm_set_prefer_builtin(p.builtin);
  if (c.tn) otlm::cpu::gemm_tn(c.m, c.n, c.n, a, b, out, threads);
  else otlm::cpu::gemm_nn(c.m, c.n, c.kk, a, b, bias, out, threads);
  otlm::cpu::gemm_set_prefer_builtin(false);
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts = {1, 2};
  int max_reps = 15;
  double min_seconds = 1.0;
  bool quick = false, all_levels = false, json = false, builtin_only = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (s == "--threads") {
      thread_counts.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        thread_counts.push_back(std::atoi(v.substr(p, q - p).c_str()));
        p = q + 1;
      }
    } else if (s == "--reps") max_reps = std::max(3, std::atoi(next().c_str()));
    else if (s == "--min-seconds") min_seconds = std::atof(next().c_str());
    else if (s == "--quick") quick = true;
    else if (s == "--all-levels") all_levels = true;
    else if (s == "--json") json = true;
    else if (s == "--only") only = next();
    else if (s == "--builtin-only") builtin_only = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", s.c_str());
      return 2;
    }
  }

  std::vector<Case> cases = {
      {"nn 10000x1000 . 1000x1000 (OTLM K=1000 forward)", false, 10000, 1000, 1000},
      {"tn 1000x10000 . 10000x1000 (OTLM K=1000 gradient)", true, 10000, 1000, 10000},
      {"nn 5000x10 . 10x10 (K=10 forward)", false, 5000, 10, 10},
      {"tn 10x5000 . 5000x10 (K=10 gradient)", true, 5000, 10, 5000},
      {"nn 2404x100 . 100x100 (K=100 forward)", false, 2404, 100, 100},
      {"tn 100x2404 . 2404x100 (K=100 gradient)", true, 2404, 100, 2404},
  };
  if (!quick) {
    cases.push_back({"nn 2000x8142 . 8142x8142 (K=8142 forward)", false, 2000, 8142, 8142});
    cases.push_back({"tn 8142x2000 . 2000x8142 (K=8142 gradient)", true, 2000, 8142, 2000});
  }

  const GemmIsa best = otlm::cpu::gemm_builtin_isa();
  std::vector<Provider> providers;
  if (otlm::cpu::gemm_openblas_linked() && !builtin_only) {
    otlm::cpu::gemm_set_prefer_builtin(false);
    providers.push_back({otlm::cpu::gemm_provider(), false, false, best});
  }
  otlm::cpu::gemm_set_prefer_builtin(true);
  providers.push_back({otlm::cpu::gemm_provider(), true, false, best});
  otlm::cpu::gemm_set_prefer_builtin(false);
  if (all_levels)
    for (GemmIsa l : {GemmIsa::avx2, GemmIsa::baseline})
      if (int(l) < int(best) && otlm::cpu::gemm_isa_cap(l) == l)
        providers.push_back({std::string("builtin-") + otlm::cpu::gemm_isa_name(l), true, true, l});

  if (!json) {
    std::printf("GEMM: builtin vs %s, median after a warm-up (at least 3 runs, %.1f s or %d runs per provider)\n",
                otlm::cpu::gemm_openblas_linked() ? otlm::cpu::gemm_provider() : "(OpenBLAS not linked)", min_seconds,
                max_reps);
    std::printf("%-52s %3s", "product", "thr");
    for (auto& p : providers) std::printf(" %16s", p.name.c_str());
    std::printf("  %s\n", providers.size() > 1 ? "builtin/openblas: medians (fastest runs)  max|diff|/max|C|" : "");
  }

  // Inputs uniform in [-1, 1) from a xorshift generator (std::normal_distribution takes seconds at K = 8142).
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto uniform = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return float(int64_t(state >> 40) - (int64_t(1) << 23)) * (1.0f / float(1 << 23));
  };
  for (const Case& c : cases) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    const int64_t a_elems = c.tn ? c.m * c.n : c.m * c.kk, b_elems = c.tn ? c.m * c.n : c.kk * c.n;
    const int64_t c_elems = c.tn ? c.n * c.n : c.m * c.n;
    std::vector<float> a(static_cast<size_t>(a_elems)), b(static_cast<size_t>(b_elems)), bias(static_cast<size_t>(c.n));
    for (auto& x : a) x = uniform();
    for (auto& x : b) x = uniform() * 0.05f;
    for (auto& x : bias) x = uniform();
    const float* bp = c.tn ? nullptr : bias.data();
    const double flops = 2.0 * double(c.tn ? c.n : c.m) * double(c.n) * double(c.tn ? c.m : c.kk);
    std::vector<std::vector<float>> outs(providers.size(), std::vector<float>(size_t(c_elems)));
    for (int threads : thread_counts) {
      std::vector<std::vector<double>> times(providers.size());
      for (size_t p = 0; p < providers.size(); ++p) call(providers[p], c, a.data(), b.data(), bp, outs[p].data(), threads);
      double spent = 0;
      for (int r = 0; r < max_reps && (r < 3 || spent < min_seconds * double(providers.size())); ++r)
        for (size_t p = 0; p < providers.size(); ++p) {  // alternate: drifts of a shared VM hit both
          const double t0 = now();
          call(providers[p], c, a.data(), b.data(), bp, outs[p].data(), threads);
          const double dt = now() - t0;
          times[p].push_back(dt);
          spent += dt;
        }
      // OpenBLAS (provider 0) vs the builtin (provider 1): max |difference| relative to max |C|
      const bool vs_blas = otlm::cpu::gemm_openblas_linked() && !builtin_only && providers.size() > 1;
      double cmax = 0, dmax = 0;
      if (vs_blas)
        for (size_t q = 0; q < outs[0].size(); ++q) {
          cmax = std::max(cmax, double(std::fabs(outs[0][q])));
          dmax = std::max(dmax, double(std::fabs(outs[0][q] - outs[1][q])));
        }
      std::vector<double> med(providers.size()), best(providers.size());
      for (size_t p = 0; p < providers.size(); ++p) {
        med[p] = median(times[p]);
        best[p] = *std::min_element(times[p].begin(), times[p].end());
      }
      if (json) {
        std::printf("{\"bench\":\"gemm_cpu\",\"product\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"threads\":%d",
                    c.name.c_str(), (long long)(c.tn ? c.n : c.m), (long long)c.n, (long long)(c.tn ? c.m : c.kk),
                    threads);
        for (size_t p = 0; p < providers.size(); ++p)
          std::printf(",\"%s_seconds\":%.6f,\"%s_min_seconds\":%.6f,\"%s_gflops\":%.2f", providers[p].name.c_str(),
                      med[p], providers[p].name.c_str(), best[p], providers[p].name.c_str(), flops / med[p] / 1e9);
        if (vs_blas)
          std::printf(",\"builtin_over_openblas\":%.4f,\"builtin_over_openblas_min\":%.4f,\"max_rel_diff\":%.3g",
                      med[1] / med[0], best[1] / best[0], dmax / cmax);
        std::printf(",\"reps\":%d}\n", int(times[0].size()));
      } else {
        std::printf("%-52s %3d", c.name.c_str(), threads);
        for (size_t p = 0; p < providers.size(); ++p)
          std::printf(" %8.2f ms %4.0fGF", med[p] * 1e3, flops / med[p] / 1e9);
        if (vs_blas) std::printf("  %5.2fx (min %4.2fx) %9.2g", med[1] / med[0], best[1] / best[0], dmax / cmax);
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
