#!/bin/sh
# Times the reductions and softmax in tapegrad and in PyTorch, back to back, and prints a table.
# Usage: [OMP_NUM_THREADS=n] [BENCH_CPU_TIME=1] bench/run_reduce.sh [build dir]
# (the build needs -DTAPEGRAD_BUILD_BENCH=ON; BENCH_CPU_TIME=1 times process CPU instead of wall clock)
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
cmake --build "$build" --target bench_reduce -j2 >/dev/null
tg=$(mktemp)
pt=$(mktemp)
trap 'rm -f "$tg" "$pt"' EXIT
"$build/bench/bench_reduce" >"$tg"
/usr/bin/python3 "$here/bench_reduce.py" >"$pt"
echo "threads: ${OMP_NUM_THREADS:-all}   clock: $([ "${BENCH_CPU_TIME:-0}" = 1 ] && echo cpu || echo wall)   torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
printf '%-28s %12s %12s %8s\n' "(4096, 1024) float32" "tapegrad ms" "torch ms" "speedup"
# Both programs print the cases in the same order: "name<TAB>ms".
paste "$tg" "$pt" | awk -F '\t' '{ printf "%-28s %12.3f %12.3f %7.2fx\n", $1, $2, $4, $4 / $2 }'
