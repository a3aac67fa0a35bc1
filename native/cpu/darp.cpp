// DARP on the CPU (issue 14). The math, the stopping rules and the order of the float64 operations
// are those of the TypeScript reference (src/paths/reference/darp.ts, the oracle of the tests); what
// differs is rounding only: reductions are summed in 8 lanes and fixed row chunks, exp is a
// vectorised one within ~2 ulp, products are fused where the ISA has FMA, and a Newton iteration
// near its previous point reads a Taylor series of the class sums instead of passing over the data
// (below). The two agree to ~1e-13, predict the same classes and take the same sweeps.
//
// Layout: the logits are copied once into blocks of 8 rows, class-major within a block (float32, rows
// padded to a multiple of 8): the row step reads them sequentially and every pass works on 8 rows at
// a time whatever K is:
//   - prep   (row chunks): the blocked copy, row log-sum-exp, the entropy weights;
//   - rows   (row chunks): the row step a_i = 1 / Σ_k p_ik exp(−ν_k/w_i), and with the same
//            exponentials the moments S_m = Σ_i X_ik (1/w_i)^m of the new X per class: S_0 gives the
//            column error, S_0 and S_1 the first Newton iteration of every class, S_2..S_8 (added up
//            only when the class step is expected to use them) the series below;
//   - newton (one task per class): Newton on h_k(ν) = LSE_i(log p_ik + log a_i − ν/w_i) − log c_k.
//            With moments S_m taken at ν_0, Σ_i X_ik exp(−(ν−ν_0)/w_i) = Σ_m (−δ)^m/m! S_m with
//            δ = ν − ν_0; while |δ|·max_i(1/w_i) ≤ 0.025 the series truncated after m = 7 is exact to
//            < 4e-18 relative, so those iterations cost O(1). Otherwise a pass over the class column
//            (max, then the shifted sums and new moments), as the reference does. Near convergence a
//            whole class step costs O(K);
//   - final  (row chunks, from the row-major logits): X, its float32 copy and the row argmax.
// Chunks depend on the shape alone and their partial sums are merged in chunk order; each class is
// solved by one task: results are bit-identical for any thread count. The kernels use GCC vector
// extensions of 8 doubles (one zmm, two ymm or four xmm) and are compiled once per SIMD level (this
// file includes itself below); AVX-512 and AVX2 use the same fused multiply-adds and give the same
// bits, the baseline (no FMA) agrees with them to rounding. Measured in bench/RESULTS.md ("Native
// DARP (issue 14)").
#ifndef OTLM_DARP_BODY

#include "darp.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "otlm/validate.h"
#include "otlm_engine.h"
#include "simd_exp.h"
#include "thread_pool.h"

// The 64-byte vector type is passed between internal functions of this file only.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace otlm::cpu {
namespace {

constexpr int kL = 8;            // rows per vector
constexpr int kMom = 9;          // moments S_0..S_8 (the series of S uses 0..7, that of S' 1..8)
constexpr double kReach = 0.025; // |δ|·max(1/w) up to which a Newton iteration reads the series
typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

// Everything a pass needs; the passes write disjoint parts of it.
struct Ctx {
  int64_t n, k, ld;      // ld = rows padded to a multiple of kL
  int64_t sub_blocks;    // row blocks per sub-chunk of the row pass (depends on k only)
  const float* x;        // n×k, row-major
  float* xB;             // (ld/kL)×k×kL: block b, class j holds Φ_ij for rows i = kL·b.. (0 in padded rows)
  double* lse;           // ld: LSE_j Φ_ij (0 in padded rows)
  double* invw;          // ld: 1 / w_i (0 in padded rows)
  double* log_a;         // ld: log a_i (−inf in padded rows: they vanish from every class sum)
  const double* w_given; // n, or NULL
  int32_t w_mode;
  const double* nu;      // k
  double iw_max;         // max_i 1/w_i
  bool moments;          // the row step adds up S_2..S_8 too (else they are NaN: no series)
  float* probs;          // n×k or NULL
  int32_t* pred;         // n or NULL
  int32_t newton_iter;
};

struct DarpKernels {
  // rows [i0, i1): transpose, LSE, weights; *iw_max = the largest 1/w; returns the flat index of the
  // first non-finite logit or -1. scratch: k·kL doubles.
  int64_t (*prep)(const Ctx&, int64_t i0, int64_t i1, double* scratch, double* iw_max);
  // rows [i0, i1): row step; mom[j·kMom + m] = Σ_i X_ij (1/w_i)^m over these rows.
  void (*rows)(const Ctx&, int64_t i0, int64_t i1, double* mom, double* scratch);
  // class j from ν = v with the row step's moments mom[kMom] at v: the new ν_j.
  double (*newton)(const Ctx&, int64_t j, double v, double logc, const double* mom);
  // rows [i0, i1): X, probabilities, predictions. scratch: k + kL doubles.
  void (*final_rows)(const Ctx&, int64_t i0, int64_t i1, double* scratch);
};

size_t rows_scratch(int64_t k, int64_t sub_blocks) {
  return size_t((sub_blocks * k + (2 + kMom) * sub_blocks + kMom * k) * kL);
}

}  // namespace

// ------------------------------------------------------------- the kernels, once per SIMD level
#define OTLM_DARP_BODY 1
#if OTLM_SIMD_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
#define OTLM_DARP_ISA 2
namespace k_darp_avx512 {
#include "darp.cpp"  // NOLINT(bugprone-suspicious-include): the kernel bodies below
}  // namespace k_darp_avx512
#undef OTLM_DARP_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define OTLM_DARP_ISA 1
namespace k_darp_avx2 {
#include "darp.cpp"  // NOLINT(bugprone-suspicious-include)
}  // namespace k_darp_avx2
#undef OTLM_DARP_ISA
#pragma GCC pop_options
#endif
#define OTLM_DARP_ISA 0
namespace k_darp_base {
#include "darp.cpp"  // NOLINT(bugprone-suspicious-include)
}  // namespace k_darp_base
#undef OTLM_DARP_ISA
#undef OTLM_DARP_BODY

// ------------------------------------------------------------------------------------ the driver
namespace {

const DarpKernels& kernels_for(simd::Level l) {
#if OTLM_SIMD_X86
  if (l == simd::Level::avx512) return k_darp_avx512::table;
  if (l == simd::Level::avx2) return k_darp_avx2::table;
#else
  (void)l;
#endif
  return k_darp_base::table;
}

// Scratch for the tasks running at the same time (at most `threads`): a task takes a free slot.
class Slots {
 public:
  Slots(int count, double* mem, size_t doubles) : busy_(size_t(count)), mem_(mem), doubles_(doubles) {}
  double* take(int* slot) {
    for (;;) {
      for (size_t s = 0; s < busy_.size(); ++s) {
        bool expected = false;
        if (busy_[s].compare_exchange_strong(expected, true, std::memory_order_acquire)) {
          *slot = int(s);
          return mem_ + s * doubles_;
        }
      }
    }
  }
  void give(int slot) { busy_[size_t(slot)].store(false, std::memory_order_release); }

 private:
  std::vector<std::atomic<bool>> busy_;
  double* mem_;
  size_t doubles_;
};

// The work memory of a call (the blocked logits, the per-row vectors, the chunks' partial sums, the
// tasks' scratch) in one block. On fresh 4 KiB pages its first-touch page faults would cost more than
// the solve on a VM (12 µs a page on the bench VM; docs/architecture.md, "Memory contract"), so from
// 256 KiB it is mapped directly, 2 MiB-aligned and advised as huge pages, and unmapped when the call
// returns.
class WorkMemory {
 public:
  explicit WorkMemory(size_t bytes) {
#if defined(__linux__)
    constexpr size_t kHuge = size_t(2) << 20;
    if (bytes >= (size_t(256) << 10)) {
      const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
      void* m = mmap(nullptr, rounded + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m != MAP_FAILED) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(m);
        const uintptr_t a = (base + kHuge - 1) & ~uintptr_t(kHuge - 1);
        if (a > base) munmap(m, a - base);
        const uintptr_t end = base + rounded + kHuge;
        if (end > a + rounded) munmap(reinterpret_cast<void*>(a + rounded), end - (a + rounded));
        madvise(reinterpret_cast<void*>(a), rounded, MADV_HUGEPAGE);  // advice only
        p_ = reinterpret_cast<char*>(a);
        mapped_ = rounded;
        return;
      }
    }
#endif
    p_ = static_cast<char*>(std::aligned_alloc(64, (bytes + 63) & ~size_t(63)));
    if (!p_) throw std::bad_alloc();
  }
  ~WorkMemory() {
#if defined(__linux__)
    if (mapped_) {
      munmap(p_, mapped_);
      return;
    }
#endif
    std::free(p_);
  }
  WorkMemory(const WorkMemory&) = delete;
  WorkMemory& operator=(const WorkMemory&) = delete;
  char* get() const { return p_; }

 private:
  char* p_ = nullptr;
  size_t mapped_ = 0;
};

otlm_status validate(const DarpParams* p, const DarpBuffers* io, otlm_error* err) {
  if (!p || !io) return fail(err, OTLM_EINVAL, "darp: params and buffers are required");
  if (p->n < 1 || p->k < 1)
    return fail(err, OTLM_EINVAL, "darp: shape must be at least 1x1, got %lldx%lld", (long long)p->n, (long long)p->k);
  // n·k elements, and the padded transpose, must be addressable.
  if (p->n > (INT64_MAX / 8 - kL) / p->k)
    return fail(err, OTLM_EINVAL, "darp: shape %lldx%lld overflows", (long long)p->n, (long long)p->k);
  if (p->max_iter < 1) return fail(err, OTLM_EINVAL, "darp: maxIter must be >= 1, got %d", p->max_iter);
  if (!(p->tol >= 0) || !std::isfinite(p->tol))
    return fail(err, OTLM_EINVAL, "darp: tol must be a finite number >= 0, got %g", p->tol);
  if (p->newton_iter < 1) return fail(err, OTLM_EINVAL, "darp: newtonIter must be >= 1, got %d", p->newton_iter);
  if (p->threads < 0 || p->threads > OTLM_MAX_THREADS)
    return fail(err, OTLM_EINVAL, "darp: threads must be in [0, %d] (0 = default), got %d", OTLM_MAX_THREADS, p->threads);
  if (p->weights != OTLM_DARP_WEIGHTS_ENTROPY && p->weights != OTLM_DARP_WEIGHTS_UNIFORM &&
      p->weights != OTLM_DARP_WEIGHTS_GIVEN)
    return fail(err, OTLM_EINVAL, "darp: weights mode must be 0 (entropy), 1 (uniform) or 2 (given), got %d", p->weights);
  if (!io->logits) return fail(err, OTLM_EINVAL, "darp: logits are required");
  if (!io->col_marginal) return fail(err, OTLM_EINVAL, "darp: colMarginal is required");
  double cs = 0;
  for (int64_t j = 0; j < p->k; ++j) {
    const double v = io->col_marginal[j];
    if (!std::isfinite(v) || !(v > 0))
      return fail(err, OTLM_EINVAL, "darp: colMarginal[%lld] must be a finite number > 0, got %g", (long long)j, v);
    cs += v;
  }
  const double n = double(p->n);
  if (std::fabs(cs - n) > 1e-6 * n)
    return fail(err, OTLM_EINVAL, "darp: colMarginal must sum to the number of rows %lld, got %.17g", (long long)p->n, cs);
  if (p->weights == OTLM_DARP_WEIGHTS_GIVEN) {
    if (!io->weights) return fail(err, OTLM_EINVAL, "darp: weights are required with the 'given' mode");
    for (int64_t i = 0; i < p->n; ++i) {
      const double v = io->weights[i];
      if (!std::isfinite(v) || !(v > 0))
        return fail(err, OTLM_EINVAL, "darp: weights[%lld] must be a finite number > 0, got %g", (long long)i, v);
    }
  }
  return OTLM_OK;
}

otlm_status run(const DarpParams* p, const DarpBuffers* io, DarpReport* rep, otlm_error* err) {
  const int64_t n = p->n, k = p->k;
  const int threads = resolve_threads(p->threads);
  const int64_t ld = (n + kL - 1) / kL * kL;
  // Row chunks: ≥ 128 rows, at most 128 of them and at most ~8 MB of moment partials; fixed by the
  // shape alone, so the merge order never depends on the thread count.
  const int64_t max_chunks = std::clamp<int64_t>(int64_t(8e6 / (double(k) * kMom * 8)), 8, 128);
  const int64_t chunk_rows = (std::max<int64_t>(128, (n + max_chunks - 1) / max_chunks) + kL - 1) / kL * kL;
  const int64_t chunks = (ld + chunk_rows - 1) / chunk_rows;
  // Row blocks whose exponentials the row step keeps (≤ 128 KiB, L2) before adding up their moments.
  const int64_t sub_blocks = std::clamp<int64_t>(2048 / k, 1, 16);
  const int slots = int(std::min<int64_t>(threads, chunks));

  const size_t scratch_doubles = std::max(rows_scratch(k, sub_blocks), size_t((k + 1) * kL));
  auto bytes64 = [](size_t b) { return (b + 63) & ~size_t(63); };
  const size_t work_bytes = bytes64(size_t(k * ld) * sizeof(float)) + 3 * bytes64(size_t(ld) * sizeof(double)) +
                            bytes64(size_t(chunks * k * kMom) * sizeof(double)) +
                            bytes64(size_t(slots) * scratch_doubles * sizeof(double));
  std::unique_ptr<WorkMemory> work;
  std::vector<double> nu, logc, mom, iw_part;
  std::unique_ptr<Slots> scratch;
  try {
    work = std::make_unique<WorkMemory>(work_bytes);
    nu.assign(size_t(k), 0.0);
    logc.resize(size_t(k));
    mom.resize(size_t(k * kMom));
    iw_part.resize(size_t(chunks));
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "darp: out of memory for a %lldx%lld problem (%.0f MB of work memory)", (long long)n,
                (long long)k, double(work_bytes) * 1e-6);
  }
  char* cursor = work->get();
  auto carve = [&](size_t b) {
    char* q = cursor;
    cursor += bytes64(b);
    return q;
  };
  float* xB = reinterpret_cast<float*>(carve(size_t(k * ld) * sizeof(float)));
  double* lse = reinterpret_cast<double*>(carve(size_t(ld) * sizeof(double)));
  double* invw = reinterpret_cast<double*>(carve(size_t(ld) * sizeof(double)));
  double* log_a = reinterpret_cast<double*>(carve(size_t(ld) * sizeof(double)));
  double* mom_part = reinterpret_cast<double*>(carve(size_t(chunks * k * kMom) * sizeof(double)));
  double* scratch_mem = reinterpret_cast<double*>(carve(size_t(slots) * scratch_doubles * sizeof(double)));
  try {
    scratch = std::make_unique<Slots>(slots, scratch_mem, scratch_doubles);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "darp: out of memory");
  }
  for (int64_t j = 0; j < k; ++j) logc[size_t(j)] = std::log(io->col_marginal[j]);

  Ctx c{};
  c.n = n;
  c.k = k;
  c.ld = ld;
  c.sub_blocks = sub_blocks;
  c.x = io->logits;
  c.xB = xB;
  c.lse = lse;
  c.invw = invw;
  c.log_a = log_a;
  c.w_given = io->weights;
  c.w_mode = p->weights;
  c.nu = nu.data();
  c.probs = io->probabilities;
  c.pred = io->predictions;
  c.newton_iter = p->newton_iter;
  const DarpKernels& kr = kernels_for(simd::active_level());
  auto range = [&](int64_t t, int64_t* i0, int64_t* i1) {
    *i0 = t * chunk_rows;
    *i1 = std::min(ld, *i0 + chunk_rows);
  };
  auto chunked = [&](auto&& body) {
    parallel_for(chunks, threads, [&](int64_t t) {
      int64_t i0, i1;
      range(t, &i0, &i1);
      int slot;
      double* scr = scratch->take(&slot);
      body(t, i0, i1, scr);
      scratch->give(slot);
    });
  };

  // Setup: transpose, log-sum-exp, weights; the first non-finite logit (smallest index) is reported.
  std::vector<int64_t> bad(size_t(chunks), -1);
  chunked([&](int64_t t, int64_t i0, int64_t i1, double* scr) {
    bad[size_t(t)] = kr.prep(c, i0, i1, scr, &iw_part[size_t(t)]);
  });
  for (int64_t b : bad) {
    if (b >= 0)
      return fail(err, OTLM_EINVAL, "darp: logits has a non-finite value (%g) at row %lld, column %lld",
                  double(io->logits[b]), (long long)(b / k), (long long)(b % k));
  }
  c.iw_max = 0;
  for (double v : iw_part) c.iw_max = std::max(c.iw_max, v);

  int32_t it = 0;
  double error = NAN;
  bool converged = false;
  // The moments S_2..S_8 cost 7 multiply-adds per element: the row step adds them up when the next
  // class step is expected to move ν little enough for its Newton iterations to read the series: the
  // largest step of the last class step, shrunk by its ratio to the one before (the sweeps converge
  // about geometrically), within 2× the series' reach. The decision depends on ν alone, not on the
  // thread count; a wrong guess costs time only.
  c.moments = false;
  std::vector<double> nu_prev = nu;
  double last_step = HUGE_VAL;
  while (it < p->max_iter) {
    ++it;
    // 1. Row step, with the moments of the new X.
    chunked([&](int64_t t, int64_t i0, int64_t i1, double* scr) {
      kr.rows(c, i0, i1, mom_part + t * k * kMom, scr);
    });
    for (int64_t q = 0; q < k * kMom; ++q) {
      double s = 0;
      for (int64_t t = 0; t < chunks; ++t) s += mom_part[size_t(t * k * kMom + q)];
      mom[size_t(q)] = s;
    }
    double e = 0;
    for (int64_t j = 0; j < k; ++j) e += std::fabs(mom[size_t(j * kMom)] - io->col_marginal[j]);
    error = e / double(n);
    if (io->on_error) io->on_error(io->ctx, error);
    if (!std::isfinite(error))
      return fail(err, OTLM_ENONFINITE,
                  "darp: the column error is not finite after sweep %d (the weights are too small or too large "
                  "for ν/w to stay finite)",
                  it);
    if (io->cancel && *io->cancel) return fail(err, OTLM_EABORTED, "darp: cancelled after sweep %d", it);
    if (error < p->tol) {
      converged = true;
      break;
    }
    if (it == p->max_iter) break;
    // 2. Class step: one Newton solve per class, classes independent (a fixed).
    nu_prev = nu;
    parallel_for(k, threads, [&](int64_t j) {
      nu[size_t(j)] = kr.newton(c, j, nu[size_t(j)], logc[size_t(j)], mom.data() + j * kMom);
    });
    double step = 0;
    for (int64_t j = 0; j < k; ++j) step = std::max(step, std::fabs(nu[size_t(j)] - nu_prev[size_t(j)]));
    const double next = step * std::min(1.0, step / last_step);
    c.moments = next * c.iw_max <= 2 * kReach;
    last_step = step;
  }

  if (io->probabilities || io->predictions)
    chunked([&](int64_t, int64_t i0, int64_t i1, double* scr) { kr.final_rows(c, i0, i1, scr); });
  if (io->log_row_scale) std::memcpy(io->log_row_scale, log_a, sizeof(double) * size_t(n));
  if (io->nu) std::memcpy(io->nu, nu.data(), sizeof(double) * size_t(k));
  rep->iterations = it;
  rep->error = error;
  rep->converged = converged ? 1 : 0;
  return OTLM_OK;
}

}  // namespace

otlm_status darp(const DarpParams* p, const DarpBuffers* io, DarpReport* rep, otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  DarpReport local{};
  if (!rep) rep = &local;
  *rep = DarpReport{};
  otlm_status s = validate(p, io, err);
  if (s != OTLM_OK) return s;
  try {
    s = run(p, io, rep, err);
  } catch (const std::bad_alloc&) {
    return fail(err, OTLM_ENOMEM, "darp: out of memory");
  } catch (const std::exception& x) {
    return fail(err, OTLM_EINTERNAL, "darp: %s", x.what());
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "darp: unexpected C++ exception");
  }
  rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace otlm::cpu

#else  // OTLM_DARP_BODY
// ------------------------------------------------------------------------------------------------
// The kernel bodies: included above once per SIMD level, inside namespace otlm::cpu::k_darp_<isa>,
// under `#pragma GCC target`. OTLM_DARP_ISA: 2 AVX-512, 1 AVX2 + FMA, 0 baseline.

namespace {

inline v8d splat(double x) {
  v8d v = {x, x, x, x, x, x, x, x};
  return v;
}
inline v8d loadd(const double* p) {
  v8d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void stored(double* p, v8d v) { std::memcpy(p, &v, sizeof v); }
inline v8d loadf(const float* p) {
#if OTLM_DARP_ISA == 2
  return (v8d)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#else
  v8f f;
  std::memcpy(&f, p, sizeof f);
  return __builtin_convertvector(f, v8d);
#endif
}
// The 8 logits of class j in the row block starting at row i (a multiple of kL).
inline const float* blk(const Ctx& c, int64_t i, int64_t j) { return c.xB + ((i / kL) * c.k + j) * kL; }
// a·b + c, rounded once where the ISA has FMA.
inline v8d fma8(v8d a, v8d b, v8d c) {
#if OTLM_DARP_ISA == 2
  return (v8d)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif OTLM_DARP_ISA == 1
  __m256d a2[2], b2[2], c2[2];
  std::memcpy(a2, &a, sizeof a);
  std::memcpy(b2, &b, sizeof b);
  std::memcpy(c2, &c, sizeof c);
  c2[0] = _mm256_fmadd_pd(a2[0], b2[0], c2[0]);
  c2[1] = _mm256_fmadd_pd(a2[1], b2[1], c2[1]);
  v8d r;
  std::memcpy(&r, c2, sizeof r);
  return r;
#else
  return a * b + c;
#endif
}
// Math.max for the values that occur here (no NaN).
inline v8d vmax(v8d a, v8d b) { return a > b ? a : b; }
inline double hsum(v8d v) {
  double s = v[0];
  for (int l = 1; l < kL; ++l) s += v[l];
  return s;
}
inline double hmax(v8d v) {
  double m = v[0];
  for (int l = 1; l < kL; ++l) m = v[l] > m ? v[l] : m;
  return m;
}

// exp in double: x = n·ln2 + r (Cody–Waite with fdlibm's split of ln2, so n·ln2hi is exact),
// |r| ≤ ln2/2, degree-13 Taylor polynomial (truncation < 5e-18 relative), times 2^n. Within ~2 ulp
// of exp on [−708, 709]; 0 below −708 (exp < 3.1e-308 there: every use here adds it to a sum whose
// largest term is ≥ 1e-200 or rounds it to a float32 0); arguments above 709 are clamped (never
// reached: every argument here is ≤ 0 up to rounding); NaN propagates. AVX-512 scales with
// vscalefpd, the others build 2^n in the exponent bits: the same value, since n + 1023 ∈ [2, 2046].
inline v8d vexp(v8d x) {
  constexpr double kLo = -708.0, kHi = 709.0;
  constexpr double kShift = 6755399441055744.0;  // 1.5·2^52: adding it rounds to an integer
#if OTLM_DARP_ISA == 2
  const __m512d xv = (__m512d)x;
  // max/min return their second operand when either is NaN: a NaN x flows through.
  const __m512d xc = _mm512_min_pd(_mm512_set1_pd(kHi), _mm512_max_pd(_mm512_set1_pd(kLo), xv));
  const v8d kd = fma8((v8d)xc, splat(1.4426950408889634), splat(kShift));
  const v8d nd = kd - kShift;
#else
  const v8d lo = splat(kLo), hi = splat(kHi);
  v8d xc = x > lo ? x : lo;  // NaN → lo (restored below)
  xc = xc < hi ? xc : hi;
  const v8d kd = fma8(xc, splat(1.4426950408889634), splat(kShift));
  const v8d nd = kd - kShift;
#endif
  v8d r = fma8(nd, splat(-6.93147180369123816490e-01), (v8d)xc);
  r = fma8(nd, splat(-1.90821492927058770002e-10), r);
  v8d p = splat(1.0 / 6227020800.0);  // 1/13!
  p = fma8(p, r, splat(1.0 / 479001600.0));
  p = fma8(p, r, splat(1.0 / 39916800.0));
  p = fma8(p, r, splat(1.0 / 3628800.0));
  p = fma8(p, r, splat(1.0 / 362880.0));
  p = fma8(p, r, splat(1.0 / 40320.0));
  p = fma8(p, r, splat(1.0 / 5040.0));
  p = fma8(p, r, splat(1.0 / 720.0));
  p = fma8(p, r, splat(1.0 / 120.0));
  p = fma8(p, r, splat(1.0 / 24.0));
  p = fma8(p, r, splat(1.0 / 6.0));
  p = fma8(p, r, splat(0.5));
  p = fma8(p, r, splat(1.0));
  p = fma8(p, r, splat(1.0));
#if OTLM_DARP_ISA == 2
  const __m512d y = _mm512_scalef_pd((__m512d)p, (__m512d)nd);
  return (v8d)_mm512_mask_blend_pd(_mm512_cmp_pd_mask(xv, _mm512_set1_pd(kLo), _CMP_LT_OQ), y, _mm512_setzero_pd());
#else
  // kd's bits are those of kShift plus n.
  int64_t shift_bits;
  std::memcpy(&shift_bits, &kShift, sizeof shift_bits);
  const v8l e = (((v8l)kd) - (shift_bits - 1023)) << 52;
  v8d y = p * (v8d)e;
  y = x < lo ? splat(0.0) : y;
  return x == x ? y : x;
#endif
}

int64_t prep(const Ctx& c, int64_t i0, int64_t i1, double* e, double* iw_max) {
  const int64_t k = c.k, n = c.n;
  double wmax = 0;
  for (int64_t i = i0; i < i1; i += kL) {
    float* dst = c.xB + (i / kL) * k * kL;
    for (int l = 0; l < kL; ++l) {
      const int64_t row = i + l;
      if (row < n) {
        const float* src = c.x + row * k;
        for (int64_t j = 0; j < k; ++j) dst[j * kL + l] = src[j];
      } else {
        for (int64_t j = 0; j < k; ++j) dst[j * kL + l] = 0.0f;
      }
    }
    // rowLse of the reference: the max, then Σ exp(Φ − max) in class order. Σ Φ·0 is NaN exactly
    // when a logit is not finite: then the first one is found and reported.
    v8d mx = splat(-HUGE_VAL), chk = splat(0.0);
    for (int64_t j = 0; j < k; ++j) {
      const v8d v = loadf(blk(c, i, j));
      mx = vmax(mx, v);
      chk = chk + v * 0.0;
    }
    if (hsum(chk) != 0) {
      for (int64_t row = i; row < std::min(i + kL, n); ++row)
        for (int64_t j = 0; j < k; ++j)
          if (!std::isfinite(c.x[row * k + j])) return row * k + j;
    }
    v8d s = splat(0.0);
    for (int64_t j = 0; j < k; ++j) {
      const v8d q = vexp(loadf(blk(c, i, j)) - mx);
      stored(e + j * kL, q);
      s = s + q;
    }
    v8d lse;
    for (int l = 0; l < kL; ++l) lse[l] = i + l < n ? mx[l] + std::log(s[l]) : 0.0;
    stored(c.lse + i, lse);
    v8d iw;
    if (c.w_mode == OTLM_DARP_WEIGHTS_ENTROPY) {
      // darpEntropyWeights: H = −Σ p log p with log p = Φ − LSE (p = the exponentials above / s);
      // w = 1 / max(H, 1e-12).
      const v8d rs = 1.0 / s;
      v8d h = splat(0.0);
      for (int64_t j = 0; j < k; ++j) {
        const v8d lp = loadf(blk(c, i, j)) - lse;
        h = h - (loadd(e + j * kL) * rs) * lp;
      }
      for (int l = 0; l < kL; ++l) iw[l] = i + l < n ? 1.0 / (1.0 / std::max(h[l], 1e-12)) : 0.0;
    } else {
      for (int l = 0; l < kL; ++l)
        iw[l] = i + l >= n ? 0.0 : c.w_mode == OTLM_DARP_WEIGHTS_GIVEN ? 1.0 / c.w_given[i + l] : 1.0;
    }
    stored(c.invw + i, iw);
    for (int l = 0; l < kL; ++l) wmax = std::max(wmax, iw[l]);
    v8d la;
    for (int l = 0; l < kL; ++l) la[l] = i + l < n ? 0.0 : -HUGE_VAL;
    stored(c.log_a + i, la);
  }
  *iw_max = wmax;
  return -1;
}

// S_jm += Σ_i e_ij · PW_im over the nb row blocks of a sub-chunk, m < NM, with PW_m = (valid / s)·(1/w)^m
// (X_ij (1/w_i)^m): two classes at a time on AVX-512 (2·NM accumulators in registers), one elsewhere.
template <int NM>
void add_moments(const Ctx& c, int64_t nb, const double* E, const double* RS, const double* IW, double* PW,
                 double* ACC) {
  const int64_t k = c.k;
  for (int64_t b = 0; b < nb; ++b) {
    const v8d iw = loadd(IW + b * kL);
    v8d u = loadd(RS + b * kL);
    for (int m = 0; m < NM; ++m, u = u * iw) stored(PW + (b * kMom + m) * kL, u);
  }
  int64_t j = 0;
#if OTLM_DARP_ISA == 2
  for (; j + 2 <= k; j += 2) {
    double* acc0 = ACC + j * kMom * kL;
    double* acc1 = acc0 + kMom * kL;
    v8d a[2 * NM];
    for (int m = 0; m < NM; ++m) {
      a[m] = loadd(acc0 + m * kL);
      a[NM + m] = loadd(acc1 + m * kL);
    }
    for (int64_t b = 0; b < nb; ++b) {
      const v8d e0 = loadd(E + (b * k + j) * kL), e1 = loadd(E + (b * k + j + 1) * kL);
      for (int m = 0; m < NM; ++m) {
        const v8d w = loadd(PW + (b * kMom + m) * kL);
        a[m] = fma8(e0, w, a[m]);
        a[NM + m] = fma8(e1, w, a[NM + m]);
      }
    }
    for (int m = 0; m < NM; ++m) {
      stored(acc0 + m * kL, a[m]);
      stored(acc1 + m * kL, a[NM + m]);
    }
  }
#endif
  for (; j < k; ++j) {
    double* acc = ACC + j * kMom * kL;
    v8d a[NM];
    for (int m = 0; m < NM; ++m) a[m] = loadd(acc + m * kL);
    for (int64_t b = 0; b < nb; ++b) {
      const v8d e0 = loadd(E + (b * k + j) * kL);
      for (int m = 0; m < NM; ++m) a[m] = fma8(e0, loadd(PW + (b * kMom + m) * kL), a[m]);
    }
    for (int m = 0; m < NM; ++m) stored(acc + m * kL, a[m]);
  }
}

// The row step on rows [i0, i1): log a_i = −LSE_k(log p_ik − ν_k/w_i), then the moments of the new
// X_ik = e_ik / s_i. Sub-chunks of `sub_blocks` row blocks keep their exponentials, then add them
// into per-lane moment accumulators class by class (the accumulators of one class stay in registers).
void rows(const Ctx& c, int64_t i0, int64_t i1, double* mom, double* scratch) {
  const int64_t k = c.k, n = c.n, sb = c.sub_blocks;
  double* E = scratch;                // sb × k × kL
  double* RS = E + sb * k * kL;       // sb × kL: valid_i / s_i
  double* IW = RS + sb * kL;          // sb × kL
  double* PW = IW + sb * kL;          // sb × kMom × kL
  double* ACC = PW + sb * kMom * kL;  // k × kMom × kL
  std::memset(ACC, 0, sizeof(double) * size_t(k * kMom * kL));
  for (int64_t i00 = i0; i00 < i1; i00 += sb * kL) {
    const int64_t nb = std::min<int64_t>(sb, (i1 - i00) / kL);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t i = i00 + b * kL;
      double* e = E + b * k * kL;
      const v8d lse = loadd(c.lse + i), iw = loadd(c.invw + i);
      v8d mx = splat(-HUGE_VAL);
      for (int64_t j = 0; j < k; ++j) {
        const v8d t = fma8(splat(-c.nu[j]), iw, loadf(blk(c, i, j)) - lse);  // logp − ν/w
        stored(e + j * kL, t);
        mx = vmax(mx, t);
      }
      v8d s = splat(0.0);
      for (int64_t j = 0; j < k; ++j) {
        const v8d q = vexp(loadd(e + j * kL) - mx);
        stored(e + j * kL, q);
        s = s + q;
      }
      v8d valid;
      for (int l = 0; l < kL; ++l) {
        if (i + l < n) {
          c.log_a[i + l] = -(mx[l] + std::log(s[l]));
          valid[l] = 1.0;
        } else {
          valid[l] = 0.0;  // padded rows contribute nothing
        }
      }
      stored(RS + b * kL, valid / s);
      stored(IW + b * kL, iw);
    }
    if (c.moments) add_moments<kMom>(c, nb, E, RS, IW, PW, ACC);
    else add_moments<2>(c, nb, E, RS, IW, PW, ACC);
  }
  for (int64_t q = 0; q < k * kMom; ++q) mom[q] = hsum(loadd(ACC + q * kL));
  if (!c.moments)
    for (int64_t j = 0; j < k; ++j)
      for (int m = 2; m < kMom; ++m) mom[j * kMom + m] = NAN;
}

// One pass over class j at ν = v: the shift max_i z_i, z_i = log p_ij + log a_i − v/w_i, and the
// moments S_m = Σ_i e^{z_i − shift} (1/w_i)^m.
void class_pass(const Ctx& c, int64_t j, double v, double* shift, double* S) {
  v8d mx = splat(-HUGE_VAL);
  for (int64_t i = 0; i < c.ld; i += kL) {
    const v8d z = fma8(splat(-v), loadd(c.invw + i), (loadf(blk(c, i, j)) - loadd(c.lse + i)) + loadd(c.log_a + i));
    mx = vmax(mx, z);
  }
  const double mm = hmax(mx);
  v8d a0 = splat(0.0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0;
  for (int64_t i = 0; i < c.ld; i += kL) {
    const v8d iw = loadd(c.invw + i);
    const v8d z = fma8(splat(-v), iw, (loadf(blk(c, i, j)) - loadd(c.lse + i)) + loadd(c.log_a + i));
    v8d u = vexp(z - mm);
    a0 = a0 + u;
    u = u * iw;
    a1 = a1 + u;
    u = u * iw;
    a2 = a2 + u;
    u = u * iw;
    a3 = a3 + u;
    u = u * iw;
    a4 = a4 + u;
    u = u * iw;
    a5 = a5 + u;
    u = u * iw;
    a6 = a6 + u;
    u = u * iw;
    a7 = a7 + u;
    u = u * iw;
    a8 = a8 + u;
  }
  *shift = mm;
  S[0] = hsum(a0);
  S[1] = hsum(a1);
  S[2] = hsum(a2);
  S[3] = hsum(a3);
  S[4] = hsum(a4);
  S[5] = hsum(a5);
  S[6] = hsum(a6);
  S[7] = hsum(a7);
  S[8] = hsum(a8);
}

// Newton on h_j(ν) from ν = v, the reference's iteration and stopping rule. `row_mom` are the row
// step's moments at v (shift 0). At ν = ν_0 + δ the class sums are Σ_m (−δ)^m/m! S_m (and S_{m+1}
// for the derivative's); within kReach of the last moments they are read from the series.
double newton(const Ctx& c, int64_t j, double v, double logc, const double* row_mom) {
  double S[kMom];
  std::memcpy(S, row_mom, sizeof S);
  double shift = 0, v0 = v;
  auto finite_from = [&](int m) {
    for (int q = m; q < kMom; ++q)
      if (!std::isfinite(S[q])) return false;
    return true;
  };
  bool at_v0 = S[0] >= 1e-200 && std::isfinite(S[0]) && std::isfinite(S[1]);  // S_0, S_1 usable at δ = 0
  bool series = at_v0 && finite_from(2);                                      // and the series near it
  for (int32_t t = 0; t < c.newton_iter; ++t) {
    const double d = v - v0;
    double s, ds;
    if (at_v0 && d == 0) {
      s = S[0];
      ds = S[1];
    } else if (series && std::fabs(d) * c.iw_max <= kReach) {
      const double md = -d;
      s = S[kMom - 2];
      ds = S[kMom - 1];
      for (int m = kMom - 3; m >= 0; --m) {
        s = S[m] + md / (m + 1) * s;
        ds = S[m + 1] + md / (m + 1) * ds;
      }
    } else {
      class_pass(c, j, v, &shift, S);
      v0 = v;
      at_v0 = S[0] >= 1e-200 && std::isfinite(S[0]) && std::isfinite(S[1]);
      series = at_v0 && finite_from(2);
      s = S[0];
      ds = S[1];
    }
    const double h = shift + std::log(s) - logc;
    const double dh = -ds / s;  // h'(ν) = −Σ_i softmax(z)_i / w_i < 0
    const double step = h / dh;
    v -= step;
    if (std::fabs(h) < 1e-15 || std::fabs(step) <= 1e-15 * (1 + std::fabs(v))) break;
  }
  return v;
}

// X on rows [i0, i1), row by row with vectors over the classes (from the row-major logits):
// X_ik = exp(log p_ik + log a_i − ν_k/w_i), its float32 copy, and the row argmax (first maximum) of
// the float64 values. scratch: k + kL doubles.
void final_rows(const Ctx& c, int64_t i0, int64_t i1, double* xr) {
  const int64_t k = c.k, kv = k / kL * kL, iend = std::min(i1, c.n);
  for (int64_t i = i0; i < iend; ++i) {
    const float* src = c.x + i * k;
    const v8d lse = splat(c.lse[i]), la = splat(c.log_a[i]), niw = splat(-c.invw[i]);
    v8d mx = splat(-HUGE_VAL);
    int64_t j = 0;
    for (; j < kv; j += kL) {
      const v8d q = vexp(fma8(loadd(c.nu + j), niw, (loadf(src + j) - lse) + la));
      stored(xr + j, q);
      mx = vmax(mx, q);
    }
    if (j < k) {
      float xt[kL] = {};
      double nt[kL] = {};
      std::memcpy(xt, src + j, sizeof(float) * size_t(k - j));
      std::memcpy(nt, c.nu + j, sizeof(double) * size_t(k - j));
      v8d q = vexp(fma8(loadd(nt), niw, (loadf(xt) - lse) + la));
      for (int l = int(k - j); l < kL; ++l) q[l] = -HUGE_VAL;
      stored(xr + j, q);
      mx = vmax(mx, q);
    }
    if (c.probs) {
      float* dst = c.probs + i * k;
      for (j = 0; j < kv; j += kL) {
        const v8f f = __builtin_convertvector(loadd(xr + j), v8f);
        std::memcpy(dst + j, &f, sizeof f);
      }
      for (; j < k; ++j) dst[j] = float(xr[j]);
    }
    if (c.pred) {
      const double m = hmax(mx);
      int32_t best = 0;
      while (best < k - 1 && !(xr[best] == m)) ++best;
      c.pred[i] = best;
    }
  }
}

}  // namespace

const DarpKernels table = {prep, rows, newton, final_rows};

#endif  // OTLM_DARP_BODY
