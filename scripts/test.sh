#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds, runs every test.
#
#   scripts/test.sh              Both suites below, one after the other (what CI runs). Exits non-zero
#                                if either fails; the last line sums them up.
#   scripts/test.sh --quick      The Release suite: Release build in build/, every ctest entry, including
#                                the "fuzz:" entry (fuzz/ci.sh: each fuzz target replays its corpus, then
#                                fuzzes briefly; it needs clang, which this installs too).
#   scripts/test.sh --sanitize   The sanitizer suite: AddressSanitizer + UndefinedBehaviorSanitizer build
#                                in build-asan/ (-O1 -g1 or $SANITIZE_CFLAGS, TAPEGRAD_SANITIZE=ON), every
#                                test in it, the two-rank MPI tests included; any sanitizer report or
#                                leak fails the test that caused it. Leaves out the tests labelled
#                                packaging (they build the library again, unsanitized) and fuzz (the fuzz
#                                targets carry the sanitizers themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
release=1
sanitize=1
for arg in "$@"; do
  case "$arg" in
    --quick) sanitize=0 ;;
    --sanitize) release=0 ;;
    *) echo "test.sh: unknown option '$arg' (use --quick, --sanitize or nothing)" >&2; exit 2 ;;
  esac
done
if [ "$release" = 0 ] && [ "$sanitize" = 0 ]; then
  echo "test.sh: --quick and --sanitize each leave out the other suite; give one of them or neither" >&2
  exit 2
fi
root=$(pwd)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# ctest's summary line, "N% tests passed, F tests failed out of T", as "passed failed".
counts() {
  sed -n 's/.*tests passed, \([0-9]*\) tests\{0,1\} failed out of \([0-9]*\).*/\1 \2/p' "$1" |
    tail -1 | awk '{ print $2 - $1, $1 }'
}

passed=0
failed=0
status=0
summary=()
tally() {  # tally NAME LOG STATUS
  local c
  c=$(counts "$2")
  if [ -z "$c" ]; then
    # No summary line: the build or ctest itself failed before running the tests.
    summary+=("$1: did not run (exit $3)")
    failed=$((failed + 1))
    return
  fi
  set -- "$1" "$2" "$3" $c
  passed=$((passed + $4))
  failed=$((failed + $5))
  summary+=("$1: $4 passed, $5 failed")
}

if [ "$release" = 1 ]; then
  scripts/setup.sh --with-data --with-fuzz
  s=0
  (scripts/build.sh && cd build && ctest --output-on-failure -j "$(nproc)") 2>&1 | tee "$logs/release.log" ||
    s=$?
  [ "$s" = 0 ] || status=1
  tally "Release suite" "$logs/release.log" "$s"
fi

if [ "$sanitize" = 1 ]; then
  scripts/setup.sh --with-data
  start=$(date +%s)
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  # SANITIZE_CFLAGS (default "-O1 -g1": line tables for the reports' stack traces, no variable info,
  # which would only make the build slower).
  flags=${SANITIZE_CFLAGS:--O1 -g1}
  s=0
  {
    cmake -S . -B build-asan "${launcher[@]}" -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_C_FLAGS_SANITIZE="$flags" \
      -DCMAKE_CXX_FLAGS_SANITIZE="$flags" -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_WERROR=ON \
      -DTAPEGRAD_BUILD_BENCH=OFF -DTAPEGRAD_INSTALL=OFF >/dev/null &&
      cmake --build build-asan -j "$(nproc)"
  } 2>&1 | tee "$logs/sanitize.log" || s=$?
  built=$(date +%s)
  if [ "$s" = 0 ]; then
    # halt_on_error and a non-zero exit code make every report a test failure; the leak suppressions
    # cover Open MPI's and OpenBLAS's allocations that live until exit (scripts/lsan.supp says which).
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
    export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    (cd build-asan && ctest --output-on-failure -j "$(nproc)" -LE "packaging|fuzz" --timeout 1800) 2>&1 |
      tee -a "$logs/sanitize.log" || s=$?
    echo "sanitizer suite: build $((built - start)) s, tests $(($(date +%s) - built)) s"
  fi
  [ "$s" = 0 ] || status=1
  tally "Sanitizer suite (ASan + UBSan)" "$logs/sanitize.log" "$s"
fi

echo
printf '%s\n' "${summary[@]}"
echo "test.sh: $passed passed, $failed failed"
exit "$status"
