"""Airflow with the KubernetesPodOperator (apache-airflow-providers-cncf-kubernetes; tested
on Airflow 3.3 with the provider 10.25): one pod per group of scopes, each pod's run
summary handed back as its XCom.

The image is built from docs/recipes/Dockerfile (its entrypoint is `asana-etl`). The
group configs are the keys of the ConfigMap `asana-etl-groups` (`team-a.toml`, ...; see
airflow_asana_etl.py for what one holds, with `token_file` left out), the token is the
key `token` of the Secret `asana-etl`:

    kubectl create configmap asana-etl-groups --from-file=/etc/asana-etl/groups/
    kubectl create secret generic asana-etl --from-file=token=/etc/asana-etl/token

With `do_xcom_push=True` the operator reads /airflow/xcom/return.json from the pod once
it ends: `--summary-file` writes the summary there, atomically, however the run ends.
"""

from __future__ import annotations

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

try:  # Airflow 3: the authoring interface is airflow.sdk
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.7+
    from airflow import DAG

IMAGE = "registry.example.com/asana-etl:0.1.0"
GROUPS = ["team-a", "team-b", "team-c", "team-d"]  # the ConfigMap's keys, less ".toml"
LOCKED = 4  # another run holds one of this run's scopes

with DAG(
    dag_id="asana_etl_nightly_k8s",
    schedule="15 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["asana-etl"],
):
    for group in GROUPS:
        KubernetesPodOperator(
            task_id=f"sync_{group.replace('-', '_')}",
            name=f"asana-etl-{group}",
            image=IMAGE,
            arguments=["--config", f"/etc/asana-etl/groups/{group}.toml", "--log-format",
                       "json", "sync", "--summary-file", "/airflow/xcom/return.json"],
            env_vars=[k8s.V1EnvVar(
                name="ASANA_ACCESS_TOKEN",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name="asana-etl", key="token")),
            )],
            volumes=[k8s.V1Volume(
                name="groups",
                config_map=k8s.V1ConfigMapVolumeSource(name="asana-etl-groups"),
            )],
            volume_mounts=[k8s.V1VolumeMount(name="groups", mount_path="/etc/asana-etl/groups",
                                             read_only=True)],
            do_xcom_push=True,
            skip_on_exit_code=LOCKED,
            get_logs=True,  # the JSON log lines, into the task log
            on_finish_action="delete_succeeded_pod",
            retries=2,
            retry_delay=pendulum.duration(minutes=10),
        )
