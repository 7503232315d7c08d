"""int8 quantisation of a BERT-family ONNX model, calibrated on a sample of the user's text.

    python scripts/quantize.py MODEL.onnx OUT.onnx --calibrate train.arrow
    python scripts/quantize.py MODEL.onnx OUT.onnx --calibrate reviews.csv --text-column text \
        --tokenizer tokenizer.json [--filter source=rotten_tomatoes]

MatMul weights become int8 per output channel and activations are quantised per batch at run
time (onnxruntime's dynamic quantisation, MatMulInteger: VNNI on CPUs that have it). A
per-batch int8 range is spoilt by the few activation channels that are 10-30x larger than the
rest (the LayerNorm outputs feeding the feed-forward layer, the GELU outputs), so before
quantising, each MatMul's input is smoothed (SmoothQuant, Xiao et al. 2023): channel j of the
activation is divided by s_j and row j of the weight multiplied by it, which leaves the float
result unchanged. s_j = max|X_j|^a / max|W_j|^(1-a), with a chosen per MatMul from a grid by
the error of the simulated int8 product on the calibration sample, each row weighted the same
(short rows, whose mean is over few tokens, lose most); a = none: no smoothing. The scale is
folded into the value projection for the attention output and is a Mul node elsewhere
(LayerNorm outputs also feed the residual path or are declared hidden states, so they stay as
they are). The `--keep-float` MatMul inputs with the largest remaining error stay float32.

Calibration reads `--rows` rows (at most `--tokens` tokens) spread evenly over a graft split
(an Arrow file with `input_ids`, from graft-preprocess) or a CSV tokenised with `--tokenizer`,
batched like graft-backbone (sorted by length, at most `--batch-tokens` padded tokens). Every
graph output (each hidden state) is kept. `--smooth-only` writes the smoothed float32 model
instead, which computes the same function as MODEL (the tests check it). A summary of the
choices goes to stderr.
"""

import argparse
import csv
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from bert_onnx import padded_feed  # noqa: E402

ALPHAS = (None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def spread(items, n):
    """At most `n` of `items`, evenly spaced from the first."""
    return items[:: max(1, len(items) // n)][:n]


def read_rows(args):
    """Token-id rows for calibration: `--rows` of them, evenly spread over the file."""
    path = args.calibrate
    if not path.is_file():
        fail(f"{path}: calibration file not found")
    if path.suffix == ".arrow":
        import pyarrow as pa
        import pyarrow.ipc as ipc

        try:
            table = ipc.open_file(str(path)).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            fail(f"{path}: not an Arrow IPC file ({e})")
        ids_type = table.schema.field("input_ids").type if "input_ids" in table.column_names else None
        if ids_type is None or not pa.types.is_list(ids_type) or not pa.types.is_integer(ids_type.value_type):
            fail(f"{path}: no `input_ids` column of token-id lists (found {', '.join(table.column_names)}); "
                 "expected a text split from graft-preprocess")
        rows = spread([r for r in table.column("input_ids").to_pylist() if r], args.rows)
    else:
        if not args.tokenizer:
            fail(f"{path}: a CSV needs --tokenizer (tokenizer.json) and --text-column")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.tokenizer))
        tok.no_padding()
        tok.enable_truncation(args.max_length)
        key, _, value = (args.filter or "").partition("=")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            for column in [args.text_column] + ([key] if key else []):
                if column not in (reader.fieldnames or []):
                    fail(f"{path}: no column `{column}` (found {', '.join(reader.fieldnames or [])})")
            texts = [r[args.text_column] for r in reader if not key or r[key] == value]
        rows = [e.ids for e in tok.encode_batch(spread(texts, args.rows))]
    if not rows:
        fail(f"{path}: no calibration rows")
    total = sum(map(len, rows))
    if total > args.tokens:
        rows = rows[:: -(-total // args.tokens)]
    return rows


def batches(rows, batch_tokens):
    """Length-sorted batches of at most `batch_tokens` padded tokens, as graft-backbone makes."""
    out, current = [], []
    for row in sorted(rows, key=len):
        if current and (len(current) + 1) * len(row) > batch_tokens:
            out.append(current)
            current = []
        current.append(row)
    return out + [current]


def weighted_matmuls(model):
    """MatMuls whose second input is an initializer, grouped by their (shared) activation."""
    inits = {i.name for i in model.graph.initializer}
    groups = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def collect(model, groups, rows, batch_tokens):
    """Runs the float model on the calibration batches and returns, per activation, a list of
    (activations [tokens, channels], token weights) per batch: 1/length for a row's tokens, so
    that every row counts the same (short rows, whose mean is over few tokens, lose most to
    int8), and 0 for padding."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # no uploader, no device id written
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    declared = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in groups if n not in declared)
    inputs = {i.name for i in model.graph.input}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(groups)
    acts = {n: [] for n in names}
    for batch in batches(rows, batch_tokens):
        feed, mask = padded_feed(batch, inputs)
        outs = session.run(names, feed)
        weight = (mask / mask.sum(1, keepdims=True)).reshape(-1)
        for name, out in zip(names, outs):
            acts[name].append((out.reshape(-1, out.shape[-1]), weight))
    return acts


def fake_int8_activation(x):
    """onnxruntime's DynamicQuantizeLinear and back: uint8, one range per tensor (batch)."""
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (hi - lo) / 255 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def fake_int8_weight(w):
    """Symmetric int8 per output channel (column), as quantize_dynamic stores MatMul weights."""
    scale = np.abs(w).max(0, keepdims=True) / 127
    scale[scale == 0] = 1
    return np.round(w / scale) * scale


def relative_error(acts, weights, s):
    """Weighted squared error of the int8 product of X / s and s W over that of the float one."""
    num = den = 0.0
    quantised = [fake_int8_weight(w * s[:, None]) for w in weights]
    for x, weight in acts:
        real = weight > 0
        xq = fake_int8_activation(x / s)[real]
        for w, q in zip(weights, quantised):
            ref = x[real] @ w
            num += float((((xq @ q - ref) ** 2).sum(1) * weight[real]).sum())
            den += float(((ref**2).sum(1) * weight[real]).sum())
    return num / max(den, 1e-30)


def choose_scales(model, groups, acts):
    """Per activation: (alpha, scale vector, error) of the alpha with the smallest error."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    chosen = {}
    for act, nodes in groups.items():
        weights = [inits[n.input[1]].astype(np.float64) for n in nodes]
        amax = np.max([np.abs(x[w > 0]).max(0) if (w > 0).any() else np.zeros(x.shape[1]) for x, w in acts[act]], 0)
        wmax = np.max([np.abs(w).max(1) for w in weights], 0)
        best = None
        for alpha in ALPHAS:
            if alpha is None:
                s = np.ones_like(amax)
            else:
                s = np.clip(np.maximum(amax, 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha), 1e-3, 1e3)
            error = relative_error(acts[act], weights, s)
            if best is None or error < best[2]:
                best = (alpha, s, error)
        chosen[act] = best
    return chosen


def value_projection(model, act):
    """For an attention context `act` (softmax(QK) @ V, heads merged by Reshape/Transpose),
    the MatMul and bias Add that make V, whose output channels are the context's channels;
    None where the graph has another shape."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}

    def through_layout(name):
        node = producers.get(name)
        while node is not None and node.op_type in ("Reshape", "Transpose"):
            node = producers.get(node.input[0])
        return node

    attention = through_layout(act)
    if attention is None or attention.op_type != "MatMul" or attention.input[1] in inits:
        return None
    add = through_layout(attention.input[1])
    if add is None or add.op_type != "Add" or add.input[1] not in inits:
        return None
    matmul = producers.get(add.input[0])
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in inits:
        return None
    return matmul, add


def smooth(model, groups, chosen):
    """Rewrites `model` in place so each smoothed activation is divided by its scale and the
    rows of the MatMul weights it feeds multiplied by it."""
    inits = {i.name: i for i in model.graph.initializer}

    def get(name):
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    def put(name, value):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    uses = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    insert_after = {}
    for act, nodes in groups.items():
        alpha, s, _ = chosen[act]
        if alpha is None:
            continue
        for n in nodes:
            put(n.input[1], get(n.input[1]) * s[:, None])
        v = value_projection(model, act)
        if v is not None and all(uses[n.input[1]] == 1 for n in v):
            put(v[0].input[1], get(v[0].input[1]) / s[None, :])
            put(v[1].input[1], get(v[1].input[1]) / s)
            continue
        scale = act + "/smooth_scale"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), scale))
        out = act + "/smoothed"
        insert_after[act] = helper.make_node("Mul", [act, scale], [out], name=out)
        for n in nodes:
            n.input[0] = out
    ordered = []
    for n in model.graph.node:
        ordered.append(n)
        ordered.extend(insert_after[o] for o in n.output if o in insert_after)
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--calibrate", type=Path, required=True, help="graft split (.arrow) or CSV of text")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer.json, for a CSV")
    ap.add_argument("--text-column", default="text", help="the CSV's text column")
    ap.add_argument("--filter", help="COLUMN=VALUE: only CSV rows where COLUMN is VALUE")
    ap.add_argument("--max-length", type=int, default=256, help="truncation of CSV text, in tokens")
    ap.add_argument("--rows", type=int, default=256, help="calibration rows")
    ap.add_argument("--tokens", type=int, default=32768, help="at most this many calibration tokens (memory)")
    ap.add_argument("--batch-tokens", type=int, default=512, help="padded tokens per calibration batch")
    ap.add_argument("--keep-float", type=int, default=3, help="MatMuls with the largest int8 error left in float32")
    ap.add_argument("--smooth-only", action="store_true", help="write the smoothed float32 model, not int8")
    args = ap.parse_args()
    try:
        model = onnx.load(str(args.model))
    except Exception as e:  # noqa: BLE001 (onnx raises several kinds for a bad file)
        fail(f"{args.model}: not an ONNX model ({e})")
    groups = weighted_matmuls(model)
    if not groups:
        fail(f"{args.model}: no MatMul with a weight initializer to quantise")
    rows = read_rows(args)
    acts = collect(model, groups, rows, args.batch_tokens)
    chosen = choose_scales(model, groups, acts)
    smooth(model, groups, chosen)
    worst = sorted(groups, key=lambda a: -chosen[a][2])[: args.keep_float]
    kept = [n.name for a in worst for n in groups[a]]
    for act in groups:
        alpha, _, error = chosen[act]
        note = "  (float32)" if act in worst else ""
        print(f"{act:<28} alpha {alpha if alpha is not None else '-':<4} int8 relative error {error:.1e}{note}", file=sys.stderr)
    print(f"calibrated on {len(rows)} rows of {args.calibrate}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    if args.smooth_only:
        onnx.save(model, str(partial))
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process
        with tempfile.TemporaryDirectory() as tmp:
            smoothed = Path(tmp) / "smoothed.onnx"
            onnx.save(model, str(smoothed))
            quantize_dynamic(
                str(smoothed), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["MatMul"], nodes_to_exclude=kept,
            )
    partial.replace(args.out)


if __name__ == "__main__":
    main()
