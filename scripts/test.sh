#!/usr/bin/env bash
# Runs every check: format, lints, unit/property/GPU tests (on lavapipe when
# there is no GPU), and compile checks for DX12 (Windows), Metal (macOS) and the
# browser (wasm32), the wasm package and the browser tests. GPU tests fail,
# never skip, when no adapter exists.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

rustup component add clippy rustfmt >/dev/null 2>&1 || true
rustup target add x86_64-pc-windows-msvc aarch64-apple-darwin wasm32-unknown-unknown >/dev/null

echo "== adapter"
cargo run --quiet --release --bin wgsparse -- info

echo "== fmt"
cargo fmt --check
echo "== clippy"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features cuda -- -D warnings
echo "== cross-platform compile checks (DX12, Metal, WebGPU)"
cargo check --lib --target x86_64-pc-windows-msvc
cargo check --lib --target aarch64-apple-darwin
cargo check --lib --target wasm32-unknown-unknown
# --- added for issue 19 (ONNX import): the conformance runner's test data ---
echo "== ONNX backend test data (libonnx-testdata + the onnx wheel) for tests/onnx_conformance.rs"
bash scripts/fetch-onnx-testdata.sh
# --- end of the ONNX step ---
echo "== tests"
cargo test --release
echo "== the cuda feature without an NVIDIA GPU: CPU-side packing, NVRTC compile of the kernels, error paths, backend choice"
# NVRTC (CUDA's run-time compiler; needs no GPU) from PyPI, for the compile test.
NVRTC_DIR=target/nvrtc
if [ ! -e "$NVRTC_DIR/nvidia/cu13/lib/libnvrtc.so.13" ]; then
  mkdir -p "$NVRTC_DIR"
  python3 -m pip download --no-deps -q -d "$NVRTC_DIR" nvidia-cuda-nvrtc==13.5.37
  python3 -m zipfile -e "$NVRTC_DIR"/nvidia_cuda_nvrtc-13.5.37-*.whl "$NVRTC_DIR"
fi
LD_LIBRARY_PATH="$PWD/$NVRTC_DIR/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  cargo test --release --features cuda --lib cuda::
cargo test --release --features cuda --test backend --test cli cuda

echo "== wasm package and browser tests (headless Chromium, WebGPU on SwiftShader)"
bash scripts/build-wasm.sh
npm install --no-audit --no-fund --silent
node --test tests/web/

# ---- added by the web work (issue 20): the browser-equivalent benchmark, reduced ----
echo "== browser-equivalent benchmark, reduced (Node + Dawn on SwiftShader vs ONNX Runtime Web; logged, never asserted)"
# The ONNX peer is built from the checkpoint with the onnx package (PyPI); the full grid: README, bench/web/run.mjs.
python3 -c "import onnx" 2>/dev/null || python3 -m pip install -q onnx==1.23.2
python3 scripts/lite0-onnx.py --external
VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json \
  node bench/web/run.mjs --runs 2 --configs unstructured:0.9 --trained none --ort wasm --json target/web/bench-reduced.json
# ---- end of the web benchmark step ----
