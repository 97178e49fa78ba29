#!/usr/bin/env bash
# Fetches ONNX's own backend test data (suites nobody here wrote) for the
# conformance runner (tests/onnx_conformance.rs) into target/onnx-testdata:
#   debian/  -> Debian's libonnx-testdata (ONNX 1.12.0: node, pytorch-converted,
#               pytorch-operator, simple), a symlink to where the package puts it
#   wheel/   -> onnx/backend/test/data/ of the PyPI `onnx` wheel pinned below
#               (node, pytorch-converted, pytorch-operator, simple, light)
# Idempotent: does nothing when both are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

ONNX_VERSION=1.17.0
DEST=target/onnx-testdata
mkdir -p "$DEST"

DEBIAN_DATA=/usr/share/libonnx-testdata/data
if [ ! -d "$DEBIAN_DATA/node" ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get install -y libonnx-testdata >/dev/null
fi
ln -sfn "$DEBIAN_DATA" "$DEST/debian"

if [ ! -f "$DEST/wheel/.complete-$ONNX_VERSION" ]; then
  rm -rf "$DEST/wheel" "$DEST/whl"
  mkdir -p "$DEST/whl" "$DEST/wheel"
  # Any platform's wheel carries the same test data; pip picks one for this machine.
  python3 -m pip download --no-deps -q -d "$DEST/whl" "onnx==$ONNX_VERSION"
  python3 - "$DEST/whl" "$DEST/wheel" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "onnx-*.whl"))[0]
prefix = "onnx/backend/test/data/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(sys.argv[2], name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(name))
PY
  rm -rf "$DEST/whl"
  touch "$DEST/wheel/.complete-$ONNX_VERSION"
fi
echo "ONNX test data: $DEST/debian (libonnx-testdata), $DEST/wheel (onnx $ONNX_VERSION wheel)"
