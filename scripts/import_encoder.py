"""Import a sentence-transformers / Hugging Face encoder folder as a graft backbone, without torch.

    python scripts/import_encoder.py --model-dir DIR --out DIR --spec models/NAME.yaml [--name NAME]

Reads config.json (BERT, RoBERTa, XLM-R, DistilBERT or MPNet; another `model_type` is refused
naming it), model.safetensors and tokenizer.json, and, when present, sentence-transformers'
modules.json (a Normalize module: L2-normalised embeddings), 1_Pooling/config.json (mean,
CLS or max pooling) and sentence_bert_config.json (max_seq_length). Writes DIR/model.onnx
(every layer's hidden state a named output) and DIR/tokenizer.json, checks the graph, run by
onnxruntime on padded batches of token ids, against the numpy forward pass of the same
architecture (max abs difference < 1e-4 on every hidden state of real tokens), then writes
the spec, whose paths are relative to it. A folder it cannot use exits 1 naming the file or
tensor.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import NotImportable, as_bert, build_graph, forward  # noqa: E402

TOLERANCE = 1e-4


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def read_json(path, required=True, shape=dict):
    """The JSON document at `path`, which must be a `shape` (an object, or a list)."""
    if not path.is_file():
        if required:
            fail(f"{path}: not found")
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(f"{path}: not valid JSON ({e})")
    if not isinstance(value, shape):
        fail(f"{path}: expected a JSON {'object' if shape is dict else 'list'}")
    return value


def tokenizer_size(path):
    """Ids the tokenizer can produce: one past the largest in its vocabulary and added tokens."""
    tok = read_json(path)
    model = tok.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab))) if isinstance(vocab, list) else []
    ids += [t.get("id") for t in tok.get("added_tokens") or [] if isinstance(t, dict)]
    if not all(isinstance(i, int) and i >= 0 for i in ids):
        fail(f"{path}: token ids must be non-negative integers")
    if not ids:
        fail(f"{path}: no vocabulary")
    return max(ids) + 1


def sentence_transformers_head(model_dir):
    """(pooling, normalize) from the sentence-transformers modules, or the library's defaults."""
    modules = [m for m in read_json(model_dir / "modules.json", required=False, shape=list) or [] if isinstance(m, dict)]
    kinds = [(str(m.get("type", "")), str(m.get("path", ""))) for m in modules]
    normalize = any(kind.endswith("Normalize") for kind, _ in kinds)
    pooling_dir = next((path for kind, path in kinds if kind.endswith("Pooling")), "1_Pooling")
    cfg = read_json(model_dir / pooling_dir / "config.json", required=False) or {"pooling_mode_mean_tokens": True}
    modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens")) if cfg.get(key)]
    if len(modes) != 1:
        fail(f"{model_dir / pooling_dir / 'config.json'}: expected one of mean, CLS or max pooling, found {modes or 'none'}")
    return modes[0], normalize


def check(model_path, w, c, capacity):
    """Largest absolute difference between onnxruntime and numpy over every hidden state."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # no uploader, no device id written
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    vocab = w["embeddings.word_embeddings.weight"].shape[0]
    lengths = [min(n, capacity) for n in (3, 9, 17)]
    ids = np.zeros((len(lengths), max(lengths)), np.int64)
    mask = np.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(0, vocab, n)
        mask[r, :n] = 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if c["token_types"]:
        feed["token_type_ids"] = np.zeros_like(ids)
    names = [f"hidden_state_{i}" for i in range(c["num_hidden_layers"] + 1)]
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    got = session.run(names, feed)
    want = forward(w, c, ids, mask)
    real = mask[..., None].astype(bool)
    return max(float(np.abs(np.where(real, g - x, 0)).max()) for g, x in zip(got, want))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="folder for model.onnx and tokenizer.json")
    ap.add_argument("--spec", required=True, type=Path, help="the backbone spec to write (models/NAME.yaml)")
    ap.add_argument("--name", help="the spec's name (default: the spec file's stem)")
    args = ap.parse_args()
    import onnx
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    cfg = read_json(args.model_dir / "config.json")
    weights_path = args.model_dir / "model.safetensors"
    if not weights_path.is_file():
        fail(f"{weights_path}: not found (the weights must be in safetensors format)")
    try:
        weights = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:
        fail(f"{weights_path}: not a safetensors file ({e})")
    try:
        w, c = as_bert(weights, cfg)
    except NotImportable as e:
        fail(f"{args.model_dir}/{e}")
    tokenizer = args.model_dir / "tokenizer.json"
    rows = w["embeddings.word_embeddings.weight"].shape[0]
    if (size := tokenizer_size(tokenizer)) != rows:
        fail(f"{tokenizer}: {size} token ids, but `embeddings.word_embeddings.weight` in {weights_path} has {rows} rows")
    pooling, normalize = sentence_transformers_head(args.model_dir)
    # Positions the embedding table holds (RoBERTa and MPNet start after the padding index).
    capacity = c["max_position_embeddings"] - (c["position_offset"] or 0) - 1
    st = read_json(args.model_dir / "sentence_bert_config.json", required=False) or {}
    max_length = st.get("max_seq_length") or min(512, capacity)
    if not isinstance(max_length, int) or not 0 < max_length <= capacity:
        fail(f"{args.model_dir / 'sentence_bert_config.json'}: max_seq_length `{max_length}` must be 1..{capacity} (the position embeddings)")

    name = args.name or args.spec.stem
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "model.onnx.partial"
    onnx.save(build_graph(w, c, name), str(partial))
    diff = check(partial, w, c, capacity)
    if diff >= TOLERANCE:
        partial.unlink()
        fail(f"{partial}: differs from the numpy forward pass by {diff:.2e} (allowed {TOLERANCE:g})")
    (args.out / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    partial.replace(args.out / "model.onnx")
    print(f"{cfg['model_type']}: {c['num_hidden_layers']} layers, {c['hidden_size']}-d; checked against numpy: max abs difference {diff:.2e}")

    rel = lambda p: Path(os.path.relpath(p.resolve(), args.spec.resolve().parent)).as_posix()  # noqa: E731
    inputs = "  input_ids: input_ids\n  attention_mask: attention_mask\n  token_type_ids: "
    inputs += "token_type_ids" if c["token_types"] else "null  # the model takes no token types"
    spec = (
        f"# {name}: imported from {args.model_dir} by scripts/import_encoder.py ({cfg['model_type']},\n"
        f"# {c['num_hidden_layers']} layers, {c['hidden_size']}-d); outputs hidden_state_0..{c['num_hidden_layers']}.\n"
        f"name: {name}\nkind: text\nmodel: {rel(args.out / 'model.onnx')}\n"
        f"text:\n  tokenizer: {rel(args.out / 'tokenizer.json')}\n  max_length: {max_length}\n"
        f"inputs:\n{inputs}\noutput: last_hidden_state\npooling: {pooling}\nnormalize: {'true' if normalize else 'false'}\n"
    )
    args.spec.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.spec.with_name(args.spec.name + ".partial")
    tmp.write_text(spec)
    tmp.replace(args.spec)
    print(f"wrote {args.spec}")


if __name__ == "__main__":
    main()
