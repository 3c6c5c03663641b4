"""PyTorch timings for the cases of bench_reduce.cpp (run with /usr/bin/python3).

Wall clock, or process CPU time with BENCH_CPU_TIME=1, as bench_reduce.cpp.
"""
import os
import time

import torch

x = torch.randn(4096, 1024)
g = torch.randn(4096, 1024)


clock = time.process_time if os.environ.get("BENCH_CPU_TIME") == "1" else time.perf_counter


def best_ms(f, reps=30):
    for _ in range(3):
        f()
    t = []
    for _ in range(reps):
        t0 = clock()
        f()
        t.append((clock() - t0) * 1e3)
    t.sort()
    return t[0]  # the best run: the machine may be shared


def fwd_bwd(fn):
    def run():
        xr = x.detach().requires_grad_()
        fn(xr, 1).backward(g)
    return run


cases = [
    ("sum(dim=1)", lambda: x.sum(1)),
    ("sum(dim=0)", lambda: x.sum(0)),
    ("sum()", lambda: x.sum()),
    ("sum(dim=0) of x.t()", lambda: x.t().sum(0)),
    ("mean(dim=1)", lambda: x.mean(1)),
    ("var(dim=1)", lambda: x.var(1)),
    ("var(dim=0)", lambda: x.var(0)),
    ("amax(dim=1)", lambda: x.amax(1)),
    ("amax(dim=0)", lambda: x.amax(0)),
    ("argmax(dim=1)", lambda: x.argmax(1)),
    ("max(dim=0)", lambda: x.max(0)),
    ("logsumexp(dim=1)", lambda: torch.logsumexp(x, 1)),
    ("softmax(dim=1)", lambda: torch.softmax(x, 1)),
    ("softmax(dim=0)", lambda: torch.softmax(x, 0)),
    ("log_softmax(dim=1)", lambda: torch.log_softmax(x, 1)),
    ("softmax fwd+bwd(dim=1)", fwd_bwd(torch.softmax)),
    ("log_softmax fwd+bwd(dim=1)", fwd_bwd(torch.log_softmax)),
]
for name, f in cases:
    print(f"{name}\t{best_ms(f):.3f}")
