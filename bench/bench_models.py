"""PyTorch twin of bench_models.cpp: the same models, batch, steps, statistics and output lines.

Run with Debian's torch: /usr/bin/python3 bench/bench_models.py [--threads N] [--iters N] [--model M]
Models: bench/torch_models.py. Prints `<model> <metric> <value>` lines: train_step_ms
and infer_ms (medians of --iters runs after 5 warm-up runs) and peak_rss_mb (the growth of the resident
set above where it stood before the first training step: VmHWM, reset through /proc/self/clear_refs,
minus VmRSS). Without --model every model runs in a fresh process of its own.
"""
import argparse
import subprocess
import sys
import time

import torch
import torch.nn as nn

from torch_models import CNN, RNNWithLayerNorm

MODELS = ("cnn-bn", "cnn-in", "cnn-gn", "rnn-ln")
WARMUP = 5
BATCH = 64


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def run_model(name, iters):
    torch.manual_seed(0)
    if name == "rnn-ln":
        model, x = RNNWithLayerNorm(), torch.randn(32, BATCH, 100)
    else:
        model, x = CNN(name[4:]), torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()

    model.train()
    rss0 = status_kb("VmRSS")
    reset_peak_rss()
    ms = []
    for i in range(WARMUP + iters):
        t = time.perf_counter()
        step()
        if i >= WARMUP:
            ms.append((time.perf_counter() - t) * 1e3)
    peak_mb = (status_kb("VmHWM") - rss0) / 1024
    model.eval()
    ims = []
    with torch.no_grad():
        for i in range(WARMUP + iters):
            t = time.perf_counter()
            model(x)
            if i >= WARMUP:
                ims.append((time.perf_counter() - t) * 1e3)
    print(f"{name} train_step_ms {median(ms):.2f}\n{name} infer_ms {median(ims):.2f}\n{name} peak_rss_mb {peak_mb:.1f}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--model", choices=MODELS)
    a = ap.parse_args()
    if a.model is None:
        rc = 0
        for m in MODELS:
            rc |= subprocess.call([sys.executable, __file__, "--threads", str(a.threads), "--iters", str(a.iters),
                                   "--model", m])
        sys.exit(rc)
    torch.set_num_threads(a.threads)
    run_model(a.model, a.iters)


if __name__ == "__main__":
    main()
