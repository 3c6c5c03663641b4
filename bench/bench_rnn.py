"""PyTorch side of bench/bench_rnn.cpp: the same measurements, printed in the same format.

Run with Debian's python3-torch:  /usr/bin/python3 bench/bench_rnn.py [threads=1] [iters=30]
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import timing
from torch_models import RNNWithLayerNorm

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 30
WARMUP = 10
torch.set_num_threads(threads)
torch.manual_seed(0)


def measure(setup, timed):
    return timing.measure(WARMUP, iters, setup, timed)


report = timing.report


L, N, I, H = 32, 64, 100, 128
lstm_flops = 2.0 * L * N * 4 * H * (I + H) + 2.0 * L * N * 4 * H * (H + H)
x = torch.randn(L, N, I)
y = torch.randint(0, 10, (N,))

for opt_name in ("adam", "sgd"):
    model = RNNWithLayerNorm()
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    report(f"rnn_ln_train_step_{opt_name}", measure(lambda: None, step), 3 * lstm_flops)
    if opt_name == "adam":
        model.eval()
        with torch.no_grad():
            report("rnn_ln_infer", measure(lambda: None, lambda: model(x)), lstm_flops)
        model.train()

lstm = nn.LSTM(I, H, num_layers=2)
gy = torch.randn(L, N, H)
with torch.no_grad():
    report("lstm_forward", measure(lambda: None, lambda: lstm(x)), lstm_flops)
report("lstm_forward_backward", measure(lambda: lstm.zero_grad(), lambda: lstm(x)[0].backward(gy)), 3 * lstm_flops)
