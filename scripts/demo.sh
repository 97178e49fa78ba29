#!/usr/bin/env bash
# The main job. For now: list the GPU adapters wgsparse finds and their limits.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --quiet --release --bin wgsparse -- info
