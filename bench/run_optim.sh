#!/usr/bin/env bash
# Optimizer steps, tapegrad against PyTorch, same sizes and thread count; prints one table.
# usage: bench/run_optim.sh [total_params_millions=10] [tensors=10] [iterations=30]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${OMP_NUM_THREADS:-$(nproc)}"
[ -x build/bench/bench_optim ] || cmake --build build --target bench_optim -j2 >/dev/null
ours=$(OMP_NUM_THREADS="$threads" build/bench/bench_optim "$@")
theirs=$(OMP_NUM_THREADS="$threads" /usr/bin/python3 bench/bench_optim.py "$@")
echo "$ours" | head -1
echo "$theirs" | head -1
printf "%-18s %12s %14s %16s %8s\n" "step" "tapegrad ms" "torch ms" "torch foreach ms" "speedup"
join <(echo "$ours" | tail -n +2 | awk '{print $1, $2}' | sort) \
     <(echo "$theirs" | tail -n +2 | awk '{print $1, $2, ($5 == "" ? "-" : $5)}' | sort) |
  awk '{best = $3; if ($4 != "-" && $4 < best) best = $4; printf "%-18s %12.2f %14.2f %16s %7.2fx\n", $1, $2, $3, $4, best / $2}'
