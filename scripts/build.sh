#!/usr/bin/env bash
# Configures and builds tapegrad in build/ (Release, warnings as errors). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_WERROR=ON "$@" >/dev/null
cmake --build build -j "$(nproc)"
