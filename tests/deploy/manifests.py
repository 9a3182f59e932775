"""Rendered manifests of the kustomize overlays, and the offline tools that check them.

The tools live in .cache/deploy-tools (scripts/setup_deploy_tools.sh). Without
them these tests skip, naming the missing tool and the command that installs it.
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS = ROOT / ".cache" / "deploy-tools"
KUSTOMIZE = TOOLS / "bin" / "kustomize"
PROMTOOL = TOOLS / "bin" / "promtool"
TOOLS_PYTHON = TOOLS / "venv" / "bin" / "python"
VALIDATOR = DEPLOY / "tools" / "validate_manifests.py"
DEV_SECRETS_SCRIPT = ROOT / "scripts" / "k8s_dev_secrets.sh"
DEV_SECRETS = Path("overlays") / "dev" / "secrets"
OVERLAYS = ("dev", "prod")
# The Kubernetes version the manifests must be valid for (oldest supported
# cluster); kubernetes-validate ships its schemas.
KUBERNETES_VERSION = "1.31.0"
# Strimzi's Secret of the cluster CA that Kafka clients check the brokers with.
CLUSTER_CA_SECRET = "replaypipe-cluster-ca-cert"

Manifest = dict[str, Any]


def require_tool(path: Path) -> Path:
    """``path`` if installed, else skip the test with the install command."""
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is missing: run ./scripts/setup_deploy_tools.sh")
    return path


@cache
def _k8s_tree() -> Path:
    """A copy of deploy/k8s whose dev secret files are fresh random ones from the script.

    The dev overlay generates its Secrets from files no one commits; the tests
    render a copy, so a developer's own files are neither needed nor read.
    """
    workdir = Path(tempfile.mkdtemp(prefix="replaypipe-k8s-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    source = DEPLOY / "k8s"

    def skip_secret_files(directory: str, names: list[str]) -> list[str]:
        inside = Path(directory) == source / DEV_SECRETS
        return [n for n in names if inside and n != ".gitignore"]

    tree = workdir / "k8s"
    shutil.copytree(source, tree, ignore=skip_secret_files)
    subprocess.run(
        [str(DEV_SECRETS_SCRIPT), str(tree / DEV_SECRETS)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return tree


@cache
def _render(overlay: str) -> str:
    result = subprocess.run(
        [str(KUSTOMIZE), "build", str(_k8s_tree() / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize build {overlay} failed:\n{result.stderr}"
    return result.stdout


@cache
def _objects(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [str(TOOLS_PYTHON), str(VALIDATOR), "to-json", "-"],
        input=_render(overlay),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    docs: list[Manifest] = json.loads(result.stdout)
    return tuple(docs)


@pytest.fixture(scope="session")
def render() -> Callable[[str], str]:
    """``render(overlay)``: the YAML that ``kustomize build`` prints for an overlay."""
    require_tool(KUSTOMIZE)
    return _render


@pytest.fixture(scope="session")
def objects() -> Callable[[str], tuple[Manifest, ...]]:
    """``objects(overlay)``: the rendered objects of an overlay, as dicts."""
    require_tool(KUSTOMIZE)
    require_tool(TOOLS_PYTHON)
    return _objects


def find(objs: tuple[Manifest, ...], kind: str, name: str | None = None) -> list[Manifest]:
    """Objects of one kind (and name)."""
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    """The single object of that kind and name."""
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objs: tuple[Manifest, ...]) -> list[tuple[str, Manifest]]:
    """``(kind/name, pod spec)`` of every workload that runs our image."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objs
        if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    ]


def env_of(objs: tuple[Manifest, ...]) -> dict[str, str]:
    """The literals of the replaypipe-env ConfigMap."""
    maps = [
        o for o in find(objs, "ConfigMap") if o["metadata"]["name"].startswith("replaypipe-env")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def container_env(objs: tuple[Manifest, ...], container: Manifest) -> dict[str, str]:
    """What a container sees: the replaypipe-env literals, then its own ``env`` values."""
    env = dict(env_of(objs)) if container.get("envFrom") else {}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def mounted_secret(spec: Manifest, container: Manifest, file_path: str) -> tuple[str, str] | None:
    """``(secret name, key)`` of the Secret file a container reads at ``file_path``, or None."""
    directory, _, file_name = file_path.rpartition("/")
    mount = next(
        (m for m in container.get("volumeMounts", []) if m["mountPath"] == directory), None
    )
    if mount is None or "subPath" in mount:
        return None
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    secret = volume.get("secret")
    if secret is None:
        return None
    items = {i["path"]: i["key"] for i in secret.get("items", [])}
    key = items.get(file_name, file_name if not items else None)
    return None if key is None else (secret["secretName"], key)


def deployment(objs: tuple[Manifest, ...], service: str) -> tuple[Manifest, Manifest]:
    """``(pod spec, first container)`` of the Deployment ``replaypipe-<service>``."""
    spec: Manifest = one(objs, "Deployment", f"replaypipe-{service}")["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


def load_yaml(path: Path) -> Manifest:
    """The one YAML document of ``path`` (through the tools' venv: the project has no PyYAML)."""
    result = subprocess.run(
        [str(require_tool(TOOLS_PYTHON)), str(VALIDATOR), "to-json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (doc,) = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def without_hash_suffix(name: str) -> str:
    """A generated object's name as written in the kustomization (no ``-<10 char hash>``)."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)
