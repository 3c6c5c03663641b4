#!/usr/bin/env bash
# Runs bench_conv (tapegrad) and bench_conv.py (PyTorch) back to back and prints one table.
#   bench/run_conv.sh [build-dir=build] [threads=2] [iters=30]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
threads="${2:-2}"
iters="${3:-30}"
cmake --build "$build" --target bench_conv -j2 >/dev/null
tg="$(mktemp)"; pt="$(mktemp)"
trap 'rm -f "$tg" "$pt"' EXIT
"$build/bench/bench_conv" "$threads" "$iters" >"$tg"
/usr/bin/python3 "$here/bench_conv.py" "$threads" "$iters" >"$pt"
echo "conv2d: N=64, 3->64, 32x32, 3x3, pad 1; max_pool2d(2) on (64, 64, 32, 32); $threads threads, median of $iters"
printf '%-30s %12s %12s %10s %10s %8s\n' "measurement" "tapegrad ms" "torch ms" "tg GF/s" "torch GF/s" "speedup"
join -t $'\t' <(sort "$tg") <(sort "$pt") | sort -t $'\t' -k1,1 |
  awk -F'\t' '{ printf "%-30s %12.3f %12.3f %10s %10s %7.2fx\n", $1, $2, $4, ($3 > 0 ? $3 : "-"), ($5 > 0 ? $5 : "-"), $4 / $2 }'
