"""Prints the first rows of a predictions CSV written by `graft-evaluate predict`: id,
predicted label, top probability (or the reason a row was not scored) and the text."""

import csv
import sys


def main():
    path, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i == count:
                break
            if row["reason"]:
                verdict = f"not scored: {row['reason']}"
            else:
                verdict = f"{row['pred']} ({float(row['top_probability']):.3f})"
            text = row.get("text", "")
            print(f"{row['id']:<6} {verdict:<22} {text[:70]}")


if __name__ == "__main__":
    main()
