"""PyTorch twin of bench_norm.cpp: same ops, shapes, byte counts and CSV (op,pass,ms,gbps).

Run with Debian's torch: /usr/bin/python3 bench/bench_norm.py [iters]
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))  # 2, like OMP_NUM_THREADS=2 for tapegrad
ITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def best_ms(f, iters=ITERS):
    for _ in range(3):
        f()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        f()
        ms.append((time.perf_counter() - t0) * 1e3)
    return min(ms)  # best run: the least disturbed on a shared machine


def report(op, pas, ms, nbytes):
    print(f"{op},{pas},{ms:.4f},{nbytes / (ms * 1e-3) / 1e9:.2f}")


def bench_op(op, shape, pshape, f):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    w = torch.ones(pshape, requires_grad=True)
    b = torch.zeros(pshape, requires_grad=True)
    nbytes = x.numel() * 4
    report(op, "forward", best_ms(lambda: f(x, w, b)), 2 * nbytes)
    y = f(x, w, b)
    g = torch.randn(shape)
    report(op, "backward", best_ms(lambda: torch.autograd.grad(y, [x, w, b], g, retain_graph=True)), 3 * nbytes)


img = (64, 64, 32, 32)
rm, rv = torch.zeros(64), torch.ones(64)
print(f"torch {torch.__version__}: {torch.get_num_threads()} threads", file=sys.stderr)
bench_op("batch_norm2d", img, (64,), lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1))
bench_op("instance_norm2d", img, (64,), lambda x, w, b: F.instance_norm(x, None, None, w, b, use_input_stats=True))
bench_op("group_norm32", img, (64,), lambda x, w, b: F.group_norm(x, 32, w, b))
bench_op("layer_norm1024", (4096, 1024), (1024,), lambda x, w, b: F.layer_norm(x, (1024,), w, b))
