#!/usr/bin/env bash
# CI's fuzz step: builds the fuzz targets and runs each for FUZZ_SECONDS (default 30) on its committed
# corpus, two at a time (five targets: about 1.5 minutes of fuzzing after the build). Every committed
# input, the regression inputs of fixed bugs included, is replayed first. Fails like fuzz/run.sh.
# Skips with exit 0 only when clang with libFuzzer cannot be had even after scripts/setup.sh --with-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local dir
  dir=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$dir/t.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$dir/t.cpp" -o "$dir/t" >/dev/null 2>&1
  local ok=$?
  rm -rf "$dir"
  return $ok
}

if ! have_libfuzzer; then
  scripts/setup.sh --with-fuzz || true
  if ! have_libfuzzer; then
    echo "fuzz/ci.sh: SKIPPED: clang with libFuzzer is not available, and scripts/setup.sh --with-fuzz could not install it"
    exit 0
  fi
fi
start=$(date +%s)
fuzz/run.sh "${FUZZ_SECONDS:-30}"
echo "fuzz/ci.sh: done in $(($(date +%s) - start))s (build included)"
