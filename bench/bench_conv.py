"""PyTorch side of bench/bench_conv.cpp: the same measurements, printed in the same format.

Run with Debian's python3-torch:  /usr/bin/python3 bench/bench_conv.py [threads=2] [iters=30]
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 30
WARMUP = 30  # as bench_conv.cpp: the allocator settles during warm-up
torch.set_num_threads(threads)
torch.manual_seed(0)


def measure(setup, timed):
    return timing.measure(WARMUP, iters, setup, timed)


report = timing.report


N, Cin, Cout, H, W, K = 64, 3, 64, 32, 32, 3
flops = 2.0 * N * Cout * H * W * Cin * K * K
x = torch.randn(N, Cin, H, W)
w = torch.randn(Cout, Cin, K, K)
b = torch.randn(Cout)
gy = torch.randn(N, Cout, H, W)
state = {}

with torch.no_grad():
    report("conv2d_forward", measure(lambda: None, lambda: F.conv2d(x, w, b, padding=1)), flops)


def make_setup(inputs):
    def setup():
        for t in inputs:
            t.grad = None
        state["y"] = F.conv2d(inputs[0] if len(inputs) == 3 else x, inputs[-2], inputs[-1], padding=1)
    return setup


wg, bg = w.clone().requires_grad_(), b.clone().requires_grad_()
report("conv2d_backward_weight", measure(make_setup([wg, bg]), lambda: state["y"].backward(gy)), flops)
xg = x.clone().requires_grad_()
report("conv2d_backward_input_weight", measure(make_setup([xg, wg, bg]), lambda: state["y"].backward(gy)), 2 * flops)

p = torch.randn(64, 64, 32, 32)
pg = torch.randn(64, 64, 16, 16)
with torch.no_grad():
    report("max_pool2d_forward", measure(lambda: None, lambda: F.max_pool2d(p, 2)), 0)
    report("max_pool2d_forward_indices",
           measure(lambda: None, lambda: F.max_pool2d(p, 2, return_indices=True)), 0)
pr = p.clone().requires_grad_()


def pool_setup():
    pr.grad = None
    state["y"] = F.max_pool2d(pr, 2)


report("max_pool2d_backward", measure(pool_setup, lambda: state["y"].backward(pg)), 0)
