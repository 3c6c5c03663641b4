"""PyTorch side of bench/run_epoch.sh: one training epoch of the documents' CNN on Fashion-MNIST, as
/work/shared/reference/torch_reference_tasks.py trains it (images decoded, resized and normalized into
one tensor before the clock starts, SGD lr 0.01 momentum 0.9, batch 64, shuffled).
Run: /usr/bin/python3 bench/bench_epoch.py [threads] [limit]
Prints "torch_epoch_s <seconds>", "torch_prepare_s <seconds>" (reading and resizing, outside the epoch)."""
import gzip
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_models import CNN

FM = "/usr/share/datasets/fashion-mnist/"


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    if data[2] == 8 and data[3] == 3:
        n, h, w = np.frombuffer(data[4:16], ">i4")
        return np.frombuffer(data[16:], np.uint8).reshape(n, h, w)
    return np.frombuffer(data[8:], np.uint8)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t = time.perf_counter()
    x = torch.from_numpy(idx(FM + "train-images-idx3-ubyte.gz").copy()).float().div(255)
    y = torch.from_numpy(idx(FM + "train-labels-idx1-ubyte.gz").copy()).long()
    if limit:
        x, y = x[:limit], y[:limit]
    x = F.interpolate(x[:, None], size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    prepare = time.perf_counter() - t
    model = CNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = y.shape[0]
    model.train()
    perm = torch.randperm(n)
    t = time.perf_counter()
    for i in range(0, n, 64):
        b = perm[i:i + 64]
        opt.zero_grad()
        loss = F.cross_entropy(model(x.index_select(0, b)), y[b])
        loss.backward()
        opt.step()
        loss.item()
    print(f"torch_epoch_s {time.perf_counter() - t:.3f}")
    print(f"torch_prepare_s {prepare:.3f}")


if __name__ == "__main__":
    main()
