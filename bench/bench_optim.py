"""PyTorch's side of bench_optim.cpp: median time of one optimizer step, in milliseconds.

usage: /usr/bin/python3 bench/bench_optim.py [total_params_millions=10] [tensors=10] [iterations=30]
"""
import statistics
import sys
import time

import torch


def median_ms(f, iterations):
    f()
    times = []
    for _ in range(iterations):
        a = time.perf_counter()
        f()
        times.append((time.perf_counter() - a) * 1e3)
    return statistics.median(times)


def main():
    millions = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    tensors = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    per = int(millions * 1e6 / tensors)
    torch.manual_seed(0)

    def params():
        ps = []
        for _ in range(tensors):
            p = torch.randn(per, requires_grad=True)
            p.grad = torch.randn(per)
            ps.append(p)
        return ps

    cases = {
        "sgd": lambda ps, fe: torch.optim.SGD(ps, lr=0.01, foreach=fe),
        "sgd_momentum": lambda ps, fe: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, foreach=fe),
        "adam": lambda ps, fe: torch.optim.Adam(ps, lr=1e-3, foreach=fe),
        "adamw_amsgrad": lambda ps, fe: torch.optim.AdamW(ps, lr=1e-3, amsgrad=True, foreach=fe),
        "rmsprop_centered": lambda ps, fe: torch.optim.RMSprop(ps, momentum=0.9, centered=True, foreach=fe),
        "adagrad": lambda ps, fe: torch.optim.Adagrad(ps, foreach=fe),
    }
    print(f"# torch {torch.__version__} optimizer step, {millions:.1f}M float32 parameters in {tensors} tensors, "
          f"median of {iterations}, {torch.get_num_threads()} threads")
    for name, make in cases.items():
        single = make(params(), False)
        foreach = make(params(), True)
        print(f"{name:<18} {median_ms(single.step, iterations):8.2f} ms  foreach {median_ms(foreach.step, iterations):8.2f} ms")
    ps = params()
    print(f"{'clip_grad_norm_':<18} {median_ms(lambda: torch.nn.utils.clip_grad_norm_(ps, 1e9), iterations):8.2f} ms")


if __name__ == "__main__":
    main()
