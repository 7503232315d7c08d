"""Generate the small committed test fixtures (run again only to change them).

    python scripts/make_fixtures.py

tests/fixtures/tiny/      a tiny random BERT (ONNX, same graph code as the real export),
                          its WordPiece tokenizer.json, a backbone spec, a review CSV, and
                          the mean-pooled features of every row computed independently
                          (Python tokenizers + numpy forward pass)
tests/fixtures/sklearn/   logistic-regression coefficients and classification metrics
                          computed by scikit-learn, for parity tests
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import build_graph, forward, mean_pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny"
SKLEARN = ROOT / "tests" / "fixtures" / "sklearn"
MAX_LENGTH = 12
CFG = {
    "hidden_size": 16,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}
GOOD = ["great", "wonderful", "moving", "funny", "sharp", "charming", "clever", "best"]
BAD = ["dull", "boring", "awful", "flat", "tedious", "weak", "messy", "worst"]
FILLER = ["the", "film", "movie", "plot", "cast", "is", "was", "and", "a", "very", "too", "story", "really"]
PIECES = ["##s", "##ly", "##ing"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer():
    vocab = {t: i for i, t in enumerate(SPECIAL + GOOD + BAD + FILLER + PIECES + [".", ",", "!"])}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.decoder = decoders.WordPiece()
    # Shipped tokenizers often fix padding and truncation (MiniLM's pads to 128): graft must override both.
    tok.enable_padding(length=40, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(40)
    return tok, len(vocab)


def make_weights(vocab_size, rng):
    h, f = CFG["hidden_size"], CFG["intermediate_size"]
    w = {
        "embeddings.word_embeddings.weight": rng.normal(0, 0.5, (vocab_size, h)),
        "embeddings.position_embeddings.weight": rng.normal(0, 0.1, (CFG["max_position_embeddings"], h)),
        "embeddings.token_type_embeddings.weight": rng.normal(0, 0.1, (2, h)),
        "embeddings.LayerNorm.weight": 1 + rng.normal(0, 0.1, h),
        "embeddings.LayerNorm.bias": rng.normal(0, 0.1, h),
    }
    for i in range(CFG["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, shape in [
            ("attention.self.query", (h, h)),
            ("attention.self.key", (h, h)),
            ("attention.self.value", (h, h)),
            ("attention.output.dense", (h, h)),
            ("intermediate.dense", (f, h)),
            ("output.dense", (h, f)),
        ]:
            w[f"{p}.{name}.weight"] = rng.normal(0, 0.3, shape)
            w[f"{p}.{name}.bias"] = rng.normal(0, 0.1, shape[0])
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{ln}.weight"] = 1 + rng.normal(0, 0.1, h)
            w[f"{p}.{ln}.bias"] = rng.normal(0, 0.1, h)
    return {k: v.astype(np.float32) for k, v in w.items()}


def make_reviews(rng):
    rows = []
    for i in range(80):
        label = "pos" if i % 2 == 0 else "neg"
        words = GOOD if label == "pos" else BAD
        n = int(rng.integers(2, 14))
        body = [str(rng.choice(FILLER + words + words)) for _ in range(n)]
        text = " ".join(body[: n // 2]) + (" <br /><br /> " if i % 5 == 0 else "  ") + " ".join(body[n // 2 :]) + " ."
        if i % 7 == 0:
            text = text.capitalize() + " " + str(rng.choice(words)) + "s !"
        source = "a" if i % 4 else "b"
        rows.append((f"r{i:03d}", text, label, source))
    rows.append(("r900", "<br />  ", "pos", "a"))  # empty after cleaning: dropped
    rows.append(("r901", "the film is great .", "", "a"))  # missing label: dropped
    return rows


def clean(text):
    """The cleaning graft applies, for the fixture's texts (tags and whitespace only)."""
    return re.sub(r"\s+", " ", re.sub(r"<[A-Za-z/!][^>]*>", " ", text)).strip()


def write_tiny():
    TINY.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261122)
    tok, vocab_size = make_tokenizer()
    tok.save(str(TINY / "tokenizer.json"))
    weights = make_weights(vocab_size, rng)
    onnx.save(build_graph(weights, CFG, "tiny-bert"), str(TINY / "model.onnx"))
    (TINY / "tiny.yaml").write_text(
        "# A tiny random BERT for tests; made by scripts/make_fixtures.py.\n"
        "name: tiny-bert\nkind: text\nmodel: model.onnx\n"
        f"text:\n  tokenizer: tokenizer.json\n  max_length: {MAX_LENGTH}\n"
        "output: last_hidden_state\npooling: mean\nnormalize: false\n"
    )
    rows = make_reviews(rng)
    with open(TINY / "reviews.csv", "w", newline="") as f:
        import csv

        w = csv.writer(f)
        w.writerow(["id", "text", "label", "source"])
        w.writerows(rows)
    tok.no_padding()
    tok.enable_truncation(MAX_LENGTH)
    expected = {}
    for rid, text, label, _ in rows:
        text = clean(text)
        if not text or not label:
            continue
        ids = np.array([tok.encode(text).ids], np.int64)
        mask = np.ones_like(ids)
        hidden = forward(weights, CFG, ids, mask)
        expected[rid] = {
            "mean": [round(float(v), 7) for v in mean_pool(hidden[-1], mask)[0]],
            "cls": [round(float(v), 7) for v in hidden[-1][0, 0]],
            "tokens": int(ids.shape[1]),
        }
    (TINY / "expected_features.json").write_text(json.dumps(expected, indent=0) + "\n")


def write_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    SKLEARN.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = {}
    for name, classes, c in [("binary", 2, 0.5), ("multiclass", 3, 2.0)]:
        n, d = 150, 6
        centres = rng.normal(0, 1.0, (classes, d))
        y = rng.integers(0, classes, n)
        x = centres[y] + rng.normal(0, 1.2, (n, d))
        model = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(x, y)
        coef = model.coef_
        intercept = model.intercept_
        cases[name] = {
            "c": c,
            "classes": classes,
            "x": x.round(6).tolist(),
            "y": y.tolist(),
            "coef": coef.tolist(),
            "intercept": intercept.tolist(),
            "pred": model.predict(x.round(6)).tolist(),
            "proba": model.predict_proba(x.round(6)).tolist(),
        }
    (SKLEARN / "logreg.json").write_text(json.dumps(cases) + "\n")

    metrics = {}
    for name, k, n in [("random", 4, 200), ("never_predicted", 3, 60)]:
        truth = rng.integers(0, k, n)
        pred = rng.integers(0, k, n)
        if name == "never_predicted":
            pred = np.where(pred == 2, 0, pred)
        p, r, f, s = precision_recall_fscore_support(truth, pred, labels=list(range(k)), zero_division=0)
        metrics[name] = {
            "classes": k,
            "truth": truth.tolist(),
            "pred": pred.tolist(),
            "accuracy": accuracy_score(truth, pred),
            "macro_f1": f1_score(truth, pred, labels=list(range(k)), average="macro", zero_division=0),
            "precision": p.tolist(),
            "recall": r.tolist(),
            "f1": f.tolist(),
            "support": s.tolist(),
            "confusion": confusion_matrix(truth, pred, labels=list(range(k))).tolist(),
        }
    (SKLEARN / "metrics.json").write_text(json.dumps(metrics) + "\n")


if __name__ == "__main__":
    write_tiny()
    write_sklearn()
    print(f"wrote {TINY} and {SKLEARN}")
