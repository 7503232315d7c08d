"""Loads the DAG files in a folder with Apache Airflow and prints, as JSON, the import errors
and for each DAG its tasks: upstream task ids, whether the task is mapped, and its shell
command(s). Used by tests/tests/airflow.rs.

    .graft/airflow-venv/bin/python scripts/airflow_dag_graph.py DAG_FOLDER
"""

import json
import sys

from airflow.models.dagbag import DagBag


def commands(task):
    if type(task).__name__ == "MappedOperator":
        return list(task.expand_input.value["bash_command"])
    return [task.bash_command]


def main():
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    out = {
        "errors": {path: str(err) for path, err in bag.import_errors.items()},
        "dags": {
            dag.dag_id: {
                task.task_id: {
                    "upstream": sorted(task.upstream_task_ids),
                    "mapped": type(task).__name__ == "MappedOperator",
                    "commands": commands(task),
                }
                for task in dag.tasks
            }
            for dag in bag.dags.values()
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
