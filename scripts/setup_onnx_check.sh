#!/bin/sh
# Python onnxruntime in its own virtual environment (.graft/onnx-check-venv) for the test that
# runs models written by `graft-backbone export`; versions pinned in
# scripts/onnx-check-requirements.txt. Does nothing when already built from the same pins.
set -eu
cd "$(dirname "$0")/.."
venv=.graft/onnx-check-venv
pins=scripts/onnx-check-requirements.txt
stamp=$venv/.pins
if [ -f "$stamp" ] && cmp -s "$pins" "$stamp" && "$venv/bin/python" -c "import onnxruntime" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
cp "$pins" "$stamp"
