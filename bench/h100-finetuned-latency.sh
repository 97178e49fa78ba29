#!/usr/bin/env bash
# Latency of the recovered (sparse-trained) files beside dense on the lent GPU,
# one run: .device/ship/*.safetensors, .device/wgsparse, .device/libvulkan.so.1,
# .device/cache/{lite0.safetensors,images/chelsea.png}.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
W=./.device/wgsparse; C=.device/cache; IMG=$C/images/chelsea.png
{
  date -u +"%Y-%m-%d %H:%M UTC"
  echo "== dense"; $W classify $IMG --cache $C --runs 200 | grep -E "dense|ms"
  for f in .device/ship/*.safetensors; do
    echo "== $f"; $W classify $IMG --cache $C --weights $f --runs 200 | grep -E "ms|%"
  done
} 2>&1 | grep -v XDG | tee "$OUT/latency.txt"
