"""Generate the small committed test fixtures (run again only to change them).

    python scripts/make_fixtures.py

tests/fixtures/tiny/      a tiny random BERT (ONNX, same graph code as the real export),
                          its WordPiece tokenizer.json, a backbone spec, a review CSV, and
                          the mean-pooled features of every row computed independently
                          (Python tokenizers + numpy forward pass)
tests/fixtures/tiny-encoders/  tiny Hugging Face folders (BERT, RoBERTa, DistilBERT, MPNet) for
                          scripts/import_encoder.py, with the features numpy computes
tests/fixtures/sklearn/   logistic-regression coefficients and classification metrics
                          computed by scikit-learn, for parity tests
"""

import csv
import io
import json
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import build_graph, forward, mean_pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny"
IMAGES = ROOT / "tests" / "fixtures" / "tiny-images"
ENCODERS = ROOT / "tests" / "fixtures" / "tiny-encoders"
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


def query0(weights, x):
    """Layer 0's query projection of the embeddings (the graph's tensor `layer0/q`)."""
    w = weights["encoder.layer.0.attention.self.query.weight"].astype(np.float64)
    b = weights["encoder.layer.0.attention.self.query.bias"].astype(np.float64)
    return x @ w.T + b


def kept_rows(rows, tok):
    """(id, token ids [1, n]) of the fixture rows graft-preprocess keeps: cleaned text and a label."""
    for rid, text, label, _ in rows:
        text = clean(text)
        if text and label:
            yield rid, np.array([tok.encode(text).ids], np.int64)


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
    for rid, ids in kept_rows(rows, tok):
        mask = np.ones_like(ids)
        hidden = forward(weights, CFG, ids, mask)
        expected[rid] = {
            "mean": [round(float(v), 7) for v in mean_pool(hidden[-1], mask)[0]],
            "mean_layer_1": [round(float(v), 7) for v in mean_pool(hidden[1], mask)[0]],
            # An intermediate tensor, not a graph output: layer 0's query projection.
            "mean_layer0_q": [round(float(v), 7) for v in mean_pool(query0(weights, hidden[0]), mask)[0]],
            "cls": [round(float(v), 7) for v in hidden[-1][0, 0]],
            "tokens": int(ids.shape[1]),
        }
    (TINY / "expected_features.json").write_text(json.dumps(expected, indent=0) + "\n")
    write_corrupt_parquet()


def write_corrupt_parquet():
    """The reviews as Parquet (pyarrow 26, 50 rows a row group), one byte changed, in three
    ways Polars' reader does not check: a footer field of the wrong thrift type (it panics
    parsing the footer), a page whose length overruns the file (it panics in a worker thread),
    and a page header counting fewer values (its `label` column comes back short)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pcsv.read_csv(TINY / "reviews.csv")
    for name, compression, at, was, now in [
        ("corrupt-footer", "snappy", 3540, 3, 10),
        ("corrupt-page", "zstd", 3063, 1, 51),
        ("short-column", "snappy", 3066, 2, 94),
    ]:
        out = io.BytesIO()
        pq.write_table(table, out, compression=compression, row_group_size=50)
        raw = bytearray(out.getvalue())
        assert raw[at] == was, f"{name}: pyarrow wrote another layout; find the byte again"
        raw[at] = now
        (TINY / f"{name}.parquet").write_bytes(bytes(raw))


def as_f32(x):
    return x.astype(np.float32).astype(np.float64)


def logreg_case(x, y, x_test, y_test, classes, c, class_weight):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, tol=1e-10, max_iter=10000, class_weight=class_weight).fit(x, y)
    weights = class_weight if not isinstance(class_weight, dict) else {str(k): v for k, v in class_weight.items()}
    return {
        "c": c,
        "classes": classes,
        "class_weight": weights,
        "x": x.tolist(),
        "y": y.tolist(),
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "x_test": x_test.tolist(),
        "y_test": y_test.tolist(),
        "pred": model.predict(x_test).tolist(),
        "proba": model.predict_proba(x_test).tolist(),
        "accuracy": float((model.predict(x_test) == y_test).mean()),
    }


def ridge_case(rng):
    from sklearn.linear_model import Ridge

    n, d, alpha = 150, 6, 3.0
    x = as_f32(rng.normal(0, 1.0, (n, d)) + rng.normal(0, 2.0, d))
    y = x @ rng.normal(0, 1.0, d) + 4.0 + rng.normal(0, 0.5, n)
    model = Ridge(alpha=alpha).fit(x, y)
    return {
        "alpha": alpha,
        "x": x.tolist(),
        "y": y.tolist(),
        "coef": model.coef_.tolist(),
        "intercept": float(model.intercept_),
        "pred": model.predict(x).tolist(),
    }


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
        # Features are float32 in graft's files: fit on values float32 holds exactly.
        x = as_f32(centres[y] + rng.normal(0, 1.2, (n, d)))
        cases[name] = logreg_case(x, y, x, y, classes, c, None)
    # Class weights, on imbalanced data with a held-out test set (own generator, so the
    # cases above and the metric fixtures below keep their draws).
    weighted = np.random.default_rng(11)
    for name, classes, c, weights, prior in [
        ("binary_balanced", 2, 1.0, "balanced", [0.85, 0.15]),
        ("multiclass_weighted", 3, 0.3, {0: 1.0, 1: 3.0, 2: 0.5}, [0.5, 0.2, 0.3]),
    ]:
        n, d = 400, 8
        centres = weighted.normal(0, 0.8, (classes, d))
        y = weighted.choice(classes, size=n, p=prior)
        x = as_f32(centres[y] + weighted.normal(0, 1.0, (n, d)))
        y_test = weighted.choice(classes, size=200, p=prior)
        x_test = as_f32(centres[y_test] + weighted.normal(0, 1.0, (200, d)))
        cases[name] = logreg_case(x, y, x_test, y_test, classes, c, weights)
    cases["ridge"] = ridge_case(np.random.default_rng(13))
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
    write_sklearn_scores()
    write_mcnemar()


def ece(truth, proba, bins=15):
    """Expected calibration error over equal-width (lo, hi] bins of the top-class confidence."""
    conf = proba.max(1)
    correct = proba.argmax(1) == truth
    b = np.clip(np.ceil(conf * bins).astype(int), 1, bins) - 1
    return float(sum(abs(correct[b == i].sum() - conf[b == i].sum()) for i in range(bins)) / len(truth))


def write_mcnemar():
    """McNemar's exact test: scipy's two-sided binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    cases = [(0, 0), (0, 5), (3, 3), (10, 25), (25, 10), (40, 60), (120, 95), (900, 1000), (1, 300)]
    rows = [[b, c, 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)] for b, c in cases]
    (SKLEARN / "mcnemar.json").write_text(json.dumps(rows) + "\n")


def write_sklearn_scores():
    """Probability and regression metrics: scikit-learn and scipy values."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import (
        average_precision_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        log_loss,
        matthews_corrcoef,
        mean_absolute_error,
        mean_squared_error,
        precision_recall_curve,
        precision_recall_fscore_support,
        r2_score,
        roc_curve,
        roc_auc_score,
        top_k_accuracy_score,
    )
    from sklearn.preprocessing import label_binarize

    rng = np.random.default_rng(11)
    cases = {}
    for name, k, n, tied in [("binary", 2, 120, False), ("binary_tied_scores", 2, 80, True), ("four_classes", 4, 300, False)]:
        truth = rng.integers(0, k, n)
        logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[truth]
        if tied:
            logits = np.round(logits, 0)  # many equal scores
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        pred = proba.argmax(1)
        labels = list(range(k))
        case = {
            "classes": k,
            "truth": truth.tolist(),
            "proba": proba.tolist(),
            "pred": pred.tolist(),
            "balanced_accuracy": balanced_accuracy_score(truth, pred),
            "mcc": matthews_corrcoef(truth, pred),
            "cohen_kappa": cohen_kappa_score(truth, pred),
            "log_loss": log_loss(truth, proba, labels=labels),
            "ece": ece(truth, proba),
        }
        for avg in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=avg, zero_division=0)
            case[avg] = [p, r, f]
        if k == 2:
            fpr, tpr, _ = roc_curve(truth, proba[:, 1], drop_intermediate=False)
            precision, recall, _ = precision_recall_curve(truth, proba[:, 1])
            case["roc_curve"] = [fpr.tolist(), tpr.tolist()]
            case["pr_curve"] = [recall.tolist(), precision.tolist()]
            case["roc_auc"] = roc_auc_score(truth, proba[:, 1])
            case["average_precision"] = average_precision_score(truth, proba[:, 1])
        else:
            case["roc_auc"] = roc_auc_score(truth, proba, multi_class="ovr", average="macro")
            case["average_precision"] = average_precision_score(label_binarize(truth, classes=labels), proba, average="macro")
            case["top_k"] = [[t, top_k_accuracy_score(truth, proba, k=t, labels=labels)] for t in range(2, k)]
        cases[name] = case

    regression = {}
    for name, tied in [("continuous", False), ("tied_ranks", True)]:
        y = rng.normal(3, 2, 90)
        pred = y + rng.normal(0, 1, 90)
        if tied:
            y, pred = np.round(y), np.round(pred)
        regression[name] = {
            "y": y.tolist(),
            "pred": pred.tolist(),
            "mse": mean_squared_error(y, pred),
            "mae": mean_absolute_error(y, pred),
            "r2": r2_score(y, pred),
            "pearson": float(pearsonr(y, pred)[0]),
            "spearman": float(spearmanr(y, pred)[0]),
        }
    (SKLEARN / "scores.json").write_text(json.dumps({"classification": cases, "regression": regression}) + "\n")


def write_png(path, rgb):
    """A minimal 8-bit RGB or RGBA PNG, or 16-bit RGB from uint16 values (no PIL here)."""
    h, w, channels = rgb.shape
    depth = 16 if rgb.dtype == np.uint16 else 8
    raw = b"".join(b"\x00" + rgb[y].astype(">u2" if depth == 16 else np.uint8).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, depth, {3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cnn_features(weight, bias, rgb, mean, std):
    """The tiny CNN in numpy: normalise, 3x3 convolution (padding 1), ReLU, global average."""
    x = (rgb.astype(np.float64).transpose(2, 0, 1) / 255.0 - mean[:, None, None]) / std[:, None, None]
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((weight.shape[0], h, w))
    for o in range(weight.shape[0]):
        for i in range(h):
            for j in range(w):
                out[o, i, j] = (padded[:, i:i + 3, j:j + 3] * weight[o]).sum() + bias[o]
    return np.maximum(out, 0).mean(axis=(1, 2))


def write_tiny_images():
    """A tiny CNN (conv 3x3 -> ReLU -> global average pool), a folder of 8x8 PNGs per class
    with one unreadable file, a CSV of grey pixel rows, and the features numpy computes."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(21)
    IMAGES.mkdir(parents=True, exist_ok=True)
    weight = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feature_map"]),
        helper.make_node("GlobalAveragePool", ["feature_map"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("feature_map", TensorProto.FLOAT, ["batch", 4, 8, 8]),
        ],
        [onnx.numpy_helper.from_array(weight, "w"), onnx.numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="graft-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, IMAGES / "cnn.onnx")
    # The same network for channels-last input, as TensorFlow exports take it.
    nhwc_graph = helper.make_graph(
        [helper.make_node("Transpose", ["image_nhwc"], ["image"], perm=[0, 3, 1, 2])] + nodes,
        "tiny-cnn-nhwc",
        [helper.make_tensor_value_info("image_nhwc", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 4])],
        [onnx.numpy_helper.from_array(weight, "w"), onnx.numpy_helper.from_array(bias, "b")],
    )
    nhwc = helper.make_model(nhwc_graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="graft-fixtures")
    nhwc.ir_version = 8
    onnx.checker.check_model(nhwc)
    onnx.save(nhwc, IMAGES / "cnn-nhwc.onnx")
    (IMAGES / "tiny-cnn-nhwc.yaml").write_text(
        "# The tiny CNN taking channels-last input; made by scripts/make_fixtures.py.\nname: tiny-cnn-nhwc\nkind: image\n"
        "model: cnn-nhwc.onnx\nimage:\n  input: image_nhwc\n  size: 8\n  resize: 8\n  mean: [0.5, 0.5, 0.5]\n"
        "  std: [0.25, 0.25, 0.25]\n  layout: nhwc\noutput: embedding\npooling: none\nnormalize: false\n"
    )
    mean, std = np.array([0.5, 0.5, 0.5]), np.array([0.25, 0.25, 0.25])
    (IMAGES / "tiny-cnn.yaml").write_text(
        "# A tiny random CNN for tests; made by scripts/make_fixtures.py.\nname: tiny-cnn\nkind: image\nmodel: cnn.onnx\n"
        "image:\n  input: image\n  size: 8\n  resize: 8\n  mean: [0.5, 0.5, 0.5]\n  std: [0.25, 0.25, 0.25]\n"
        "output: embedding\npooling: none\nnormalize: false\n"
    )
    expected = {}
    for label, channel in [("cat", 0), ("dog", 2)]:
        folder = IMAGES / "folder" / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(10):
            rgb = rng.integers(0, 120, (8, 8, 3)).astype(np.uint8)
            rgb[:, :, channel] += rng.integers(100, 135, (8, 8)).astype(np.uint8)
            write_png(folder / f"{i:02d}.png", rgb)
            expected[f"{label}/{i:02d}.png"] = [round(float(v), 7) for v in cnn_features(weight, bias, rgb, mean, std)]
    (IMAGES / "folder" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    write_archives(IMAGES / "folder")
    rows = []
    for i in range(12):
        label = i % 2
        grey = rng.integers(0, 256, (8, 8)).astype(np.uint8)
        if label:
            grey[:4] = 255 - grey[:4] // 4
        rows.append([label] + grey.ravel().tolist())
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        expected[f"row/{i}"] = [round(float(v), 7) for v in cnn_features(weight, bias, rgb, mean, std)]
    header = ["label"] + [f"p{k}" for k in range(64)]
    (IMAGES / "pixels.csv").write_text("\n".join(",".join(map(str, r)) for r in [header] + rows) + "\n")
    expected.update(write_odd_images(weight, bias, mean, std, rng))
    write_hostile_jpeg()
    (IMAGES / "expected_features.json").write_text(json.dumps(expected, indent=0) + "\n")


def write_tiny_effnet():
    """EfficientNet-Lite0's graph (scripts/export_efficientnet.py) with random weights and
    tiny widths at 96 x 96 (a 3 x 3 last map), for `graft-finetune layers` on image blocks;
    checked against the numpy forward pass."""
    from export_efficientnet import STAGES, build, forward_numpy

    rng = np.random.default_rng(31)
    sd = {}

    def conv(name, out, inp, k, bn):
        sd[name + ".weight"] = rng.normal(0, (2.0 / (inp * k * k)) ** 0.5, (out, inp, k, k)).astype(np.float32)
        sd[bn + ".weight"] = rng.uniform(0.8, 1.2, out).astype(np.float32)
        sd[bn + ".bias"] = rng.normal(0, 0.1, out).astype(np.float32)
        sd[bn + ".running_mean"] = rng.normal(0, 0.1, out).astype(np.float32)
        sd[bn + ".running_var"] = rng.uniform(0.5, 1.5, out).astype(np.float32)

    widths, kernels = [4, 6, 6, 8, 8, 10, 12], [3, 3, 5, 3, 5, 5, 3]
    conv("_conv_stem", 4, 3, 3, "_bn0")
    block, inp = 0, 4
    for (repeats, _), out, k in zip(STAGES, widths, kernels):
        for _ in range(repeats):
            p = f"_blocks.{block}"
            expanded = inp if block == 0 else 2 * inp
            if block:
                conv(p + "._expand_conv", expanded, inp, 1, p + "._bn0")
            conv(p + "._depthwise_conv", expanded, 1, k, p + "._bn1")
            conv(p + "._project_conv", out, expanded, 1, p + "._bn2")
            block, inp = block + 1, out
    conv("_conv_head", 16, inp, 1, "_bn1")
    sd["_fc.weight"] = rng.normal(0, 0.3, (3, 16)).astype(np.float32)
    sd["_fc.bias"] = np.zeros(3, np.float32)
    model = build(sd, size=96, name="tiny-effnet")
    onnx.save(model, IMAGES / "effnet.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(IMAGES / "effnet.onnx"), providers=["CPUExecutionProvider"])
    image = rng.normal(0, 1, (1, 3, 96, 96)).astype(np.float32)
    (features,) = session.run(["features"], {"image": image})
    diff = np.abs(features[0] - forward_numpy(sd, image[0])[0]).max()
    assert diff < 1e-4, diff
    (IMAGES / "tiny-effnet.yaml").write_text(
        "# EfficientNet-Lite0's graph with random weights and tiny widths; made by scripts/make_fixtures.py.\n"
        "name: tiny-effnet\nkind: image\nmodel: effnet.onnx\nimage:\n  input: image\n  size: 96\n  resize: 96\n"
        "  mean: [0.5, 0.5, 0.5]\n  std: [0.25, 0.25, 0.25]\noutput: features\npooling: none\nnormalize: false\n"
    )


def write_archives(folder):
    """The folder's class subfolders as folder.zip and folder.tar.gz, byte for byte the same on
    every run (fixed times, sorted names)."""
    import gzip
    import tarfile
    import zipfile

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(folder.parent / "folder.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.writestr(zipfile.ZipInfo(str(p.relative_to(folder)), date_time=(2020, 1, 1, 0, 0, 0)), p.read_bytes())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for p in files:
            info = tarfile.TarInfo(str(p.relative_to(folder)))
            info.size, info.mtime = p.stat().st_size, 0
            t.addfile(info, io.BytesIO(p.read_bytes()))
    with open(folder.parent / "folder.tar.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())


def write_odd_images(weight, bias, mean, std, rng):
    """Images that real folders hold and decoders trip on, in `odd/`: an alpha channel, 16
    bits a channel, a single pixel, CMYK JPEG, a truncated JPEG, a decompression bomb. Returns numpy's features of
    those with an exact RGB reading: alpha dropped (as Pillow's convert("RGB")), 16-bit
    values rounded to 8 bits (v / 257), one pixel resized to a constant image, CMYK as
    Pillow converts it to RGB."""
    from PIL import Image

    odd = IMAGES / "odd"
    odd.mkdir(parents=True, exist_ok=True)
    expected = {}
    rgba = rng.integers(0, 256, (8, 8, 4)).astype(np.uint8)
    write_png(odd / "alpha.png", rgba)
    expected["odd/alpha.png"] = cnn_features(weight, bias, rgba[:, :, :3], mean, std)
    deep = (rng.integers(0, 256, (8, 8, 3)) * 257).astype(np.uint16)
    write_png(odd / "deep.png", deep)
    expected["odd/deep.png"] = cnn_features(weight, bias, (deep // 257).astype(np.uint8), mean, std)
    dot = np.array([[[200, 30, 90]]], np.uint8)
    write_png(odd / "dot.png", dot)
    expected["odd/dot.png"] = cnn_features(weight, bias, np.broadcast_to(dot, (8, 8, 3)), mean, std)
    Image.new("CMYK", (8, 8), (0, 200, 200, 0)).save(odd / "cmyk.jpg", quality=95)
    cmyk = np.asarray(Image.open(odd / "cmyk.jpg").convert("RGB"))
    expected["odd/cmyk.jpg"] = cnn_features(weight, bias, cmyk, mean, std)
    # A complete PNG whose header claims 40,000 x 40,000 pixels (4.8 GB decoded): a bomb.
    write_png(odd / "huge.png", np.zeros((1, 1, 3), np.uint8))
    raw = bytearray((odd / "huge.png").read_bytes())
    raw[16:24] = struct.pack(">II", 40000, 40000)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    (odd / "huge.png").write_bytes(bytes(raw))
    rgb = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(odd / "whole.jpg", quality=90)
    whole = (odd / "whole.jpg").read_bytes()
    (odd / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (odd / "whole.jpg").unlink()
    return {k: [round(float(x), 7) for x in v] for k, v in expected.items()}


def write_hostile_jpeg():
    """`hostile.jpg`: a whole progressive 16 x 16 JPEG whose frame header then claims chroma
    sampling factors its scans do not have (2x2, 4x2, 2x1). Its header and end are sound,
    so graft-preprocess takes it; decoding it trips an assertion inside the JPEG decoder."""
    from PIL import Image

    pixels = (np.add.outer(np.arange(16) * 5, np.arange(16) * 7)[:, :, None] + np.array([0, 50, 100])).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", progressive=True, subsampling=2, quality=80)
    raw = bytearray(out.getvalue())
    frame = raw.index(b"\xff\xc2")  # SOF2: length, precision, height, width, components
    assert raw[frame + 9] == 3
    for k, sampling in enumerate((0x22, 0x42, 0x21)):
        raw[frame + 11 + 3 * k] = sampling
    (IMAGES / "hostile.jpg").write_bytes(bytes(raw))


def renamed_layers(weights, prefix, modules):
    """BERT-named weights with each layer's modules renamed by `modules`, under `prefix`."""
    named = {}
    for k, v in weights.items():
        if k.startswith("encoder.layer."):
            _, _, i, rest = k.split(".", 3)
            module, param = rest.rsplit(".", 1)
            k = f"{prefix}.{i}.{modules.get(module, module)}.{param}"
        named[k] = v
    return named


def write_tiny_encoders():
    """Tiny Hugging Face folders of BERT, RoBERTa, DistilBERT and MPNet (each architecture's own
    tensor names, written here independently of the importer's renaming) with
    sentence-transformers modules, and the features numpy computes for the fixture reviews:
    BERT and MPNet mean-pooled and normalised, RoBERTa CLS, DistilBERT max."""
    from safetensors.numpy import save_file

    tok, vocab_size = make_tokenizer()
    rows = [r for r in csv.reader(open(TINY / "reviews.csv"))][1:]
    tok.no_padding()
    tok.enable_truncation(MAX_LENGTH)
    distil = {"attention.self.query": "attention.q_lin", "attention.self.key": "attention.k_lin",
              "attention.self.value": "attention.v_lin", "attention.output.dense": "attention.out_lin",
              "attention.output.LayerNorm": "sa_layer_norm", "intermediate.dense": "ffn.lin1",
              "output.dense": "ffn.lin2", "output.LayerNorm": "output_layer_norm"}
    mpnet = {"attention.self.query": "attention.attn.q", "attention.self.key": "attention.attn.k",
             "attention.self.value": "attention.attn.v", "attention.output.dense": "attention.attn.o",
             "attention.output.LayerNorm": "attention.LayerNorm"}
    archs = [("bert", "mean", True), ("roberta", "cls", False), ("distilbert", "max", False), ("mpnet", "mean", True)]
    for seed, (arch, pooling, normalize) in enumerate(archs):
        out = ENCODERS / arch
        (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
        weights = make_weights(vocab_size, np.random.default_rng(100 + seed))
        cfg = dict(CFG, token_types=arch == "bert", position_offset=0 if arch in ("roberta", "mpnet") else None)
        if arch == "mpnet":
            del weights["embeddings.token_type_embeddings.weight"]
            weights["encoder.relative_attention_bias.weight"] = np.random.default_rng(7).normal(0, 0.5, (32, CFG["num_attention_heads"])).astype(np.float32)
            cfg["relative_attention_buckets"] = 32
            named = renamed_layers(weights, "encoder.layer", mpnet)
            config = dict(CFG, model_type="mpnet", hidden_act="gelu", pad_token_id=0, relative_attention_num_buckets=32)
            del config["type_vocab_size"]
        elif arch == "distilbert":
            del weights["embeddings.token_type_embeddings.weight"]
            named = renamed_layers(weights, "transformer.layer", distil)
            config = {"model_type": "distilbert", "dim": CFG["hidden_size"], "n_heads": CFG["num_attention_heads"],
                      "n_layers": CFG["num_hidden_layers"], "hidden_dim": CFG["intermediate_size"],
                      "max_position_embeddings": CFG["max_position_embeddings"], "activation": "gelu", "pad_token_id": 0}
        else:
            if arch == "roberta":
                weights["embeddings.token_type_embeddings.weight"] = weights["embeddings.token_type_embeddings.weight"][:1]
            prefix = "roberta." if arch == "roberta" else ""
            named = {prefix + k: v for k, v in weights.items()}
            config = dict({k: v for k, v in CFG.items()}, model_type=arch, hidden_act="gelu", pad_token_id=0,
                          type_vocab_size=2 if arch == "bert" else 1)
        save_file({k: np.ascontiguousarray(v) for k, v in named.items()}, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        tok.save(str(out / "tokenizer.json"))
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (out / "modules.json").write_text(json.dumps(modules, indent=1) + "\n")
        (out / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": CFG["hidden_size"], "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_cls_token": pooling == "cls", "pooling_mode_max_tokens": pooling == "max"}, indent=1) + "\n")
        expected = {}
        for rid, ids in kept_rows(rows, tok):
            mask = np.ones_like(ids)
            last = forward(weights, cfg, ids, mask)[-1][0]
            v = {"mean": last.mean(0), "cls": last[0], "max": last.max(0)}[pooling]
            if normalize:
                v = v / np.linalg.norm(v)
            expected[rid] = [round(float(x), 7) for x in v]
        (out / "expected_features.json").write_text(json.dumps(expected, indent=0) + "\n")


if __name__ == "__main__":
    if "--sklearn-only" not in sys.argv:
        write_tiny()
        write_tiny_encoders()
        write_tiny_images()
        write_tiny_effnet()
    write_sklearn()
    print(f"wrote {SKLEARN}" if "--sklearn-only" in sys.argv else f"wrote {TINY}, {IMAGES} and {SKLEARN}")
