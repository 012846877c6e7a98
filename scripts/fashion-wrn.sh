#!/usr/bin/env bash
# The short CPU Fashion-MNIST WideResNet comparison of RESULTS.md: WRN-22-2, dense against RigL
# at 90% ERK (first conv dense), on a training subset. Usage: scripts/fashion-wrn.sh [TRAIN] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
train="${1:-3000}"
epochs="${2:-2}"
cargo build --release -p rigl-cli
for m in dense rigl; do
    ./target/release/rigl train --model wrn --dataset fashion-mnist --method "$m" \
        --distribution erk --sparsity 0.9 --first-layer-sparsity 0 --delta-t 20 \
        --train-subset "$train" --test-subset 2000 --epochs "$epochs" --batch-size 64 \
        --lr 0.05 --weight-decay 0.0005 --run-dir "runs/fashion-wrn-$m" --quiet
done
