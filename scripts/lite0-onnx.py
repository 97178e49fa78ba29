#!/usr/bin/env python3
"""Builds an ONNX file of EfficientNet-Lite0 from the checkpoint wgsparse runs
(cache/lite0.safetensors, the lukemelas-port names: `_conv_stem`, `_blocks.N.*`,
`_bn*`, `_conv_head`, `_fc`), with the `onnx` package's helper API only (no
PyTorch), for the ONNX Runtime Web peer of bench/web/.

The graph is the network as src/model/lite0.rs defines it: stem 3x3/2, the
MBConv stages (expand 1x1 + ReLU6, depthwise kxk/s + ReLU6, project 1x1, residual
when stride 1 and channels agree), head 1x1 + ReLU6, global average pool, fully
connected. Convolutions are followed by BatchNormalization (epsilon 1e-3, the
checkpoint's; ONNX Runtime folds it, as wgsparse does) and Clip(0, 6). Padding
is TensorFlow "SAME" as the checkpoint was trained with: output ceil(in/stride),
the smaller half of the padding before, the larger after (asymmetric at every
stride-2 layer at 224x224), written as explicit `pads`.

Input `input` [1, 3, 224, 224] float32, channel planes normalised (x - 127) / 128
(the Lite convention); output `logits` [1, 1000].

With --external, the weights stay in the checkpoint: every initializer is ONNX
external data pointing into lite0.safetensors at its offset (safetensors stores
raw little-endian f32), so the .onnx is a few kB and the run needs no second
copy of the weights (ONNX Runtime Web: `externalData: [{ path: "lite0.safetensors",
data }]`). That is what bench/web/ uses, and what fits the device run's carry.

    python3 scripts/lite0-onnx.py [--weights cache/lite0.safetensors] [--out target/web/lite0.onnx] [--external]
"""

import argparse
import json
import math
import struct
import sys

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    sys.exit("lite0-onnx: the `onnx` Python package is needed: python3 -m pip install onnx==1.23.2")

# (repeats, kernel, stride, expand ratio, out channels): src/model/lite0.rs STAGES.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
BN_EPS = 1e-3  # src/model/weights.rs BN_EPS
SIZE = 224


def read_safetensors(path, offsets=None):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    if any(k.startswith("wgsparse.") for k in meta):
        sys.exit(f"lite0-onnx: {path} is a wgsparse sparse file (BatchNorm folded, layers compressed); "
                 "give the dense checkpoint (cache/lite0.safetensors from `wgsparse fetch`)")
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            sys.exit(f"lite0-onnx: {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
        if offsets is not None:
            offsets[name] = (8 + n + a, b - a)
    return out


def externalize(model, offsets, location):
    """Points every checkpoint initializer at its bytes inside the safetensors file."""
    from onnx.external_data_helper import set_external_data
    for t in model.graph.initializer:
        if t.name in offsets:
            offset, length = offsets[t.name]
            set_external_data(t, location=location, offset=offset, length=length)
            t.data_location = TensorProto.EXTERNAL
            t.ClearField("raw_data")


def same_pads(n, k, stride):
    """TensorFlow SAME along one axis: (before, after, out)."""
    out = math.ceil(n / stride)
    total = max((out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2, out


class Builder:
    def __init__(self, w):
        self.w = w
        self.nodes = []
        self.inits = []
        self.used = set()

    def tensor(self, name, shape):
        if name not in self.w:
            sys.exit(f"lite0-onnx: the checkpoint has no tensor {name}")
        t = self.w[name]
        if list(t.shape) != list(shape):
            sys.exit(f"lite0-onnx: {name} has shape {list(t.shape)}, expected {list(shape)}")
        if name not in self.used:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(t), name))
            self.used.add(name)
        return name

    def conv_bn(self, x, hw, conv, bn, cin, cout, k, stride, group, act):
        h = w = hw
        t, b, oh = same_pads(h, k, stride)
        l, r, _ = same_pads(w, k, stride)
        wname = self.tensor(f"{conv}.weight", [cout, cin // group, k, k])
        y = f"{conv}.out"
        self.nodes.append(helper.make_node("Conv", [x, wname], [y], name=conv, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[t, l, b, r], group=group))
        ins = [y] + [self.tensor(f"{bn}.{p}", [cout]) for p in ("weight", "bias", "running_mean", "running_var")]
        z = f"{bn}.out"
        self.nodes.append(helper.make_node("BatchNormalization", ins, [z], name=bn, epsilon=BN_EPS))
        if act:
            a = f"{conv}.relu6"
            self.nodes.append(helper.make_node("Clip", [z, "zero", "six"], [a], name=a))
            z = a
        return z, oh


def build(weights):
    b = Builder(weights)
    b.inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    x, hw = b.conv_bn("input", SIZE, "_conv_stem", "_bn0", 3, 32, 3, 2, 1, True)
    cin, block = 32, 0
    for repeats, k, stage_stride, expand, cout in STAGES:
        for r in range(repeats):
            stride = stage_stride if r == 0 else 1
            p, mid, block_in = f"_blocks.{block}", cin * expand, x
            if expand != 1:
                x, hw = b.conv_bn(x, hw, f"{p}._expand_conv", f"{p}._bn0", cin, mid, 1, 1, 1, True)
            x, hw = b.conv_bn(x, hw, f"{p}._depthwise_conv", f"{p}._bn1", mid, mid, k, stride, mid, True)
            x, hw = b.conv_bn(x, hw, f"{p}._project_conv", f"{p}._bn2", mid, cout, 1, 1, 1, False)
            if stride == 1 and cin == cout:
                y = f"{p}.add"
                b.nodes.append(helper.make_node("Add", [x, block_in], [y], name=y))
                x = y
            cin, block = cout, block + 1
    x, hw = b.conv_bn(x, hw, "_conv_head", "_bn1", cin, 1280, 1, 1, 1, True)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    b.nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
    fc_w, fc_b = b.tensor("_fc.weight", [1000, 1280]), b.tensor("_fc.bias", [1000])
    b.nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="_fc", transB=1))
    left = sorted(set(weights) - b.used)
    if left:
        sys.exit(f"lite0-onnx: tensors of the checkpoint the graph does not use: {left[:5]} ...")
    graph = helper.make_graph(
        b.nodes, "efficientnet-lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="wgsparse scripts/lite0-onnx.py")
    model.ir_version = 8  # readable by every ONNX Runtime since 1.14
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="cache/lite0.safetensors")
    ap.add_argument("--out", default="target/web/lite0.onnx")
    ap.add_argument("--external", action="store_true",
                    help="reference the weights inside the safetensors file instead of copying them")
    a = ap.parse_args()
    offsets = {}
    try:
        weights = read_safetensors(a.weights, offsets)
    except FileNotFoundError:
        sys.exit(f"lite0-onnx: {a.weights} not found: run `wgsparse fetch --cache cache` first")
    model = build(weights)  # checked with the weights inline
    import os
    if a.external:
        externalize(model, offsets, os.path.basename(a.weights))
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    onnx.save(model, a.out)
    print(f"lite0-onnx: wrote {a.out} ({os.path.getsize(a.out)} bytes, {len(model.graph.node)} nodes, "
          f"{sum(int(np.prod(t.dims)) for t in model.graph.initializer)} parameters"
          f"{', weights in ' + os.path.basename(a.weights) if a.external else ''})")


if __name__ == "__main__":
    main()
