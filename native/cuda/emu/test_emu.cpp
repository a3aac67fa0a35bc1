// Tests of the CUDA emulator itself (ctest test_cuda_emu_runtime): warp shuffles and votes, block
// and named barriers, atomics, dynamic shared memory and its 48 KB opt-in, launch and copy errors,
// device properties, wmma TF32, and that a deadlock or a divergent warp collective aborts with a
// report naming the block, the barrier and the waiting threads (checked in a forked child).
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <mma.h>

#include "../../tests/check.h"

namespace {


#define LAUNCH(grid, block, smem, ...) ::otlm_emu::launcher(grid, block, smem, 0, #__VA_ARGS__, __VA_ARGS__)

// ---------------------------------------------------------------------------------- kernels --
__global__ void k_shuffles(int* out_i, double* out_d, long long* out_ll, float* out_f, unsigned* out_u) {
  const int t = threadIdx.x, lane = t & 31;
  int v = t;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out_i[t] = v;                                                  // warp sum of thread ids
  out_d[t] = __shfl_down_sync(0xffffffffu, double(t) * 0.5, 3);  // lane+3, own value past the end
  out_ll[t] = __shfl_up_sync(0xffffffffu, (long long)t << 33, 2, 16);
  out_f[t] = __shfl_sync(0xffffffffu, float(t) + 0.25f, 5, 8);   // lane 5 of each group of 8
  const unsigned b = __ballot_sync(0xffffffffu, lane % 3 == 0);
  const int any = __any_sync(0xffffffffu, lane == 7), all = __all_sync(0xffffffffu, lane < 40), none = __any_sync(0xffffffffu, 0);
  out_u[t] = b ^ (unsigned(any) << 1) ^ (unsigned(all) << 2) ^ (unsigned(none) << 3);
}

// Threads exit at different points; the survivors' __syncthreads still completes.
__global__ void k_early_exit(int* out) {
  __shared__ int s[256];
  const int t = threadIdx.x;
  if (t >= 200) return;
  s[t] = t + 1;
  __syncthreads();
  if (t >= 100) return;
  s[t] += s[t + 100];
  __syncthreads();
  if (t == 0) {
    int sum = 0;
    for (int i = 0; i < 100; ++i) sum += s[i];
    out[blockIdx.x] = sum;
  }
}

// Two groups of 64 threads synchronise on their own named barriers, in a different order.
__global__ void k_named(int* out) {
  __shared__ int s[128];
  const int t = threadIdx.x, g = t / 64;
  s[t] = t;
  __barrier_sync_count(1 + g, 64);
  out[t] = s[(t % 64 + 1) % 64 + g * 64];
  __barrier_sync_count(1 + g, 64);
  s[t] = -t;
  __syncthreads();
  out[t] += 1000 * s[127 - t];
}

__global__ void k_atomics(unsigned long long* cnt, int* mx, double* sum, float* fsum) {
  atomicAdd(cnt, 1ull);
  atomicMax(mx, int(blockIdx.x * blockDim.x + threadIdx.x));
  atomicAdd(sum, 0.5);
  atomicAdd(fsum, 1.0f);
}

__global__ void k_dyn_smem(int* out, int n) {
  int* s = ::otlm_emu::dynamic_shared<int>();
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = i;
  __syncthreads();
  int acc = 0;
  if (threadIdx.x == 0)
    for (int i = 0; i < n; ++i) acc += s[i];
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

__global__ void k_dims(unsigned* out) {
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[b * blockDim.x * blockDim.y * blockDim.z + t] = (b << 16) | t;
}

__global__ void k_wmma(const float* a, const float* b, float* c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> af;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> bf;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::load_matrix_sync(af, a, 8);
  wmma::load_matrix_sync(bf, b, 8);
  for (int t = 0; t < af.num_elements; ++t) af.x[t] = wmma::__float_to_tf32(af.x[t]);
  wmma::mma_sync(acc, af, bf, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void k_big_smem(int* out) {
  double* s = ::otlm_emu::dynamic_shared<double>();
  s[threadIdx.x] = 1;
  if (threadIdx.x == 0) out[0] = 7;
}

// ---- kernels that must abort
__global__ void k_deadlock_named(int*) {
  if (threadIdx.x < 32) __barrier_sync_count(3, 64);  // 32 of 64 arrive, the others exit
}
__global__ void k_deadlock_mixed(int*) {
  if (threadIdx.x < 64)
    __syncthreads();
  else
    __barrier_sync_count(2, 128);
}
__global__ void k_shfl_exited(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}
__global__ void k_divergent(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
  else
    __syncwarp();
}

// ---------------------------------------------------------------------------------- helpers --
template <class T>
T* dev(size_t n) {
  T* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) std::abort();
  cudaMemset(p, 0, n * sizeof(T));
  return p;
}

// Runs f in a child process; returns its stderr and whether it died of SIGABRT.
template <class F>
bool aborts(F f, std::string* err) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    f();
    std::_Exit(0);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t r;
  while ((r = read(fds[0], buf, sizeof buf)) > 0) err->append(buf, size_t(r));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

float tf32(float v) { return nvcuda::wmma::__float_to_tf32(v); }

}  // namespace

int main() {
  std::printf("otlm CUDA emulator self-test\n");
  // ---- shuffles and votes
  {
    const int n = 64;
    int* di = dev<int>(n);
    double* dd = dev<double>(n);
    long long* dl = dev<long long>(n);
    float* df = dev<float>(n);
    unsigned* du = dev<unsigned>(n);
    LAUNCH(1, n, 0, k_shuffles)(di, dd, dl, df, du);
    CHECK(cudaGetLastError() == cudaSuccess, "shuffle launch");
    std::vector<int> hi(n);
    std::vector<double> hd(n);
    std::vector<long long> hl(n);
    std::vector<float> hf(n);
    std::vector<unsigned> hu(n);
    cudaMemcpy(hi.data(), di, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hd.data(), dd, n * 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(hl.data(), dl, n * 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(hf.data(), df, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hu.data(), du, n * 4, cudaMemcpyDeviceToHost);
    unsigned ball = 0;
    for (int l = 0; l < 32; ++l)
      if (l % 3 == 0) ball |= 1u << l;
    bool ok = true;
    for (int t = 0; t < n; ++t) {
      const int w = t / 32, lane = t % 32;
      ok &= hi[t] == 32 * 32 * w + 496;
      ok &= hd[t] == 0.5 * double(lane + 3 < 32 ? t + 3 : t);
      ok &= hl[t] == ((long long)((lane % 16) >= 2 ? t - 2 : t) << 33);
      ok &= hf[t] == float(t - lane % 8 + 5) + 0.25f;
      ok &= hu[t] == (ball ^ 2u ^ 4u);
      if (!ok) {
        std::printf("  thread %d: %d %g %lld %g %08x\n", t, hi[t], hd[t], hl[t], double(hf[t]), hu[t]);
        break;
      }
    }
    CHECK(ok, "shuffle/vote results");
  }
  // ---- barriers
  {
    int* d = dev<int>(3);
    LAUNCH(3, 256, 0, k_early_exit)(d);
    int h[3];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 20100 && h[1] == 20100 && h[2] == 20100, "__syncthreads with exited threads: %d %d %d", h[0], h[1],
          h[2]);
    int* o = dev<int>(128);
    LAUNCH(1, 128, 0, k_named)(o);
    std::vector<int> ho(128);
    cudaMemcpy(ho.data(), o, 128 * 4, cudaMemcpyDeviceToHost);
    bool ok = true;
    for (int t = 0; t < 128; ++t) ok &= ho[t] == ((t % 64 + 1) % 64 + (t / 64) * 64) + 1000 * -(127 - t);
    CHECK(ok, "named barriers");
  }
  // ---- atomics, dims
  {
    unsigned long long* c = dev<unsigned long long>(1);
    int* m = dev<int>(1);
    double* s = dev<double>(1);
    float* f = dev<float>(1);
    LAUNCH(dim3(7, 3), 96, 0, k_atomics)(c, m, s, f);
    unsigned long long hc = 0;
    int hm = 0;
    double hs = 0;
    float hf = 0;
    cudaMemcpy(&hc, c, 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(&hm, m, 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(&hs, s, 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(&hf, f, 4, cudaMemcpyDeviceToHost);
    CHECK(hc == 21 * 96 && hm == 6 * 96 + 95 && hs == 21 * 48 && hf == 21 * 96, "atomics: %llu %d %g %g", hc, hm, hs,
          double(hf));
    const dim3 g(3, 2, 2), b(4, 3, 2);
    unsigned* o = dev<unsigned>(12 * 24);
    LAUNCH(g, b, 0, k_dims)(o);
    std::vector<unsigned> ho(12 * 24);
    cudaMemcpy(ho.data(), o, ho.size() * 4, cudaMemcpyDeviceToHost);
    bool ok = true;
    for (unsigned q = 0; q < ho.size(); ++q) ok &= ho[q] == (((q / 24) << 16) | (q % 24));
    CHECK(ok, "3-d grid and block indices");
  }
  // ---- dynamic shared memory and the 48 KB opt-in
  {
    int* o = dev<int>(2);
    LAUNCH(2, 64, 1000 * 4, k_dyn_smem)(o, 1000);
    int h[2];
    cudaMemcpy(h, o, 8, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 499500 && h[1] == 499500, "dynamic shared memory: %d %d", h[0], h[1]);
    const size_t big = 64 * 1024;
    LAUNCH(1, 32, big, k_big_smem)(o);
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue, "more than 48 KB without the attribute must fail");
    CHECK(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
          "the launch error is reported once by cudaGetLastError");
    CHECK(cudaFuncSetAttribute(k_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, int(big)) == cudaSuccess,
          "cudaFuncSetAttribute 64 KB");
    LAUNCH(1, 32, big, k_big_smem)(o);
    CHECK(cudaGetLastError() == cudaSuccess, "more than 48 KB with the attribute");
    CHECK(cudaFuncSetAttribute(k_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 1 << 20) == cudaErrorInvalidValue,
          "an opt-in beyond the device's maximum");
    cudaGetLastError();
    LAUNCH(1, 2048, 0, k_big_smem)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block");
    LAUNCH(dim3(1, 70000), 32, 0, k_big_smem)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y > 65535");
  }
  // ---- wmma TF32 against a reference with the same rounding
  {
    float ha[16 * 8], hb[8 * 16], hc[16 * 16];
    for (int i = 0; i < 128; ++i) ha[i] = std::sin(float(i)) * 3.1f, hb[i] = std::cos(float(i) * 0.7f) * 1.7f;
    float *da = dev<float>(128), *db = dev<float>(128), *dc = dev<float>(256);
    cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
    LAUNCH(1, 32, 0, k_wmma)(da, db, dc);
    cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
    double worst = 0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        float r = 1.0f;
        for (int k = 0; k < 8; ++k) r += tf32(ha[i * 8 + k]) * tf32(hb[j * 8 + k]);  // b is col-major, ldm 8
        worst = std::max(worst, std::fabs(double(r) - double(hc[i * 16 + j])));
      }
    CHECK(worst == 0, "wmma m16n16k8 TF32: max |diff| %g", worst);
    CHECK(tf32(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f && tf32(1.0f + 0x1p-12f) == 1.0f && tf32(-1.0f - 0x1p-11f) == -1.0f - 0x1p-10f,
          "TF32 rounding: nearest, ties away from zero");
  }
  // ---- memory and copies
  {
    char* p = nullptr;
    CHECK(cudaMalloc(&p, 100) == cudaSuccess && reinterpret_cast<uintptr_t>(p) % 256 == 0, "cudaMalloc alignment");
    char h[200] = {};
    CHECK(cudaMemcpy(p, h, 100, cudaMemcpyHostToDevice) == cudaSuccess, "copy inside an allocation");
    CHECK(cudaMemcpy(p + 1, h, 100, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "copy past an allocation");
    CHECK(cudaMemcpy2D(p, 40, h, 40, 30, 2, cudaMemcpyHostToDevice) == cudaSuccess, "2-d copy inside");
    CHECK(cudaMemcpy2D(p, 40, h, 40, 30, 3, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "2-d copy past the end");
    CHECK(cudaMemcpy2D(p, 20, h, 40, 30, 2, cudaMemcpyHostToDevice) == cudaErrorInvalidPitchValue, "width > pitch");
    CHECK(cudaMemset(p + 50, 0, 51) == cudaErrorInvalidValue, "memset past an allocation");
    CHECK(cudaFree(p + 1) == cudaErrorInvalidDevicePointer, "cudaFree of an interior pointer");
    CHECK(cudaFree(p) == cudaSuccess, "cudaFree");
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    CHECK(cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot > 0 && fr <= tot, "cudaMemGetInfo");
    setenv("OTLM_CUDA_EMU_MEM", "1M", 1);
    void* q = nullptr;
    CHECK(cudaMalloc(&q, 2 << 20) == cudaErrorMemoryAllocation, "allocation beyond OTLM_CUDA_EMU_MEM");
    unsetenv("OTLM_CUDA_EMU_MEM");
    cudaGetLastError();
    cudaStream_t s = nullptr;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess &&
              cudaStreamDestroy(s) == cudaSuccess && cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle,
          "stream life cycle");
    cudaGetLastError();
  }
  // ---- device properties
  {
    cudaDeviceProp p;
    int n = 0, v = 0;
    CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == 1, "one device");
    CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess && std::strcmp(p.name, "otlm CUDA emulator (CPU)") == 0 &&
              p.major == 9 && p.minor == 0 && p.multiProcessorCount > 0 && p.totalGlobalMem > 0,
          "default properties: %s %d.%d", p.name, p.major, p.minor);
    setenv("OTLM_CUDA_EMU_CC", "8.6", 1);
    CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && v == 8 &&
              cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMinor, 0) == cudaSuccess && v == 6,
          "OTLM_CUDA_EMU_CC=8.6");
    CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess && v == 101376,
          "sm_86 shared memory opt-in %d", v);
    unsetenv("OTLM_CUDA_EMU_CC");
    setenv("OTLM_CUDA_EMU_DEVICES", "0", 1);
    CHECK(cudaGetDeviceCount(&n) == cudaErrorNoDevice && n == 0, "OTLM_CUDA_EMU_DEVICES=0");
    unsetenv("OTLM_CUDA_EMU_DEVICES");
    cudaGetLastError();
    int blocks = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k_dims, 256, 0) == cudaSuccess && blocks == 8,
          "occupancy of 256-thread blocks on sm_90: %d", blocks);
  }
  // ---- what must abort, with a report
  {
    int* o = dev<int>(256);
    struct Case {
      const char* what;
      void (*run)(int*);
      std::vector<const char*> expect;
    } cases[] = {
        {"named barrier short of threads", [](int* p) { LAUNCH(2, 64, 0, k_deadlock_named)(p); },
         {"deadlock", "k_deadlock_named", "block (0,0,0)", "named barrier 3", "32 of 64", "threads 0-31",
          "exited: threads 32-63"}},
        {"__syncthreads against a named barrier", [](int* p) { LAUNCH(1, 128, 0, k_deadlock_mixed)(p); },
         {"deadlock", "__syncthreads: 64 threads arrived (128 live): threads 0-63", "named barrier 2",
          "threads 64-127"}},
        {"shuffle with an exited lane", [](int* p) { LAUNCH(1, 32, 0, k_shfl_exited)(p); },
         {"exited while lane", "__shfl_xor_sync", "k_shfl_exited"}},
        {"divergent warp collectives", [](int* p) { LAUNCH(1, 32, 0, k_divergent)(p); },
         {"divergent warp-synchronous code", "__syncwarp", "__shfl_xor_sync"}},
    };
    for (const Case& c : cases) {
      std::string err;
      const bool ab = aborts([&] { c.run(o); }, &err);
      bool all = ab;
      for (const char* e : c.expect) all &= err.find(e) != std::string::npos;
      CHECK(all, "%s: %s; report:\n%s", c.what, ab ? "aborted" : "did not abort", err.c_str());
      if (all) std::printf("  %s: aborted with\n    %s", c.what, err.substr(0, err.find('\n') + 1).c_str());
    }
  }
  return check_summary();
}
