// OTLM on the device (docs/architecture.md "OTLM", otlm.h): loss, unrolled/envelope gradient, the trainer.
//
//   A = Φ_B W + b            our FP32 GEMM; the epilogue adds b and writes per-tile (max, Σexp)
//   log Z = log_softmax(A)   k_row_lse merges the tile pairs and normalises in place
//   (f_t, g_t) t = 1..S      the Sinkhorn engine of sinkhorn.cu (one read of log Z per iteration),
//                            storing only the potentials (S ≤ T; early stop when error < tol)
//   L = (Σ_i f_S,i + Σ_j g_{S-1,j} colsum_j) / B       (= (<Y,M> + λ<Y,log Y>)/B, rows exact)
//
// Unrolled backward (exact reverse mode of the S iterations; ℓ = B·L, h = f_S ⊕ g_{S-1},
// P = exp((h - M)/λ), α_t = exp((f_t ⊕ g_{t-1} - M)/λ), β_t = exp((f_t ⊕ g_t - M)/λ)/c):
//   k_bw_p0:    f̄_S = Σ_j P(1 + h/λ),  M̄ = -P h/λ                      (row pass)
//   for t = S..2:
//     k_bw_col: ḡ_{t-1} = Σ_i α_t (d_t - f̄_t)   (d_S = 1 + h/λ, else 0), M̄ += f̄_t α_t
//                                                (column pass: threads own columns)
//     k_bw_row: f̄_{t-1} = -Σ_j ḡ_{t-1} β_{t-1},  M̄ += ḡ_{t-1} β_{t-1}  (row pass)
//   k_bw_final: M̄ += f̄_1 α_1, then dA = (Z·rowsum(M̄) - M̄)/B           (row pass)
// Envelope: M̄ = P (Danskin), dA = (Z·rowsum(P) - P)/B in one row pass.
// Then dW = Φ_Bᵀ dA (our transposed-A GEMM), ‖dW‖_F reduced on the device, and the optimizer
// kernel (Adam with PyTorch L2 semantics, AdamW, SGD with momentum / Nesterov; moments in double,
// W in float — as the CPU trainer). Only scalars cross to the host per step (plus the batch's
// row indices).
#include <algorithm>
#include <chrono>
#include <new>
#include <vector>

#include "cuda_internal.h"
#include "otlm/optimizer.h"

namespace otlm::cuda {

namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ------------------------------------------------------------------------------------ kernels
__global__ void k_prior_cols(const double* mu, int64_t k, double b, double* col, double* logc) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < k) {
    col[j] = b * mu[j];
    logc[j] = log(col[j]);
  }
}

__global__ void k_gather(const float* phi, int64_t ld, const int32_t* rows, int64_t b, float* out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int64_t ld4 = ld / 4;
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < b; i += warps) {
    const float4* src = reinterpret_cast<const float4*>(phi + int64_t(rows[i]) * ld);
    float4* dst = reinterpret_cast<float4*>(out + i * ld);
    for (int64_t q = lane; q < ld4; q += 32) dst[q] = src[q];
  }
}

#define ROW_LOOP(n)                                                                           \
  const int lane = threadIdx.x & 31;                                                          \
  const int64_t warps_ = int64_t(gridDim.x) * (blockDim.x / 32);                              \
  for (int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < (n); i += warps_)

__device__ __forceinline__ double pexp(double arg) { return double(__expf(float(arg))); }

__global__ void k_bw_p0(const float* logz, int64_t ld, int64_t b, int64_t k, const double* f, const double* g,
                        double inv, double* fbar, double* mbar) {
  ROW_LOOP(b) {
    const float* z = logz + i * ld;
    double* mb = mbar + i * ld;
    const double fi = f[i];
    double acc = 0;
    for (int64_t j = lane; j < k; j += 32) {
      const double h = fi + g[j];
      const double P = pexp((h + double(z[j])) * inv);
      acc += P * (1.0 + h * inv);
      mb[j] = -P * h * inv;
    }
    acc = warp_sum(acc);
    if (lane == 0) fbar[i] = acc;
  }
}

__global__ void __launch_bounds__(256) k_bw_col(const float* logz, int64_t ld, int64_t b, int64_t k,
                                                const double* f, const double* gp, const double* fbar,
                                                double inv, int first, int64_t rows_per_chunk, double* mbar,
                                                double* part) {
  const int64_t j = int64_t(blockIdx.x) * 256 + threadIdx.x;
  if (j >= k) return;
  const double gj = gp[j];
  const int64_t i0 = int64_t(blockIdx.y) * rows_per_chunk, i1 = min(b, i0 + rows_per_chunk);
  double acc = 0;
  for (int64_t i = i0; i < i1; ++i) {
    const double h = f[i] + gj;
    const double a = pexp((h + double(logz[i * ld + j])) * inv);
    const double fb = fbar[i];
    const double d = first ? 1.0 + h * inv : 0.0;
    acc += a * (d - fb);
    mbar[i * ld + j] += fb * a;
  }
  part[int64_t(blockIdx.y) * k + j] = acc;
}

__global__ void k_colsum_merge(const double* part, int64_t chunks, int64_t k, double* out) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= k) return;
  double s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += part[c * k + j];
  out[j] = s;
}

__global__ void k_bw_row(const float* logz, int64_t ld, int64_t b, int64_t k, const double* f, const double* g,
                         const double* gbar, const double* logc, double inv, double* fbar, double* mbar) {
  ROW_LOOP(b) {
    const float* z = logz + i * ld;
    double* mb = mbar + i * ld;
    const double fi = f[i];
    double acc = 0;
    for (int64_t j = lane; j < k; j += 32) {
      const double be = pexp((fi + g[j] + double(z[j])) * inv - logc[j]);
      const double gb = gbar[j];
      acc += gb * be;
      mb[j] += gb * be;
    }
    acc = warp_sum(acc);
    if (lane == 0) fbar[i] = -acc;
  }
}

__global__ void k_bw_final(const float* logz, int64_t ld, int64_t b, int64_t k, const double* f1, const double* g0,
                           const double* fbar, double inv, double invb, double* mbar, float* da) {
  ROW_LOOP(b) {
    const float* z = logz + i * ld;
    double* mb = mbar + i * ld;
    float* d = da + i * ld;
    const double fi = f1[i], fb = fbar[i];
    double rs = 0;
    for (int64_t j = lane; j < k; j += 32) {
      const double m = mb[j] + fb * pexp((fi + g0[j] + double(z[j])) * inv);
      mb[j] = m;
      rs += m;
    }
    rs = warp_sum(rs);
    for (int64_t j = lane; j < k; j += 32) d[j] = float((double(__expf(z[j])) * rs - mb[j]) * invb);
  }
}

__global__ void k_bw_env(const float* logz, int64_t ld, int64_t b, int64_t k, const double* f, const double* g,
                         double inv, double invb, float* da) {
  ROW_LOOP(b) {
    const float* z = logz + i * ld;
    float* d = da + i * ld;
    const double fi = f[i];
    double rs = 0;
    for (int64_t j = lane; j < k; j += 32) rs += pexp((fi + g[j] + double(z[j])) * inv);
    rs = warp_sum(rs);
    for (int64_t j = lane; j < k; j += 32) {
      const double P = pexp((fi + g[j] + double(z[j])) * inv);
      d[j] = float((double(__expf(z[j])) * rs - P) * invb);
    }
  }
}

// loss = (Σ f + Σ g·colsum) / b, fixed reduction order.
__global__ void __launch_bounds__(1024) k_loss(const double* f, int64_t b, const double* g, const double* colsum,
                                               int64_t k, double* out) {
  __shared__ double red[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < b; i += 1024) s += f[i];
  for (int64_t j = threadIdx.x; j < k; j += 1024) s += g[j] * colsum[j];
  const double t = block_sum(s, red, 32);
  if (threadIdx.x == 0) out[0] = t / double(b);
}

constexpr int kSumBlocks = 256;
__global__ void __launch_bounds__(256) k_sumsq(const float* x, int64_t ld, int64_t rows, int64_t k, double* part) {
  __shared__ double red[8];
  double s = 0;
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x)
    for (int64_t j = threadIdx.x; j < k; j += 256) {
      const double v = x[i * ld + j];
      s += v * v;
    }
  const double t = block_sum(s, red, 8);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}
__global__ void k_sum_final(const double* part, int n, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double t = 0;
    for (int q = 0; q < n; ++q) t += part[q];
    out[0] = t;
  }
}

// The shared optimizer rule (otlm/optimizer.h) in two phases, as on the CPU: k_optimizer with
// commit = 0 only records the first element whose new weight is not finite (atomicMin into *bad);
// the commit launch writes W and the moments only when nothing was recorded.
struct OptArgs {
  float* w;
  const float* grad;
  double* m1;
  double* m2;  // null for SGD
  int64_t ld, k;
  OptimizerStep o;
  unsigned long long* bad;  // first non-finite element (row * k + col), ~0 when none
  int commit;
};
__global__ void k_optimizer(OptArgs A) {
  const int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= A.k * A.ld || q % A.ld >= A.k) return;
  if (A.commit && *A.bad != ~0ull) return;
  double m1 = A.m1[q], m2 = A.m2 ? A.m2[q] : 0;
  const float w = optimizer_update(A.o, A.w[q], A.grad[q], m1, m2);
  if (!A.commit) {
    if (!isfinite(w)) atomicMin(A.bad, (unsigned long long)((q / A.ld) * A.k + q % A.ld));
    return;
  }
  A.w[q] = w;
  A.m1[q] = m1;
  if (A.m2) A.m2[q] = m2;
}

__global__ void k_identity(float* w, int64_t ld, int64_t k) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < k) w[j * ld + j] = 1.0f;
}

inline int row_grid(int64_t n, int sm) {
  return int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, 8), int64_t(sm) * 16)));
}

// ------------------------------------------------------------------------------------ context
// Device state of one OTLM computation (shared by loss_grad and the trainer).
struct Ctx {
  otlm_train_params p{};
  int64_t k = 0, ld = 0;
  DeviceInfo dev;
  Stream stream;
  DeviceBuffer<float> w, dw, bias;
  DeviceBuffer<double> mu;
  // batch-sized (capacity bcap)
  int64_t bcap = 0;
  DeviceBuffer<float> phib, logz, da;
  DeviceBuffer<double> mbar, fh, gh, fbar, gbar, colpart, col, logc, scal;
  DeviceBuffer<float2> lsep;
  std::vector<double> hmu;  // the target prior on the host (the driver's column marginal)
  int64_t sk_b = -1;        // batch size the Sinkhorn passes were made for
  std::unique_ptr<CudaSinkhornPasses> sk;
  int64_t chunks(int64_t b) const {
    int64_t colblocks = ceil_div(k, 256);
    int64_t want = std::max<int64_t>(1, int64_t(dev.sm_count) * 8 / colblocks);
    return std::max<int64_t>(1, std::min<int64_t>({want, ceil_div(b, 16), 65535}));
  }

  otlm_status init(const otlm_train_params* prm, const float* hbias, const double* hmu_in, otlm_error* err) {
    p = *prm;
    k = p.k;
    ld = pad4(k);
    OTLM_TRY(current_device_info(&dev, err));
    OTLM_TRY(stream.create(err));
    OTLM_TRY(w.alloc(size_t(k) * size_t(ld), "W", err));
    OTLM_TRY(dw.alloc(size_t(k) * size_t(ld), "dL/dW", err));
    OTLM_TRY(mu.alloc(size_t(k), "target prior", err));
    OTLM_TRY(gbar.alloc(size_t(k), "g adjoint", err));
    OTLM_TRY(col.alloc(size_t(k), "column marginal", err));
    OTLM_TRY(logc.alloc(size_t(k), "log column marginal", err));
    OTLM_TRY(scal.alloc(kSumBlocks + 8, "scalars", err));
    OTLM_TRY(gh.alloc(size_t(p.sinkhorn_iters + 1) * size_t(k), "g history", err));
    hmu.assign(hmu_in, hmu_in + k);
    OTLM_CU(cudaMemcpyAsync(mu.ptr, hmu_in, size_t(k) * 8, cudaMemcpyHostToDevice, stream.s), "cudaMemcpy (prior)");
    if (hbias) {
      OTLM_TRY(bias.alloc(size_t(k), "bias", err));
      OTLM_CU(cudaMemcpyAsync(bias.ptr, hbias, size_t(k) * 4, cudaMemcpyHostToDevice, stream.s), "cudaMemcpy (bias)");
    }
    OTLM_CU(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize");
    return OTLM_OK;
  }

  otlm_status reserve(int64_t b, otlm_error* err) {
    if (b <= bcap) return OTLM_OK;
    const size_t bl = size_t(b) * size_t(ld);
    OTLM_TRY(phib.alloc(bl, "the batch logits", err));
    OTLM_TRY(logz.alloc(bl, "log_softmax(A)", err));
    OTLM_TRY(da.alloc(bl, "dL/dA", err));
    if (p.grad_mode == OTLM_GRAD_UNROLLED) OTLM_TRY(mbar.alloc(bl, "dL/dM (double)", err));
    OTLM_TRY(fh.alloc(size_t(p.sinkhorn_iters) * size_t(b), "f history", err));
    OTLM_TRY(fbar.alloc(size_t(b), "f adjoint", err));
    OTLM_TRY(colpart.alloc(size_t(chunks(b)) * size_t(k), "column partials", err));
    OTLM_TRY(lsep.alloc(size_t(b) * size_t(gemm_tiles_n(k)), "log-sum-exp tile partials", err));
    bcap = b;
    return OTLM_OK;
  }

  // Forward (+ backward and dW when want_grad) on the batch in phib[0..b). Results in res.
  struct Result {
    double loss = NAN, error = NAN, grad_norm = NAN;
    int32_t iters = 0;
  };
  otlm_status forward_backward(int64_t b, bool want_grad, Result& res, otlm_error* err) {
    cudaStream_t s = stream.s;
    const double lam = p.lambda, inv = 1.0 / lam;
    const int32_t T = p.sinkhorn_iters;
    const bool tf32 = tf32_requested();
    // ---- log Z = log_softmax(Φ_B W + b)
    OTLM_TRY(gemm_launch(s, false, b, k, k, phib.ptr, ld, w.ptr, ld, logz.ptr, ld, bias.ptr,
                         tf32 ? nullptr : lsep.ptr, tf32, err));
    OTLM_TRY(row_logsumexp(s, logz.ptr, ld, b, k, nullptr, true, tf32 ? nullptr : lsep.ptr, gemm_tiles_n(k), err));
    OTLM_KERNEL(unsigned(ceil_div(k, 256)), 256, 0, s, k_prior_cols)(mu.ptr, k, double(b), col.ptr, logc.ptr);
    OTLM_LAUNCH("prior columns");
    // ---- Sinkhorn by the shared driver (plain steps, a check every iteration, stop at T or when the
    // error is under tol); the hook copies f_t and g_{t-1} into the histories the backward reads.
    if (sk_b != b) {
      sk.reset();
      sk_b = -1;
      SkProblem pb;
      pb.x = logz.ptr;  // log Z = -M: "logits" whose rows are already log-softmax (row LSE 0)
      pb.ld = ld;
      pb.n = b;
      pb.k = k;
      pb.logits = true;
      pb.rsum = double(b);
      pb.col = col.ptr;
      pb.logc = logc.ptr;
      OTLM_TRY(CudaSinkhornPasses::create(pb, s, &sk, err));
      sk_b = b;
    }
    OTLM_TRY(sk->set_g(std::vector<double>(size_t(k), 0.0).data(), err));
    std::vector<double> hc(static_cast<size_t>(k)), fout(static_cast<size_t>(b)), gout(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) hc[size_t(j)] = double(b) * hmu[size_t(j)];
    otlm_sinkhorn_params sp{};
    sp.n = b;
    sp.k = k;
    sp.input_kind = OTLM_INPUT_LOGITS;
    sp.lambda = lam;
    sp.max_iter = T;
    sp.tol = p.tol;
    sp.check_every = 1;
    sp.overrelax = 1;
    otlm_sinkhorn_buffers io{};
    io.col_marginal = hc.data();
    io.f = fout.data();
    io.g = gout.data();
    struct Record final : driver::Hooks {
      CudaSinkhornPasses* ps;
      double *fh, *gh;
      int64_t b, k;
      cudaStream_t s;
      otlm_status after_row_pass(int t, otlm_error* err) override {
        OTLM_CU(cudaMemcpyAsync(fh + size_t(t - 1) * size_t(b), ps->f(), size_t(b) * 8, cudaMemcpyDeviceToDevice, s),
                "cudaMemcpy (f history)");
        OTLM_CU(cudaMemcpyAsync(gh + size_t(t - 1) * size_t(k), ps->g(), size_t(k) * 8, cudaMemcpyDeviceToDevice, s),
                "cudaMemcpy (g history)");
        return OTLM_OK;
      }
    } record;
    record.ps = sk.get();
    record.fh = fh.ptr;
    record.gh = gh.ptr;
    record.b = b;
    record.k = k;
    record.s = s;
    otlm_sinkhorn_report rep{};
    OTLM_TRY(driver::solve(sp, io, *sk, &rep, err, &record));
    const int32_t S = rep.iterations;
    const double error = rep.error;
    const double* fS = fh.ptr + size_t(S - 1) * size_t(b);
    const double* gS = gh.ptr + size_t(S - 1) * size_t(k);
    OTLM_KERNEL(1, 1024, 0, s, k_loss)(fS, b, gS, sk->colsum(), k, scal.ptr);
    OTLM_LAUNCH("loss");
    double loss = NAN;
    OTLM_CU(cudaMemcpyAsync(&loss, scal.ptr, 8, cudaMemcpyDeviceToHost, s), "cudaMemcpy (loss)");
    OTLM_CU(cudaStreamSynchronize(s), "OTLM forward (stream synchronize)");
    res.loss = loss;
    res.error = error;
    res.iters = S;
    if (!std::isfinite(loss))
      return fail(err, OTLM_ENONFINITE, "otlm: the loss is not finite (%g) after %d Sinkhorn iterations", loss, S);
    if (!want_grad) return OTLM_OK;

    // ---- backward → dA
    const int rg = row_grid(b, dev.sm_count);
    const double invb = 1.0 / double(b);
    if (p.grad_mode == OTLM_GRAD_ENVELOPE) {
      OTLM_KERNEL(rg, 256, 0, s, k_bw_env)(logz.ptr, ld, b, k, fS, gS, inv, invb, da.ptr);
      OTLM_LAUNCH("envelope backward");
    } else {
      OTLM_KERNEL(rg, 256, 0, s, k_bw_p0)(logz.ptr, ld, b, k, fS, gS, inv, fbar.ptr, mbar.ptr);
      OTLM_LAUNCH("unrolled backward (loss terms)");
      const int64_t ch = chunks(b), rpc = ceil_div(b, ch), nch = ceil_div(b, rpc);
      dim3 cg{unsigned(ceil_div(k, 256)), unsigned(nch)};
      for (int32_t t = S; t >= 2; --t) {
        const double* ft = fh.ptr + size_t(t - 1) * size_t(b);
        const double* gp = gh.ptr + size_t(t - 1) * size_t(k);  // g_{t-1}
        OTLM_KERNEL(cg, 256, 0, s, k_bw_col)(logz.ptr, ld, b, k, ft, gp, fbar.ptr, inv, t == S ? 1 : 0, rpc, mbar.ptr,
                                             colpart.ptr);
        OTLM_LAUNCH("unrolled backward (column pass)");
        OTLM_KERNEL(unsigned(ceil_div(k, 256)), 256, 0, s, k_colsum_merge)(colpart.ptr, nch, k, gbar.ptr);
        OTLM_LAUNCH("unrolled backward (column merge)");
        const double* fp = fh.ptr + size_t(t - 2) * size_t(b);  // f_{t-1}
        OTLM_KERNEL(rg, 256, 0, s, k_bw_row)(logz.ptr, ld, b, k, fp, gp, gbar.ptr, logc.ptr, inv, fbar.ptr, mbar.ptr);
        OTLM_LAUNCH("unrolled backward (row pass)");
      }
      OTLM_KERNEL(rg, 256, 0, s, k_bw_final)(logz.ptr, ld, b, k, fh.ptr, gh.ptr, fbar.ptr, inv, invb, mbar.ptr, da.ptr);
      OTLM_LAUNCH("unrolled backward (final pass)");
    }
    // ---- dW = Φ_Bᵀ dA, ‖dW‖
    OTLM_TRY(gemm_launch(s, true, k, k, b, phib.ptr, ld, da.ptr, ld, dw.ptr, ld, nullptr, nullptr, tf32, err));
    OTLM_KERNEL(kSumBlocks, 256, 0, s, k_sumsq)(dw.ptr, ld, k, k, scal.ptr + 8);
    OTLM_LAUNCH("gradient norm");
    OTLM_KERNEL(1, 32, 0, s, k_sum_final)(scal.ptr + 8, kSumBlocks, scal.ptr + 1);
    OTLM_LAUNCH("gradient norm (final)");
    double ss = NAN;
    OTLM_CU(cudaMemcpyAsync(&ss, scal.ptr + 1, 8, cudaMemcpyDeviceToHost, s), "cudaMemcpy (gradient norm)");
    OTLM_CU(cudaStreamSynchronize(s), "OTLM backward (stream synchronize)");
    res.grad_norm = std::sqrt(ss);
    if (!std::isfinite(ss))
      return fail(err, OTLM_ENONFINITE, "otlm: the gradient dL/dW is not finite (loss %g)", loss);
    return OTLM_OK;
  }
};

struct CudaTrainer {
  Ctx ctx;
  int64_t n = 0;
  DeviceBuffer<float> phi;
  DeviceBuffer<double> m1, m2;
  DeviceBuffer<int32_t> rows;
  int64_t rows_cap = 0;
  int64_t step = 0;
};
inline CudaTrainer* as_cuda(otlm_trainer* t) { return reinterpret_cast<CudaTrainer*>(t); }

}  // namespace

otlm_status loss_grad(const otlm_train_params* p, const float* phi_b, int64_t b, const float* w, const float* bias,
                      const double* target_prior, double* loss, float* grad_w, otlm_step_report* rep,
                      otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  if (otlm_status s = validate_train(p, err)) return s;
  const int64_t k = p->k;
  if (b < 1) return fail(err, OTLM_EINVAL, "lossGrad: batch size must be >= 1, got %lld", (long long)b);
  if (b > kMaxElements32 / k || k > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "lossGrad: batch %lld x %lld exceeds 2^31-1 elements", (long long)b, (long long)k);
  if (!phi_b) return fail(err, OTLM_EINVAL, "lossGrad: logits (phi) are required");
  if (!w) return fail(err, OTLM_EINVAL, "lossGrad: weights (w) are required");
  OTLM_TRY(check_prior("lossGrad", target_prior, k, err));
  OTLM_TRY(check_finite("lossGrad", "logits", phi_b, b * k, k, err));
  OTLM_TRY(check_finite("lossGrad", "weights", w, k * k, k, err));
  if (bias) OTLM_TRY(check_finite("lossGrad", "bias", bias, k, 1, err));
  OTLM_TRY(select_device(err));
  try {
    Ctx* ctx = new (std::nothrow) Ctx();
    if (!ctx) return fail(err, OTLM_ENOMEM, "lossGrad: out of host memory");
    struct G {
      Ctx* c;
      ~G() { delete c; }
    } guard{ctx};
    OTLM_TRY(ctx->init(p, bias, target_prior, err));
    OTLM_TRY(ctx->reserve(b, err));
    const size_t ldb = size_t(ctx->ld) * 4;
    OTLM_CU(cudaMemcpy2DAsync(ctx->phib.ptr, ldb, phi_b, size_t(k) * 4, size_t(k) * 4, size_t(b),
                              cudaMemcpyHostToDevice, ctx->stream.s),
            "cudaMemcpy2D (logits to the device)");
    OTLM_CU(cudaMemcpy2DAsync(ctx->w.ptr, ldb, w, size_t(k) * 4, size_t(k) * 4, size_t(k), cudaMemcpyHostToDevice,
                              ctx->stream.s),
            "cudaMemcpy2D (W to the device)");
    Ctx::Result res;
    otlm_status st = annotate(ctx->forward_backward(b, true, res, err), err, "lossGrad batch", (long long)b, (long long)k);
    if (loss) *loss = res.loss;
    if (st == OTLM_OK && grad_w) {
      OTLM_CU(cudaMemcpy2DAsync(grad_w, size_t(k) * 4, ctx->dw.ptr, ldb, size_t(k) * 4, size_t(k),
                                cudaMemcpyDeviceToHost, ctx->stream.s),
              "cudaMemcpy2D (gradient to the host)");
      OTLM_CU(cudaStreamSynchronize(ctx->stream.s), "cudaStreamSynchronize");
    }
    if (rep) {
      rep->loss = res.loss;
      rep->marginal_error = res.error;
      rep->sinkhorn_iters = res.iters;
      rep->grad_norm = st == OTLM_OK ? res.grad_norm : 0.0;
      rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return st;
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "lossGrad: unexpected internal error");
  }
}

otlm_status trainer_create(const otlm_train_params* p, const float* phi, int64_t n, const float* bias,
                           const double* target_prior, otlm_trainer** out, otlm_error* err) {
  if (!out) return fail(err, OTLM_EINVAL, "trainer: out pointer is required");
  *out = nullptr;
  if (otlm_status s = validate_train(p, err)) return s;
  const int64_t k = p->k;
  if (n < 1) return fail(err, OTLM_EINVAL, "trainer: logits must have at least 1 row, got %lld", (long long)n);
  if (n > kMaxElements32 / k || k > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "trainer: logits %lld x %lld exceed 2^31-1 elements", (long long)n, (long long)k);
  if (!phi) return fail(err, OTLM_EINVAL, "trainer: logits (phi) are required");
  OTLM_TRY(check_prior("trainer", target_prior, k, err));
  OTLM_TRY(check_finite("trainer", "logits", phi, n * k, k, err));
  if (bias) OTLM_TRY(check_finite("trainer", "bias", bias, k, 1, err));
  OTLM_TRY(select_device(err));
  CudaTrainer* t = new (std::nothrow) CudaTrainer();
  if (!t) return fail(err, OTLM_ENOMEM, "trainer: out of host memory");
  auto cleanup = [&](otlm_status st) {
    delete t;
    return st;
  };
  try {
    t->n = n;
    if (otlm_status st = t->ctx.init(p, bias, target_prior, err)) return cleanup(st);
    const int64_t ld = t->ctx.ld;
    if (otlm_status st = t->phi.alloc(size_t(n) * size_t(ld), "the logits", err)) return cleanup(st);
    if (otlm_status st = t->m1.alloc(size_t(k) * size_t(ld), "optimizer moment 1", err)) return cleanup(st);
    if (p->optimizer != OTLM_OPT_SGD)
      if (otlm_status st = t->m2.alloc(size_t(k) * size_t(ld), "optimizer moment 2", err)) return cleanup(st);
    cudaStream_t s = t->ctx.stream.s;
    cudaError_t e = cudaMemcpy2DAsync(t->phi.ptr, size_t(ld) * 4, phi, size_t(k) * 4, size_t(k) * 4, size_t(n),
                                      cudaMemcpyHostToDevice, s);
    if (e != cudaSuccess) return cleanup(cuda_fail(err, e, "cudaMemcpy2D (logits to the device)"));
    OTLM_KERNEL(unsigned(ceil_div(k, 256)), 256, 0, s, k_identity)(t->ctx.w.ptr, ld, k);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) return cleanup(cuda_fail(err, e, "trainer initialisation"));
  } catch (...) {
    return cleanup(fail(err, OTLM_EINTERNAL, "trainer: unexpected internal error"));
  }
  *out = reinterpret_cast<otlm_trainer*>(t);
  return OTLM_OK;
}

otlm_status trainer_step(otlm_trainer* th, const int32_t* rows, int64_t b, double lr, otlm_step_report* rep,
                         otlm_error* err) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!th) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  CudaTrainer* t = as_cuda(th);
  if (b < 1) return fail(err, OTLM_EINVAL, "trainer.step: batch size must be >= 1, got %lld", (long long)b);
  if (!rows) return fail(err, OTLM_EINVAL, "trainer.step: rows are required");
  if (!(lr > 0) || !std::isfinite(lr))
    return fail(err, OTLM_EINVAL, "trainer.step: lr must be a finite number > 0, got %g", lr);
  Ctx& c = t->ctx;
  const int64_t k = c.k;
  if (b > kMaxElements32 / k)
    return fail(err, OTLM_EINVAL, "trainer.step: batch %lld x %lld exceeds 2^31-1 elements", (long long)b, (long long)k);
  for (int64_t i = 0; i < b; ++i)
    if (rows[i] < 0 || rows[i] >= t->n)
      return fail(err, OTLM_EINVAL, "trainer.step: rows[%lld] = %d is out of range [0, %lld)", (long long)i, rows[i],
                  (long long)t->n);
  OTLM_TRY(select_device(err));
  try {
    OTLM_TRY(c.reserve(b, err));
    if (b > t->rows_cap) {
      OTLM_TRY(t->rows.alloc(size_t(b), "batch row indices", err));
      t->rows_cap = b;
    }
    cudaStream_t s = c.stream.s;
    OTLM_CU(cudaMemcpyAsync(t->rows.ptr, rows, size_t(b) * 4, cudaMemcpyHostToDevice, s), "cudaMemcpy (rows)");
    OTLM_KERNEL(row_grid(b, c.dev.sm_count), 256, 0, s, k_gather)(t->phi.ptr, c.ld, t->rows.ptr, b, c.phib.ptr);
    OTLM_LAUNCH("batch gather");
    Ctx::Result res;
    otlm_status st = annotate(c.forward_backward(b, true, res, err), err, "trainer.step batch", (long long)b, (long long)k);
    auto report = [&](double gn) {
      if (!rep) return;
      rep->loss = res.loss;
      rep->marginal_error = res.error;
      rep->sinkhorn_iters = res.iters;
      rep->grad_norm = gn;
      rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    if (st != OTLM_OK) {
      if (st == OTLM_ENONFINITE && err) {
        char msg[sizeof(err->message)];
        std::snprintf(msg, sizeof msg, "trainer.step %lld: %.400s; weights kept at their last finite value",
                      (long long)(t->step + 1), err->message);
        std::snprintf(err->message, sizeof err->message, "%s", msg);
      }
      report(NAN);
      return st;
    }
    OptArgs A;
    A.w = c.w.ptr;
    A.grad = c.dw.ptr;
    A.m1 = t->m1.ptr;
    A.m2 = c.p.optimizer == OTLM_OPT_SGD ? nullptr : t->m2.ptr;
    A.ld = c.ld;
    A.k = k;
    A.o = optimizer_step(c.p, lr, t->step + 1);
    A.bad = reinterpret_cast<unsigned long long*>(c.scal.ptr + 2);
    const int64_t step = A.o.step;
    OTLM_CU(cudaMemsetAsync(A.bad, 0xff, sizeof(unsigned long long), s), "cudaMemsetAsync");
    const unsigned grid = unsigned(ceil_div(k * c.ld, 256));
    for (int commit = 0; commit < 2; ++commit) {
      A.commit = commit;
      OTLM_KERNEL(grid, 256, 0, s, k_optimizer)(A);
      OTLM_LAUNCH("optimizer update");
    }
    unsigned long long bad = 0;
    OTLM_CU(cudaMemcpyAsync(&bad, A.bad, sizeof bad, cudaMemcpyDeviceToHost, s), "cudaMemcpy (optimizer flag)");
    OTLM_CU(cudaStreamSynchronize(s), "optimizer update (stream synchronize)");
    if (bad != ~0ull) {
      report(res.grad_norm);
      return fail(err, OTLM_ENONFINITE,
                  "trainer.step %lld: the update made W[%lld, %lld] non-finite (lr %g too large?); weights kept at "
                  "their last finite value",
                  (long long)step, (long long)(bad / k), (long long)(bad % k), lr);
    }
    t->step = step;
    report(res.grad_norm);
    return OTLM_OK;
  } catch (...) {
    return fail(err, OTLM_EINTERNAL, "trainer.step: unexpected internal error");
  }
}

otlm_status trainer_get_weights(otlm_trainer* th, float* w, otlm_error* err) {
  if (!th) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  if (!w) return fail(err, OTLM_EINVAL, "trainer.getWeights: output w is required");
  OTLM_TRY(select_device(err));
  Ctx& c = as_cuda(th)->ctx;
  OTLM_CU(cudaMemcpy2DAsync(w, size_t(c.k) * 4, c.w.ptr, size_t(c.ld) * 4, size_t(c.k) * 4, size_t(c.k),
                            cudaMemcpyDeviceToHost, c.stream.s),
          "cudaMemcpy2D (W to the host)");
  OTLM_CU(cudaStreamSynchronize(c.stream.s), "cudaStreamSynchronize");
  return OTLM_OK;
}

// Replaces W; the optimizer state is kept (as the CPU trainer and PyTorch do).
otlm_status trainer_set_weights(otlm_trainer* th, const float* w, otlm_error* err) {
  if (!th) return fail(err, OTLM_EINVAL, "trainer: trainer handle is required");
  if (!w) return fail(err, OTLM_EINVAL, "trainer.setWeights: w is required");
  Ctx& c = as_cuda(th)->ctx;
  OTLM_TRY(check_finite("trainer.setWeights", "w", w, c.k * c.k, c.k, err));
  OTLM_TRY(select_device(err));
  OTLM_CU(cudaMemcpy2DAsync(c.w.ptr, size_t(c.ld) * 4, w, size_t(c.k) * 4, size_t(c.k) * 4, size_t(c.k),
                            cudaMemcpyHostToDevice, c.stream.s),
          "cudaMemcpy2D (W to the device)");
  OTLM_CU(cudaStreamSynchronize(c.stream.s), "cudaStreamSynchronize");
  return OTLM_OK;
}

void trainer_destroy(otlm_trainer* th) {
  if (!th) return;
  select_device(nullptr);
  delete as_cuda(th);
}

}  // namespace otlm::cuda
