"""Head training speed: graft-finetune against scikit-learn on the same features.

    python scripts/bench_finetune.py --features runs/imdb-minilm/features --bin target/release

For each (C, tol) setting, times scikit-learn's LogisticRegression(solver="lbfgs") fit on
the train split (best of --repeat) and `graft-finetune bench` (training only, best of
--repeat), both with the same number of threads, and prints the speed-up and both test
accuracies. Then times graft's MLP head. Exits 1 if a logistic-regression accuracy differs
from scikit-learn's by more than 0.2 points.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def load(path):
    import numpy as np
    import pyarrow.ipc as ipc

    table = ipc.open_file(str(path)).read_all()
    x = np.asarray(table.column("features").combine_chunks().flatten().to_numpy(), np.float64)
    return x.reshape(table.num_rows, -1), np.asarray(table.column("label").to_pylist())


def graft(bin_dir, features, threads, repeat, args):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), RUST_LOG="warn")
    cmd = [str(Path(bin_dir) / "graft-finetune"), "bench", "--features", str(features), "--repeat", str(repeat), *args]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, default=Path("runs/imdb-minilm/features"))
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    # BLAS threads must be fixed before numpy loads.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(opts.threads)
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = load(opts.features / "train.arrow")
    x_test, y_test = load(opts.features / "test.arrow")
    print(f"{len(y_train)} train rows x {x_train.shape[1]} features, {len(y_test)} test rows, {opts.threads} threads")
    failed = False
    for c, tol in [(1.0, 1e-4), (10.0, 1e-6)]:
        best = float("inf")
        for _ in range(opts.repeat):
            started = time.perf_counter()
            model = LogisticRegression(C=c, tol=tol, max_iter=1000).fit(x_train, y_train)
            best = min(best, time.perf_counter() - started)
        sk_acc = float((model.predict(x_test) == y_test).mean())
        g = graft(opts.bin, opts.features, opts.threads, opts.repeat, ["--c", str(c), "--tol", str(tol), "--max-iter", "1000"])
        diff = 100 * (g["test_accuracy"] - sk_acc)
        print(
            f"logistic regression C={c:g} tol={tol:g}: scikit-learn {best:.3f}s ({model.n_iter_[0]} iterations, "
            f"accuracy {sk_acc:.4f}); graft {g['seconds']:.3f}s ({g['steps']} iterations, accuracy "
            f"{g['test_accuracy']:.4f}); speed-up {best / g['seconds']:.2f}x (target 3x), "
            f"accuracy difference {diff:+.2f} points (allowed 0.20)"
        )
        failed |= abs(diff) > 0.2
    g = graft(opts.bin, opts.features, opts.threads, 1, ["--head", "mlp"])
    print(
        f"graft MLP head (256 hidden, AdamW, cosine, early stopping on val loss): {g['seconds']:.2f}s, "
        f"{g['steps']} epochs, test accuracy {g['test_accuracy']:.4f}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
