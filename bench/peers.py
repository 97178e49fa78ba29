#!/usr/bin/env python3
"""Peer figures for BENCHMARKS.md, measured on the same GPU in the same device
run as `wgsparse bench`: PyTorch's cuBLAS dense, its Triton BSR kernel
(`bsr_dense_mm`), `torch.mm` on BSR and CSR tensors (cuSPARSE), f32 or f16.
Median of CUDA-event times over --runs runs after warm-up.

usage: python3 bench/peers.py --shapes 4096x4096x4096 --blocks 16,32 \
           --sparsities 0.5,0.9 [--dtype f32|f16] [--csr 0.9,0.98] [--json out.json]
"""
import argparse
import json
import statistics

import torch


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def block_mask(m, k, b, sparsity, gen):
    gr, gc = (m + b - 1) // b, (k + b - 1) // b
    nblocks = gr * gc
    keep = nblocks - round(sparsity * nblocks)
    perm = torch.randperm(nblocks, generator=gen)[:keep]
    mask = torch.zeros(nblocks, dtype=torch.bool)
    mask[perm] = True
    return mask.view(gr, gc).repeat_interleave(b, 0).repeat_interleave(b, 1)[:m, :k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096x4096")
    ap.add_argument("--blocks", default="16,32")
    ap.add_argument("--sparsities", default="0.5,0.7,0.9,0.95")
    ap.add_argument("--csr", default="", help="CSR sparsities (cuSPARSE through torch.mm)")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dt = torch.float32 if a.dtype == "f32" else torch.float16
    dev = "cuda"
    gen = torch.Generator().manual_seed(1)
    rows = []
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  dtype {a.dtype}")

    def add(shape, impl, pattern, sparsity, ms, dense_ms):
        m, k, n = shape
        rows.append(dict(m=m, k=k, n=n, impl=impl, pattern=pattern, sparsity=sparsity, median_ms=ms,
                         tflops_dense_equiv=2 * m * k * n / ms / 1e9, vs_dense=dense_ms / ms))
        print(f"{m}x{k}x{n:<6} {impl:<28} {pattern:<12} {100*sparsity:5.0f}% {ms:9.4f} ms "
              f"{2*m*k*n/ms/1e9:8.2f} TFLOP/s eq  {dense_ms/ms:6.2f}x cuBLAS", flush=True)

    for s in a.shapes.split(","):
        m, k, n = map(int, s.split("x"))
        w = torch.randn(m, k, generator=gen).to(dev, dt)
        x = torch.randn(k, n, generator=gen).to(dev, dt)
        dense_ms = timed(lambda: w @ x, a.runs, a.warmup)
        add((m, k, n), "cuBLAS dense", "dense", 0.0, dense_ms, dense_ms)
        for b in [int(v) for v in a.blocks.split(",") if v]:
            for sp in [float(v) for v in a.sparsities.split(",") if v]:
                if m % b or k % b:
                    continue
                ws = (w.cpu() * block_mask(m, k, b, sp, gen)).to(dev)
                bsr = ws.to_sparse_bsr((b, b))
                try:
                    from torch.sparse._triton_ops import bsr_dense_mm
                    ms = timed(lambda: bsr_dense_mm(bsr, x), a.runs, a.warmup)
                    add((m, k, n), "Triton bsr_dense_mm", f"block:{b}x{b}", sp, ms, dense_ms)
                except Exception as e:  # report, don't hide
                    print(f"Triton bsr_dense_mm {b}x{b} failed: {type(e).__name__}: {e}")
                try:
                    ms = timed(lambda: torch.mm(bsr, x), a.runs, a.warmup)
                    add((m, k, n), "torch.mm(BSR) (cuSPARSE)", f"block:{b}x{b}", sp, ms, dense_ms)
                except Exception as e:
                    print(f"torch.mm BSR {b}x{b} failed: {type(e).__name__}: {e}")
        for sp in [float(v) for v in a.csr.split(",") if v]:
            keep = torch.rand(m, k, generator=gen) >= sp
            csr = (w.cpu() * keep).to(dev).to_sparse_csr()
            try:
                ms = timed(lambda: torch.mm(csr, x), a.runs, a.warmup)
                add((m, k, n), "torch.mm(CSR) (cuSPARSE)", "unstructured", sp, ms, dense_ms)
            except Exception as e:
                print(f"torch.mm CSR failed: {type(e).__name__}: {e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, dtype=a.dtype, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
