#!/usr/bin/env bash
# The `cuda` feature on the lent H100, in one run: our 2:4 sparse tensor-core
# kernels against cuBLAS dense and cuSPARSELt on the same matrices, f16 and bf16.
#   here:   cargo build --release --features cuda && mkdir -p .device && cp target/release/wgsparse .device/
#   device: bash bench/h100-cuda.sh   (carry [".device/wgsparse"]; writes ${OUT:-out}/)
# CUDA 13 libraries (NVRTC, cuBLAS) and cuSPARSELt from the PyTorch environment,
# where ../shared/gpu/DEVICE.md says they are.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$NV/cusparselt/lib:$(ls -d $NV/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/date.txt"
./.device/wgsparse bench --backend cuda --all-tiles --runs 20 --json "$OUT/cuda-f16.json" "$@" \
  2>"$OUT/cuda-f16.log" | tee "$OUT/cuda-f16.md"
./.device/wgsparse bench --backend cuda --dtype bf16 --runs 20 --json "$OUT/cuda-bf16.json" "$@" \
  2>"$OUT/cuda-bf16.log" | tee "$OUT/cuda-bf16.md"
