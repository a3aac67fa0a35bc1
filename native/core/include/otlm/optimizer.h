// The optimizer rule shared by the CPU trainer and the CUDA trainer (docs/architecture.md
// "Optimizer"): PyTorch's update rules exactly — Adam with L2 weight decay added to the gradient,
// AdamW with decoupled decay, SGD with momentum (dampening 0) and optional Nesterov. One element
// at a time, so each backend maps it over W in its own way. Both backends use it in two phases:
// first every new weight is checked to be finite, and only then are W and the state written, so
// an overflowing update leaves the trainer exactly as it was.
#pragma once
#include <cmath>
#include <cstdint>

#include "otlm/otlm.h"

#if defined(__CUDACC__)
#define OTLM_HOST_DEVICE __host__ __device__
#else
#define OTLM_HOST_DEVICE
#endif

namespace otlm {

struct OptimizerStep {
  int32_t optimizer = OTLM_OPT_ADAM;  // otlm_optimizer
  double lr = 0, weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double momentum = 0;
  int32_t nesterov = 0;
  int64_t step = 1;                    // 1-based count of this update
  double bc1 = 1, bc2_sqrt = 1;        // Adam bias corrections 1 − β1^step and sqrt(1 − β2^step)
};

inline OptimizerStep optimizer_step(const otlm_train_params& p, double lr, int64_t step) {
  OptimizerStep o;
  o.optimizer = p.optimizer;
  o.lr = lr;
  o.weight_decay = p.weight_decay;
  o.beta1 = p.beta1;
  o.beta2 = p.beta2;
  o.eps = p.eps;
  o.momentum = p.momentum;
  o.nesterov = p.nesterov;
  o.step = step;
  o.bc1 = 1 - std::pow(p.beta1, double(step));
  o.bc2_sqrt = std::sqrt(1 - std::pow(p.beta2, double(step)));
  return o;
}

// New weight for one element; m1 (Adam first moment or SGD momentum buffer) and m2 (Adam second
// moment; unused by SGD) are updated in place. The caller decides whether to keep them.
OTLM_HOST_DEVICE inline float optimizer_update(const OptimizerStep& o, float w, float grad, double& m1, double& m2) {
  double g = grad;
  double wq = w;
  if (o.optimizer == OTLM_OPT_SGD) {
    if (o.weight_decay != 0) g += o.weight_decay * wq;
    double d = g;
    if (o.momentum != 0) {
      m1 = o.step == 1 ? g : o.momentum * m1 + g;
      d = o.nesterov ? g + o.momentum * m1 : m1;
    }
    wq -= o.lr * d;
  } else {
    if (o.optimizer == OTLM_OPT_ADAMW) wq *= 1 - o.lr * o.weight_decay;
    else if (o.weight_decay != 0) g += o.weight_decay * wq;
    m1 = o.beta1 * m1 + (1 - o.beta1) * g;
    m2 = o.beta2 * m2 + (1 - o.beta2) * g * g;
    const double denom = sqrt(m2) / o.bc2_sqrt + o.eps;
    wq -= (o.lr / o.bc1) * m1 / denom;
  }
  return float(wq);
}

}  // namespace otlm
