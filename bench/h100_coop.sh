#!/usr/bin/env bash
# Tensor-core (cooperative-matrix) measurement on the lent H100, in one run:
# adapter info, the gpu_coop tests on the real device (every cooperative tile
# against the CPU reference), `wgsparse bench --f16 --coop-tiles` and the
# PyTorch f16 peers (cuBLAS, Triton bsr_dense_mm) on the same GPU.
#   here:   cargo build --release && cargo test --release --test gpu_coop --no-run
#           mkdir -p .device && cp target/release/wgsparse .device/
#           cp "$(ls -t target/release/deps/gpu_coop-* | grep -v '\.d$' | head -1)" .device/gpu_coop
#           cp /usr/lib/x86_64-linux-gnu/libvulkan.so.1 .device/
#   device: bash bench/h100_coop.sh
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
# At most 8 files come back: date, adapter and test results share meta.txt.
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/meta.txt"
./.device/wgsparse info | tee -a "$OUT/meta.txt"
timeout 150 ./.device/gpu_coop --test-threads=1 > /tmp/gpu_coop_test.txt 2>&1; echo "gpu_coop tests: rc $?" >> /tmp/gpu_coop_test.txt
tail -12 /tmp/gpu_coop_test.txt | tee -a "$OUT/meta.txt"
SQ=${SQ:-4096x4096x4096,2048x2048x2048}
timeout 300 ./.device/wgsparse bench --f16 --coop-tiles --no-prune --shapes "$SQ" --patterns block:16x16,block:32x32 \
  --sparsities 0.5,0.7,0.9,0.95 --json "$OUT/bench.json" 2>"$OUT/bench.log" | tee "$OUT/bench.txt"
echo "bench rc ${PIPESTATUS[0]}"; grep -E "FAILED|error" "$OUT/bench.log" | head
# 8192^3 and the EfficientNet-Lite0 1x1-conv shapes (the dispatch on small shapes).
timeout 200 ./.device/wgsparse bench --f16 --no-prune \
  --shapes 8192x8192x8192,1280x320x49,96x16x12544,192x32x3136,480x80x196 --patterns block:32x32 --sparsities 0.9 \
  --json "$OUT/bench2.json" 2>>"$OUT/bench.log" | tee "$OUT/bench2.txt"
echo "bench2 rc ${PIPESTATUS[0]}"
timeout 120 python3 bench/peers.py --dtype f16 --shapes "$SQ,8192x8192x8192" --blocks 16,32 --sparsities 0.5,0.7,0.9,0.95 \
  --json "$OUT/peers.json" 2>/dev/null | tee "$OUT/peers.txt"
