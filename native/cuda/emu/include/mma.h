// Shadow of <mma.h> for the emulated build: nvcuda::wmma with TF32 inputs and FP32 accumulation
// (the m16n16k8 shape gemm.cu uses; any M×N×K whose tiles split evenly over 32 lanes works).
//
// A fragment is spread over the 32 lanes like on the GPU: lane l holds elements
// [l·E, (l+1)·E) of the tile in row-major order, E = num_elements (this mapping is the emulator's
// own; CUDA leaves it unspecified, so a kernel must not depend on it). Every operation is a warp
// collective: load/store/fill wait for the whole warp, and mma_sync gathers the 32 lanes'
// fragments, rounds A and B to TF32 (round to nearest, ties away from zero, 10 mantissa bits:
// cvt.rna.tf32.f32), multiplies exactly, accumulates in float in k order and scatters D back.
// The pointer and leading-dimension rules of the real API are checked (256-bit aligned pointer,
// ldm a multiple of 4 floats).
#pragma once
#include "otlm_cuda_emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <class Use, int M, int N, int K>
struct shape;
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
template <class T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
 public:
  static constexpr int rows = detail::shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::shape<Use, M, N, K>::cols;
  static_assert((rows * cols) % 32 == 0, "wmma tile does not split evenly over a warp");
  enum { num_elements = rows * cols / 32 };
  using element_type = typename detail::storage<T>::type;
  element_type x[num_elements];
};

// Round to TF32: nearest, ties away from zero (the 13 low mantissa bits become zero).
inline float __float_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {  // inf and NaN unchanged
    u += 0x1000u;
    u &= 0xffffe000u;
  }
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

namespace detail {

inline unsigned lane() { return ::otlm_emu::detail::t_thread->lane; }

inline void check_ptr(const char* what, const void* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::otlm_emu::detail::fatal("%s: the pointer %p is not 256-bit aligned", what, p);
  if (ldm % 4 != 0) ::otlm_emu::detail::fatal("%s: ldm %u is not a multiple of 4 (16 bytes of float)", what, ldm);
}

template <class Frag, class E>
inline void load(const char* what, Frag& f, const E* p, unsigned ldm, bool row_major_mem) {
  ::otlm_emu::detail::warp_collective(what, 0xffffffffu, nullptr, nullptr);
  check_ptr(what, p, ldm);
  const int base = int(lane()) * Frag::num_elements;
  for (int t = 0; t < Frag::num_elements; ++t) {
    const int e = base + t, r = e / Frag::cols, c = e % Frag::cols;
    f.x[t] = row_major_mem ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}

struct MmaArg {
  const float* a;
  const float* b;
  const float* c;
  float* d;
};

template <int M, int N, int K>
void mma_complete(void* const* args, unsigned mask) {
  if (mask != 0xffffffffu) ::otlm_emu::detail::fatal("wmma::mma_sync needs the whole warp (mask 0x%08x)", mask);
  constexpr int EA = M * K / 32, EB = K * N / 32, EC = M * N / 32;
  float A[M * K], B[K * N], C[M * N];
  for (int l = 0; l < 32; ++l) {
    const MmaArg* m = static_cast<const MmaArg*>(args[l]);
    for (int t = 0; t < EA; ++t) A[l * EA + t] = __float_to_tf32(m->a[t]);
    for (int t = 0; t < EB; ++t) B[l * EB + t] = __float_to_tf32(m->b[t]);
    for (int t = 0; t < EC; ++t) C[l * EC + t] = m->c[t];
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = C[i * N + j];
      for (int k = 0; k < K; ++k) acc += A[i * K + k] * B[k * N + j];  // TF32 products are exact in float
      C[i * N + j] = acc;
    }
  for (int l = 0; l < 32; ++l) {
    float* d = static_cast<const MmaArg*>(args[l])->d;
    for (int t = 0; t < EC; ++t) d[t] = C[l * EC + t];
  }
}

}  // namespace detail

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  ::otlm_emu::detail::warp_collective("wmma::fill_fragment", 0xffffffffu, nullptr, nullptr);
  for (int t = 0; t < fragment<Use, M, N, K, T, L>::num_elements; ++t) f.x[t] = v;
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<matrix_a, M, N, K, T, row_major>& f, const float* p, unsigned ldm) {
  detail::load("wmma::load_matrix_sync", f, p, ldm, true);
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<matrix_a, M, N, K, T, col_major>& f, const float* p, unsigned ldm) {
  detail::load("wmma::load_matrix_sync", f, p, ldm, false);
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<matrix_b, M, N, K, T, row_major>& f, const float* p, unsigned ldm) {
  detail::load("wmma::load_matrix_sync", f, p, ldm, true);
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<matrix_b, M, N, K, T, col_major>& f, const float* p, unsigned ldm) {
  detail::load("wmma::load_matrix_sync", f, p, ldm, false);
}
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  detail::load("wmma::load_matrix_sync", f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                              layout_t layout) {
  using F = fragment<accumulator, M, N, K, float>;
  ::otlm_emu::detail::warp_collective("wmma::store_matrix_sync", 0xffffffffu, nullptr, nullptr);
  detail::check_ptr("wmma::store_matrix_sync", p, ldm);
  const int base = int(detail::lane()) * F::num_elements;
  for (int t = 0; t < F::num_elements; ++t) {
    const int e = base + t, r = e / F::cols, c = e % F::cols;
    if (layout == mem_row_major)
      p[size_t(r) * ldm + c] = f.x[t];
    else
      p[size_t(c) * ldm + r] = f.x[t];
  }
}

template <int M, int N, int K, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, precision::tf32, LA>& a,
                     const fragment<matrix_b, M, N, K, precision::tf32, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c, bool satf = false) {
  if (satf) ::otlm_emu::detail::fatal("wmma::mma_sync: satf is not emulated");
  detail::MmaArg arg{a.x, b.x, c.x, d.x};
  ::otlm_emu::detail::warp_collective("wmma::mma_sync", 0xffffffffu, &arg, &detail::mma_complete<M, N, K>);
}

}  // namespace wmma
}  // namespace nvcuda
