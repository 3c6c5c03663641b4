"""PyTorch side of bench/bench_data.cpp: the same Resize calls and DataLoader epochs.
Run: /usr/bin/python3 bench/bench_data.py (prints "<name> <milliseconds>" lines)."""
import gzip
import os
import shutil
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

torch.set_num_threads(2)


def time_ms(reps, f):
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) * 1000 / reps


for c in (1, 3):
    x = torch.rand(64, c, 28, 28)
    print(f"resize_64x{c}x28x28_to_32 {time_ms(50, lambda: F.interpolate(x, size=32, mode='bilinear', align_corners=False)):.4f}")

FM = "/usr/share/datasets/fashion-mnist/"
if os.path.exists(FM + "t10k-images-idx3-ubyte.gz"):
    with gzip.open(FM + "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read()[16:], np.uint8).reshape(10000, 28, 28)
else:
    images = np.random.default_rng(1).integers(0, 256, (10000, 28, 28), dtype=np.uint8)


class Fashion(Dataset):
    def __len__(self):
        return len(images)

    def __getitem__(self, i):  # ToTensor, Resize(32), Normalize(0.5, 0.5) with torch ops
        x = torch.from_numpy(images[i].copy()).float().div(255)[None]
        x = F.interpolate(x[None], size=32, mode="bilinear", align_corners=False)[0]
        return (x - 0.5) / 0.5, 3


for workers in (0, 2):
    loader = DataLoader(Fashion(), batch_size=64, shuffle=True, num_workers=workers)
    print(f"idx_epoch_10000_workers{workers} {time_ms(2, lambda: [b for b in loader]):.4f}")
