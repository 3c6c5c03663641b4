#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-data
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)"
