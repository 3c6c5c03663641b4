#!/usr/bin/env bash
# Runs bench_rnn (tapegrad) and bench_rnn.py (PyTorch) alternately at 1 and 2 threads and prints one table.
#   bench/run_rnn.sh [build-dir=build] [iters=30] [rounds=3]
# Each round runs both programs back to back at each thread count; the table shows, per measurement,
# the median over the rounds of each program's median, so that both see the same share of whatever else
# the machine runs. "vs torch best" compares tapegrad's best thread setting with PyTorch's best.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
iters="${2:-30}"
rounds="${3:-3}"
cmake --build "$build" --target bench_rnn -j2 >/dev/null
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((r = 0; r < rounds; ++r)); do
  for t in 1 2; do
    OMP_NUM_THREADS=$t "$build/bench/bench_rnn" "$t" "$iters" | sed "s/^/tapegrad\t$t\t/" >>"$out"
    OMP_NUM_THREADS=$t /usr/bin/python3 "$here/bench_rnn.py" "$t" "$iters" | sed "s/^/torch\t$t\t/" >>"$out"
  done
done
echo "RNNWithLayerNorm (2-layer LSTM(100, 128), LayerNorm, Linear(128, 10)) and its LSTM alone;" \
  "sequence 32, batch 64, float32"
echo "train step = forward, cross-entropy, backward, optimizer step; median of $iters after warm-up," \
  "median over $rounds rounds"
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    impl, threads, name, wall, cpu, gf = line.split("\t")
    rows.setdefault(name, {}).setdefault((impl, int(threads)), []).append((float(wall), float(cpu)))
# CPU ms is the process CPU time (all threads): on a busy machine it shows the work done better than wall time.
for col, what in ((0, "wall ms"), (1, "CPU ms")):
    print(f"\n{what}")
    print(f"{'measurement':<24} {'tg 1t':>8} {'torch 1t':>9} {'ratio':>6} {'tg 2t':>8} {'torch 2t':>9} {'ratio':>6}"
          f" {'tg best':>8} {'torch best':>10} {'vs torch best':>14}")
    for name, by in rows.items():
        m = {k: statistics.median(v[col] for v in vs) for k, vs in by.items()}
        tb, pb = min(m[("tapegrad", 1)], m[("tapegrad", 2)]), min(m[("torch", 1)], m[("torch", 2)])
        print(f"{name:<24} {m[('tapegrad', 1)]:>8.2f} {m[('torch', 1)]:>9.2f} {m[('torch', 1)] / m[('tapegrad', 1)]:>5.2f}x"
              f" {m[('tapegrad', 2)]:>8.2f} {m[('torch', 2)]:>9.2f} {m[('torch', 2)] / m[('tapegrad', 2)]:>5.2f}x"
              f" {tb:>8.2f} {pb:>10.2f} {pb / tb:>13.2f}x")
print("\nratio = torch / tapegrad (above 1: tapegrad is faster)")
PY
