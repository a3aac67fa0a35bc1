#!/usr/bin/python3
"""PyTorch-CPU peer of native/tests/bench_otlm_cpu.cpp: one OTLM step (float32 autograd through T
log-domain Sinkhorn iterations, then torch.optim.Adam) at B=10000, K=1000, T=7, and torch's sgemm on
the same shape. Prints one JSON line. Usage: /usr/bin/python3 bench/peers/torch_otlm_step.py
[--b 10000] [--k 1000] [--t 7] [--reps 3] [--threads N]"""
import argparse
import json
import os
import time

import torch


def step(phi, w, bias, mu, lam, T, opt):
    opt.zero_grad()
    logz = torch.log_softmax(phi @ w + bias, dim=1)
    m = -logz
    b = phi.shape[0]
    c = b * mu
    g = torch.zeros_like(mu)
    for t in range(1, T + 1):
        f = -lam * torch.logsumexp((g[None, :] - m) / lam, dim=1)
        if t < T:
            g = lam * torch.log(c) - lam * torch.logsumexp((f[:, None] - m) / lam, dim=0)
    logy = (f[:, None] + g[None, :] - m) / lam
    y = torch.exp(logy)
    loss = (-(y * logz).sum() + lam * (y * logy).sum()) / b
    loss.backward()
    opt.step()
    return float(loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--b", type=int, default=10000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--t", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(1)
    phi = torch.randn(a.b, a.k, generator=gen) * 2
    bias = torch.randn(a.k, generator=gen) * 0.6
    mu = torch.full((a.k,), 1.0 / a.k)
    w2 = torch.randn(a.k, a.k, generator=gen) * 0.05
    torch.mm(phi, w2)
    # process_time (CPU of all threads) is reported beside wall time: it stays meaningful when other
    # processes compete for the cores.
    gt, gc = [], []
    for _ in range(max(3, a.reps)):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(phi, w2)
        gt.append(time.perf_counter() - t0)
        gc.append(time.process_time() - c0)
    gemm_s = sorted(gt)[len(gt) // 2]
    w = torch.eye(a.k, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-3, weight_decay=1e-3)
    step(phi, w, bias, mu, 1.2, a.t, opt)  # warm-up
    st, sc = [], []
    for _ in range(a.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step(phi, w, bias, mu, 1.2, a.t, opt)
        st.append(time.perf_counter() - t0)
        sc.append(time.process_time() - c0)
    print(json.dumps({"bench": "otlm_step_torch", "torch": torch.__version__, "threads": a.threads,
                      "b": a.b, "k": a.k, "T": a.t, "gemm_seconds": gemm_s,
                      "sgemm_gflops": 2.0 * a.b * a.k * a.k / gemm_s / 1e9,
                      "step_seconds": sorted(st)[len(st) // 2],
                      "gemm_cpu_seconds": sorted(gc)[len(gc) // 2], "step_cpu_seconds": sorted(sc)[len(sc) // 2],
                      "loss": loss, "reps": a.reps}))


if __name__ == "__main__":
    main()
