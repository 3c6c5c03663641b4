#!/usr/bin/env bash
# One training epoch of the documents' CNN on Fashion-MNIST: train_cnn beside PyTorch, back to back in
# one run, both with 2 threads (seconds; lower is better). train_cnn's epoch includes loading and
# decoding the images (worker threads, overlapped with training); the time the training loop waited
# for a batch is printed apart. PyTorch's epoch starts with every image already in one tensor.
#   bench/run_epoch.sh [LIMIT]     LIMIT: train on that many images only (a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-0}
threads=2
cmake -S . -B build >/dev/null
cmake --build build --target train_cnn -j "$(nproc)" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Exported once outside the timing (train_cnn does it itself on its first run).
build/examples/train_cnn --epochs 1 --limit 1 --threads "$threads" >/dev/null
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} build/examples/train_cnn --epochs 1 --threads "$threads" --workers 2 \
  --limit "$limit" --metrics "$tmp/m.jsonl" >"$tmp/out.txt"
ours=$(sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p' "$tmp/m.jsonl")
wait_s=$(sed -n 's/.*"data_wait_seconds": \([0-9.]*\).*/\1/p' "$tmp/m.jsonl")
acc=$(sed -n 's/.*"test_acc": \([0-9.]*\).*/\1/p' "$tmp/m.jsonl")
theirs=$(/usr/bin/python3 bench/bench_epoch.py "$threads" "$limit")
torch_s=$(awk '$1 == "torch_epoch_s" { print $2 }' <<<"$theirs")
prep_s=$(awk '$1 == "torch_prepare_s" { print $2 }' <<<"$theirs")
printf "%-34s %10s\n" "figure" "seconds"
printf "%-34s %10.2f\n" "train_cnn epoch" "$ours"
printf "%-34s %10.2f\n" "  of which waiting for data" "$wait_s"
printf "%-34s %10.2f\n" "torch epoch (data in memory)" "$torch_s"
printf "%-34s %10.2f\n" "  torch data preparation (apart)" "$prep_s"
awk -v a="$ours" -v b="$torch_s" -v w="$wait_s" -v acc="$acc" 'BEGIN {
  printf "ratio train_cnn / torch: %.3f   data wait share: %.1f%%   train_cnn test_acc after the epoch: %.2f%%\n",
         a / b, 100 * w / a, 100 * acc }'
