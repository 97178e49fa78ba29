#!/usr/bin/env bash
# Builds the wasm package into pkg/ (ES module, TypeScript declarations,
# package.json) so that `npm pack pkg` gives an installable tarball. Installs
# the Rust wasm target and the wasm-bindgen CLI at the exact version Cargo.lock
# pins (from crates.io; nothing is downloaded from elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null
WB=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || ! wasm-bindgen --version | grep -q " $WB\$"; then
  echo "build-wasm: installing wasm-bindgen-cli $WB (compiles from crates.io, a few minutes once)"
  cargo install wasm-bindgen-cli --version "$WB" >/dev/null
fi
cargo build --lib --release --target wasm32-unknown-unknown
rm -rf pkg
wasm-bindgen --target web --out-dir pkg --out-name wgsparse target/wasm32-unknown-unknown/release/wgsparse.wasm
VERSION=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
cat > pkg/package.json <<JSON
{
  "name": "wgsparse",
  "version": "$VERSION",
  "description": "Sparse neural-network kernels (BSR, N:M, CSR) and GPU magnitude pruning on WebGPU",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "module": "wgsparse.js",
  "main": "wgsparse.js",
  "types": "wgsparse.d.ts",
  "files": ["wgsparse.js", "wgsparse.d.ts", "wgsparse_bg.wasm", "wgsparse_bg.wasm.d.ts"],
  "sideEffects": false
}
JSON
raw=$(stat -c %s pkg/wgsparse_bg.wasm)
gz=$(gzip -9 -c pkg/wgsparse_bg.wasm | wc -c)
echo "build-wasm: pkg/wgsparse_bg.wasm $raw bytes raw, $gz bytes gzipped"
