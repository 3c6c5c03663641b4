"""The timing harness of the PyTorch benchmark scripts, the twin of bench/timing.h: one line per
measurement with name, median wall ms, median process CPU ms, GFLOP/s from the wall time."""
import time


def measure(warmup, iters, setup, timed):
    """Median wall and process-CPU milliseconds of timed() over `iters` calls after `warmup` untimed ones;
    setup() runs before each call, untimed."""
    wall, cpu = [], []
    for i in range(warmup + iters):
        setup()
        c0, t0 = time.process_time(), time.perf_counter()
        timed()
        t1, c1 = time.perf_counter(), time.process_time()
        if i >= warmup:
            wall.append((t1 - t0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
    wall.sort()
    cpu.sort()
    return wall[len(wall) // 2], cpu[len(cpu) // 2]


def report(name, t, flops):
    wall, cpu = t
    print(f"{name}\t{wall:.3f}\t{cpu:.3f}\t{flops / (wall * 1e6) if flops else 0.0:.1f}", flush=True)
