"""Runs an ONNX model with the onnxruntime package, or an MLflow model folder with
`mlflow.pyfunc.load_model`, nothing of graft's: feeds from a JSON file (a list of
{input name: {"dtype", "shape", "data"}}), every output of every feed to a JSON file.

    python scripts/run_onnx.py MODEL FEEDS.json OUT.json
    python scripts/run_onnx.py --mlflow MODEL_FOLDER FEEDS.json OUT.json
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def arrays(feed):
    return {k: np.array(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in feed.items()}


def main():
    if sys.argv[1] == "--mlflow":
        import mlflow.pyfunc

        folder, feeds_path, out_path = sys.argv[2:5]
        model = mlflow.pyfunc.load_model(folder)
        results = [{n: o.tolist() for n, o in model.predict(arrays(f)).items()} for f in json.load(open(feeds_path))]
        sess = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
    else:
        model, feeds_path, out_path = sys.argv[1:4]
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        results = [{n: o.tolist() for n, o in zip(names, sess.run(None, arrays(f)))} for f in json.load(open(feeds_path))]
    meta = sess.get_modelmeta().custom_metadata_map
    json.dump({"outputs": results, "metadata": meta}, open(out_path, "w"))


if __name__ == "__main__":
    main()
