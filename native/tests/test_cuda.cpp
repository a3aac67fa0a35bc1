// CUDA backend vs CPU backend on fresh random inputs (every entry point).
//
// Skips (exit 77, with the reason) when the CUDA library was not built, cannot be loaded, or finds
// no usable device. Seed: OTLM_TEST_SEED, else random (printed, so a failure can be replayed).
// The library: OTLM_CUDA_LIB in the environment, else the path compiled in (CMake: libotlm_cuda.so,
// or libotlm_cuda_emu.so for test_cuda_emu). OTLM_TEST_QUICK=1 shrinks the large shapes (the
// emulated ctest runs so; every kernel path and configuration is still taken); OTLM_TEST_ONLY=
// gemm,sinkhorn,loss_grad,trainer runs only those groups.
// Tolerances: plans ≤ 1e-5 of the row-set max (1e-4 for over-relaxed runs whose schedule depends on
// rounding), predictions identical except near-exact ties of the CPU plan, potentials in units of λ,
// GEMM relative to Σ|a||b|, gradients relative to max|grad|.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "otlm/otlm.h"
#include "check.h"

#ifndef OTLM_CUDA_LIB
#define OTLM_CUDA_LIB ""
#endif

namespace {

bool g_quick = false;
bool g_emulated = false;  // the library is the CPU emulator (native/cuda/emu)
int g_cc = 0;             // compute capability of the device, 10·major + minor
std::mt19937_64 g_rng;
const otlm_backend* CPU = nullptr;
const otlm_backend* GPU = nullptr;


// A size: `full` normally, `quick` under OTLM_TEST_QUICK=1.
int64_t Q(int64_t full, int64_t quick) { return g_quick ? quick : full; }

double unif() { return std::uniform_real_distribution<double>(0, 1)(g_rng); }
double gauss() { return std::normal_distribution<double>(0, 1)(g_rng); }

std::vector<float> random_logits(int64_t n, int64_t k, double scale) {
  std::vector<float> x(static_cast<size_t>(n * k));
  std::vector<double> bias(static_cast<size_t>(k));
  for (auto& b : bias) b = 2.0 * gauss();  // long-tail-like class bias
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) x[size_t(i * k + j)] = float(scale * gauss() + bias[size_t(j)]);
  return x;
}
std::vector<float> to_cost(const std::vector<float>& phi, int64_t n, int64_t k) {
  std::vector<float> m(phi.size());
  for (int64_t i = 0; i < n; ++i) {
    const float* r = phi.data() + i * k;
    double mx = -INFINITY;
    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, double(r[j]));
    double s = 0;
    for (int64_t j = 0; j < k; ++j) s += std::exp(double(r[j]) - mx);
    double l = mx + std::log(s);
    for (int64_t j = 0; j < k; ++j) m[size_t(i * k + j)] = float(l - double(r[j]));
  }
  return m;
}
std::vector<double> random_prior(int64_t k) {
  std::vector<double> mu(static_cast<size_t>(k));
  double s = 0;
  for (auto& v : mu) s += (v = 0.2 + unif());
  for (auto& v : mu) v /= s;
  return mu;
}

// ----------------------------------------------------------------------------------- Sinkhorn
struct SkCase {
  int64_t n, k;
  double lambda;
  int kind;
  int max_iter = 30;
  double tol = 0;
  int check_every = 5;
  bool row_marginal = false;
  double eps_scaling = 0, overrelax = 1;
  const char* env = nullptr;  // an env var set for the CUDA run (e.g. the two-pass path)
  double plan_tol = 1e-5;
};

struct SkOut {
  std::vector<double> f, g, trace;
  std::vector<float> plan;
  std::vector<int32_t> pred;
  otlm_sinkhorn_report rep{};
  otlm_status st = OTLM_OK;
  std::string msg;
};

SkOut run_sk(const otlm_backend* be, const SkCase& c, const std::vector<float>& x, const std::vector<double>* r,
             const std::vector<double>& col, const std::vector<double>* f0, const std::vector<double>* g0,
             const volatile int32_t* cancel = nullptr) {
  SkOut o;
  o.f.assign(size_t(c.n), NAN);
  o.g.assign(size_t(c.k), NAN);
  if (f0) o.f = *f0;
  if (g0) o.g = *g0;
  o.plan.assign(size_t(c.n * c.k), NAN);
  o.pred.assign(size_t(c.n), -1);
  o.trace.assign(64, NAN);
  otlm_sinkhorn_params p{};
  p.n = c.n;
  p.k = c.k;
  p.input_kind = c.kind;
  p.lambda = c.lambda;
  p.max_iter = c.max_iter;
  p.tol = c.tol;
  p.check_every = c.check_every;
  p.warm_start = f0 ? 1 : 0;
  p.eps_scaling = c.eps_scaling;
  p.overrelax = c.overrelax;
  otlm_sinkhorn_buffers b{};
  b.x = x.data();
  b.row_marginal = r ? r->data() : nullptr;
  b.col_marginal = col.data();
  b.f = o.f.data();
  b.g = o.g.data();
  b.plan = o.plan.data();
  b.predictions = o.pred.data();
  b.error_trace = o.trace.data();
  b.error_trace_cap = 64;
  b.cancel = cancel;
  otlm_error e{};
  if (be == GPU && c.env) setenv(c.env, "1", 1);
  o.st = be->sinkhorn(&p, &b, &o.rep, &e);
  if (be == GPU && c.env) unsetenv(c.env);
  o.msg = e.message;
  return o;
}

void compare_sk(const char* what, const SkCase& c, const SkOut& a /*cpu*/, const SkOut& b /*gpu*/) {
  CHECK(a.st == b.st, "%s: status cpu %d (%s) vs cuda %d (%s)", what, a.st, a.msg.c_str(), b.st, b.msg.c_str());
  if (a.st != OTLM_OK || b.st != OTLM_OK) return;
  const bool relaxed = c.overrelax > 1;
  if (!relaxed) {
    CHECK(a.rep.iterations == b.rep.iterations, "%s: iterations %d vs %d", what, a.rep.iterations, b.rep.iterations);
    CHECK(a.rep.converged == b.rep.converged, "%s: converged %d vs %d", what, a.rep.converged, b.rep.converged);
    CHECK(a.rep.trace_len == b.rep.trace_len, "%s: trace_len %d vs %d", what, a.rep.trace_len, b.rep.trace_len);
  } else {
    CHECK(std::abs(a.rep.iterations - b.rep.iterations) <= 2 * c.check_every, "%s: iterations %d vs %d", what,
          a.rep.iterations, b.rep.iterations);
  }
  // error = Σ|S - c|/Σr: rounding of S (~1e-7 relative) gives an absolute 1e-7·(Σc/Σr) floor
  CHECK(std::fabs(a.rep.error - b.rep.error) <= 1e-3 * std::fabs(a.rep.error) + 2e-6, "%s: error %.9g vs %.9g", what,
        a.rep.error, b.rep.error);
  // every output written
  bool finite = true;
  for (double v : b.f) finite &= std::isfinite(v);
  for (double v : b.g) finite &= std::isfinite(v);
  for (float v : b.plan) finite &= std::isfinite(v) && v >= 0;
  CHECK(finite, "%s: CUDA left a non-finite/unwritten f, g or plan element", what);
  bool pred_ok = true;
  for (int32_t v : b.pred) pred_ok &= v >= 0 && v < c.k;
  CHECK(pred_ok, "%s: CUDA left an unwritten/out-of-range prediction", what);
  if (!finite || !pred_ok) return;
  // plan relative to its max
  double pmax = 0, pd = 0;
  size_t worst = 0;
  for (size_t q = 0; q < a.plan.size(); ++q) pmax = std::max(pmax, double(a.plan[q]));
  for (size_t q = 0; q < a.plan.size(); ++q) {
    double d = std::fabs(double(a.plan[q]) - double(b.plan[q]));
    if (d > pd) {
      pd = d;
      worst = q;
    }
  }
  const double ptol = relaxed ? std::max(c.plan_tol, 1e-4) : c.plan_tol;
  CHECK(pd <= ptol * pmax, "%s: plan max |diff| %.3g > %.1g x max %.3g (at row %lld col %lld: %.9g vs %.9g)", what, pd,
        ptol, pmax, (long long)(worst / size_t(c.k)), (long long)(worst % size_t(c.k)), a.plan[worst], b.plan[worst]);
  // potentials in units of λ (gauge is fixed by the algorithm: both start from the same g)
  double fd = 0, gd = 0;
  for (size_t i = 0; i < a.f.size(); ++i) fd = std::max(fd, std::fabs(a.f[i] - b.f[i]) / (c.lambda * (1 + std::fabs(a.f[i]) * 1e-3)));
  // g_j is only well determined where column j carries plan mass (an underflowed column's g is
  // set by an exact log-domain fallback whose trigger may differ by rounding): compare those.
  std::vector<double> colmass(static_cast<size_t>(c.k), 0.0);
  double totmass = 0;
  for (size_t q = 0; q < a.plan.size(); ++q) colmass[q % size_t(c.k)] += double(a.plan[q]);
  for (double v : colmass) totmass += v;
  for (size_t j = 0; j < a.g.size(); ++j)
    if (colmass[j] >= 1e-9 * totmass)
      gd = std::max(gd, std::fabs(a.g[j] - b.g[j]) / (c.lambda * (1 + std::fabs(a.g[j]) * 1e-3)));
  const double pot_tol = relaxed ? 1e-3 : 1e-4;
  CHECK(fd <= pot_tol, "%s: f differs by %.3g lambda", what, fd);
  // g of columns with (numerically) no mass is ill-determined only when a fallback occurred; be strict otherwise
  CHECK(gd <= pot_tol, "%s: g differs by %.3g lambda (columns with plan mass)", what, gd);
  // predictions: identical except near-exact ties of the CPU plan
  int64_t diff = 0, bad = 0;
  for (int64_t i = 0; i < c.n; ++i) {
    if (a.pred[size_t(i)] == b.pred[size_t(i)]) continue;
    ++diff;
    const float* row = a.plan.data() + i * c.k;
    double mr = 0;
    for (int64_t j = 0; j < c.k; ++j) mr = std::max(mr, double(row[j]));
    if (std::fabs(double(row[a.pred[size_t(i)]]) - double(row[b.pred[size_t(i)]])) > 1e-5 * mr) ++bad;
  }
  CHECK(bad == 0, "%s: %lld predictions differ beyond ties (%lld differ in total)", what, (long long)bad, (long long)diff);
  for (int t = 0; t < std::min(a.rep.trace_len, b.rep.trace_len); ++t)
    CHECK(std::fabs(a.trace[size_t(t)] - b.trace[size_t(t)]) <= 1e-3 * std::fabs(a.trace[size_t(t)]) + 2e-6,
          "%s: trace[%d] %.9g vs %.9g", what, t, a.trace[size_t(t)], b.trace[size_t(t)]);
}

void sk_case(const SkCase& c) {
  char what[200];
  std::snprintf(what, sizeof what, "sinkhorn %lldx%lld %s lambda=%g iters=%d tol=%g%s%s%s", (long long)c.n,
                (long long)c.k, c.kind ? "logits" : "cost", c.lambda, c.max_iter, c.tol, c.row_marginal ? " r" : "",
                c.eps_scaling > 0 ? " eps-scaling" : "", c.overrelax > 1 ? " overrelax" : "");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> phi = random_logits(c.n, c.k, 1.5);
  std::vector<float> x = c.kind == OTLM_INPUT_LOGITS ? phi : to_cost(phi, c.n, c.k);
  std::vector<double> mu = random_prior(c.k), col(static_cast<size_t>(c.k)), r;
  double mass = double(c.n);
  if (c.row_marginal) {
    r.resize(size_t(c.n));
    mass = 0;
    for (auto& v : r) mass += (v = 0.5 + unif());
  }
  for (int64_t j = 0; j < c.k; ++j) col[size_t(j)] = mass * mu[size_t(j)];
  const std::vector<double>* rp = c.row_marginal ? &r : nullptr;
  SkOut a = run_sk(CPU, c, x, rp, col, nullptr, nullptr);
  SkOut b = run_sk(GPU, c, x, rp, col, nullptr, nullptr);
  compare_sk(what, c, a, b);
  if (c.env) std::printf("  (%s=1)", c.env);
  std::printf("  %-70s iters %d/%d err %.3g/%.3g fb %lld/%lld  %.2fs\n", what, a.rep.iterations, b.rep.iterations,
              a.rep.error, b.rep.error, (long long)a.rep.log_fallbacks, (long long)b.rep.log_fallbacks,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  // warm start from the CPU result: both continue from the same potentials
  if (a.st == OTLM_OK && c.overrelax == 1 && c.eps_scaling == 0 && c.n * c.k <= 2000000) {
    SkCase w = c;
    w.max_iter = 10;
    SkOut aw = run_sk(CPU, w, x, rp, col, &a.f, &a.g);
    SkOut bw = run_sk(GPU, w, x, rp, col, &a.f, &a.g);
    std::string ww = std::string(what) + " (warm start)";
    compare_sk(ww.c_str(), w, aw, bw);
  }
}

void test_sinkhorn() {
  std::printf("sinkhorn\n");
  const double lams[] = {0.005, 0.1, 1, 10};
  struct Sz {
    int64_t n, k;
  } sizes[] = {{1, 1},          {1, 3},           {7, 1},           {7, 3},           {7, 100},
               {1, 8142},       {7, 8142},        {Q(1000, 300), 1}, {Q(1000, 300), 3}, {Q(1000, 300), 100},
               {Q(1000, 300), 1000},              {Q(1000, 100), 8142},                 {Q(25000, 3000), 3},
               {Q(25000, 3000), 100},             {Q(25000, 2000), 1000},               {Q(300, 60), 9001},
               // one shape for each one-pass configuration the shapes above leave out (row width
               // ≤ 256, ≤ 512, ≤ 2048, ≤ 4096 floats)
               {Q(500, 100), 200}, {Q(500, 100), 400}, {Q(500, 100), 1500}, {Q(500, 100), 3000}};
  int q = 0;
  for (const Sz& s : sizes) {
    for (int kind = 0; kind < 2; ++kind) {
      SkCase c;
      c.n = s.n;
      c.k = s.k;
      c.kind = kind;
      c.lambda = lams[(q++) % 4];
      c.max_iter = 20;
      sk_case(c);
    }
  }
  // every λ on a mid-size problem, both kinds; one converging run with a tolerance
  for (double l : lams)
    for (int kind = 0; kind < 2; ++kind) {
      SkCase c;
      c.n = Q(2000, 500);
      c.k = 100;
      c.kind = kind;
      c.lambda = l;
      c.max_iter = 40;
      sk_case(c);
    }
  {
    SkCase c;
    c.n = Q(3000, 1000);
    c.k = 50;
    c.kind = OTLM_INPUT_LOGITS;
    c.lambda = 1;
    c.max_iter = 500;
    c.tol = 1e-4;
    c.check_every = 3;
    sk_case(c);
    c.row_marginal = true;
    c.kind = OTLM_INPUT_COST;
    c.lambda = 0.1;
    sk_case(c);
  }
  // the two-pass path on shapes the one-pass kernel would take
  for (Sz s : {Sz{7, 3}, Sz{Q(1000, 300), 100}, Sz{Q(1000, 200), 1000}}) {
    SkCase c;
    c.n = s.n;
    c.k = s.k;
    c.kind = OTLM_INPUT_LOGITS;
    c.lambda = 0.1;
    c.env = "OTLM_CUDA_SINKHORN_TWOPASS";
    sk_case(c);
  }
  // ε-scaling and over-relaxation
  {
    SkCase c;
    c.n = Q(2000, 800);
    c.k = 100;
    c.kind = OTLM_INPUT_LOGITS;
    c.lambda = 0.05;
    c.max_iter = 60;
    c.eps_scaling = 0.5;
    sk_case(c);
    SkCase o = c;
    o.eps_scaling = 0;
    o.lambda = 0.1;
    o.overrelax = 1.8;
    o.max_iter = 300;
    o.tol = 1e-6;
    sk_case(o);
  }
  // cancellation and bad input
  {
    SkCase c;
    c.n = 100;
    c.k = 10;
    c.kind = OTLM_INPUT_COST;
    c.lambda = 0.1;
    c.max_iter = 100;
    std::vector<float> x = to_cost(random_logits(c.n, c.k, 1), c.n, c.k);
    std::vector<double> col(static_cast<size_t>(c.k), double(c.n) / double(c.k));
    volatile int32_t cancel = 1;
    SkOut a = run_sk(CPU, c, x, nullptr, col, nullptr, nullptr, &cancel);
    SkOut b = run_sk(GPU, c, x, nullptr, col, nullptr, nullptr, &cancel);
    CHECK(b.st == OTLM_EABORTED && a.st == b.st && a.rep.iterations == b.rep.iterations,
          "cancel: cpu %d after %d, cuda %d after %d (%s)", a.st, a.rep.iterations, b.st, b.rep.iterations, b.msg.c_str());
    x[size_t(5 * c.k + 3)] = NAN;
    a = run_sk(CPU, c, x, nullptr, col, nullptr, nullptr);
    b = run_sk(GPU, c, x, nullptr, col, nullptr, nullptr);
    CHECK(b.st == OTLM_EINVAL && a.st == b.st, "NaN input: cpu %d, cuda %d", a.st, b.st);
    CHECK(b.msg.find("row 5, column 3") != std::string::npos, "NaN input message: %s", b.msg.c_str());
    std::printf("  cancel / NaN input: %s\n", b.msg.c_str());
  }
}

// ----------------------------------------------------------------------------------- GEMM
// OTLM_CUDA_TF32=1 engages the tensor cores only on compute capability ≥ 8.0: below, the GEMM is
// the FP32 one (error within the FP32 tolerance) and info says "otlm-fp32". Checked on the device
// at hand, and on the emulator also as a 7.5 and an 8.6 device (OTLM_CUDA_EMU_CC).
void test_tf32_gating() {
  const int64_t m = 130, n = 129, kk = 131;
  std::vector<float> a(static_cast<size_t>(m * kk)), b(static_cast<size_t>(kk * n)), c0(static_cast<size_t>(m * n)),
      c1(c0.size()), bound(c0.size()), aa(a.size()), ab(b.size());
  for (auto& v : a) v = float(gauss());
  for (auto& v : b) v = float(gauss());
  for (size_t q = 0; q < a.size(); ++q) aa[q] = std::fabs(a[q]);
  for (size_t q = 0; q < b.size(); ++q) ab[q] = std::fabs(b[q]);
  otlm_error e{};
  CPU->gemm(m, n, kk, a.data(), b.data(), nullptr, c0.data(), 0, &e);
  CPU->gemm(m, n, kk, aa.data(), ab.data(), nullptr, bound.data(), 0, &e);
  std::vector<int> ccs = {g_cc};
  if (g_emulated) ccs = {75, 86, 90};
  setenv("OTLM_CUDA_TF32", "1", 1);
  for (int cc : ccs) {
    char ccs_env[16];
    std::snprintf(ccs_env, sizeof ccs_env, "%d.%d", cc / 10, cc % 10);
    if (g_emulated) setenv("OTLM_CUDA_EMU_CC", ccs_env, 1);
    otlm_status st = GPU->gemm(m, n, kk, a.data(), b.data(), nullptr, c1.data(), 0, &e);
    otlm_backend_info bi{};
    otlm_error ie{};
    GPU->info(&bi, &ie);
    double worst = 0;  // in units of the FP32 tolerance
    for (size_t q = 0; q < c0.size(); ++q)
      worst = std::max(worst, std::fabs(double(c0[q]) - double(c1[q])) / (2e-6 * double(bound[q]) + 1e-30));
    const bool tf32 = cc >= 80;
    CHECK(st == OTLM_OK, "tf32 gating cc %s: status %d (%s)", ccs_env, st, e.message);
    CHECK(tf32 ? worst > 1 : worst <= 1, "tf32 gating cc %s: error %.3g x the FP32 tolerance: the %s path ran", ccs_env,
          worst, worst > 1 ? "TF32" : "FP32");
    CHECK(std::strcmp(bi.gemm, tf32 ? "otlm-tf32" : "otlm-fp32") == 0, "tf32 gating cc %s: info.gemm %s", ccs_env,
          bi.gemm);
    std::printf("  OTLM_CUDA_TF32=1 on compute capability %s: %s, error %.3g x the FP32 tolerance\n", ccs_env, bi.gemm,
                worst);
  }
  unsetenv("OTLM_CUDA_TF32");
  if (g_emulated) unsetenv("OTLM_CUDA_EMU_CC");
}

void test_gemm() {
  std::printf("gemm\n");
  struct G {
    int64_t m, n, kk;
  } shapes[] = {{1, 1, 1},     {7, 3, 5},     {130, 129, 131}, {Q(1000, 300), Q(1000, 333), Q(1000, 520)},
                {257, 8142, 64}, {64, 33, 10000}};
  for (int tf32 = 0; tf32 < 2; ++tf32)
    for (const G& s : shapes) {
      std::vector<float> a(static_cast<size_t>(s.m * s.kk)), b(static_cast<size_t>(s.kk * s.n)), bias(static_cast<size_t>(s.n)), aa(a.size()), ab(b.size());
      for (auto& v : a) v = float(gauss());
      for (auto& v : b) v = float(gauss());
      for (auto& v : bias) v = float(gauss());
      for (size_t q = 0; q < a.size(); ++q) aa[q] = std::fabs(a[q]);
      for (size_t q = 0; q < b.size(); ++q) ab[q] = std::fabs(b[q]);
      for (int wb = 0; wb < 2; ++wb) {
        std::vector<float> c0(static_cast<size_t>(s.m * s.n)), c1(c0.size(), NAN), bound(c0.size());
        otlm_error e{};
        const float* bp = wb ? bias.data() : nullptr;
        otlm_status s0 = CPU->gemm(s.m, s.n, s.kk, a.data(), b.data(), bp, c0.data(), 0, &e);
        CPU->gemm(s.m, s.n, s.kk, aa.data(), ab.data(), nullptr, bound.data(), 0, &e);
        if (tf32) setenv("OTLM_CUDA_TF32", "1", 1);
        otlm_status s1 = GPU->gemm(s.m, s.n, s.kk, a.data(), b.data(), bp, c1.data(), 0, &e);
        if (tf32) unsetenv("OTLM_CUDA_TF32");
        CHECK(s0 == OTLM_OK && s1 == OTLM_OK, "gemm %lldx%lldx%lld: status %d / %d (%s)", (long long)s.m, (long long)s.n,
              (long long)s.kk, s0, s1, e.message);
        if (s0 || s1) continue;
        const double rel = tf32 ? 2e-3 : 2e-6;
        double worst = 0;
        bool finite = true;
        for (size_t q = 0; q < c0.size(); ++q) {
          finite &= std::isfinite(c1[q]);
          double tol = rel * (double(bound[q]) + (wb ? std::fabs(double(bias[q % size_t(s.n)])) : 0)) + 1e-30;
          worst = std::max(worst, std::fabs(double(c0[q]) - double(c1[q])) / tol);
        }
        CHECK(finite, "gemm %lldx%lldx%lld: unwritten output", (long long)s.m, (long long)s.n, (long long)s.kk);
        CHECK(worst <= 1, "gemm %lldx%lldx%lld %s bias=%d: error %.3g x tolerance", (long long)s.m, (long long)s.n,
              (long long)s.kk, tf32 ? "tf32" : "fp32", wb, worst);
        std::printf("  gemm %5lldx%5lldx%5lld %s bias=%d: worst/tol %.3g\n", (long long)s.m, (long long)s.n,
                    (long long)s.kk, tf32 ? "tf32" : "fp32", wb, worst);
      }
    }
  otlm_error e{};
  float dummy = 0;
  CHECK(GPU->gemm(0, 1, 1, &dummy, &dummy, nullptr, &dummy, 0, &e) == OTLM_EINVAL, "gemm: m=0 must be EINVAL");
  test_tf32_gating();
}

// ----------------------------------------------------------------------------------- OTLM
otlm_train_params train_params(int64_t k, double lambda, int T, int mode, int opt) {
  otlm_train_params p{};
  p.k = k;
  p.lambda = lambda;
  p.sinkhorn_iters = T;
  p.tol = 0;
  p.grad_mode = mode;
  p.optimizer = opt;
  p.beta1 = 0.9;
  p.beta2 = 0.999;
  p.eps = 1e-8;
  p.weight_decay = 1e-3;
  p.momentum = 0.9;
  p.nesterov = 0;
  return p;
}

void test_loss_grad() {
  std::printf("loss_grad\n");
  struct C {
    int64_t b, k;
    double lambda;
    int T;
    double tol;
  } cases[] = {{1, 1, 1.0, 3, 0},
               {1, 5, 0.5, 2, 0},
               {7, 3, 0.1, 1, 0},
               {500, 100, 0.1, 20, 0},
               {Q(2000, 400), Q(1000, 300), 1.2, 7, 0},
               {300, 37, 1.0, 50, 1e-2},
               {Q(1000, 400), 130, 0.05, 10, 0}};
  for (const C& c : cases)
    for (int mode = 0; mode < 2; ++mode)
      for (int wb = 0; wb < 2; ++wb) {
        otlm_train_params p = train_params(c.k, c.lambda, c.T, mode, OTLM_OPT_ADAM);
        p.tol = c.tol;
        std::vector<float> phi = random_logits(c.b, c.k, 1.5), w(static_cast<size_t>(c.k * c.k)), bias(static_cast<size_t>(c.k));
        for (int64_t i = 0; i < c.k; ++i)
          for (int64_t j = 0; j < c.k; ++j) w[size_t(i * c.k + j)] = float((i == j ? 1.0 : 0.0) + 0.02 * gauss());
        std::vector<double> mu = random_prior(c.k);
        for (auto& v : bias) v = float(-std::log(0.1 + unif()));
        std::vector<float> g0(static_cast<size_t>(c.k * c.k)), g1(g0.size(), NAN);
        double l0 = NAN, l1 = NAN;
        otlm_step_report r0{}, r1{};
        otlm_error e0{}, e1{};
        const float* bp = wb ? bias.data() : nullptr;
        otlm_status s0 = CPU->loss_grad(&p, phi.data(), c.b, w.data(), bp, mu.data(), &l0, g0.data(), &r0, &e0);
        otlm_status s1 = GPU->loss_grad(&p, phi.data(), c.b, w.data(), bp, mu.data(), &l1, g1.data(), &r1, &e1);
        char what[160];
        std::snprintf(what, sizeof what, "loss_grad b=%lld k=%lld lambda=%g T=%d tol=%g %s bias=%d", (long long)c.b,
                      (long long)c.k, c.lambda, c.T, c.tol, mode ? "envelope" : "unrolled", wb);
        CHECK(s0 == OTLM_OK && s1 == OTLM_OK, "%s: status %d (%s) / %d (%s)", what, s0, e0.message, s1, e1.message);
        if (s0 || s1) continue;
        CHECK(std::fabs(l0 - l1) <= 1e-4 * std::fabs(l0) + 1e-5, "%s: loss %.9g vs %.9g", what, l0, l1);
        CHECK(r0.sinkhorn_iters == r1.sinkhorn_iters, "%s: iterations %d vs %d", what, r0.sinkhorn_iters, r1.sinkhorn_iters);
        CHECK(std::fabs(r0.marginal_error - r1.marginal_error) <= 1e-3 * r0.marginal_error + 1e-6,
              "%s: marginal error %.9g vs %.9g", what, r0.marginal_error, r1.marginal_error);
        double gmax = 0, gd = 0;
        bool finite = true;
        for (size_t q = 0; q < g0.size(); ++q) {
          gmax = std::max(gmax, std::fabs(double(g0[q])));
          finite &= std::isfinite(g1[q]);
          gd = std::max(gd, std::fabs(double(g0[q]) - double(g1[q])));
        }
        CHECK(finite, "%s: unwritten gradient element", what);
        CHECK(gd <= 1e-3 * gmax + 1e-7, "%s: gradient max |diff| %.3g vs max |grad| %.3g", what, gd, gmax);
        CHECK(std::fabs(r0.grad_norm - r1.grad_norm) <= 1e-3 * r0.grad_norm + 1e-7, "%s: grad norm %.9g vs %.9g", what,
              r0.grad_norm, r1.grad_norm);
        std::printf("  %-72s loss %.6g/%.6g |dgrad|/max %.2g\n", what, l0, l1, gmax > 0 ? gd / gmax : gd);
      }
}

void test_trainer() {
  std::printf("trainer\n");
  struct C {
    int64_t n, k, b;
    double lambda, lr;
    int T, opt, nesterov, mode;
  } cases[] = {{Q(3000, 1500), 100, 1024, 0.1, 1e-3, 20, OTLM_OPT_ADAM, 0, 0},  // b ≥ 1024: split-K dW
               {Q(5000, 1200), Q(1000, 300), Q(2000, 500), 1.2, 0.2, 7, OTLM_OPT_SGD, 1, 0},
               {2000, 64, 700, 1.0, 5e-3, 10, OTLM_OPT_ADAMW, 0, 1},
               {1500, 30, 1500, 1.0, 0.05, 10, OTLM_OPT_SGD, 0, 1}};
  for (const C& c : cases) {
    otlm_train_params p = train_params(c.k, c.lambda, c.T, c.mode, c.opt);
    p.nesterov = c.nesterov;
    std::vector<float> phi = random_logits(c.n, c.k, 1.5), bias(static_cast<size_t>(c.k));
    for (auto& v : bias) v = float(-std::log(0.1 + unif()));
    std::vector<double> mu = random_prior(c.k);
    otlm_trainer *t0 = nullptr, *t1 = nullptr;
    otlm_error e0{}, e1{};
    otlm_status s0 = CPU->trainer_create(&p, phi.data(), c.n, bias.data(), mu.data(), &t0, &e0);
    otlm_status s1 = GPU->trainer_create(&p, phi.data(), c.n, bias.data(), mu.data(), &t1, &e1);
    char what[160];
    std::snprintf(what, sizeof what, "trainer n=%lld k=%lld b=%lld opt=%d T=%d %s", (long long)c.n, (long long)c.k,
                  (long long)c.b, c.opt, c.T, c.mode ? "envelope" : "unrolled");
    CHECK(s0 == OTLM_OK && s1 == OTLM_OK, "%s: create %d (%s) / %d (%s)", what, s0, e0.message, s1, e1.message);
    if (s0 || s1) {
      if (t0) CPU->trainer_destroy(t0);
      if (t1) GPU->trainer_destroy(t1);
      continue;
    }
    std::vector<int32_t> rows(static_cast<size_t>(c.b));
    for (int step = 0; step < 5; ++step) {
      for (auto& r : rows) r = int32_t(g_rng() % uint64_t(c.n));
      otlm_step_report r0{}, r1{};
      s0 = CPU->trainer_step(t0, rows.data(), c.b, c.lr, &r0, &e0);
      s1 = GPU->trainer_step(t1, rows.data(), c.b, c.lr, &r1, &e1);
      CHECK(s0 == OTLM_OK && s1 == OTLM_OK, "%s step %d: %d (%s) / %d (%s)", what, step, s0, e0.message, s1, e1.message);
      CHECK(std::fabs(r0.loss - r1.loss) <= 1e-4 * std::fabs(r0.loss) + 1e-5, "%s step %d: loss %.9g vs %.9g", what,
            step, r0.loss, r1.loss);
      CHECK(std::fabs(r0.grad_norm - r1.grad_norm) <= 2e-3 * r0.grad_norm + 1e-7, "%s step %d: grad norm %.9g vs %.9g",
            what, step, r0.grad_norm, r1.grad_norm);
      std::printf("  %-60s step %d loss %.7g/%.7g |g| %.5g/%.5g  %.3fs/%.3fs\n", what, step, r0.loss, r1.loss,
                  r0.grad_norm, r1.grad_norm, r0.seconds, r1.seconds);
    }
    std::vector<float> w0(static_cast<size_t>(c.k * c.k)), w1(w0.size(), NAN);
    CPU->trainer_get_weights(t0, w0.data(), &e0);
    s1 = GPU->trainer_get_weights(t1, w1.data(), &e1);
    CHECK(s1 == OTLM_OK, "%s: get_weights %s", what, e1.message);
    // Adam-type steps are ≈ lr·sign(g): allow a few elements whose tiny gradients flipped sign
    const double tol = c.opt == OTLM_OPT_SGD ? 1e-3 * c.lr * 5 : 0.05 * c.lr * 5;
    int64_t off = 0;
    double worst = 0;
    for (size_t q = 0; q < w0.size(); ++q) {
      double d = std::fabs(double(w0[q]) - double(w1[q]));
      worst = std::max(worst, d);
      if (!(d <= tol)) ++off;
    }
    const int64_t allowed = c.opt == OTLM_OPT_SGD ? 0 : int64_t(w0.size() / 1000);
    CHECK(off <= allowed, "%s: %lld weights differ by more than %.3g (worst %.3g)", what, (long long)off, tol, worst);
    CHECK(worst <= 2 * c.lr * 5 + 1e-6, "%s: worst weight difference %.3g", what, worst);
    // bad row index, then set/get round trip, then a non-finite step leaves W unchanged
    rows[0] = int32_t(c.n);
    otlm_step_report rr{};
    CHECK(GPU->trainer_step(t1, rows.data(), c.b, c.lr, &rr, &e1) == OTLM_EINVAL, "%s: bad row index accepted", what);
    std::vector<float> big(w0.size(), 0.f);
    for (int64_t j = 0; j < c.k; ++j) big[size_t(j * c.k + j)] = 3e38f;
    CHECK(GPU->trainer_set_weights(t1, big.data(), &e1) == OTLM_OK, "%s: set_weights %s", what, e1.message);
    rows[0] = 0;
    s1 = GPU->trainer_step(t1, rows.data(), c.b, c.lr, &rr, &e1);
    CHECK(s1 == OTLM_ENONFINITE, "%s: overflowing W gave status %d (%s), expected ENONFINITE", what, s1, e1.message);
    std::printf("  non-finite step: %s\n", e1.message);
    std::vector<float> back(w0.size(), NAN);
    GPU->trainer_get_weights(t1, back.data(), &e1);
    CHECK(std::memcmp(back.data(), big.data(), back.size() * 4) == 0, "%s: W changed by a failed step", what);
    CPU->trainer_destroy(t0);
    GPU->trainer_destroy(t1);
  }
}

}  // namespace

int main() {
  const char* lib = OTLM_CUDA_LIB;
  if (const char* e = std::getenv("OTLM_CUDA_LIB"); e && *e) lib = e;
  if (!lib || !*lib) {
    std::printf("SKIP: the CUDA backend was not built (no nvcc at configure time)\n");
    return 77;
  }
  void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::printf("SKIP: cannot load %s: %s\n", lib, dlerror());
    return 77;
  }
  auto entry = reinterpret_cast<otlm_cuda_backend_fn>(dlsym(h, OTLM_CUDA_ENTRY));
  if (!entry) {
    std::printf("FAIL: %s does not export %s\n", lib, OTLM_CUDA_ENTRY);
    return 1;
  }
  otlm_error err{};
  GPU = entry(nullptr, &err);
  if (!GPU) {
    std::printf("SKIP: CUDA backend unavailable: %s\n", err.message);
    return 77;
  }
  CPU = otlm_cpu_backend();
  otlm_backend_info info{};
  if (GPU->info(&info, &err) == OTLM_OK) {
    const otlm_device_info& d = info.devices[info.device >= 0 && info.device < OTLM_INFO_MAX_DEVICES ? info.device : 0];
    std::printf("cuda device %d: %s, %.1f GiB, sm_%d%d, %d SMs, tf32 %d; driver %d, runtime %d%s\n", info.device, d.name,
                double(d.total_memory_bytes) / 1073741824.0, d.cc_major, d.cc_minor, d.sm_count, d.tf32,
                info.driver_version, info.runtime_version, info.emulated ? " (emulated)" : "");
    CHECK(info.device >= 0 && info.device < info.device_count && d.total_memory_bytes > 0 && d.name[0] &&
              d.cc_major * 10 + d.cc_minor >= 75 && info.driver_version > 0,
          "the info of a usable CUDA backend names its device");
    g_emulated = info.emulated != 0;
    g_cc = d.cc_major * 10 + d.cc_minor;
  } else {
    std::printf("FAIL: info: %s\n", err.message), ++g_fail;
  }
  CHECK(GPU->abi_version == OTLM_ABI_VERSION && std::strcmp(GPU->name, "cuda") == 0, "backend table header");
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("OTLM_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
  if (const char* q = std::getenv("OTLM_TEST_QUICK")) g_quick = std::atoi(q) != 0;
  std::printf("seed %llu (set OTLM_TEST_SEED to replay)%s\n", (unsigned long long)seed,
              g_quick ? "; quick sizes (OTLM_TEST_QUICK=1)" : "");
  g_rng.seed(seed);
  const auto t0 = std::chrono::steady_clock::now();
  const char* only = std::getenv("OTLM_TEST_ONLY");
  auto want = [&](const char* group) { return !only || !*only || std::strstr(only, group) != nullptr; };
  if (want("gemm")) test_gemm();
  if (want("sinkhorn")) test_sinkhorn();
  if (want("loss_grad")) test_loss_grad();
  if (want("trainer")) test_trainer();
  std::printf("%d checks, %d failed, %.1fs\n", g_checks, g_fail,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return g_fail ? 1 : 0;
}
