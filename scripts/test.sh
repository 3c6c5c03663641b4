#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds, runs every test.
#
#   scripts/test.sh              Release build in build/, every test, including the "fuzz:" entry
#                                (fuzz/ci.sh: each fuzz target replays its corpus, then fuzzes briefly;
#                                it needs clang, which this installs too)
#   scripts/test.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
#                                (-O1 -g or $SANITIZE_CFLAGS, TAPEGRAD_SANITIZE=ON), every test in it, the two-rank MPI tests
#                                included; any sanitizer report fails the test that caused it. Leaves out
#                                the tests labelled packaging (they build the library again, unsanitized)
#                                and fuzz (the fuzz targets carry the sanitizers themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "test.sh: unknown option '$arg' (use --sanitize or nothing)" >&2; exit 2 ;;
  esac
done
if [ "$sanitize" = 0 ]; then
  scripts/setup.sh --with-data --with-fuzz
  scripts/build.sh
  cd build
  ctest --output-on-failure -j "$(nproc)"
  exit 0
fi

scripts/setup.sh --with-data
root=$(pwd)
start=$(date +%s)
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# SANITIZE_CFLAGS (default "-O1 -g"): "-O0 -g" compiles faster and runs slower.
flags=${SANITIZE_CFLAGS:--O1 -g}
cmake -S . -B build-asan "${launcher[@]}" -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_C_FLAGS_SANITIZE="$flags" \
  -DCMAKE_CXX_FLAGS_SANITIZE="$flags" -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_WERROR=ON -DTAPEGRAD_BUILD_BENCH=OFF \
  -DTAPEGRAD_INSTALL=OFF >/dev/null
cmake --build build-asan -j "$(nproc)"
built=$(date +%s)
# halt_on_error and a non-zero exit code make every report a test failure; the leak suppressions cover
# Open MPI's and OpenBLAS's allocations that live until exit (scripts/lsan.supp says which).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
(cd build-asan && ctest --output-on-failure -j "$(nproc)" -LE "packaging|fuzz" --timeout 1800) || status=$?
echo "test.sh --sanitize: build $((built - start))s, tests $(($(date +%s) - built))s"
exit "$status"
