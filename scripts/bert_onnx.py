"""Write a BERT-family encoder as an ONNX graph from its weights, and run the same model in numpy.

No torch: the graph is built node by node with `onnx.helper`, and `forward` is an
independent numpy implementation used to check the graph. Every encoder layer's output
is a named tensor `hidden_state_{i}` (0 = embeddings), so any layer can be transferred;
`last_hidden_state` is the declared output. `as_bert` renames RoBERTa / XLM-R and DistilBERT
weights to BERT's names and records what differs: position ids offset by the padding index
(RoBERTa), no token types (RoBERTa, DistilBERT).
"""

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet")
_PREFIXES = ("bert.", "roberta.", "distilbert.", "model.")
_DISTILBERT = {
    "attention.q_lin": "attention.self.query",
    "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value",
    "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm",
    "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense",
    "output_layer_norm": "output.LayerNorm",
}
_MPNET = {
    "attention.attn.q": "attention.self.query",
    "attention.attn.k": "attention.self.key",
    "attention.attn.v": "attention.self.value",
    "attention.attn.o": "attention.output.dense",
    "attention.LayerNorm": "attention.output.LayerNorm",
}
# DistilBERT's config keys for BERT's.
_DISTILBERT_KEYS = {"dim": "hidden_size", "n_heads": "num_attention_heads", "n_layers": "num_hidden_layers", "hidden_dim": "intermediate_size"}
# Per architecture: where its layers' tensors live, and its module names to BERT's.
_LAYER_MODULES = {"distilbert": ("transformer.layer.", _DISTILBERT), "mpnet": ("encoder.layer.", _MPNET)}
RELATIVE_BIAS = "encoder.relative_attention_bias.weight"


class NotImportable(Exception):
    """A model folder that cannot be imported; the message names the file or tensor."""


def as_bert(weights, cfg):
    """(weights under BERT's names, BERT's config keys plus `token_types` and
    `position_offset`) for a Hugging Face config.json and its safetensors weights."""
    kind = cfg.get("model_type")
    if kind not in ARCHITECTURES:
        raise NotImportable(f"config.json: model_type `{kind}` is not supported (supported: {', '.join(ARCHITECTURES)})")
    w = {}
    for name, value in weights.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if name.startswith(("pooler.", "lm_head.", "classifier.", "vocab_")) or name.endswith("position_ids"):
            continue
        layers, modules = _LAYER_MODULES.get(kind, ("encoder.layer.", {}))
        if name.startswith(layers):
            i, rest = name[len(layers) :].split(".", 1)
            module, param = rest.rsplit(".", 1)
            name = f"encoder.layer.{i}.{modules.get(module, module)}.{param}"
        w[name] = value
    activation, keys = ("activation", _DISTILBERT_KEYS) if kind == "distilbert" else ("hidden_act", {k: k for k in _DISTILBERT_KEYS.values()})
    if cfg.get(activation, "gelu") != "gelu":
        raise NotImportable(f"config.json: {activation} `{cfg[activation]}` is not supported (gelu)")
    bad = [k for k in keys if not isinstance(cfg.get(k), int) or isinstance(cfg.get(k), bool) or cfg[k] <= 0]
    if bad:
        raise NotImportable(f"config.json: {', '.join(bad)} must be positive integers")
    c = {bert_key: cfg[k] for k, bert_key in keys.items()}
    c["layer_norm_eps"] = 1e-12 if kind == "distilbert" else float(cfg.get("layer_norm_eps", 1e-12))
    c["token_types"] = kind == "bert" and "embeddings.token_type_embeddings.weight" in w
    pad = cfg.get("pad_token_id", 1)
    if not isinstance(pad, int) or pad < 0:
        raise NotImportable(f"config.json: pad_token_id `{pad}` is not a token id")
    c["position_offset"] = pad if kind in ("roberta", "xlm-roberta", "mpnet") else None
    if kind == "mpnet":
        c["relative_attention_buckets"] = int(cfg.get("relative_attention_num_buckets", 32))
        if RELATIVE_BIAS not in w:
            raise NotImportable(f"model.safetensors: no tensor `{RELATIVE_BIAS}`")
        want = (c["relative_attention_buckets"], c["num_attention_heads"])
        if tuple(w[RELATIVE_BIAS].shape) != want:
            raise NotImportable(f"model.safetensors: `{RELATIVE_BIAS}` has shape {list(w[RELATIVE_BIAS].shape)}, config.json implies {list(want)}")
    c["max_position_embeddings"] = w.get("embeddings.position_embeddings.weight", np.zeros((512, 0))).shape[0]
    _check_shapes(w, c)
    return w, c


def relative_position_bucket(relative, buckets=32, max_distance=128):
    """MPNet's (and T5's bidirectional) bucket of each key-minus-query distance, computed in
    float32 as the reference implementation does."""
    half = buckets // 2
    n = -relative
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_distance / exact))
    large = exact + (scaled * np.float32(half - exact)).astype(np.int64)
    return bucket + np.where(n < exact, n, np.minimum(large, half - 1))


def relative_bias_by_distance(w, cfg):
    """[2P - 1, heads]: row d + P - 1 is the attention bias of key-minus-query distance d, for
    P = max_position_embeddings."""
    p = cfg["max_position_embeddings"]
    return w[RELATIVE_BIAS][relative_position_bucket(np.arange(-(p - 1), p), cfg["relative_attention_buckets"])]


def _check_shapes(w, c):
    h, f = c["hidden_size"], c["intermediate_size"]
    if h % c["num_attention_heads"]:
        raise NotImportable(f"config.json: hidden size {h} is not a multiple of {c['num_attention_heads']} heads")
    expected = {"embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)), ("attention.self.value", (h, h)),
                            ("attention.output.dense", (h, h)), ("intermediate.dense", (f, h)), ("output.dense", (h, f))]:
            expected[f"{p}.{name}.weight"] = shape
            expected[f"{p}.{name}.bias"] = shape[:1]
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[f"{p}.{ln}.weight"] = (h,)
            expected[f"{p}.{ln}.bias"] = (h,)
    for name in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"):
        if name not in w:
            raise NotImportable(f"model.safetensors: no tensor `{name}`")
        if w[name].ndim != 2 or w[name].shape[1] != h:
            raise NotImportable(f"model.safetensors: `{name}` has shape {list(w[name].shape)}, expected [*, {h}] (hidden_size)")
    for name, shape in expected.items():
        if name not in w:
            raise NotImportable(f"model.safetensors: no tensor `{name}`")
        if tuple(w[name].shape) != shape:
            raise NotImportable(f"model.safetensors: `{name}` has shape {list(w[name].shape)}, config.json implies {list(shape)}")


def _lin(w, prefix):
    return w[prefix + ".weight"].T.astype(np.float32), w[prefix + ".bias"].astype(np.float32)


def build_graph(w, cfg, name="bert"):
    """Return an onnx.ModelProto for weights `w` (HF BertModel names) and config `cfg`."""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x, prefix, out):
        wt, b = _lin(w, prefix)
        mm = node("MatMul", [x, const(prefix + ".weight_t", wt)], out + "/matmul")
        return node("Add", [mm, const(prefix + ".bias", b)], out)

    def layer_norm(x, prefix, out):
        g = const(prefix + ".weight", w[prefix + ".weight"].astype(np.float32))
        b = const(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    e = "embeddings"
    word = node("Gather", [const(e + ".word", w[e + ".word_embeddings.weight"].astype(np.float32)), "input_ids"], "emb/word")
    offset = cfg.get("position_offset")
    if offset is None:
        seq_shape = node("Shape", ["input_ids"], "emb/shape")
        seq_len = node("Gather", [seq_shape, const("one_i64", np.array(1, np.int64))], "emb/seq_len")
        positions = node("Range", [const("zero_i64", np.array(0, np.int64)), seq_len, "one_i64"], "emb/positions")
    else:
        # RoBERTa: the padding index plus the count of real tokens so far; padding gets the index itself.
        counted = node("CumSum", ["attention_mask", const("seq_axis", np.array(1, np.int64))], "emb/counted")
        real = node("Mul", [counted, "attention_mask"], "emb/counted_real")
        positions = node("Add", [real, const("position_offset", np.array(offset, np.int64))], "emb/positions")
    pos = node("Gather", [const(e + ".position", w[e + ".position_embeddings.weight"].astype(np.float32)), positions], "emb/pos")
    s2 = node("Add", [word, pos], "emb/sum1")
    types = w.get(e + ".token_type_embeddings.weight")
    if cfg.get("token_types", True):
        tok = node("Gather", [const(e + ".token_type", types.astype(np.float32)), "token_type_ids"], "emb/type")
        s2 = node("Add", [s2, tok], "emb/sum2")
    elif types is not None:
        s2 = node("Add", [s2, const(e + ".token_type_0", types[0].astype(np.float32))], "emb/sum2")
    x = layer_norm(s2, e + ".LayerNorm", "hidden_state_0")

    mask_f = node("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    mask_4d = node("Unsqueeze", [mask_f, const("mask_axes", np.array([1, 2], np.int64))], "mask/4d")
    inv = node("Sub", [const("one_f", np.array(1.0, np.float32)), mask_4d], "mask/inv")
    bias = node("Mul", [inv, const("neg_big", np.array(np.finfo(np.float32).min, np.float32))], "mask/bias")
    split_shape = const("split_heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge_heads_shape", np.array([0, 0, hidden], np.int64))
    scale = const("attn_scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = "one_f"
    half = const("half_f", np.array(0.5, np.float32))

    if RELATIVE_BIAS in w:
        # The bias of each (query, key) pair from a table by distance: index k - q + P - 1.
        p_max = cfg["max_position_embeddings"]
        table = const("relative_bias_by_distance", relative_bias_by_distance(w, cfg).astype(np.float32))
        rel_one = const("rel_one", np.array(1, np.int64))
        seq_len = node("Gather", [node("Shape", ["input_ids"], "rel/shape"), rel_one], "rel/seq_len")
        steps = node("Range", [const("rel_zero", np.array(0, np.int64)), seq_len, rel_one], "rel/steps")
        keys = node("Unsqueeze", [steps, const("rel_axis0", np.array([0], np.int64))], "rel/keys")
        queries = node("Unsqueeze", [steps, const("rel_axis1", np.array([1], np.int64))], "rel/queries")
        distance = node("Sub", [keys, queries], "rel/distance")
        index = node("Add", [distance, const("rel_offset", np.array(p_max - 1, np.int64))], "rel/index")
        by_pair = node("Gather", [table, index], "rel/by_pair")
        heads_first = node("Transpose", [by_pair], "rel/heads_first", perm=[2, 0, 1])
        position_bias = node("Unsqueeze", [heads_first, const("rel_axis_batch", np.array([0], np.int64))], "rel/bias")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        t = f"layer{i}"
        q = linear(x, p + ".attention.self.query", t + "/q")
        k = linear(x, p + ".attention.self.key", t + "/k")
        v = linear(x, p + ".attention.self.value", t + "/v")
        qh = node("Transpose", [node("Reshape", [q, split_shape], t + "/q_split")], t + "/q_heads", perm=[0, 2, 1, 3])
        kh = node("Transpose", [node("Reshape", [k, split_shape], t + "/k_split")], t + "/k_heads_t", perm=[0, 2, 3, 1])
        vh = node("Transpose", [node("Reshape", [v, split_shape], t + "/v_split")], t + "/v_heads", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [qh, kh], t + "/qk"), scale], t + "/scores_scaled")
        if RELATIVE_BIAS in w:
            scores = node("Add", [scores, position_bias], t + "/scores_positioned")
        probs = node("Softmax", [node("Add", [scores, bias], t + "/scores")], t + "/probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, vh], t + "/ctx_heads")], t + "/ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], t + "/ctx")
        attn = linear(ctx, p + ".attention.output.dense", t + "/attn_out")
        x = layer_norm(node("Add", [attn, x], t + "/attn_res"), p + ".attention.output.LayerNorm", t + "/attn_norm")
        h = linear(x, p + ".intermediate.dense", t + "/ffn_in")
        # x * 0.5 * (1 + erf(x / sqrt 2)) in the form ONNX Runtime fuses with the bias into BiasGelu.
        erf = node("Erf", [node("Div", [h, sqrt2], t + "/gelu_scaled")], t + "/gelu_erf")
        gelu = node("Mul", [node("Mul", [h, half], t + "/gelu_half"), node("Add", [erf, one], t + "/gelu_1p")], t + "/gelu")
        out = linear(gelu, p + ".output.dense", t + "/ffn_out")
        x = layer_norm(node("Add", [out, x], t + "/ffn_res"), p + ".output.LayerNorm", f"hidden_state_{i + 1}")

    node("Identity", [x], "last_hidden_state")
    names = ("input_ids", "attention_mask") + (("token_type_ids",) if cfg.get("token_types", True) else ())
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    # Every layer is a declared output, so features can come from any of them; ONNX Runtime
    # computes only what a run asks for.
    outs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])]
    outs += [
        helper.make_tensor_value_info(f"hidden_state_{i}", TensorProto.FLOAT, ["batch", "sequence", hidden])
        for i in range(cfg["num_hidden_layers"] + 1)
    ]
    graph = helper.make_graph(nodes, name, ids, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graft")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


_erf = np.vectorize(math.erf)  # exact erf in float64, without scipy


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def forward(w, cfg, input_ids, attention_mask):
    """numpy BERT forward pass in float64: returns every hidden state [layers + 1, b, s, h]."""
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    hd = hidden // heads
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    b, s = input_ids.shape
    offset = cfg.get("position_offset")
    if offset is None:
        positions = np.broadcast_to(np.arange(s), (b, s))
    else:
        positions = np.cumsum(attention_mask, 1) * attention_mask + offset
    x = w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.position_embeddings.weight"][positions]
    if "embeddings.token_type_embeddings.weight" in w:
        x = x + w["embeddings.token_type_embeddings.weight"][0][None, None]
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    states = [x]
    bias = (1.0 - attention_mask[:, None, None, :].astype(np.float64)) * -1e30
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def lin(t, name):
            return t @ w[f"{p}.{name}.weight"].T + w[f"{p}.{name}.bias"]

        def split(t):
            return t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
        if RELATIVE_BIAS in w:
            pos = np.arange(s)
            buckets = relative_position_bucket(pos[None, :] - pos[:, None], cfg["relative_attention_buckets"])
            scores = scores + w[RELATIVE_BIAS][buckets].transpose(2, 0, 1)[None]
        scores -= scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x = _layer_norm(lin(ctx, "attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"], eps)
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
        x = _layer_norm(lin(h, "output.dense") + x, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
        states.append(x)
    return np.stack(states)


def mean_pool(hidden, attention_mask):
    m = attention_mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def padded_feed(rows, inputs):
    """(feed for the graph inputs named in `inputs`, attention mask) of token-id rows padded
    to the longest; token types are all 0."""
    ids = np.zeros((len(rows), max(map(len, rows))), np.int64)
    mask = np.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feed.items() if k in inputs}, mask


def embed_padded(sess, token_rows, batch_size=32, outputs=("last_hidden_state",), combine="concat", normalize=True):
    """Mean-pooled embeddings of token-id rows, fed `batch_size` rows at a time in input
    order, each batch padded to its longest row (as sentence-transformers). Several outputs
    are pooled separately and joined by `combine` (concat or mean), then L2-normalised."""
    out = []
    inputs = {i.name for i in sess.get_inputs()}
    for start in range(0, len(token_rows), batch_size):
        feed, mask = padded_feed(token_rows[start : start + batch_size], inputs)
        hidden = sess.run(list(outputs), feed)
        pooled = [mean_pool(h, mask) for h in hidden]
        joined = np.concatenate(pooled, axis=1) if combine == "concat" else np.mean(pooled, axis=0)
        if normalize:
            joined = joined / np.linalg.norm(joined, axis=1, keepdims=True)
        out.append(joined)
    return np.vstack(out)


def sorted_batches(token_rows, batch_size=32, batch_tokens=0):
    """Row indices sorted by length (as sentence-transformers' `encode` does), cut into
    batches of at most `batch_size` rows and, when `batch_tokens` is set, at most that many
    padded tokens."""
    order = sorted(range(len(token_rows)), key=lambda i: len(token_rows[i]))
    batches, current = [], []
    for i in order:
        longest = len(token_rows[i])
        if current and (len(current) >= batch_size or (batch_tokens and (len(current) + 1) * longest > batch_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    return batches


def embed_sorted(sess, token_rows, batch_size=32, batch_tokens=0, **kwargs):
    """`embed_padded` on `sorted_batches`; the embeddings come back in input order."""
    out = None
    for batch in sorted_batches(token_rows, batch_size, batch_tokens):
        emb = embed_padded(sess, [token_rows[i] for i in batch], batch_size=len(batch), **kwargs)
        if out is None:
            out = np.zeros((len(token_rows), emb.shape[1]), np.float32)
        out[batch] = emb
    return out


def embed_side_by_side(sessions, token_rows, batch_size=32, batch_tokens=0, **kwargs):
    """`embed_sorted` with one Python thread per session, each running the next batch not
    yet taken, longest first (onnxruntime releases the GIL while it runs)."""
    import queue
    import threading

    batches = queue.SimpleQueue()
    for batch in reversed(sorted_batches(token_rows, batch_size, batch_tokens)):
        batches.put(batch)
    done = []

    def work(sess):
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            done.append((batch, embed_padded(sess, [token_rows[i] for i in batch], batch_size=len(batch), **kwargs)))

    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = np.zeros((len(token_rows), done[0][1].shape[1]), np.float32)
    for batch, emb in done:
        out[batch] = emb
    return out
