// The CPU backend's Sinkhorn passes (driver::Passes), used by the sinkhorn entry and by the OTLM
// forward (otlm_grad.cpp), which runs the same driver over log_softmax(Φ_B W + b).
#pragma once
#include <cstdint>
#include <vector>

#include "otlm/driver.h"
#include "line_vector.h"
#include "simd_exp.h"

namespace otlm::cpu {

struct SinkhornProblem {
  const float* x = nullptr;   // n×k, row-major
  int64_t n = 0, k = 0;
  bool logits = false;        // x is logits Φ (cost −log_softmax Φ), else the cost M
  bool log_probs = false;     // logits whose rows are already log-softmax: their row LSE is taken as 0
  const double* row_marginal = nullptr;  // n, or null for ones
  const double* col_marginal = nullptr;  // k
  bool warm_start = false;    // f, g start from the values given to start()
  int threads = 0;
};

class CpuSinkhornPasses final : public driver::Passes {
 public:
  // Throws std::bad_alloc when the work buffers do not fit.
  CpuSinkhornPasses(const SinkhornProblem& pb, const double* f0, const double* g0);

  otlm_status cost_scale(double* scale, otlm_error* err) override;
  otlm_status row_pass(const driver::RowPass& rp, driver::RowStats* stats, otlm_error* err) override;
  otlm_status residual(double lambda, int iteration, double* resid, otlm_error* err) override;
  otlm_status plain_step(double lambda, int iteration, otlm_error* err) override;
  otlm_status get_g(double* g, otlm_error* err) override;
  otlm_status set_g(const double* g, otlm_error* err) override;
  otlm_status finish(double lambda, const otlm_sinkhorn_buffers& io, otlm_error* err) override;
  otlm_status fallbacks(int64_t* count, otlm_error* err) override;

  // Current potentials (f without the row LSE of logits) and the last column sums.
  const double* f() const { return f_.data(); }
  const double* g() const { return g_.data(); }
  const double* colsum() const { return colsum_.data(); }

 private:
  struct alignas(64) Chunk {  // one cache line per chunk: threads update their own per row
    int64_t fallbacks = 0;
    int64_t bad_index = -1;  // first non-finite input element (flat index)
    bool nonfinite = false;  // a row potential became NaN/Inf
    double dlse = 0;         // Σ_i r_i (a_old − a_new) over the chunk
  };
  void row_chunk(int64_t c, double lambda, bool fast, bool hess);
  struct RowScale {  // λ, 1/λ and ±1/λ of a pass, formed once per chunk (not per row)
    double lambda, inv, alpha;
  };
  // Rows of a fast pass waiting for their log, taken 8 at a time by a vector log (AVX-512): one
  // libm log per row was a sixth of a pass at k = 100.
  struct RowLogs {
    double w[8], a[8], r[8];
    int64_t row[8];
    int n = 0;
  };
  void flush_logs(RowLogs& q, double lambda, Chunk& st);
  bool one_row(int64_t i, const RowScale& sc, bool fast, Chunk& st, double* pc, float* e, double* wc,
               RowLogs* logs = nullptr);
  int64_t rows_begin(int64_t c) const { return c * rows_per_chunk_; }
  int64_t rows_end(int64_t c) const;

  SinkhornProblem pb_;
  const simd::Kernels& K_;
  int threads_;
  int64_t rows_per_chunk_, nchunks_, ncolblocks_;
  int64_t cstride_ = 0;  // per-chunk stride of part_ and ebuf_: k rounded up to whole cache lines
  int64_t wstride() const { return (pb_.k * pb_.k + 15) / 16 * 16; }
  double rsum_ = 0;
  bool scanned_ = false;       // the first pass checked x and took the row LSE
  bool small_k_ = false;       // plain passes by sinkhorn_small_k.h (AVX-512, k <= 16; OTLM_SMALL_K=0: off)
  int64_t fallbacks_ = 0;
  std::vector<double> f_, g_, h_, resid_, lse_, logc_, colsum_, errpart_;
  LineVector<double> part_, W_;  // per chunk, line-aligned (line_vector.h)
  LineVector<float> ebuf_;
  LineVector<float> xt_;             // small k: each chunk's 16-row blocks, transposed (sinkhorn_small_k.h)
  int64_t xt_stride_ = 0;            // floats per chunk in xt_
  std::vector<char> xt_filled_;      // per chunk: its blocks are in xt_
  std::vector<Chunk> chunks_;
};

}  // namespace otlm::cpu
