// The builtin GEMM (native/cpu/gemm_builtin.cpp) at every SIMD level this CPU has (AVX-512, AVX2,
// baseline), against a float64 reference:
//   - exact: small-integer inputs make every float32 partial sum exact, so C must equal the reference bit for
//     bit; shapes sweep the tile edges of every level (m, n, kk from 1 to 8142, multiples of no tile, several
//     k-blocks, several column chunks of packed B), for C = bias + A·B (nn) and C = Aᵀ·B (tn);
//   - rounding: normal inputs, error within the float32 bound (kk + 2)·2⁻²⁴·Σ|terms|;
//   - bit-identical results for 1 to 8 threads, rows_done called once per row with final rows;
//   - NaN and Inf reach exactly the elements they should;
//   - the dispatcher (gemm_nn, gemm_tn, gemm_provider) with and without the builtin preferred.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu_internal.h"
#include "gemm_builtin.h"
#include "otlm_engine.h"

using otlm::cpu::GemmIsa;

namespace {

// Reference in float64: C = init + op(A)·B; also Σ|terms| per element for the rounding bound.
void reference(bool tn, int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
               std::vector<double>& c, std::vector<double>* mag) {
  c.assign(size_t(m * n), 0.0);
  if (mag) mag->assign(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    double* ci = c.data() + i * n;
    double* mi = mag ? mag->data() + i * n : nullptr;
    if (bias)
      for (int64_t j = 0; j < n; ++j) {
        ci[j] = bias[j];
        if (mi) mi[j] = std::fabs(double(bias[j]));
      }
    for (int64_t k = 0; k < kk; ++k) {
      const double av = tn ? a[k * m + i] : a[i * kk + k];  // zeros too: 0·Inf is NaN
      const float* bk = b + k * n;
      for (int64_t j = 0; j < n; ++j) ci[j] += av * bk[j];
      if (mi)
        for (int64_t j = 0; j < n; ++j) mi[j] += std::fabs(av * bk[j]);
    }
  }
}

void run_builtin(bool tn, int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                 float* c, int threads, GemmIsa isa,
                 const std::function<void(int64_t, int64_t)>* rows_done = nullptr) {
  if (tn) otlm::cpu::gemm_tn_builtin(kk, m, n, a, b, c, threads, isa);  // A is kk×m
  else otlm::cpu::gemm_nn_builtin(m, n, kk, a, b, bias, c, threads, rows_done, isa);
}

std::vector<float> ints(size_t count, std::mt19937_64& rng, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<float> v(count);
  for (auto& x : v) x = float(d(rng));
  return v;
}
std::vector<float> normals(size_t count, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0, 1);
  std::vector<float> v(count);
  for (auto& x : v) x = d(rng);
  return v;
}

// Exact check on integer data in [-2, 2] (bias in [-8, 8]): |partial sums| ≤ 4·8142 + 8 < 2^24.
// Returns false (after one failure message) when the shape fails.
bool exact_case(GemmIsa isa, bool tn, int64_t m, int64_t n, int64_t kk, bool with_bias, int threads,
                std::mt19937_64& rng) {
  with_bias = with_bias && !tn;  // C = Aᵀ·B has no bias
  std::vector<float> a = ints(size_t(m * kk), rng, -2, 2), b = ints(size_t(kk * n), rng, -2, 2);
  std::vector<float> bias = with_bias ? ints(size_t(n), rng, -8, 8) : std::vector<float>();
  std::vector<float> c(size_t(m * n), std::nanf(""));
  run_builtin(tn, m, n, kk, a.data(), b.data(), with_bias ? bias.data() : nullptr, c.data(), threads, isa);
  std::vector<double> ref;
  reference(tn, m, n, kk, a.data(), b.data(), with_bias ? bias.data() : nullptr, ref, nullptr);
  for (size_t q = 0; q < c.size(); ++q)
    if (double(c[q]) != ref[q]) {
      CHECK(false, "%s %s m=%lld n=%lld kk=%lld bias=%d: C[%lld, %lld] = %.9g, expected %.9g",
            otlm::cpu::gemm_isa_name(isa), tn ? "tn" : "nn", (long long)m, (long long)n, (long long)kk, int(with_bias),
            (long long)(q / size_t(n)), (long long)(q % size_t(n)), double(c[q]), ref[q]);
      return false;
    }
  ++g_checks;
  return true;
}

std::vector<GemmIsa> levels() {
  std::vector<GemmIsa> out;
  for (GemmIsa l : {GemmIsa::baseline, GemmIsa::avx2, GemmIsa::avx512}) {
    if (otlm::cpu::gemm_isa_cap(l) == l) out.push_back(l);
    else std::printf("  (this CPU has no %s: its kernels are not tested here)\n", otlm::cpu::gemm_isa_name(l));
  }
  return out;
}

void test_exact_edges() {
  std::mt19937_64 rng(7);
  for (GemmIsa isa : levels()) {
    int failed = 0, cases = 0;
    auto one = [&](bool tn, int64_t m, int64_t n, int64_t kk, bool bias, int threads) {
      if (failed >= 3) return;  // a broken level would print thousands of lines
      failed += !exact_case(isa, tn, m, n, kk, bias, threads, rng);
      ++cases;
    };
    for (bool tn : {false, true}) {
      // every small shape: all micro-tile edges of every level
      for (int64_t m = 1; m <= 30; ++m)
        for (int64_t n = 1; n <= 40; ++n)
          for (int64_t kk : {1, 2, 3, 17}) one(tn, m, n, kk, (m + n) % 2 == 0, 2);
      // panel edges (MR 4/6/14, NR 8/16/32, MC 128/144/168) at a depth that is no block multiple
      for (int64_t m : {3, 5, 7, 13, 15, 29, 127, 129, 143, 145, 167, 169, 337})
        for (int64_t n : {5, 7, 9, 15, 17, 31, 33, 63, 65, 100}) one(tn, m, n, 257, n % 2 == 1, 3);
      // depth edges: k-blocks of at most 256
      for (int64_t kk : {255, 256, 257, 511, 512, 513, 1000, 1025})
        for (auto mn : {std::pair<int64_t, int64_t>{15, 33}, {169, 100}, {29, 17}}) one(tn, mn.first, mn.second, kk, true, 2);
      // each dimension at 8142 (the iNaturalist K), and a packed B over 2^24 floats (two column chunks)
      for (auto s : {std::array<int64_t, 3>{8142, 45, 37}, {23, 8142, 29}, {19, 21, 8142}, {5, 2100, 8142}})
        one(tn, s[0], s[1], s[2], true, 2);
    }
    std::printf("  %s: %d exact shapes%s\n", otlm::cpu::gemm_isa_name(isa), cases, failed ? " (stopped at failures)" : "");
  }
}

void test_rounding() {
  std::mt19937_64 rng(11);
  for (GemmIsa isa : levels())
    for (bool tn : {false, true})
      for (auto s : {std::array<int64_t, 3>{300, 70, 130}, {65, 1025, 9}, {1000, 100, 1000}, {77, 130, 8142}}) {
        const int64_t m = s[0], n = s[1], kk = s[2];
        std::vector<float> a = normals(size_t(m * kk), rng), b = normals(size_t(kk * n), rng), bias = normals(size_t(n), rng);
        const float* bp = tn ? nullptr : bias.data();
        std::vector<float> c(size_t(m * n));
        run_builtin(tn, m, n, kk, a.data(), b.data(), bp, c.data(), 2, isa);
        std::vector<double> ref, mag;
        reference(tn, m, n, kk, a.data(), b.data(), bp, ref, &mag);
        double worst = 0;  // error / bound
        const double unit = std::ldexp(1.0, -24) * double(kk + 2);
        for (size_t q = 0; q < c.size(); ++q) worst = std::max(worst, std::fabs(c[q] - ref[q]) / (unit * mag[q] + 1e-30));
        CHECK(worst <= 1, "%s %s %lldx%lldx%lld: error %.3g x the float32 bound", otlm::cpu::gemm_isa_name(isa),
              tn ? "tn" : "nn", (long long)m, (long long)n, (long long)kk, worst);
        std::printf("  %-8s %s %5lldx%5lldx%5lld: worst error %.3f of the bound\n", otlm::cpu::gemm_isa_name(isa),
                    tn ? "tn" : "nn", (long long)m, (long long)n, (long long)kk, worst);
      }
}

void test_threads_and_rows_done() {
  std::mt19937_64 rng(13);
  for (GemmIsa isa : levels())
    for (bool tn : {false, true})
      for (auto s : {std::array<int64_t, 3>{1003, 333, 517}, {2404, 100, 100}, {100, 100, 2404}, {61, 8142, 40}}) {
        const int64_t m = s[0], n = s[1], kk = s[2];
        std::vector<float> a = normals(size_t(m * kk), rng), b = normals(size_t(kk * n), rng), bias = normals(size_t(n), rng);
        const float* bp = tn ? nullptr : bias.data();
        std::vector<float> c1(size_t(m * n));
        run_builtin(tn, m, n, kk, a.data(), b.data(), bp, c1.data(), 1, isa);
        for (int threads : {2, 3, 4, 8}) {
          std::vector<float> ct(size_t(m * n), -1.0f), snap(size_t(m * n), 0.0f);
          std::vector<int> seen(size_t(m), 0);
          const std::function<void(int64_t, int64_t)> done = [&](int64_t r0, int64_t r1) {
            for (int64_t i = r0; i < r1; ++i) {
              ++seen[size_t(i)];  // rows of different calls never overlap
              std::memcpy(&snap[size_t(i * n)], &ct[size_t(i * n)], sizeof(float) * size_t(n));
            }
          };
          run_builtin(tn, m, n, kk, a.data(), b.data(), bp, ct.data(), threads, isa, tn ? nullptr : &done);
          CHECK(std::memcmp(ct.data(), c1.data(), sizeof(float) * ct.size()) == 0,
                "%s %s %lldx%lldx%lld: %d threads differ from 1 thread", otlm::cpu::gemm_isa_name(isa), tn ? "tn" : "nn",
                (long long)m, (long long)n, (long long)kk, threads);
          if (!tn) {
            bool once = true;
            for (int v : seen) once = once && v == 1;
            CHECK(once, "%s nn %lldx%lldx%lld: rows_done did not cover every row exactly once",
                  otlm::cpu::gemm_isa_name(isa), (long long)m, (long long)n, (long long)kk);
            CHECK(std::memcmp(snap.data(), ct.data(), sizeof(float) * ct.size()) == 0,
                  "%s nn %lldx%lldx%lld: a row changed after its rows_done", otlm::cpu::gemm_isa_name(isa), (long long)m,
                  (long long)n, (long long)kk);
          }
        }
      }
}

void test_non_finite() {
  std::mt19937_64 rng(17);
  const int64_t m = 40, n = 70, kk = 300;
  for (GemmIsa isa : levels())
    for (bool tn : {false, true}) {
      std::vector<float> a = ints(size_t(m * kk), rng, -2, 2), b = ints(size_t(kk * n), rng, -2, 2);
      a[size_t(tn ? 5 * m + 3 : 3 * kk + 5)] = INFINITY;   // op(A)[3, 5]
      a[size_t(tn ? 200 * m + 20 : 20 * kk + 200)] = NAN;  // op(A)[20, 200]
      b[size_t(7 * n + 33)] = -INFINITY;
      std::vector<float> c(size_t(m * n));
      run_builtin(tn, m, n, kk, a.data(), b.data(), nullptr, c.data(), 2, isa);
      std::vector<double> ref;
      reference(tn, m, n, kk, a.data(), b.data(), nullptr, ref, nullptr);
      int bad = 0;
      for (size_t q = 0; q < c.size(); ++q) {
        const bool same = std::isnan(ref[q]) ? std::isnan(c[q]) : double(c[q]) == ref[q];
        bad += !same;
      }
      CHECK(bad == 0, "%s %s: %d elements differ from the reference with Inf/NaN inputs", otlm::cpu::gemm_isa_name(isa),
            tn ? "tn" : "nn", bad);
    }
}

void test_dispatch() {
  const std::string provider = otlm::cpu::gemm_provider();
  std::printf("  gemm_provider() = %s (OpenBLAS %slinked), builtin level %s\n", provider.c_str(),
              otlm::cpu::gemm_openblas_linked() ? "" : "not ",
              otlm::cpu::gemm_isa_name(otlm::cpu::gemm_builtin_isa()));
  const std::string builtin_name = std::string("builtin-") + otlm::cpu::gemm_isa_name(otlm::cpu::gemm_builtin_isa());
  if (otlm::cpu::gemm_openblas_linked()) CHECK(provider.rfind("openblas", 0) == 0, "provider %s", provider.c_str());
  else CHECK(provider == builtin_name, "provider %s, expected %s", provider.c_str(), builtin_name.c_str());

  // OTLM_SIMD lowers the builtin level, as it does the Sinkhorn kernels'
  const char* prev_env = std::getenv("OTLM_SIMD");
  const std::string prev = prev_env ? prev_env : "";
  setenv("OTLM_SIMD", "baseline", 1);
  CHECK(otlm::cpu::gemm_builtin_isa() == GemmIsa::baseline, "OTLM_SIMD=baseline: level %s",
        otlm::cpu::gemm_isa_name(otlm::cpu::gemm_builtin_isa()));
  if (prev_env) setenv("OTLM_SIMD", prev.c_str(), 1);
  else unsetenv("OTLM_SIMD");

  // The engine's entry points with the builtin preferred: the builtin's bits, and the provider says so.
  std::mt19937_64 rng(19);
  const int64_t m = 500, k = 120;
  std::vector<float> a = normals(size_t(m * k), rng), w = normals(size_t(k * k), rng), bias = normals(size_t(k), rng);
  std::vector<float> c0(size_t(m * k)), c1(size_t(m * k)), g0(size_t(k * k)), g1(size_t(k * k));
  otlm::cpu::gemm_set_prefer_builtin(true);
  CHECK(std::string(otlm::cpu::gemm_provider()) == builtin_name, "preferred builtin: provider %s",
        otlm::cpu::gemm_provider());
  otlm::cpu::gemm_nn(m, k, k, a.data(), w.data(), bias.data(), c0.data(), 2);
  otlm::cpu::gemm_tn(m, k, k, a.data(), c0.data(), g0.data(), 2);
  otlm::cpu::gemm_set_prefer_builtin(false);
  CHECK(std::string(otlm::cpu::gemm_provider()) == provider, "provider not restored: %s", otlm::cpu::gemm_provider());
  const GemmIsa isa = otlm::cpu::gemm_builtin_isa();
  otlm::cpu::gemm_nn_builtin(m, k, k, a.data(), w.data(), bias.data(), c1.data(), 1, nullptr, isa);
  otlm::cpu::gemm_tn_builtin(m, k, k, a.data(), c1.data(), g1.data(), 1, isa);
  CHECK(c0 == c1 && g0 == g1, "gemm_nn/gemm_tn with the builtin preferred differ from gemm_*_builtin");

  // Whatever runs by default agrees with the builtin within the float32 bound.
  std::vector<float> c2(size_t(m * k)), g2(size_t(k * k));
  otlm::cpu::gemm_nn(m, k, k, a.data(), w.data(), bias.data(), c2.data(), 2);
  otlm::cpu::gemm_tn(m, k, k, a.data(), c1.data(), g2.data(), 2);
  std::vector<double> ref, mag;
  reference(false, m, k, k, a.data(), w.data(), bias.data(), ref, &mag);
  double worst = 0;
  for (size_t q = 0; q < c2.size(); ++q)
    worst = std::max(worst, std::fabs(c2[q] - ref[q]) / (std::ldexp(1.0, -24) * double(k + 2) * mag[q] + 1e-30));
  CHECK(worst <= 1, "default gemm_nn: error %.3g x the bound", worst);
  reference(true, k, k, m, a.data(), c1.data(), nullptr, ref, &mag);
  worst = 0;
  for (size_t q = 0; q < g2.size(); ++q)
    worst = std::max(worst, std::fabs(g2[q] - ref[q]) / (std::ldexp(1.0, -24) * double(m + 2) * mag[q] + 1e-30));
  CHECK(worst <= 1, "default gemm_tn: error %.3g x the bound", worst);
}

}  // namespace

int main() {
  std::printf("builtin GEMM, best level here: %s; gemm_provider(): %s\n",
              otlm::cpu::gemm_isa_name(otlm::cpu::gemm_isa_cap(GemmIsa::avx512)), otlm::cpu::gemm_provider());
  return run_named({{"exact results on tile, block and chunk edges", test_exact_edges},
                     {"rounding within the float32 bound", test_rounding},
                     {"bit-identical for 1..8 threads, rows_done", test_threads_and_rows_done},
                     {"NaN and Inf", test_non_finite},
                     {"dispatch and provider name", test_dispatch}});
}
