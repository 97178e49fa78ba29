#!/usr/bin/env bash
# The model figures of issues 9 and 11 on the lent H100, in one run: dense and
# pruned latency (one submission), re-prune time, calibration-based methods
# (activation criterion, bias correction, re-normalization, auto budget) with
# their prune times, and a sparse file round trip. Expects .device/wgsparse,
# .device/libvulkan.so.1 and .device/cache/{lite0.safetensors,images/}.
#   device: bash bench/h100-model.sh   (writes ${OUT:-out}/)
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
C=.device/cache; IMG=$C/images/chelsea.png; W=./.device/wgsparse
{
  date -u +"%Y-%m-%d %H:%M UTC"
  for p in "unstructured --sparsity 0.9" "unstructured --sparsity 0.95" "block:16x16 --sparsity 0.9" \
           "block:32x32 --sparsity 0.9" "2:4"; do
    echo "== classify --pattern $p"
    $W classify $IMG --cache $C --pattern $p --runs 200
  done
  echo "== per-layer, unstructured 90%"
  $W classify $IMG --cache $C --pattern unstructured --sparsity 0.9 --runs 200 --layers
  echo "== calibrated methods (prune time includes them)"
  $W classify $IMG --cache $C --pattern unstructured --sparsity 0.5 --criterion activation --bias-correction --runs 50
  $W classify $IMG --cache $C --pattern unstructured --sparsity 0.5 --renorm --runs 50 --layers | grep -E "prune took|re-prune|speedup|criterion"
  $W classify $IMG --cache $C --pattern unstructured --sparsity 0.5 --renorm --budget auto --runs 50 --layers | grep -E "prune took|re-prune|speedup|criterion|auto budget"
  echo "== sparse file"
  $W prune --cache $C --pattern unstructured --sparsity 0.9 --out /tmp/u90.safetensors | tail -2
  $W classify $IMG --cache $C --weights /tmp/u90.safetensors --runs 200
} 2>&1 | tee "$OUT/model.txt"
