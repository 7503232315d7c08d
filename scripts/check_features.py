"""Recompute some of graft's features with the Python onnxruntime package and compare.

    python scripts/check_features.py RUN SPEC_MODEL.onnx [--rows N] [--data D --features F]

Reads RUN/data/test.arrow (token ids) and RUN/features/test.arrow (or the folders given),
runs the ONNX model
with graph optimisations off on the first N rows (padded per batch), takes the outputs the
features' metadata names, mean-pools each, joins and L2-normalises them as it says, and
requires cosine similarity >= 0.9999 per row.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import cosine, embed_padded  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--data", default="data", help="token-id folder, under RUN")
    ap.add_argument("--features", default="features", help="features folder, under RUN")
    args = ap.parse_args()
    tokens = ipc.open_file(str(args.run / args.data / "test.arrow")).read_all()
    feats = ipc.open_file(str(args.run / args.features / "test.arrow")).read_all()
    assert tokens.column("id").to_pylist() == feats.column("id").to_pylist(), "row order differs"
    graft = np.asarray(feats.column("features").combine_chunks().flatten().to_numpy()).reshape(feats.num_rows, -1)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    rows = tokens.column("input_ids").to_pylist()[: args.rows]
    backbone = json.loads(feats.schema.metadata[b"graft"])["backbone"]
    if backbone["pooling"] != "mean":
        sys.exit(f"this check computes mean pooling; the features use {backbone['pooling']}")
    ours = embed_padded(sess, rows, outputs=backbone["outputs"], combine=backbone.get("combine", "concat"), normalize=backbone["normalize"])
    sims = cosine(ours, graft[: len(rows)])
    worst = float(np.min(sims))
    print(f"features ({'+'.join(backbone['outputs'])}) of {len(sims)} test rows against Python onnxruntime: "
          f"min cosine {worst:.7f} (required >= 0.9999)")
    if worst < 0.9999:
        sys.exit(1)


if __name__ == "__main__":
    main()
