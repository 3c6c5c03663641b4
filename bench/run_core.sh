#!/usr/bin/env bash
# bench_core (tapegrad, with the triad and sgemm ceilings measured in the same run) and its PyTorch
# counterpart back to back, then a table. Build first with -DTAPEGRAD_BUILD_BENCH=ON.
#   bench/run_core.sh [build-dir] [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${2:-21}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
ours=$("$build/bench/bench_core" "$reps")
theirs=$(/usr/bin/python3 bench/bench_core.py "$reps")
echo "$ours"
echo
echo "$theirs"
echo
# The rate (the number before GB/s or GFLOP/s) on the first line containing $2.
rate() { grep -F "$2" <<<"$1" | head -1 | sed -E 's#.* ([0-9.]+) (GB/s|GFLOP/s).*#\1#'; }
printf '%-30s %12s %12s %12s\n' "" "tapegrad" "PyTorch" "ceiling"
printf '%-30s %12s %12s %12s\n' "add 16M float32 (GB/s)" "$(rate "$ours" "add 16M")" "$(rate "$theirs" "add 16M")" \
  "$(rate "$ours" "OpenMP triad") triad"
printf '%-30s %12s %12s %12s\n' "matmul 1024 float32 (GFLOP/s)" "$(rate "$ours" "matmul 1024")" \
  "$(rate "$theirs" "matmul 1024")" "$(rate "$ours" "cblas_sgemm") sgemm"
