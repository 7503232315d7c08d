"""Runs an ONNX model with the onnxruntime package, nothing of graft's: feeds from a JSON file
(a list of {input name: {"dtype", "shape", "data"}}), every output of every feed to a JSON file.

    python scripts/run_onnx.py MODEL FEEDS.json OUT.json
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, feeds_path, out_path = sys.argv[1:4]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = []
    for feed in json.load(open(feeds_path)):
        arrays = {k: np.array(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in feed.items()}
        outputs = sess.run(None, arrays)
        results.append({n: o.tolist() for n, o in zip(names, outputs)})
    meta = sess.get_modelmeta().custom_metadata_map
    json.dump({"outputs": results, "metadata": meta}, open(out_path, "w"))


if __name__ == "__main__":
    main()
