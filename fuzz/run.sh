#!/usr/bin/env bash
# Builds the fuzz targets (build-fuzz/, clang, -DTAPEGRAD_FUZZ=ON) and runs each on a copy of its
# corpus for SECONDS (default 60), two at a time. Fails when any target crashes, leaks, times out on
# an input or allocates past the limits; the input that did it is kept under the scratch folder (its
# path is printed) and belongs in fuzz/corpus/<target>/ once the bug is fixed.
#
# Usage: fuzz/run.sh [seconds] [target...]     (targets default to all five)
# Environment: FUZZ_JOBS (targets at once, default 2), FUZZ_SCRATCH (default a new folder under /tmp),
#              FUZZ_KEEP_NEW=1 copies the inputs each run found back into fuzz/corpus (then trim by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_npy fuzz_idx fuzz_image fuzz_state_dict)
jobs=${FUZZ_JOBS:-2}

command -v clang++ >/dev/null || { echo "fuzz/run.sh: clang++ not found (scripts/setup.sh --with-fuzz)" >&2; exit 2; }
# Warnings are not errors here: the gcc build enforces them, and clang warns about things gcc does not
# (unused inline helpers), which must not stop the fuzzers.
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  # -O1 with line tables, asserts on (stb's included): what fuzzing builds use, and quick to compile.
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DTAPEGRAD_FUZZ=ON -DCMAKE_BUILD_TYPE=Fuzz \
    -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" \
    -DTAPEGRAD_WERROR=OFF -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF -DTAPEGRAD_BUILD_BENCH=OFF >/dev/null
fi
if ! cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}" >build-fuzz/build.log 2>&1; then
  grep -E "error|Error" build-fuzz/build.log | head -20 >&2
  echo "fuzz/run.sh: the build failed (build-fuzz/build.log)" >&2
  exit 2
fi

scratch=${FUZZ_SCRATCH:-$(mktemp -d /tmp/tapegrad-fuzz.XXXXXX)}
mkdir -p "$scratch"
echo "fuzz/run.sh: ${#targets[@]} targets, ${seconds}s each, $jobs at a time; scratch $scratch"

# One target: the committed corpus is copied, never written; libFuzzer's own limits turn a leak, a
# slow input (-timeout), a large allocation (-malloc_limit_mb) or a memory blow-up (-rss_limit_mb)
# into a failure with the input saved under artifacts/.
run_one() {
  local t=$1 dir="$scratch/$1"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/corpus/"$t"/* "$dir/corpus/"
  cp "$root/build-fuzz/fuzz/$t" "$dir/"  # a rebuild while this runs does not touch the running binary
  local status=0
  OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$dir/$t" "$dir/corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -max_len=16384 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    >"$dir/log" 2>&1 || status=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  if [ "$status" -eq 0 ]; then
    echo "  $t: ok, ${execs:-?} executions in ${seconds}s, corpus $(ls "$dir/corpus" | wc -l) inputs"
  else
    echo "  $t: FAILED (exit $status) after ${execs:-?} executions; log $dir/log, input(s):"
    ls "$dir"/artifacts/* 2>/dev/null | sed 's/^/    /'
    grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant failed|uncaught|terminate called" \
      "$dir/log" | sed 's/^/    /' || true
  fi
  if [ "${FUZZ_KEEP_NEW:-0}" = 1 ]; then cp -n "$dir"/corpus/* "fuzz/corpus/$t/" 2>/dev/null || true; fi
  return "$status"
}

failed=0
pids=()
names=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  run_one "$t" &
  pids+=($!)
  names+=("$t")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed=$((failed + 1))
done
if [ "$failed" -gt 0 ]; then
  echo "fuzz/run.sh: $failed of ${#targets[@]} targets failed"
  exit 1
fi
echo "fuzz/run.sh: all ${#targets[@]} targets clean"
