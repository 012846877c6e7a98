#!/usr/bin/env bash
# Reproduce the MNIST table of RESULTS.md: the reference set-up (configs/mnist-rigl.toml) with
# each method, on the CPU. Usage: scripts/mnist-results.sh [EPOCHS] [METHODS...]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-100}"
shift || true
methods=("${@:-rigl set snfs scratch dense}")
cargo build --release -p rigl-cli
for m in ${methods[@]}; do
    ./target/release/rigl train --config configs/mnist-rigl.toml --method "$m" \
        --epochs "$epochs" --run-dir "runs/mnist-$m-$epochs" --quiet
done
for m in ${methods[@]}; do
    printf '%s: ' "$m"; cat "runs/mnist-$m-$epochs/summary.json" | tr -d '\n '; echo
done
