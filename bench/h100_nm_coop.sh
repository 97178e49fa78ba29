#!/usr/bin/env bash
# 2:4 on cooperative matrices (issue 10, item 4) on the lent H100, in one run:
# adapter info, the gpu_nm_coop tests on the real device (every cooperative
# N:M tile against the CPU reference), then `wgsparse bench --f16 --coop-tiles`
# for pattern 2:4 beside the dense cooperative GEMM of the same run, one shape
# per invocation (a failure stops only its shape).
#   here (add /.device-nm/ to .git/info/exclude):
#           CARGO_TARGET_DIR=/work/target-nm cargo build --release
#           CARGO_TARGET_DIR=/work/target-nm cargo test --release --test gpu_nm_coop --no-run
#           mkdir -p .device-nm && cp /work/target-nm/release/wgsparse .device-nm/
#           cp "$(ls -t /work/target-nm/release/deps/gpu_nm_coop-* | grep -v '\.d$' | head -1)" .device-nm/gpu_nm_coop
#           cp /usr/lib/x86_64-linux-gnu/libvulkan.so.1 .device-nm/
#   device: bash bench/h100_nm_coop.sh   (SHAPES=... to change the shapes)
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device-nm:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/meta.txt"
./.device-nm/wgsparse info 2>&1 | head -20 | tee -a "$OUT/meta.txt"
timeout 120 ./.device-nm/gpu_nm_coop --test-threads=1 > "$OUT/tests.txt" 2>&1; echo "gpu_nm_coop tests: rc $?" | tee -a "$OUT/meta.txt"
tail -8 "$OUT/tests.txt"
mkdir -p /tmp/nmjson
SHAPES=${SHAPES:-4096x4096x4096 8192x8192x8192 1280x320x49 96x16x12544 192x32x3136 480x80x196 1000x1280x1}
for s in $SHAPES; do
  timeout 150 ./.device-nm/wgsparse bench --f16 --coop-tiles --no-prune --shapes "$s" --patterns 2:4 \
    --json "/tmp/nmjson/bench-$s.json" 2>>"$OUT/bench.log" >> "$OUT/bench.txt"
  echo "bench $s rc $?" | tee -a "$OUT/meta.txt"
done
tar czf "$OUT/bench-json.tgz" -C /tmp nmjson
grep -E "FAILED|rror" "$OUT/bench.log" | head
cat "$OUT/bench.txt"
