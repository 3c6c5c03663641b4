"""PyTorch's side of bench_core: elementwise add over 16M float32 (GB/s) and float32 matmul
1024 x 1024 (GFLOP/s), medians of repeated runs after warm-up, with the same thread count.

Run with Debian's python3-torch: /usr/bin/python3 bench/bench_core.py [reps]
"""
import os
import statistics
import sys
import time

import torch

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 21
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
torch.manual_seed(0)


def median_seconds(f, warmup=3):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}, reps: {reps} (median after warm-up)\n")
n = 1 << 24
a, b = torch.randn(n), torch.randn(n)
t = median_seconds(lambda: a + b)
print(f"{'add 16M float32 (new output)':<34} {t * 1e3:10.2f} ms {3 * 4 * n / t / 1e9:10.2f} GB/s")
m = 1024
x, y = torch.randn(m, m), torch.randn(m, m)
t = median_seconds(lambda: x @ y)
print(f"{'matmul 1024x1024 float32':<34} {t * 1e3:10.2f} ms {2 * m ** 3 / t / 1e9:10.2f} GFLOP/s")
