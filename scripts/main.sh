#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-data
scripts/build.sh
build/examples/demo "$@"
