#!/usr/bin/env bash
# The documents' models end to end, tapegrad (bench_models) next to PyTorch (bench_models.py), in one run.
#   bench/run_models.sh [build-dir=build] [iters=20] [rounds=3]
# Each round runs both programs back to back at 1 and at 2 threads (every model in a fresh process);
# the table shows, per figure, the median over the rounds, and the ratio tapegrad / PyTorch (below 1:
# tapegrad is faster or smaller). "vs best" compares tapegrad at 2 threads with the faster of
# PyTorch's 1- and 2-thread figures.
# Both sides run with glibc told to keep freed memory in the heap, as bench/run_conv.sh explains
# (BENCH_DEFAULT_MALLOC=1: glibc's defaults). Both sides' OpenMP threads sleep when idle
# (OMP_WAIT_POLICY=PASSIVE, unless set otherwise): on a shared 2-core machine spinning threads compete
# with the serial parts of a step and with the other processes (on a loaded machine PyTorch's LSTM
# training step took 10 s with spinning threads against 0.25 s with sleeping ones).
set -euo pipefail
if [[ "${BENCH_DEFAULT_MALLOC:-0}" != 1 ]]; then
  export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
iters="${2:-20}"
rounds="${3:-3}"
cmake --build "$build" --target bench_models -j2 >/dev/null
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((r = 0; r < rounds; ++r)); do
  for t in 1 2; do
    "$build/bench/bench_models" --threads "$t" --iters "$iters" |
      sed "s/^/tapegrad $t /" >>"$out"
    /usr/bin/python3 "$here/bench_models.py" --threads "$t" --iters "$iters" | sed "s/^/torch $t /" >>"$out"
  done
done
echo "bench_models: batch 64, median of $iters steps after warm-up, median over $rounds rounds;" \
  "$(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
  "torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    impl, t, model, metric, value = line.split()
    v.setdefault((model, metric), {}).setdefault((impl, int(t)), []).append(float(value))
med = lambda key, impl, t: statistics.median(v[key][(impl, t)])
print(f"{'model':<7} {'metric':<13} {'tg 1t':>8} {'torch 1t':>9} {'ratio':>6} {'tg 2t':>8} {'torch 2t':>9} {'ratio':>6} {'vs best':>8}")
for (model, metric) in v:
    k = (model, metric)
    t1, p1, t2, p2 = med(k, "tapegrad", 1), med(k, "torch", 1), med(k, "tapegrad", 2), med(k, "torch", 2)
    r = lambda a, b: f"{a / b:.2f}" if b > 0 else "-"
    print(f"{model:<7} {metric:<13} {t1:>8.2f} {p1:>9.2f} {r(t1, p1):>6} {t2:>8.2f} {p2:>9.2f} {r(t2, p2):>6} {r(t2, min(p1, p2)):>8}")
PY
