"""Raw encryption in the rendered overlays: the KEK Secret reaches ingest and the masker only."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from services.shared.keyring import KEYS_TOPIC, KEYS_TOPIC_CONFIGS
from tests.deploy.manifests import OVERLAYS, Manifest, find, one

Objects = Callable[[str], tuple[Manifest, ...]]


def kek_volume(deployment: Manifest) -> Manifest | None:
    spec = deployment["spec"]["template"]["spec"]
    return next((v for v in spec.get("volumes", []) if "secret" in v and "kek" in v["name"]), None)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_and_the_masker_require_encryption_with_the_mounted_kek(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    for service in ("ingest", "masker"):
        deployment = one(objs, "Deployment", f"replaypipe-{service}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RAW_ENCRYPTION"] == "required", service
        volume = kek_volume(deployment)
        assert volume is not None, service
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount["mountPath"] == env["RAW_KEK_DIR"] and mount["readOnly"] is True
        assert "subPath" not in mount  # an added KEK must reach the running pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_other_workload_mounts_the_kek(objects: Objects, overlay: str) -> None:
    for deployment in find(objects(overlay), "Deployment"):
        name = deployment["metadata"]["name"]
        if name not in ("replaypipe-ingest", "replaypipe-masker"):
            assert kek_volume(deployment) is None, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_keys_topic_is_compacted_as_the_code_creates_it(
    objects: Objects, overlay: str
) -> None:
    config = one(objects(overlay), "KafkaTopic", KEYS_TOPIC)["spec"]["config"]
    for name, value in KEYS_TOPIC_CONFIGS.items():
        assert str(config[name]) == value, name


def test_the_dev_kek_is_a_32_byte_key_and_prod_ships_none(objects: Objects) -> None:
    (secret,) = [
        s
        for s in find(objects("dev"), "Secret")
        if s["metadata"]["name"].startswith("replaypipe-raw-kek-")  # generator's hash suffix
    ]
    (text,) = (base64.b64decode(v) for v in secret["data"].values())
    assert len(base64.b64decode(text)) == 32
    assert not [s for s in find(objects("prod"), "Secret") if "kek" in s["metadata"]["name"]]
