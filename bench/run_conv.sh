#!/usr/bin/env bash
# Runs bench_conv (tapegrad) and bench_conv.py (PyTorch) alternately and prints one table.
#   bench/run_conv.sh [build-dir=build] [threads=2] [iters=30] [rounds=3]
# Each round runs both programs back to back; the table shows, per measurement, the median over the
# rounds of each program's median, so that both see the same share of whatever else the machine runs.
# CPU ms is the process CPU time (all threads; spin-waiting threads count too): on a busy machine it
# shows the work done better than wall time does.
# Both programs run with glibc told to keep freed memory in the heap (MALLOC_MMAP_THRESHOLD_ /
# MALLOC_TRIM_THRESHOLD_): otherwise each 16 MB result may come from fresh mmap'd pages, and on a VM
# their page faults (~4000 per tensor) can cost more than the kernel being measured; whether that
# happens depends on the process's allocation history (PyTorch under Python hits it every call).
# Set BENCH_DEFAULT_MALLOC=1 to measure with glibc's defaults instead.
set -euo pipefail
if [[ "${BENCH_DEFAULT_MALLOC:-0}" != 1 ]]; then
  export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296
fi
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
threads="${2:-2}"
iters="${3:-30}"
rounds="${4:-3}"
cmake --build "$build" --target bench_conv -j2 >/dev/null
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((r = 0; r < rounds; ++r)); do
  "$build/bench/bench_conv" "$threads" "$iters" | sed 's/^/tapegrad\t/' >>"$out"
  /usr/bin/python3 "$here/bench_conv.py" "$threads" "$iters" | sed 's/^/torch\t/' >>"$out"
done
echo "conv2d: N=64, 3->64, 32x32, 3x3, pad 1 (backward_weight: dW, db; backward_input_weight: dX too)"
echo "max_pool2d(2) on (64, 64, 32, 32); $threads threads; median of $iters after warm-up, median over $rounds rounds;" \
  "glibc malloc: $([[ "${BENCH_DEFAULT_MALLOC:-0}" == 1 ]] && echo defaults || echo 'freed memory kept')"
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    impl, name, wall, cpu, gf = line.split("\t")
    rows.setdefault(name, {}).setdefault(impl, []).append((float(wall), float(cpu), float(gf)))
med = lambda by, impl, i: statistics.median(v[i] for v in by[impl])
print(f"{'':<30} {'---------- wall ms ----------':>30} {'---------- cpu ms -----------':>30} {'--- GF/s (wall) ---':>20}")
print(f"{'measurement':<30} {'tapegrad':>10} {'torch':>10} {'speedup':>8} {'tapegrad':>10} {'torch':>10} {'speedup':>8} {'tapegrad':>10} {'torch':>9}")
for name, by in rows.items():
    tw, pw, tc, pc, tg, pg = (med(by, "tapegrad", 0), med(by, "torch", 0), med(by, "tapegrad", 1), med(by, "torch", 1),
                              med(by, "tapegrad", 2), med(by, "torch", 2))
    gf = lambda g: f"{g:.1f}" if g > 0 else "-"
    print(f"{name:<30} {tw:>10.3f} {pw:>10.3f} {pw / tw:>7.2f}x {tc:>10.3f} {pc:>10.3f} {pc / tc:>7.2f}x {gf(tg):>10} {gf(pg):>9}")
PY
