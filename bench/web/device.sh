#!/usr/bin/env bash
# The browser on a real GPU, in one run (issue 20 item 3): Dawn (Chrome's WebGPU,
# dawn.node) on the NVIDIA Vulkan driver drives the wasm package through the same
# harness as on SwiftShader (dense, the pruned grid, the sparse-trained files, ONNX
# Runtime Web's WebGPU and wasm providers on the same adapter, per-layer GPU times),
# then the native binary runs the same configurations on the same GPU through wgpu
# (the browser's overhead per forward). Needs .device-web/ from bench/web/pack-device.sh.
# Outputs under $OUT (the device tool brings them back): web.json, web.txt, native.txt.
#   ICD=swiftshader RUNS=1 RUN_ARGS="--configs none --trained none --ort wasm" bash bench/web/device.sh
#     (the same steps on this machine, in a clone: a dry run of the script)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/web/device-out}
mkdir -p "$OUT"
[ -f .device-web/web.tar.xz ] || { echo "device: .device-web/web.tar.xz missing: run bash bench/web/pack-device.sh and carry .device-web" >&2; exit 1; }
tar -xJf .device-web/web.tar.xz
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [ "${ICD:-nvidia}" = nvidia ]; then
  # The machine's own ICD file names libGLX_nvidia, which fails headless: use the EGL library (DEVICE.md).
  printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
  export VK_ICD_FILENAMES=/tmp/nv_icd.json
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv || true
else
  export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
fi
export LD_LIBRARY_PATH=$PWD/.device-bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
N=.device-bin/node W=.device-bin/wgsparse
RUNS=${RUNS:-50}
$W info | tee "$OUT/native.txt"
# The browser path first (what users get), on the same Dawn adapter as ONNX Runtime Web.
# shellcheck disable=SC2086
$N bench/web/run.mjs --runs "$RUNS" --json "$OUT/web.json" ${RUN_ARGS:---kernels} 2>&1 | tee "$OUT/web.txt"
# Native wgpu on the same GPU: the same image, configurations and sparse-trained files.
IMG=cache/images/chelsea.png
for cfg in "--pattern 2:4" "--pattern unstructured --sparsity 0.9" "--pattern block:16x16 --sparsity 0.9" \
  "--pattern block:32x32 --sparsity 0.9"; do
  echo "== native: classify $cfg" | tee -a "$OUT/native.txt"
  # shellcheck disable=SC2086
  $W classify $IMG --cache cache $cfg --runs "$RUNS" 2>&1 | tee -a "$OUT/native.txt"
done
for f in models/*.safetensors; do
  echo "== native: classify --weights $f" | tee -a "$OUT/native.txt"
  $W classify $IMG --cache cache --weights "$f" --runs "$RUNS" 2>&1 | tee -a "$OUT/native.txt"
done
echo "device: outputs in $OUT"
