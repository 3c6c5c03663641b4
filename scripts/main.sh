#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, and trains the documents' CNN
# (default: one epoch on Fashion-MNIST; train_cnn --help lists the options, which pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-data
scripts/build.sh
build/examples/train_cnn "$@"
