"""Image throughput: graft against the Python reference (Pillow resize and crop, numpy
normalisation, onnxruntime at batch 32), same images, same model, same threads.

    python scripts/bench_images.py --bin target/release [--images 400]

The images are scikit-learn's two sample photos (427 x 640 JPEG), repeated. Prints images/s
for preprocessing (decode, resize, crop, normalise) and for the backbone, the ratios, and
the cosine similarity of the two feature sets (the resize filters differ slightly).
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.ipc as ipc
import sklearn
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "efficientnet-lite0.yaml"
MODEL = ROOT / ".graft" / "models" / "efficientnet-lite0" / "model.onnx"
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def python_preprocess(paths):
    out = np.empty((len(paths), 3, 224, 224), np.float32)
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB")
        w, h = img.size
        scale = 256 / min(w, h)
        img = img.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
        left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
        x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
        out[i] = ((x - MEAN) / STD).transpose(2, 0, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    samples = Path(sklearn.__file__).parent / "datasets" / "images"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.images):
            name = ("china", "flower")[i % 2]
            folder = tmp / "photos" / name
            folder.mkdir(parents=True, exist_ok=True)
            paths.append(folder / f"{i:05d}.jpg")
            shutil.copy(samples / f"{name}.jpg", paths[-1])
        started = time.perf_counter()
        pixels = python_preprocess(paths)
        py_pre = time.perf_counter() - started
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
        started = time.perf_counter()
        ref = np.concatenate([session.run(["features"], {"image": pixels[i:i + 32]})[0] for i in range(0, len(paths), 32)])
        py_bb = time.perf_counter() - started

        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        run = lambda *a: subprocess.run([str(x) for x in a], check=True, env=env)  # noqa: E731
        started = time.perf_counter()
        run(args.bin / "graft-preprocess", "--input", tmp / "photos", "--spec", SPEC, "--out", tmp / "data",
            "--val-fraction", "0", "--test-fraction", "0", "-q")
        graft_pre = time.perf_counter() - started
        started = time.perf_counter()
        run(args.bin / "graft-backbone", "--spec", SPEC, "--input", tmp / "data", "--out", tmp / "features",
            "--threads", args.threads, "--batch-size", 32, "-q")
        graft_bb = time.perf_counter() - started
        table = ipc.open_file(str(tmp / "features" / "train.arrow")).read_all()
        feats = np.asarray(table.column("features").combine_chunks().flatten()).reshape(table.num_rows, -1)
        order = [paths.index(tmp / "photos" / i) for i in table.column("id").to_pylist()]
    ref = ref[order]
    cos = (feats * ref).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))
    n = args.images
    print(f"{n} JPEG photos (427 x 640) -> EfficientNet-Lite0 features, {args.threads} threads")
    print(f"  preprocess: python (Pillow + numpy) {n / py_pre:7.1f} images/s; graft {n / graft_pre:7.1f} images/s; {py_pre / graft_pre:.2f}x")
    print(f"  backbone:   python onnxruntime      {n / py_bb:7.1f} images/s; graft {n / graft_bb:7.1f} images/s; {py_bb / graft_bb:.2f}x")
    print(f"  features: cosine to the Python reference min {cos.min():.4f}, mean {cos.mean():.4f}")


if __name__ == "__main__":
    main()
