#!/usr/bin/env bash
# One whole measurement on the lent H100 machine, in one run (device time is
# scarce). Expects the release binary and Debian's libvulkan.so.1 in .device/
# (see ../shared/gpu/DEVICE.md), writes everything to ${OUT:-out}/.
#   here:   cargo build --release && mkdir -p .device && cp target/release/wgsparse .device/ \
#           && cp /usr/lib/x86_64-linux-gnu/libvulkan.so.1 .device/
#   device: bash bench/h100.sh [extra wgsparse bench flags]
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/date.txt"
./.device/wgsparse info | tee "$OUT/info.txt"
./.device/wgsparse bench --json "$OUT/bench.json" --plot "$OUT/bench.svg" "$@" 2>"$OUT/bench.log" | tee "$OUT/bench.txt"
# The model (needs .device/cache/{lite0.safetensors,images/} from `wgsparse fetch`).
if [ -f .device/cache/lite0.safetensors ]; then
  C=.device/cache; IMG=$C/images/chelsea.png
  ./.device/wgsparse classify $IMG --cache $C --pattern unstructured --sparsity 0.9 --layers | tee "$OUT/classify-unstructured90.txt"
  for p in block:16x16 block:32x32 2:4; do
    ./.device/wgsparse classify $IMG --cache $C --pattern $p --sparsity 0.9 | tee -a "$OUT/classify.txt"
  done
  ./.device/wgsparse sweep --cache $C --patterns unstructured,block:16x16,block:32x32,2:4 --sparsities 0.3,0.5,0.7,0.9,0.95 \
    --plot "$OUT/sweep.svg" | tee "$OUT/sweep.txt"
fi
python3 bench/peers.py --shapes 4096x4096x4096,2048x2048x2048 --blocks 16,32 --sparsities 0.5,0.7,0.9,0.95 \
  --csr 0.9,0.98 --json "$OUT/peers.json" 2>/dev/null | tee "$OUT/peers.txt"
