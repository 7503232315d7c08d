#!/bin/sh
# Apache Airflow in its own virtual environment (.graft/airflow-venv) for the tests of
# `graft export --to airflow` DAGs; versions pinned in scripts/airflow-requirements.txt.
exec "$(dirname "$0")/pinned_venv.sh" .graft/airflow-venv scripts/airflow-requirements.txt airflow
