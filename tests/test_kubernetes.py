"""`deploy/kubernetes/`: the manifests parse, hang together, and name what the code names.

No cluster runs here, so the kustomization's files are read with PyYAML and checked against the
code: probe paths are routes of the app, `APP_*` names are settings, the KEDA triggers poll the
real task queues, the search-attribute Job registers exactly `SEARCH_ATTRIBUTES`, and the
migration Job's command migrates a real database.
"""

import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from api.main import create_app
from core.settings import GpuSettings, Settings
from devstack.process import Service
from schemas import names
from tests.helpers import fresh_database
from tests.test_compose import settings_env_names

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
CONFIG_MAP, SECRET = "myspinbot-config", "myspinbot-secrets"
WORKERS = {"myspinbot-cpu-worker": names.CPU_TASK_QUEUE, "myspinbot-gpu-worker": names.GPU_TASK_QUEUE}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return loaded


def load_manifests() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists, in order."""
    objects: list[dict[str, Any]] = []
    for resource in kustomization()["resources"]:
        objects += [doc for doc in yaml.safe_load_all((DEPLOY / resource).read_text()) if doc]
    return objects


MANIFESTS = load_manifests()


def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in MANIFESTS if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(kind: str, name: str) -> dict[str, Any]:
    [found] = find(kind, name)
    return found


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap", CONFIG_MAP)["data"]
    return data


def secrets() -> dict[str, str]:
    data: dict[str, str] = one("Secret", SECRET)["stringData"]
    return data


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: its `envFrom` ConfigMap and Secret, then its own `env` values."""
    sources = {("configMapRef", CONFIG_MAP): config(), ("secretRef", SECRET): secrets()}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        [(kind, ref)] = source.items()
        env |= sources[(kind, ref["name"])]
    env |= {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return env


def test_every_file_is_in_the_kustomization_and_the_kinds_are_there() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "a manifest is missing from kustomization.yaml, or listed but absent"
    kinds = Counter(m["kind"] for m in MANIFESTS)
    assert kinds >= Counter(
        {"Deployment": 3, "Service": 1, "PodDisruptionBudget": 2, "Job": 2, "ScaledObject": 2, "Secret": 1}
    ), kinds
    assert {m["metadata"]["name"] for m in find("Deployment")} == {"myspinbot-api", *WORKERS}
    keys = [(m["kind"], m["metadata"]["name"]) for m in MANIFESTS]
    assert len(keys) == len(set(keys)), "two objects of one kind share a name"


def test_api_probes_point_at_real_routes_and_ports() -> None:
    routes = {r.path for r in create_app().routes if isinstance(r, APIRoute) and "GET" in r.methods}
    [api] = containers(one("Deployment", "myspinbot-api"))
    ports = {p["name"] for p in api["ports"]}
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/healthz"  # checks Temporal, PostgreSQL and S3
    assert probes["livenessProbe"]["path"] == "/livez"  # checks nothing else: an outage restarts nothing
    for kind, probe in probes.items():
        assert probe["path"] in routes, f"{kind} {probe['path']} is not a GET route of the app"
        assert probe["port"] in ports, kind
    service = one("Service", "myspinbot-api")
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])


def test_the_liveness_route_answers_without_any_dependency() -> None:
    client = TestClient(create_app())  # no lifespan: no database, storage or Temporal client exists
    response = client.get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_selectors_match_the_pods_they_mean() -> None:
    pod_labels = {m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"] for m in find("Deployment")}

    def selects(selector: dict[str, str], name: str) -> bool:
        return selector.items() <= pod_labels[name].items()

    for deployment in find("Deployment"):
        assert selects(deployment["spec"]["selector"]["matchLabels"], deployment["metadata"]["name"])
    assert selects(one("Service", "myspinbot-api")["spec"]["selector"], "myspinbot-api")
    assert selects(one("PodDisruptionBudget", "myspinbot-api")["spec"]["selector"]["matchLabels"], "myspinbot-api")
    gpu_budget = one("PodDisruptionBudget", "myspinbot-gpu-worker")["spec"]
    assert selects(gpu_budget["selector"]["matchLabels"], "myspinbot-gpu-worker")
    assert gpu_budget.get("maxUnavailable") == 1, "a drain takes one GPU worker at a time"


def test_the_gpu_worker_gets_a_gpu_and_outlives_its_graceful_shutdown() -> None:
    gpu = one("Deployment", "myspinbot-gpu-worker")["spec"]["template"]["spec"]
    [container] = gpu["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    grace = float(container_env(container).get("APP_GPU__SHUTDOWN_GRACE_SECONDS", GpuSettings().shutdown_grace_seconds))
    assert gpu["terminationGracePeriodSeconds"] > grace > GpuSettings().shutdown_grace_seconds
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    env = container_env(container)
    assert {env["APP_GPU__MODELS_DIR"], env["APP_GPU__WORK_DIR"]} <= mounts


def all_env_names() -> set[str]:
    found = set(config()) | set(secrets())
    for workload in [*find("Deployment"), *find("Job")]:
        for container in containers(workload):
            found |= {item["name"] for item in container.get("env", [])}
            found |= {
                item["valueFrom"]["configMapKeyRef"]["key"]
                for item in container.get("env", [])
                if "configMapKeyRef" in item.get("valueFrom", {})
            }
    return {name for name in found if name.startswith("APP_") or name in ("OLLAMA_HOST", "DATABASE_URL")}


def test_every_app_variable_is_a_setting_and_the_values_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = all_env_names() - settings_env_names()
    assert not unknown, f"variables no setting reads: {sorted(unknown)}"
    for workload in [*find("Deployment"), one("Job", "myspinbot-migrate")]:
        for container in containers(workload):
            with monkeypatch.context() as m:
                for key in [k for k in os.environ if k.startswith("APP_")]:
                    m.delenv(key)
                for key, value in container_env(container).items():
                    m.setenv(key, value)
                settings = Settings(_env_file=None)  # type: ignore[call-arg]
            assert settings.environment == "production"
            assert settings.temporal.cpu_task_queue == names.CPU_TASK_QUEUE
            assert settings.temporal.gpu_task_queue == names.GPU_TASK_QUEUE
            assert settings.database.url.startswith("postgresql+psycopg://")


def test_secrets_hold_placeholders_only() -> None:
    assert set(secrets()) == {
        "APP_DATABASE__URL",
        "APP_STORAGE__ACCESS_KEY",
        "APP_STORAGE__SECRET_KEY",
        "APP_CALLBACKS__SECRET",
    }
    assert all("CHANGE-ME" in value for value in secrets().values())
    assert not set(secrets()) & set(config()), "a secret also set in the ConfigMap"
    for workload in [*find("Deployment"), *find("Job")]:
        for container in containers(workload):
            refs = [s.get("secretRef", {}).get("name") for s in container.get("envFrom", [])]
            assert all(ref in (None, SECRET) for ref in refs), workload["metadata"]["name"]


def test_each_worker_scales_on_its_own_task_queue_with_keda() -> None:
    scaled = {m["spec"]["scaleTargetRef"]["name"]: m["spec"] for m in find("ScaledObject")}
    assert set(scaled) == set(WORKERS)
    for worker, queue in WORKERS.items():
        [trigger] = scaled[worker]["triggers"]
        assert trigger["type"] == "temporal"
        meta = trigger["metadata"]
        assert meta["taskQueue"] == queue
        assert meta["endpoint"] == config()["APP_TEMPORAL__ADDRESS"]
        assert meta["namespace"] == config()["APP_TEMPORAL__NAMESPACE"]
        assert int(meta["targetQueueSize"]) >= 1
    assert scaled["myspinbot-gpu-worker"]["triggers"][0]["metadata"]["queueTypes"] == "activity"
    assert set(scaled["myspinbot-cpu-worker"]["triggers"][0]["metadata"]["queueTypes"].split(",")) == {
        "workflow",
        "activity",
    }
    # With no live GPU worker the API answers 503, so the GPU queue could never grow to wake one.
    assert scaled["myspinbot-gpu-worker"]["minReplicaCount"] >= 1
    assert scaled["myspinbot-cpu-worker"]["minReplicaCount"] >= 1


def test_the_search_attribute_job_registers_exactly_ours_as_keywords() -> None:
    [container] = containers(one("Job", "myspinbot-search-attributes"))
    env = {item["name"]: item for item in container["env"]}
    assert env["SEARCH_ATTRIBUTES"]["value"].split() == list(names.SEARCH_ATTRIBUTES)
    script = " ".join(container["args"])
    assert "for name in $SEARCH_ATTRIBUTES" in script
    assert 'temporal operator search-attribute create --name "$name" --type Keyword' in script
    assert env["TEMPORAL_ADDRESS"]["valueFrom"]["configMapKeyRef"] == {
        "name": CONFIG_MAP,
        "key": "APP_TEMPORAL__ADDRESS",
    }


@pytest.mark.integration
def test_the_migration_job_command_migrates_a_fresh_database(postgres_service: Service) -> None:
    [container] = containers(one("Job", "myspinbot-migrate"))
    assert container["image"] == "myspinbot-app", "the app image: it has core/ and the migrations"
    url = fresh_database(postgres_service, "k8s_migrate_job")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")} | {"APP_DATABASE__URL": url}
    command = [sys.executable if part == "python" else part for part in container["command"]]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
    engine = create_engine(url)
    try:
        assert {"jobs", "artifacts", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
