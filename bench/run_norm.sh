#!/usr/bin/env bash
# Normalization benchmark: tapegrad and PyTorch (2 threads each) back to back, next to a triad loop.
# Usage: bench/run_norm.sh [iters]     (BUILD=<dir> to use another build directory)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITERS=${1:-20}
cmake -S . -B "$BUILD" -DTAPEGRAD_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" --target bench_norm -j2 >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OMP_NUM_THREADS=2 "$BUILD/bench/bench_norm" "$ITERS" >"$out/tg.csv"
OMP_NUM_THREADS=2 /usr/bin/python3 bench/bench_norm.py "$ITERS" >"$out/torch.csv"
/usr/bin/python3 - "$out/tg.csv" "$out/torch.csv" <<'PY'
import csv, sys
tg = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in csv.reader(open(sys.argv[1]))}
pt = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in csv.reader(open(sys.argv[2]))}
triad = tg.pop(("triad", "-"))[1]
print("bytes: forward = read x + write y, backward = read x, dy + write dx (float32, params not counted)")
print(f"triad a = b + s*c (same numel, 2 threads, best run between the ops): {triad:.1f} GB/s\n")
print(f"{'op':<16} {'pass':<9} {'tapegrad ms':>11} {'GB/s':>7} {'torch ms':>9} {'GB/s':>7} {'speedup':>8} {'% triad':>8}")
for (op, pas), (ms, gbps) in tg.items():
    tms, tgbps = pt[(op, pas)]
    print(f"{op:<16} {pas:<9} {ms:>11.2f} {gbps:>7.1f} {tms:>9.2f} {tgbps:>7.1f} {tms / ms:>7.2f}x {100 * gbps / triad:>7.0f}%")
PY
