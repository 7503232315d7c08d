"""A "backbone" that returns the raw pixels, for baselines: the first channel of a
[batch, 3, 28, 28] image, flattened to 784 values.

    python scripts/make_raw_pixels.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["grey"]),
        helper.make_node("Flatten", ["grey"], ["pixels"]),
    ]
    inits = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in [("starts", 0), ("ends", 1), ("axes", 1)]]
    graph = helper.make_graph(
        nodes,
        "raw-pixels",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 28, 28])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 784])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="graft")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out / "model.onnx")


if __name__ == "__main__":
    main()
