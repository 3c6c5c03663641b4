#!/bin/sh
# Runs bench_loss (tapegrad) and bench_loss.py (PyTorch) with the same thread count and prints
# both timings side by side. Usage: bench/run_loss.sh [build dir] [threads]
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-2}
export OMP_NUM_THREADS=$threads
"$build/bench/bench_loss" > /tmp/bench_loss_tg.txt
/usr/bin/python3 "$here/bench_loss.py" > /tmp/bench_loss_pt.txt
printf "%-28s %10s %10s %8s\n" "case ($threads threads)" "tapegrad" "pytorch" "speedup"
paste /tmp/bench_loss_tg.txt /tmp/bench_loss_pt.txt | awk '{
  n = NF / 2; name = ""; for (i = 1; i < n; i++) name = name (i > 1 ? " " : "") $i;
  printf "%-28s %8.3fms %8.3fms %7.2fx\n", name, $n, $NF, $NF / $n }'
