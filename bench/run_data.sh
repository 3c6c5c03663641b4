#!/usr/bin/env bash
# Data pipeline timings, tapegrad beside PyTorch (ms; lower is better). Builds bench_data first.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DTAPEGRAD_BUILD_BENCH=ON >/dev/null
cmake --build build --target bench_data -j "$(nproc)" >/dev/null
ours=$(OMP_NUM_THREADS=2 ./build/bench/bench_data)
theirs=$(/usr/bin/python3 bench/bench_data.py)
printf "%-36s %12s %12s\n" "case" "tapegrad_ms" "torch_ms"
while read -r name ms; do
  t=$(awk -v n="$name" '$1 == n { print $2 }' <<<"$theirs")
  printf "%-36s %12.3f %12s\n" "$name" "$ms" "${t:--}"
done <<<"$ours"
