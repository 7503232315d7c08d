"""A model file with one of its graph outputs as the only one: what a user exporting the
model for that output alone would have (ONNX Runtime computes and keeps every declared
output, whichever a run asks for)."""

from pathlib import Path


def with_only_output(model: Path, name: str, dest: Path) -> Path:
    import onnx

    graph = onnx.load(str(model))
    kept = [o for o in graph.graph.output if o.name == name]
    if not kept:
        raise SystemExit(f"{model} has no graph output {name!r}")
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(dest))
    return dest
