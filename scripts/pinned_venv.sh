#!/bin/sh
# A Python virtual environment built from a pinned requirements file, for tests that need a
# real third-party tool (Airflow, onnxruntime, MLflow). Does nothing when VENV was already
# built from the same pins and MODULE imports.
#
#     scripts/pinned_venv.sh VENV PINS MODULE
set -eu
cd "$(dirname "$0")/.."
venv=$1
pins=$2
module=$3
stamp=$venv/.pins
if [ -f "$stamp" ] && cmp -s "$pins" "$stamp" && "$venv/bin/python" -c "import $module" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
cp "$pins" "$stamp"
