"""The cases of bench_loss.cpp in PyTorch (run with Debian's python3-torch)."""
import statistics
import time

import torch
import torch.nn.functional as F


def median_ms(f, reps):
    f()
    f()
    ts = []
    for _ in range(reps):
        a = time.perf_counter()
        f()
        ts.append((time.perf_counter() - a) * 1e3)
    return statistics.median(ts)


def report(name, ms):
    print(f"{name:<28} {ms:9.3f}")


def fwd_bwd(name, x0, f, reps=20):
    x = x0.detach().requires_grad_()
    report(name, median_ms(lambda: torch.autograd.grad(f(x), [x]), reps))


def fwd(name, x, f, reps=20):
    with torch.no_grad():
        report(name, median_ms(lambda: f(x), reps))


torch.manual_seed(0)
logits = torch.randn(256, 1000)
labels = torch.randint(0, 1000, (256,))
seg = torch.randn(8, 21, 128, 128)
seg_labels = torch.randint(0, 21, (8, 128, 128))
probs = torch.rand(256, 1000)
big = torch.randn(1 << 20)
big_t = torch.rand(1 << 20)
table = torch.randn(50000, 256)
tokens = torch.randint(0, 50000, (64, 128))

fwd("ce_fwd 256x1000", logits, lambda x: F.cross_entropy(x, labels))
fwd_bwd("ce 256x1000", logits, lambda x: F.cross_entropy(x, labels))
fwd_bwd("ce_ls 256x1000", logits, lambda x: F.cross_entropy(x, labels, label_smoothing=0.1))
fwd_bwd("ce_prob 256x1000", logits, lambda x: F.cross_entropy(x, probs))
fwd_bwd("ce_seg 8x21x128x128", seg, lambda x: F.cross_entropy(x, seg_labels), 10)
fwd_bwd("bce_logits 1M", big, lambda x: F.binary_cross_entropy_with_logits(x, big_t))
fwd_bwd("mse 1M", big, lambda x: F.mse_loss(x, big_t))
fwd_bwd("gelu 1M", big, lambda x: F.gelu(x).sum())
fwd_bwd("silu 1M", big, lambda x: F.silu(x).sum())
fwd_bwd("dropout 1M", big, lambda x: F.dropout(x, 0.1).sum())
fwd_bwd("embedding 64x128 of 50000x256", table, lambda w: F.embedding(tokens, w).sum(), 10)
