"""`docker-compose.temporal.yml`: valid for Debian's `docker-compose`, and its variables are the settings'.

No Docker engine runs here, so the file is checked with `docker-compose config` (which validates
and interpolates without an engine) against `.env.example`, and the resolved services' environment
is compared with the `Settings` model.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.aliases import AliasChoices

from core.settings import Settings
from schemas import names

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.temporal.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = ("api", "cpu-worker", "gpu-worker")
# Set explicitly in production (the defaults point at localhost or carry a development secret).
REQUIRED_IN_PRODUCTION = (
    "APP_TEMPORAL__ADDRESS",
    "APP_STORAGE__ENDPOINT",
    "APP_STORAGE__ACCESS_KEY",
    "APP_STORAGE__SECRET_KEY",
)
DATABASE_URL_NAMES = ("APP_DATABASE__URL", "DATABASE_URL")


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed; CI installs Debian's with "
            "`apt-get install -y --no-install-recommends docker-compose`"
        )
    command = [binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), *args]
    # A clean environment: shell variables would override .env.example in the interpolation.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The resolved services (env interpolated, anchors merged), ComfyUI's profile included."""
    result = compose("--profile", "comfyui", "config")
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return resolved


def settings_env_names(model: type[BaseModel] = Settings, prefix: str = "APP_") -> set[str]:
    """Every variable name `Settings` reads: nested fields joined with `__`, plus validation aliases."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        if isinstance(field.validation_alias, AliasChoices):
            found |= {str(choice).upper() for choice in field.validation_alias.choices}
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= settings_env_names(field.annotation, f"{prefix}{name.upper()}__")
        else:
            found.add(f"{prefix}{name.upper()}")
    return found


def app_env(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = service.get("environment") or {}
    return {k: v for k, v in env.items() if k.startswith("APP_") or k in ("OLLAMA_HOST", "DATABASE_URL")}


@pytest.mark.parametrize("profile", [[], ["--profile", "comfyui"]], ids=["default", "comfyui"])
def test_the_file_is_valid_for_docker_compose(profile: list[str]) -> None:
    result = compose(*profile, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_required_secrets_have_no_defaults() -> None:
    result = subprocess.run(
        [shutil.which("docker-compose") or "docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode != 0 and "PASSWORD" in result.stderr, result.stderr


def test_settings_walk_finds_nested_fields_and_aliases() -> None:
    known = settings_env_names()
    assert {
        "APP_TEMPORAL__ADDRESS",
        "APP_GPU__MODELS_DIR",
        "APP_CALLBACKS__SECRET",
        "OLLAMA_HOST",
        "DATABASE_URL",
    } <= known
    assert "APP_TEMPORAL" not in known


def test_every_variable_the_services_pass_is_a_setting(services: dict[str, Any]) -> None:
    known = settings_env_names()
    for name, service in services.items():
        unknown = set(app_env(service)) - known
        assert not unknown, f"{name} passes variables no setting reads: {sorted(unknown)}"


def test_the_services_values_validate_as_settings(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in APP_SERVICES:
        with monkeypatch.context() as m:
            for key, value in app_env(services[name]).items():
                m.setenv(key, value)
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.environment == "production", name
        assert settings.temporal.address == "temporal:7233" and settings.storage.endpoint == "minio:9000", name
        assert settings.database.url.startswith("postgresql+psycopg://") and "@app-db:5432/" in settings.database.url
        assert settings.llm.ollama_host == "http://ollama:11434", name


def test_production_settings_are_set_on_every_app_service(services: dict[str, Any]) -> None:
    known = settings_env_names()
    assert set(REQUIRED_IN_PRODUCTION) <= known and set(DATABASE_URL_NAMES) <= known
    for name in APP_SERVICES:
        env = app_env(services[name])
        missing = [key for key in REQUIRED_IN_PRODUCTION if not env.get(key)]
        assert not missing, f"{name} does not set {missing}"
        assert any(env.get(key) for key in DATABASE_URL_NAMES), f"{name} sets no database URL"


def test_the_gpu_worker_reserves_a_gpu_and_mounts_the_models_dir(services: dict[str, Any]) -> None:
    gpu = services["gpu-worker"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    models_dir = gpu["environment"]["APP_GPU__MODELS_DIR"]
    targets = {volume.split(":")[1] for volume in gpu["volumes"]}
    assert models_dir in targets


def test_dependencies_wait_for_health_or_completion(services: dict[str, Any]) -> None:
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert spec["condition"] in conditions, (name, dependency)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    for name in APP_SERVICES:
        assert {"app-db", "temporal", "minio-init", "temporal-search-attributes"} <= set(services[name]["depends_on"])


def test_one_shots_create_the_buckets_and_search_attributes(services: dict[str, Any]) -> None:
    buckets = " ".join(services["minio-init"]["command"])
    assert f"local/{names.UPLOADS_BUCKET}" in buckets and f"local/{names.ARTIFACTS_BUCKET}" in buckets
    attributes = " ".join(services["temporal-search-attributes"]["command"])
    assert all(attribute in attributes for attribute in names.SEARCH_ATTRIBUTES) and "Keyword" in attributes
    assert services["temporal"]["image"].startswith("temporalio/auto-setup")
    assert services["temporal"]["environment"]["DB"].startswith("postgres")


def test_traefik_is_the_one_entry_point(services: dict[str, Any]) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"traefik"}
    routed = {
        name for name, service in services.items() if (service.get("labels") or {}).get("traefik.enable") == "true"
    }
    assert {"api", "temporal-ui", "open-webui"} <= routed
    assert "PathPrefix(`/`)" in services["api"]["labels"]["traefik.http.routers.api.rule"]
    assert services["comfyui"]["profiles"] == ["comfyui"]


def test_comfyui_is_routed_and_shares_the_models_volume_with_the_gpu_worker(services: dict[str, Any]) -> None:
    labels = services["comfyui"]["labels"]
    assert labels["traefik.enable"] == "true" and "Host(`comfyui." in labels["traefik.http.routers.comfyui.rule"]
    assert labels["traefik.http.services.comfyui.loadbalancer.server.port"] == "8188"
    gpu, comfyui = (
        {volume.split(":")[0] for volume in services[name]["volumes"]} for name in ("gpu-worker", "comfyui")
    )
    assert "models" in gpu & comfyui
    assert "APP_GPU__BACKENDS" in services["gpu-worker"]["environment"], "each backend can be switched on by env"
