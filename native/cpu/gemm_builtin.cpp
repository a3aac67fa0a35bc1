// The builtin GEMM (gemm_builtin.h): the classic packed, cache-blocked design (Goto; BLIS; ONNX Runtime's
// MLAS), written for the two products of the OTLM engine.
//
//   C (m×n) = init + op(A) · B, op(A) = A (m×kk, "nn") or Aᵀ with A kk×m ("tn"), B kk×n, all row-major.
//
// Blocking, from the outside in:
//   column chunks  B is packed once per call, by all threads, into micro-panels of NR columns × kk
//                  (k-major, zero-padded to NR). A chunk holds at most kChunkFloats floats, so very wide
//                  products (K = 8142) are done in a few column chunks.
//   tasks          a task is one panel of MC rows of C × one block of columns of the chunk (the whole
//                  chunk when rows_done is given, so a panel's rows are final when the task ends); a small C
//                  (the K×K gradient) is cut into column blocks and shorter row panels to make at least
//                  kMinTasks tasks. The grid depends on the shape only.
//   k-blocks       inside a task, kk is cut into blocks of kc ≤ kc_max (kc depends on kk only); per block
//                  the task packs its A panel (MR-row micro-panels, k-major: kc×MR, in L2) and runs the
//                  macro-kernel over the B micro-panels (kc×NR, one in L1 at a time) of its columns.
//   micro-kernel   MR×NR accumulators in registers (AVX-512 14×32: 28 zmm; AVX2 6×16: 12 ymm; baseline
//                  4×8), one broadcast of A and NR/16 (or NR/8) loads of B per k; the tile is added to C
//                  (or to the bias, for the first k-block) once per k-block, masked at the edges.
//
// Every C element is therefore summed by one thread: over k inside a block in order, then block after
// block in order, whatever the thread count. Edges (m, n, kk multiples of no tile) are handled by the
// zero padding of the packed panels and masked stores; a last column panel of ≤ NR/2 columns runs a
// half-width kernel.
#include "gemm_builtin.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "thread_pool.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define OTLM_GEMM_X86 1
#else
#define OTLM_GEMM_X86 0
#endif

namespace otlm::cpu {

namespace {

// ------------------------------------------------------------------------------------------ ISA
GemmIsa cpu_isa() {
#if OTLM_GEMM_X86
  static const GemmIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return GemmIsa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GemmIsa::avx2;
    return GemmIsa::baseline;
  }();
  return isa;
#else
  return GemmIsa::baseline;
#endif
}

// ------------------------------------------------------------------------------------------ kernels
// One block of work for a macro-kernel: rows × cols of C over a depth of kc.
struct MacroArgs {
  int64_t rows, cols, kc;
  const float* pa;    // packed A: ceil(rows/MR) micro-panels of kc×MR
  const float* pb;    // packed B: micro-panel q (NR columns) at pb + q·pb_stride, k-block at k0 (see panel_at)
  int64_t pb_stride;  // floats between two B micro-panels (kk·NR)
  int64_t k0;         // first k of this block
  float* c;
  int64_t ldc;
  const float* init;  // first k-block: C = init + A·B (init: the bias at these columns; NULL: zero)
  bool first;         // else C += A·B
};

// The B micro-panel of columns [j, j+nc) at this k-block. A last panel of at most NR/2 columns is packed
// NR/2 wide (half_nr; 0: never), so the half-width kernel reads only what it uses.
inline const float* panel_at(const MacroArgs& g, int64_t j, int nr, int half_nr, int nc) {
  const int width = half_nr && nc <= half_nr ? half_nr : nr;
  return g.pb + (j / nr) * g.pb_stride + g.k0 * width;
}

// Portable micro-kernel: plain loops that the compiler vectorises for the baseline ISA.
template <int MR, int NR>
inline void ukr_generic(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc, int rows, int cols,
                        const float* init, bool first) {
  float acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
  for (int64_t k = 0; k < kc; ++k, pa += MR, pb += NR)
    for (int r = 0; r < MR; ++r) {
      const float av = pa[r];
      for (int j = 0; j < NR; ++j) acc[r][j] += av * pb[j];
    }
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < cols; ++j) {
      const float base = first ? (init ? init[j] : 0.0f) : cr[j];
      cr[j] = base + acc[r][j];
    }
  }
}

constexpr int kMrBase = 4, kNrBase = 8;
void macro_baseline(const MacroArgs& g) {
  for (int64_t j = 0; j < g.cols; j += kNrBase) {
    const int nc = int(std::min<int64_t>(kNrBase, g.cols - j));
    const float* pb = panel_at(g, j, kNrBase, 0, nc);
    const float* pa = g.pa;
    for (int64_t i = 0; i < g.rows; i += kMrBase, pa += g.kc * kMrBase)
      ukr_generic<kMrBase, kNrBase>(g.kc, pa, pb, g.c + i * g.ldc + j, g.ldc, int(std::min<int64_t>(kMrBase, g.rows - i)),
                                    nc, g.init ? g.init + j : nullptr, g.first);
  }
}

#if OTLM_GEMM_X86
#define OTLM_GEMM_T512 __attribute__((target("avx512f,avx2,fma")))
#define OTLM_GEMM_T256 __attribute__((target("avx2,fma")))

// AVX-512: 14 rows × NV·16 columns (NV = 2: 28 accumulators + 2 B vectors + 1 broadcast = 31 zmm).
// `pf`, when not NULL, is the next B micro-panel: its lines are requested into L2 alongside (B may come
// from memory when a chunk is larger than the last-level cache).
template <int NV>
OTLM_GEMM_T512 inline void ukr_avx512(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc, int rows,
                                      int cols, const float* init, bool first, const float* pf) {
  constexpr int MR = 14;
  for (int r = 0; r < rows; ++r) {  // C is touched only after the k loop: start its lines coming
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NV * 16 - 1), _MM_HINT_T0);
  }
  __m512 a0[MR], a1[MR];
#pragma GCC unroll 14
  for (int r = 0; r < MR; ++r) {
    a0[r] = _mm512_setzero_ps();
    a1[r] = _mm512_setzero_ps();
  }
  if (pf) {
    for (int64_t k = 0; k < kc; ++k, pa += MR, pb += NV * 16, pf += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(pf + 16), _MM_HINT_T1);
      const __m512 b0 = _mm512_load_ps(pb);
      const __m512 b1 = NV == 2 ? _mm512_load_ps(pb + 16) : b0;
#pragma GCC unroll 14
      for (int r = 0; r < MR; ++r) {
        const __m512 av = _mm512_set1_ps(pa[r]);
        a0[r] = _mm512_fmadd_ps(av, b0, a0[r]);
        if (NV == 2) a1[r] = _mm512_fmadd_ps(av, b1, a1[r]);
      }
    }
  }
  for (int64_t k = pf ? kc : 0; k < kc; ++k, pa += MR, pb += NV * 16) {
    const __m512 b0 = _mm512_load_ps(pb);
    const __m512 b1 = NV == 2 ? _mm512_load_ps(pb + 16) : b0;
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(pa[r]);
      a0[r] = _mm512_fmadd_ps(av, b0, a0[r]);
      if (NV == 2) a1[r] = _mm512_fmadd_ps(av, b1, a1[r]);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1u);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1u) : __mmask16(0);
  __m512 i0 = _mm512_setzero_ps(), i1 = _mm512_setzero_ps();
  if (first && init) {
    i0 = _mm512_maskz_loadu_ps(m0, init);
    if (NV == 2) i1 = _mm512_maskz_loadu_ps(m1, init + 16);
  }
#pragma GCC unroll 14
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* cr = c + r * ldc;
    _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(first ? i0 : _mm512_maskz_loadu_ps(m0, cr), a0[r]));
    if (NV == 2)
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_add_ps(first ? i1 : _mm512_maskz_loadu_ps(m1, cr + 16), a1[r]));
  }
}

constexpr int kMr512 = 14, kNr512 = 32;
OTLM_GEMM_T512 void macro_avx512(const MacroArgs& g) {
  for (int64_t j = 0; j < g.cols; j += kNr512) {
    const int nc = int(g.cols - j < kNr512 ? g.cols - j : kNr512);
    const float* pb = panel_at(g, j, kNr512, kNr512 / 2, nc);
    const float* init = g.init ? g.init + j : nullptr;
    const float* pa = g.pa;
    for (int64_t i = 0; i < g.rows; i += kMr512, pa += g.kc * kMr512) {
      const int mr = int(g.rows - i < kMr512 ? g.rows - i : kMr512);
      float* c = g.c + i * g.ldc + j;
      const float* pf = i == 0 && j + kNr512 < g.cols ? pb + g.pb_stride : nullptr;
      if (nc > 16) ukr_avx512<2>(g.kc, pa, pb, c, g.ldc, mr, nc, init, g.first, pf);
      else ukr_avx512<1>(g.kc, pa, pb, c, g.ldc, mr, nc, init, g.first, pf);
    }
  }
}

// AVX2: 6 rows × NV·8 columns (NV = 2: 12 accumulators + 2 B vectors + 1 broadcast = 15 ymm).
template <int NV>
OTLM_GEMM_T256 inline void ukr_avx2(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc, int rows,
                                    int cols, const float* init, bool first) {
  constexpr int MR = 6;
  for (int r = 0; r < rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + NV * 8 - 1), _MM_HINT_T0);
  }
  __m256 a0[MR], a1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    a0[r] = _mm256_setzero_ps();
    a1[r] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k, pa += MR, pb += NV * 8) {
    const __m256 b0 = _mm256_load_ps(pb);
    const __m256 b1 = NV == 2 ? _mm256_load_ps(pb + 8) : b0;
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(pa + r);
      a0[r] = _mm256_fmadd_ps(av, b0, a0[r]);
      if (NV == 2) a1[r] = _mm256_fmadd_ps(av, b1, a1[r]);
    }
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lane);
  const bool full = cols >= NV * 8;
  __m256 i0 = _mm256_setzero_ps(), i1 = _mm256_setzero_ps();
  if (first && init) {
    i0 = _mm256_maskload_ps(init, m0);
    if (NV == 2) i1 = _mm256_maskload_ps(init + 8, m1);
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* cr = c + r * ldc;
    if (full) {
      _mm256_storeu_ps(cr, _mm256_add_ps(first ? i0 : _mm256_loadu_ps(cr), a0[r]));
      if (NV == 2) _mm256_storeu_ps(cr + 8, _mm256_add_ps(first ? i1 : _mm256_loadu_ps(cr + 8), a1[r]));
    } else {
      _mm256_maskstore_ps(cr, m0, _mm256_add_ps(first ? i0 : _mm256_maskload_ps(cr, m0), a0[r]));
      if (NV == 2)
        _mm256_maskstore_ps(cr + 8, m1, _mm256_add_ps(first ? i1 : _mm256_maskload_ps(cr + 8, m1), a1[r]));
    }
  }
}

constexpr int kMr256 = 6, kNr256 = 16;
OTLM_GEMM_T256 void macro_avx2(const MacroArgs& g) {
  for (int64_t j = 0; j < g.cols; j += kNr256) {
    const int nc = int(g.cols - j < kNr256 ? g.cols - j : kNr256);
    const float* pb = panel_at(g, j, kNr256, kNr256 / 2, nc);
    const float* init = g.init ? g.init + j : nullptr;
    const float* pa = g.pa;
    for (int64_t i = 0; i < g.rows; i += kMr256, pa += g.kc * kMr256) {
      const int mr = int(g.rows - i < kMr256 ? g.rows - i : kMr256);
      float* c = g.c + i * g.ldc + j;
      if (nc > 8) ukr_avx2<2>(g.kc, pa, pb, c, g.ldc, mr, nc, init, g.first);
      else ukr_avx2<1>(g.kc, pa, pb, c, g.ldc, mr, nc, init, g.first);
    }
  }
}
#endif  // OTLM_GEMM_X86

// ------------------------------------------------------------------------------------------ packing
// B (kk×n, row stride ldb): columns [j0, j0+cols) as ceil(cols/NR) micro-panels of kk×NR (zero-padded),
// panel g at out + g·per_panel; a last panel of at most HALF columns is kk×HALF (HALF = 0: never). This
// call packs rows [k0, k1), row by row over all the panels, so each row of B is read as one run.
template <int NR, int HALF>
void pack_b(const float* b, int64_t ldb, int64_t k0, int64_t k1, int64_t j0, int64_t cols, int64_t per_panel,
            float* out) {
  const int64_t np = (cols + NR - 1) / NR;
  const int64_t full = cols / NR;  // panels without padding
  const float* src = b + k0 * ldb + j0;
  for (int64_t k = k0; k < k1; ++k, src += ldb) {
    float* dst = out + k * NR;
    for (int64_t g = 0; g < full; ++g) std::memcpy(dst + g * per_panel, src + g * NR, sizeof(float) * NR);
    if (full < np) {
      const int64_t rest = cols - full * NR;
      const int width = HALF && rest <= HALF ? HALF : NR;
      float* d = out + full * per_panel + k * width;
      const float* s = src + full * NR;
      int64_t j = 0;
      for (; j < rest; ++j) d[j] = s[j];
      for (; j < width; ++j) d[j] = 0.0f;
    }
  }
}

// A (row stride lda) rows [0, rows) × depth [k0, k0+kc) as micro-panels of kc×MR (out[k·MR + r]).
template <int MR>
void pack_a_nn(const float* a, int64_t lda, int64_t rows, int64_t k0, int64_t kc, float* out) {
  for (int64_t i = 0; i < rows; i += MR, out += kc * MR) {
    const int mr = int(std::min<int64_t>(MR, rows - i));
    for (int r = 0; r < mr; ++r) {
      const float* src = a + (i + r) * lda + k0;
      for (int64_t k = 0; k < kc; ++k) out[k * MR + r] = src[k];
    }
    for (int r = mr; r < MR; ++r)
      for (int64_t k = 0; k < kc; ++k) out[k * MR + r] = 0.0f;
  }
}

// Aᵀ where A is kk×(row stride lda): rows [i0, i0+rows) of Aᵀ (columns of A) × depth [k0, k0+kc).
template <int MR>
void pack_a_tn(const float* a, int64_t lda, int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* out) {
  for (int64_t i = 0; i < rows; i += MR, out += kc * MR) {
    const int mr = int(std::min<int64_t>(MR, rows - i));
    const float* src = a + k0 * lda + i0 + i;
    if (mr == MR) {
      for (int64_t k = 0; k < kc; ++k, src += lda) std::memcpy(out + k * MR, src, sizeof(float) * MR);
    } else {
      for (int64_t k = 0; k < kc; ++k, src += lda) {
        int r = 0;
        for (; r < mr; ++r) out[k * MR + r] = src[r];
        for (; r < MR; ++r) out[k * MR + r] = 0.0f;
      }
    }
  }
}

struct KernelSet {
  GemmIsa isa;
  int mr, nr;
  int64_t mc;      // rows of C per task (a multiple of mr): the packed A block is mc×kc_max (L2)
  int64_t kc_max;  // depth of a k-block: the B micro-panel kc×nr stays in L1
  void (*macro)(const MacroArgs&);
  void (*pack_b)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
  void (*pack_a_nn)(const float*, int64_t, int64_t, int64_t, int64_t, float*);
  void (*pack_a_tn)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
};

const KernelSet& kernel_set(GemmIsa isa) {
  static const KernelSet base = {GemmIsa::baseline, kMrBase, kNrBase, 128, 256, macro_baseline,
                                 pack_b<kNrBase, 0>,   pack_a_nn<kMrBase>, pack_a_tn<kMrBase>};
#if OTLM_GEMM_X86
  static const KernelSet k2 = {GemmIsa::avx2, kMr256, kNr256, 144, 256, macro_avx2,
                               pack_b<kNr256, kNr256 / 2>,  pack_a_nn<kMr256>, pack_a_tn<kMr256>};
  static const KernelSet k5 = {GemmIsa::avx512, kMr512, kNr512, 168, 256, macro_avx512,
                               pack_b<kNr512, kNr512 / 2>,    pack_a_nn<kMr512>, pack_a_tn<kMr512>};
  if (isa == GemmIsa::avx512) return k5;
  if (isa == GemmIsa::avx2) return k2;
#endif
  (void)isa;
  return base;
}

// ------------------------------------------------------------------------------------------ buffers
constexpr int64_t kChunkFloats = int64_t(1) << 24;  // packed B per column chunk: at most 64 MiB
constexpr int64_t kMinTasks = 8;                    // split columns too when C has fewer row panels
constexpr int64_t kPackPanels = 8;                  // B micro-panels packed per task (one run per row of B)
constexpr int64_t kPackRows = 1024;                 // and rows of B per packing task

float* alloc_floats(size_t n) {
  const size_t bytes = n * sizeof(float);
  const size_t align = bytes >= (size_t(2) << 20) ? (size_t(2) << 20) : 64;
  const size_t rounded = (bytes + align - 1) / align * align;
#if defined(_WIN32)
  void* p = _aligned_malloc(rounded, align);
#else
  void* p = std::aligned_alloc(align, rounded);
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p && align > 64) madvise(p, rounded, MADV_HUGEPAGE);  // advice only
#endif
  return static_cast<float*>(p);
}
void free_floats(float* p) {
#if defined(_WIN32)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

// The packed B buffer is kept for the next call (an OTLM trainer calls the same shapes every step; fresh
// pages would cost their first-touch faults each time). One cached buffer for the process, the largest
// used so far (at most kChunkFloats: 41 MB after the B = 10000, K = 1000 gradient); concurrent calls that
// find it taken allocate their own.
struct PackedB {
  float* p = nullptr;
  size_t cap = 0;
};
std::mutex g_cache_mu;
PackedB g_cache;

PackedB acquire_packed(size_t need) {
  PackedB got;
  {
    std::lock_guard<std::mutex> g(g_cache_mu);
    if (g_cache.p && g_cache.cap >= need) {
      got = g_cache;
      g_cache = PackedB{};
      return got;
    }
  }
  got.p = alloc_floats(need);
  got.cap = got.p ? need : 0;
  return got;
}
void release_packed(PackedB b) {
  if (!b.p) return;
  std::lock_guard<std::mutex> g(g_cache_mu);
  if (!g_cache.p) {
    g_cache = b;
    return;
  }
  if (b.cap > g_cache.cap) std::swap(b, g_cache);
  free_floats(b.p);
}

// The packed A block of the calling worker (mc×kc_max floats at most).
float* a_block(size_t need) {
  thread_local std::vector<float> buf;
  if (buf.size() < need + 16) buf.resize(need + 16);
  // 64-byte aligned start inside the vector
  const uintptr_t u = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - (u & 63)) & 63) / sizeof(float);
}

// ------------------------------------------------------------------------------------------ driver
// Last resort when no packing buffer can be allocated: row by row, no blocking.
void unpacked(bool trans_a, int64_t m, int64_t n, int64_t kk, const float* a, int64_t lda, const float* b,
              int64_t ldb, const float* bias, float* c, int64_t ldc, int threads,
              const std::function<void(int64_t, int64_t)>* rows_done, int64_t mc) {
  parallel_for((m + mc - 1) / mc, threads, [&](int64_t t) {
    const int64_t i0 = t * mc, i1 = std::min(m, i0 + mc);
    for (int64_t i = i0; i < i1; ++i) {
      float* ci = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] = bias ? bias[j] : 0.0f;
      for (int64_t k = 0; k < kk; ++k) {
        const float av = trans_a ? a[k * lda + i] : a[i * lda + k];
        const float* bk = b + k * ldb;
        for (int64_t j = 0; j < n; ++j) ci[j] += av * bk[j];
      }
    }
    if (rows_done) (*rows_done)(i0, i1);
  });
}

// C (m×n, ldc) = init + op(A)·B; op(A)[i, k] = A[i·lda + k] (nn) or A[k·lda + i] (tn).
void run(const KernelSet& ks, bool trans_a, int64_t m, int64_t n, int64_t kk, const float* a, int64_t lda,
         const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc, int threads,
         const std::function<void(int64_t, int64_t)>* rows_done) {
  const int64_t mr = ks.mr, nr = ks.nr, mc = ks.mc;
  const int64_t row_panels = (m + mc - 1) / mc;
  if (kk <= 0) {  // C = init
    parallel_for(row_panels, threads, [&](int64_t t) {
      const int64_t i0 = t * mc, i1 = std::min(m, i0 + mc);
      for (int64_t i = i0; i < i1; ++i) {
        if (bias) std::memcpy(c + i * ldc, bias, sizeof(float) * size_t(n));
        else std::memset(c + i * ldc, 0, sizeof(float) * size_t(n));
      }
      if (rows_done) (*rows_done)(i0, i1);
    });
    return;
  }
  const int64_t kblocks = (kk + ks.kc_max - 1) / ks.kc_max;
  const int64_t kc = (kk + kblocks - 1) / kblocks;  // even blocks; depends on kk only
  const int64_t panels = (n + nr - 1) / nr;
  const int64_t per_panel = kk * nr;
  // Column chunks of equal width, each packed B at most kChunkFloats (or one micro-panel).
  const int64_t widest = std::max<int64_t>(1, std::min(panels, kChunkFloats / per_panel));
  int64_t chunk_panels = (panels + (panels + widest - 1) / widest - 1) / ((panels + widest - 1) / widest);
  PackedB pb;
  for (;;) {  // on allocation failure, narrower chunks
    pb = acquire_packed(size_t(chunk_panels * per_panel));
    if (pb.p || chunk_panels == 1) break;
    chunk_panels = (chunk_panels + 1) / 2;
  }
  if (!pb.p) {  // not even one micro-panel: the unpacked loop (same results on any thread count)
    unpacked(trans_a, m, n, kk, a, lda, b, ldb, bias, c, ldc, threads, rows_done, mc);
    return;
  }
  const int64_t chunks = (panels + chunk_panels - 1) / chunk_panels;
  const size_t a_need = size_t((mc + mr - 1) / mr * mr * kc);

  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * chunk_panels, np = std::min(chunk_panels, panels - p0);
    const int64_t j0 = p0 * nr;
    // Pack tasks: groups of up to kPackPanels panels × runs of kPackRows rows of B.
    const int64_t groups = (np + kPackPanels - 1) / kPackPanels, row_runs = (kk + kPackRows - 1) / kPackRows;
    parallel_for(groups * row_runs, threads, [&](int64_t t) {
      const int64_t q = (t / row_runs) * kPackPanels, jq = j0 + q * nr, k0 = (t % row_runs) * kPackRows;
      ks.pack_b(b, ldb, k0, std::min(kk, k0 + kPackRows), jq, std::min(std::min(kPackPanels, np - q) * nr, n - jq),
                per_panel, pb.p + q * per_panel);
    });
    // The task grid (shape only): panels of mc rows × the whole chunk, or, when that makes fewer than
    // kMinTasks tasks (small outputs such as the K×K gradient) and no rows_done asks for whole rows,
    // column blocks and then shorter row panels (down to one micro-panel).
    int64_t col_blocks = rows_done ? 1 : std::min(np, std::max<int64_t>(1, (kMinTasks + row_panels - 1) / row_panels));
    const int64_t block_panels = (np + col_blocks - 1) / col_blocks;
    col_blocks = (np + block_panels - 1) / block_panels;
    int64_t mc_task = mc;
    if (!rows_done && row_panels * col_blocks < kMinTasks) {
      const int64_t want_rows = (kMinTasks + col_blocks - 1) / col_blocks, tiles = (m + mr - 1) / mr;
      mc_task = std::min(mc, std::max<int64_t>(1, (tiles + want_rows - 1) / want_rows) * mr);
    }
    const int64_t task_rows = (m + mc_task - 1) / mc_task;
    const bool last = ch == chunks - 1;
    parallel_for(task_rows * col_blocks, threads, [&](int64_t t) {
      const int64_t rp = t / col_blocks, cb = t % col_blocks;
      const int64_t i0 = rp * mc_task, rows = std::min(mc_task, m - i0);
      const int64_t q0 = cb * block_panels, cj0 = j0 + q0 * nr;
      const int64_t cols = std::min(n, j0 + std::min(np, q0 + block_panels) * nr) - cj0;
      float* pa = a_block(a_need);
      for (int64_t k0 = 0; k0 < kk; k0 += kc) {
        const int64_t kcb = std::min(kc, kk - k0);
        if (trans_a) ks.pack_a_tn(a, lda, i0, rows, k0, kcb, pa);
        else ks.pack_a_nn(a + i0 * lda, lda, rows, k0, kcb, pa);
        MacroArgs g;
        g.rows = rows;
        g.cols = cols;
        g.kc = kcb;
        g.pa = pa;
        g.pb = pb.p + q0 * per_panel;
        g.pb_stride = per_panel;
        g.k0 = k0;
        g.c = c + i0 * ldc + cj0;
        g.ldc = ldc;
        g.init = bias ? bias + cj0 : nullptr;
        g.first = k0 == 0;
        ks.macro(g);
      }
      if (rows_done && last) (*rows_done)(i0, i0 + rows);
    });
  }
  release_packed(pb);
}

}  // namespace

GemmIsa gemm_isa_cap(GemmIsa want) {
  const GemmIsa have = cpu_isa();
  return int(want) < int(have) ? want : have;
}

GemmIsa gemm_builtin_isa() {
  GemmIsa l = cpu_isa();
  if (const char* env = std::getenv("OTLM_SIMD")) {
    GemmIsa want = l;
    if (!std::strcmp(env, "baseline")) want = GemmIsa::baseline;
    else if (!std::strcmp(env, "avx2")) want = GemmIsa::avx2;
    else if (!std::strcmp(env, "avx512")) want = GemmIsa::avx512;
    if (int(want) < int(l)) l = want;
  }
  return l;
}

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512: return "avx512";
    case GemmIsa::avx2: return "avx2";
    default: return "baseline";
  }
}

void gemm_nn_builtin(int64_t m, int64_t n, int64_t kk, const float* a, const float* b, const float* bias,
                     float* c, int threads, const std::function<void(int64_t, int64_t)>* rows_done,
                     GemmIsa isa) {
  if (m <= 0 || n <= 0) return;
  run(kernel_set(gemm_isa_cap(isa)), false, m, n, kk, a, kk, b, n, bias, c, n, threads, rows_done);
}

void gemm_tn_builtin(int64_t m, int64_t p, int64_t q, const float* a, const float* b, float* c, int threads,
                     GemmIsa isa) {
  if (p <= 0 || q <= 0) return;
  run(kernel_set(gemm_isa_cap(isa)), true, p, q, m, a, p, b, q, nullptr, c, q, threads, nullptr);
}

}  // namespace otlm::cpu
