"""Images end to end: raw image files to features, graft against the Python reference a user
would write (Pillow decode, resize and crop, numpy normalisation, onnxruntime, batch by
batch), same images, model, threads and batch size (8, Python's fastest, and 32); then
graft's memory on a large folder.

    python scripts/bench_images.py --bin target/release [--images 400] [--large 50000 --small 5000]

Speed: scikit-learn's two sample photos (427 x 640 JPEG), repeated; Python and graft run in
turn for `--repeat` rounds (every other round in reverse order) and each one's fastest run is
reported. Beside the headline, Python also runs the model with `features` as its only graph
output. Both sides time the whole path from files to features, model loading included
(Python's imports are not): graft is `graft-preprocess` (names and hashes each file) then
`graft-backbone` (decodes, transforms and infers, overlapped). Prints images/s, the ratios,
the worst cosine of graft's features to either Python reference's (the resize filters differ
slightly) and the bytes graft writes per image.

Memory: a folder of `--large` distinct JPEGs (random crops and mirrors of the two photos,
made here, not kept) and its first `--small`; peak RSS of each graft stage on both.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.ipc as ipc
import sklearn
from PIL import Image

from onnx_outputs import with_only_output

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "efficientnet-lite0.yaml"
MODEL = ROOT / ".graft" / "models" / "efficientnet-lite0" / "model.onnx"
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
SAMPLES = Path(sklearn.__file__).parent / "datasets" / "images"
# Python's fastest batch on these photos (8: 162 images/s; 4: 139, 16: 153, 32: 142), and
# the common 32.
BATCHES = (8, 32)


def python_pixels(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(224, round(w * scale)), max(224, round(h * scale))), Image.BILINEAR)
    left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def python_features(paths, threads, batch, model=MODEL):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(paths), batch):
        pixels = np.stack([python_pixels(p) for p in paths[i:i + batch]])
        out.append(session.run(["features"], {"image": pixels})[0])
    return np.concatenate(out)


def graft(bin_dir, name, *args, threads, watch):
    """Runs a graft binary; returns (seconds, peak RSS in MB or 0 unless `watch`) of that
    process alone. The peak is the kernel's high-water mark (VmHWM), read every millisecond
    until the process ends (a child's rusage would count this Python process's memory, which
    it starts from); that reading costs CPU, so timed runs do not watch."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    started = time.perf_counter()
    proc = subprocess.Popen([str(bin_dir / name), *map(str, args), "-q"], env=env)
    if not watch:
        proc.wait()
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")))
        except (OSError, StopIteration):
            pass
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{name} failed")
    return elapsed, peak / 1024


def graft_features(bin_dir, photos, work, threads, batch=BATCHES[0], watch=False):
    """(seconds, bytes written, peak RSS of preprocess and backbone when `watch`) from files
    to features."""
    pre, pre_rss = graft(bin_dir, "graft-preprocess", "--input", photos, "--spec", SPEC, "--out", work / "data",
                         "--val-fraction", "0", "--test-fraction", "0", threads=threads, watch=watch)
    bb, bb_rss = graft(bin_dir, "graft-backbone", "--spec", SPEC, "--input", work / "data", "--out",
                       work / "features", "--threads", threads, "--batch-size", batch, threads=threads, watch=watch)
    written = sum(f.stat().st_size for f in (work / "data").iterdir())
    return pre + bb, written, pre_rss, bb_rss


def crop(job):
    """One distinct photo: a random crop (200-320 pixels a side) of a sample, maybe mirrored."""
    i, folder = job
    rng = np.random.default_rng(i)
    name = ("china", "flower")[i % 2]
    img = Image.open(SAMPLES / f"{name}.jpg")
    w, h = rng.integers(200, 321, 2)
    x, y = rng.integers(0, img.size[0] - w), rng.integers(0, img.size[1] - h)
    img = img.crop((int(x), int(y), int(x + w), int(y + h)))
    if rng.integers(2):
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img.save(folder / name / f"{i:06d}.jpg", quality=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, each running Python and graft once in turn; each one's fastest is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--large", type=int, default=50000, help="images in the memory check (0 skips it)")
    ap.add_argument("--small", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.images):
            name = ("china", "flower")[i % 2]
            folder = tmp / "photos" / name
            folder.mkdir(parents=True, exist_ok=True)
            paths.append(folder / f"{i:05d}.jpg")
            shutil.copy(SAMPLES / f"{name}.jpg", paths[-1])
        n = args.images
        print(f"{n} JPEG photos (427 x 640) -> EfficientNet-Lite0 features, {args.threads} threads")
        one_output = with_only_output(MODEL, "features", tmp / "model-features.onnx")
        for batch in BATCHES:
            py_s, one_s, graft_s = [], [], []
            work = tmp / f"speed{batch}"
            def python_run():
                started = time.perf_counter()
                ref = python_features(paths, args.threads, batch)
                py_s.append(time.perf_counter() - started)
                return ref

            def one_output_run():
                started = time.perf_counter()
                one_ref = python_features(paths, args.threads, batch, one_output)
                one_s.append(time.perf_counter() - started)
                return one_ref

            def graft_run():
                shutil.rmtree(work, ignore_errors=True)
                seconds, written, _, _ = graft_features(args.bin, tmp / "photos", work, args.threads, batch)
                graft_s.append(seconds)
                return written

            # Rounds of one run each, in turn, so that a slow spell of the machine falls on all;
            # every other round in reverse order, so that neither side always runs right after the other.
            for round_ in range(args.repeat):
                out = {run: run() for run in (python_run, one_output_run, graft_run)[:: -1 if round_ % 2 else 1]}
                ref, one_ref, written = out[python_run], out[one_output_run], out[graft_run]
            py, one, seconds = min(py_s), min(one_s), min(graft_s)
            table = ipc.open_file(str(work / "features" / "train.arrow")).read_all()
            feats = np.asarray(table.column("features").combine_chunks().flatten()).reshape(table.num_rows, -1)
            order = [paths.index(tmp / "photos" / i) for i in table.column("id").to_pylist()]
            # The worst of graft's cosines to either Python reference.
            cos = np.minimum(*((feats * r).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(r, axis=1))
                               for r in (ref[order], one_ref[order])))
            rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(py_s, graft_s))
            print(f"  batch {batch:>2}, files to features: python (Pillow + numpy + onnxruntime) {n / py:6.1f} images/s; "
                  f"graft {n / seconds:6.1f} images/s; {py / seconds:.2f}x (within each round: {rounds}); "
                  f"cosine min {cos.min():.5f}, mean {cos.mean():.5f}")
            rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(one_s, graft_s))
            print(f"           python on the features-only model {n / one:6.1f} images/s; graft {one / seconds:.2f}x "
                  f"(within each round: {rounds})")
        print(f"  graft writes {written / n:.0f} bytes per image before the features ({written / 1e3:.0f} kB)")
        if args.large:
            big = tmp / "large"
            for name in ("china", "flower"):
                (big / name).mkdir(parents=True)
            started = time.perf_counter()
            with Pool(args.threads) as pool:
                pool.map(crop, [(i, big) for i in range(args.large)], chunksize=256)
            made = time.perf_counter() - started
            small = tmp / "small"
            for name in ("china", "flower"):
                (small / name).mkdir(parents=True)
            for i in range(args.small):
                name = ("china", "flower")[i % 2]
                os.link(big / name / f"{i:06d}.jpg", small / name / f"{i:06d}.jpg")
            print(f"  memory: {args.large:,} distinct JPEG crops (200-320 px a side) made in {made:.0f} s")
            for count, folder in ((args.small, small), (args.large, big)):
                seconds, written, pre_rss, bb_rss = graft_features(
                    args.bin, folder, tmp / f"run{count}", args.threads, watch=True
                )
                shutil.rmtree(tmp / f"run{count}")
                print(f"  {count:>7,} images: {count / seconds:6.1f} images/s; peak RSS preprocess {pre_rss:6.0f} MB, "
                      f"backbone {bb_rss:6.0f} MB; {written / count:.0f} bytes written per image")
                if count == args.small:
                    base = (pre_rss, bb_rss)
            print(f"  peak RSS {args.large:,} / {args.small:,}: preprocess {pre_rss / base[0]:.2f}x, "
                  f"backbone {bb_rss / base[1]:.2f}x")


if __name__ == "__main__":
    main()
