#!/bin/sh
# Apache Airflow in its own virtual environment (.graft/airflow-venv) for the test that
# loads `graft export --to airflow` DAGs; versions pinned in scripts/airflow-requirements.txt.
# Does nothing when that environment is already built from the same pins.
set -eu
cd "$(dirname "$0")/.."
venv=.graft/airflow-venv
pins=scripts/airflow-requirements.txt
stamp=$venv/.pins
if [ -f "$stamp" ] && cmp -s "$pins" "$stamp" && "$venv/bin/python" -c "import airflow" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
cp "$pins" "$stamp"
