#!/usr/bin/python3
"""PyTorch-CPU peer of the native Sinkhorn (issue 3): a plain float32 log-domain Sinkhorn with
torch.logsumexp, in the engine's order (f update from g, then g update from f; g starts at 0).

Reads the benchmark's matrix (raw little-endian float32, row-major N×K logits) so every path solves
the same problem; the cost is M = -log_softmax(logits). Prints one JSON line:
  {"bench": "sinkhorn_torch", "per_iter_seconds": median, "iters": m, "reps": r, "threads": t,
   "max_rss_bytes": ..., "torch": version}
With --pred-out PATH it also writes argmax_j Y_ij after --check-iters iterations (int32 raw) for the
benchmark's agreement check.
Usage: /usr/bin/python3 bench/peers/torch_sinkhorn.py --input FILE --n N --k K [--lam 1] [--iters 5]
       [--reps 3] [--threads T] [--check-iters 3 --pred-out FILE]
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch


def solve(s, logc, v0, iters):
    # s = -M/λ (N×K), potentials scaled by 1/λ: u = f/λ, v = g/λ; r = 1 so log r = 0.
    v = v0
    u = None
    for t in range(1, iters + 1):
        u = -torch.logsumexp(s + v[None, :], dim=1)
        if t < iters:
            v = logc - torch.logsumexp(s + u[:, None], dim=0)
    return u, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--check-iters", type=int, default=3)
    ap.add_argument("--pred-out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    phi = torch.from_numpy(np.fromfile(a.input, dtype="<f4").reshape(a.n, a.k))
    s = torch.log_softmax(phi, dim=1) / a.lam
    logc = torch.full((a.k,), float(np.log(a.n / a.k)))
    v0 = torch.zeros(a.k)
    if a.pred_out:
        u, v = solve(s, logc, v0, a.check_iters)
        torch.argmax(s + v[None, :], dim=1).to(torch.int32).numpy().tofile(a.pred_out)
    solve(s, logc, v0, 1)  # warm-up
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        solve(s, logc, v0, a.iters)
        times.append((time.perf_counter() - t0) / a.iters)
    print(json.dumps({"bench": "sinkhorn_torch", "torch": torch.__version__, "threads": a.threads,
                      "n": a.n, "k": a.k, "iters": a.iters, "reps": a.reps,
                      "per_iter_seconds": sorted(times)[len(times) // 2],
                      "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
