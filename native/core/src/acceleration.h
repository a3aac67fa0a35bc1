// Acceleration strategies of the Sinkhorn driver (docs/architecture.md, "Acceleration"): each
// replaces the plain g-update h ← h + resid by a better step, from the same per-pass data on every
// backend. Host code only; f updates stay plain, so every pass still yields an exact-row plan.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace otlm::driver {

// Data of the pass that evaluated the current h.
struct AccelStep {
  const double* resid = nullptr;    // plain residual log c − log colsum (k)
  const double* colsum = nullptr;   // column sums (k), when wants_pass_data()
  const double* cm = nullptr;       // column marginal c (k)
  const double* hessian = nullptr;  // W (k×k, j < q), when wants_hessian() held for this pass
  double error = 0;                 // exact column error of this pass
  double dF = 0;                    // semi-dual change since the previous pass; non-finite when not comparable
  int64_t iteration = 0;
};

class Acceleration {
 public:
  virtual ~Acceleration() = default;
  virtual void reset() = 0;                       // a new λ: history belongs to another map
  virtual bool wants_pass_data() const = 0;       // column sums and the semi-dual change every pass
  virtual bool wants_hessian() const = 0;         // the Laplacian partials on the next pass
  virtual void step(const AccelStep& s, std::vector<double>& h) = 0;
};

// overrelax ≤ 1: null (plain Sinkhorn). Otherwise Newton for 2 ≤ k ≤ kNewtonMaxK, else Anderson.
std::unique_ptr<Acceleration> make_acceleration(double overrelax, int64_t k);

}  // namespace otlm::driver
