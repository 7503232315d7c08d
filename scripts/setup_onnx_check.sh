#!/bin/sh
# Python onnxruntime and MLflow in their own virtual environment (.graft/onnx-check-venv) for
# the tests that run models written by `graft-backbone export`; versions pinned in
# scripts/onnx-check-requirements.txt.
exec "$(dirname "$0")/pinned_venv.sh" .graft/onnx-check-venv scripts/onnx-check-requirements.txt onnxruntime
