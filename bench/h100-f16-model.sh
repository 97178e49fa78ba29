#!/usr/bin/env bash
# EfficientNet-Lite0 in f16 storage on the lent H100 (issue 10, item 5), in one
# run: the model_f16 tests on the real device (with the tensor-core candidates
# in the per-layer dispatch), then `wgsparse eval --f16` on the sample images
# (top-1 agreement of f16 with f32 on the same weights, GPU latency of both)
# dense and pruned, and the per-layer kernel choice of two pruned models.
#   here:   cargo build --release && cargo test --release --test model_f16 --no-run
#           cp target/release/wgsparse .device/
#           cp "$(ls -t target/release/deps/model_f16-* | grep -v '\.d$' | head -1)" .device/model_f16
#           (.device/libvulkan.so.1 and .device/cache/{lite0.safetensors,images/} as for h100-model.sh)
#   With the 64 MiB carry limit the run may carry only the weights and the
#   sample images shrunk to 288 px (python3 bench/shrink_photos.py cache/images
#   .device/imgs; IMAGES=.device/imgs) and leave the test binary out (skipped).
#   device: bash bench/h100-f16-model.sh   (writes ${OUT:-out}/)
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
export WGSPARSE_CACHE=$PWD/.device/cache
C=.device/cache; W=./.device/wgsparse; I=${IMAGES:-$C/images}
{
  date -u +"%Y-%m-%d %H:%M UTC"
  $W info 2>&1 | head -12
  echo "== model_f16 tests on this GPU"
  [ -x ./.device/model_f16 ] && timeout 240 ./.device/model_f16 --test-threads=1 --nocapture 2>&1 | grep -E "test |result|f16 vs|panicked|differs"
  for p in "dense" "block:32x32 --sparsity 0.9" "block:16x16 --sparsity 0.9" "block:32x32 --sparsity 0.5" \
           "block:16x16 --sparsity 0.5" "unstructured --sparsity 0.9" "2:4"; do
    echo "== eval --f16 --pattern $p"
    timeout 120 $W eval $I --cache $C --pattern $p --f16 2>&1 | grep -vE "^[a-z_0-9.]+\.(png|jpg|jpeg) " 
  done
  echo "== classify --f16 --layers, block:32x32 90%"
  timeout 120 $W classify $I/$(ls $I | grep -m1 chelsea) --cache $C --pattern block:32x32 --sparsity 0.9 --runs 200 --f16 --layers
} 2>&1 | tee "$OUT/f16-model.txt"
