#!/usr/bin/env bash
# Normalization benchmark: tapegrad and PyTorch (2 threads each) next to a triad loop.
# Usage: bench/run_norm.sh [iters] [rounds]     (BUILD=<dir> to use another build directory)
# The two programs alternate for `rounds` rounds and each op keeps its best run, so that both see the
# same share of quiet moments on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITERS=${1:-10}
ROUNDS=${2:-20}
cmake -S . -B "$BUILD" -DTAPEGRAD_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD" --target bench_norm -j2 >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  OMP_NUM_THREADS=2 "$BUILD/bench/bench_norm" "$ITERS" >>"$out/tg.csv" 2>/dev/null
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/bench_norm.py "$ITERS" >>"$out/torch.csv" 2>/dev/null
done
/usr/bin/python3 - "$out/tg.csv" "$out/torch.csv" "$ROUNDS" "$ITERS" <<'PY'
import csv, sys
def best(path):
    b = {}
    for op, pas, ms, gbps in csv.reader(open(path)):
        if (op, pas) not in b or float(ms) < b[(op, pas)][0]:
            b[(op, pas)] = (float(ms), float(gbps))
    return b
tg, pt = best(sys.argv[1]), best(sys.argv[2])
triad = tg.pop(("triad", "-"))[1]
print(f"best of {sys.argv[3]} rounds x {sys.argv[4]} runs, 2 threads each, float32")
print("bytes: forward = read x + write y, backward = read x, dy + write dx (parameters not counted)")
print(f"triad a = b + s*c over the same numel (best run): {triad:.1f} GB/s\n")
print(f"{'op':<16} {'pass':<9} {'tapegrad ms':>11} {'GB/s':>7} {'torch ms':>9} {'GB/s':>7} {'speedup':>8} {'% triad':>8}")
for (op, pas), (ms, gbps) in tg.items():
    tms, tgbps = pt[(op, pas)]
    print(f"{op:<16} {pas:<9} {ms:>11.2f} {gbps:>7.1f} {tms:>9.2f} {tgbps:>7.1f} {tms / ms:>7.2f}x {100 * gbps / triad:>7.0f}%")
PY
