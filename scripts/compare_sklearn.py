"""Train scikit-learn's LogisticRegression on the same features graft trained on and
compare test accuracy with graft's (the check behind `make demo`).

    python scripts/compare_sklearn.py runs/rt-minilm

Reads RUN/features/{train,test}.arrow, RUN/head/head.json (the C graft chose and its
settings) and RUN/eval/metrics.json. Exits 1 if the accuracies differ by more than one point.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def load(path):
    table = ipc.open_file(str(path)).read_all()
    x = np.asarray(table.column("features").combine_chunks().flatten().to_numpy(), np.float64)
    return x.reshape(table.num_rows, -1), np.asarray(table.column("label").to_pylist())


def main():
    run = Path(sys.argv[1])
    head = json.loads((run / "head" / "head.json").read_text())
    graft = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]["accuracy"]
    cfg = head["training"]["config"]
    x_train, y_train = load(run / "features" / "train.arrow")
    x_test, y_test = load(run / "features" / "test.arrow")
    if head["standardize"]:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    c = head["training"]["fit"]["chosen_c"]
    started = time.perf_counter()
    model = LogisticRegression(C=c, tol=cfg["tol"], max_iter=cfg["max_iter"]).fit(x_train, y_train)
    seconds = time.perf_counter() - started
    sk = float((model.predict(x_test) == y_test).mean())
    diff = 100 * (graft - sk)
    print(f"scikit-learn LogisticRegression(C={c}) on the same {len(y_train)} train features: "
          f"test accuracy {sk:.4f} ({seconds:.2f}s)")
    print(f"graft: {graft:.4f}  difference {diff:+.2f} points (allowed: 1.00)")
    if abs(diff) > 1.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
