#!/usr/bin/env bash
# Packs what bench/web/device.sh needs on a lent GPU machine (no node, no Rust,
# no internet there) into .device-web/ (git-ignored): one web.tar.xz holding node
# (stripped), dawn.node (stripped) and the webgpu package's loader, the files of
# onnxruntime-web its two providers load, pngjs, the wasm package (pkg/), the
# checkpoint and the photo, the external-data ONNX, the native wgsparse binary
# and Debian's Vulkan loader (../shared/gpu/DEVICE.md says why each). Then, from
# the session with the device tool:
#   run(command="bash bench/web/device.sh", carry=[".device-web"], kind="nvidia-h100-x1")
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f pkg/wgsparse_bg.wasm ] || bash scripts/build-wasm.sh
[ -d node_modules/webgpu ] || npm install --no-audit --no-fund --silent
[ -f cache/lite0.safetensors ] || cargo run --quiet --release --bin wgsparse -- fetch --cache cache
cargo build --quiet --release --bin wgsparse
python3 -c "import onnx" 2>/dev/null || python3 -m pip install -q onnx==1.23.2
python3 scripts/lite0-onnx.py --external
grep -qx '/.device-web/' .git/info/exclude 2>/dev/null || echo '/.device-web/' >> "$(git rev-parse --git-path info/exclude)"

S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/.device-bin" "$S/node_modules/webgpu/dist/linux-x64" "$S/node_modules/onnxruntime-web/dist" \
  "$S/cache/images" "$S/target/web"
cp "$(command -v node)" "$S/.device-bin/node" && strip --strip-all "$S/.device-bin/node"
cp target/release/wgsparse "$S/.device-bin/" && strip --strip-all "$S/.device-bin/wgsparse"
cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$S/.device-bin/"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$S/node_modules/webgpu/"
cp node_modules/webgpu/dist/linux-x64/dawn.node "$S/node_modules/webgpu/dist/linux-x64/"
strip --strip-unneeded "$S/node_modules/webgpu/dist/linux-x64/dawn.node"
cp node_modules/onnxruntime-web/package.json "$S/node_modules/onnxruntime-web/"
for f in ort.webgpu.min.mjs ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm \
  ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm; do
  cp "node_modules/onnxruntime-web/dist/$f" "$S/node_modules/onnxruntime-web/dist/"
done
cp -r node_modules/pngjs "$S/node_modules/"
cp -r pkg "$S/"
cp cache/lite0.safetensors "$S/cache/" && cp cache/images/chelsea.png "$S/cache/images/"
cp target/web/lite0.onnx "$S/target/web/"
rm -rf .device-web && mkdir .device-web
tar -C "$S" -cf - . | xz -6 -T2 > .device-web/web.tar.xz
echo "pack-device: .device-web/web.tar.xz $(du -h .device-web/web.tar.xz | cut -f1) (the carry limit is 64 MiB; models/ and bench/ travel with the tree)"
