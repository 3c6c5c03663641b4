#!/usr/bin/env bash
# A two-rank job in which rank 1 misbehaves must end with an error within a bounded time, and its output
# must say what happened.
# Usage: dist_failure.sh MPIRUN TEST_DIST TAG MAX_SECONDS PATTERN...
#   runs MPIRUN -np 2 TEST_DIST TAG; fails when the job exits 0, takes MAX_SECONDS or more (it is killed
#   then), or its output matches none of the extended regular expressions PATTERN...
set -uo pipefail
mpirun=$1 test_dist=$2 tag=$3 max=$4
shift 4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
timeout --signal=KILL "$max" "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$test_dist" "$tag" >"$out" 2>&1
status=$?
seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
cat "$out"
echo "dist_failure.sh: exit status $status after ${seconds} s"
if [ "$status" -eq 137 ] && awk -v s="$seconds" -v m="$max" 'BEGIN { exit !(s >= m - 0.5) }'; then
  echo "dist_failure.sh: FAILED: the job still ran after $max s (killed)"
  exit 1
fi
if [ "$status" -eq 0 ]; then
  echo "dist_failure.sh: FAILED: the job exited 0 although a rank failed"
  exit 1
fi
for p in "$@"; do
  if grep -Eq "$p" "$out"; then
    echo "dist_failure.sh: ok, the output says: $(grep -Em1 "$p" "$out")"
    exit 0
  fi
done
echo "dist_failure.sh: FAILED: the output matches none of: $*"
exit 1
