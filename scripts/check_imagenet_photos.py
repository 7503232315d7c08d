"""Checks the EfficientNet-Lite0 export on two known photos (scikit-learn's sample images)
through graft itself: graft-preprocess decodes and transforms them, graft-backbone returns
the ImageNet logits, and the top class must be the known one: `china.jpg` a palace (698),
`flower.jpg` a daisy (985).

    python scripts/check_imagenet_photos.py --bin target/release
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import sklearn

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "efficientnet-lite0.yaml"
EXPECTED = {"china/china.jpg": (698, "palace"), "flower/flower.jpg": (985, "daisy")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release")
    args = ap.parse_args()
    images = Path(sklearn.__file__).parent / "datasets" / "images"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("china", "flower"):
            (tmp / "photos" / name).mkdir(parents=True)
            shutil.copy(images / f"{name}.jpg", tmp / "photos" / name)
        run = lambda *a: subprocess.run([str(x) for x in a], check=True)  # noqa: E731
        run(args.bin / "graft-preprocess", "--input", tmp / "photos", "--spec", SPEC, "--out", tmp / "data",
            "--val-fraction", "0", "--test-fraction", "0", "-q")
        run(args.bin / "graft-backbone", "--spec", SPEC, "--input", tmp / "data", "--out", tmp / "logits",
            "--outputs", "logits", "--pooling", "none", "-q")
        table = ipc.open_file(str(tmp / "logits" / "train.arrow")).read_all()
        logits = np.asarray(table.column("features").combine_chunks().flatten()).reshape(table.num_rows, -1)
    failed = False
    for row, image in zip(logits, table.column("id").to_pylist()):
        want, name = EXPECTED[image]
        top = np.argsort(-row)[:5].tolist()
        ok = top[0] == want
        failed |= not ok
        print(f"{image}: top-5 ImageNet classes {top}; expected {want} ({name}) first: {'ok' if ok else 'NO'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
