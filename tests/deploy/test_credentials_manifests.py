"""Credentials in the rendered overlays: ClickHouse users per client, Secrets made, never committed.

Every password is a file in a Secret that only its client mounts. Strimzi makes
the Kafka users' Secrets and the cluster CA, cert-manager the TLS certificates;
the operator creates the others with the commands in docs/operations.md (prod),
or scripts/k8s_dev_secrets.sh writes random files the dev overlay generates
them from. ClickHouse's clients speak HTTPS and check the server's certificate.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    CLUSTER_CA_SECRET,
    DEPLOY,
    OVERLAYS,
    ROOT,
    Manifest,
    container_env,
    deployment,
    find,
    load_yaml,
    mounted_secret,
    one,
    pod_specs,
)

Objects = Callable[[str], tuple[Manifest, ...]]

CLICKHOUSE_CERTIFICATE = "replaypipe-clickhouse-tls"
INGEST_CERTIFICATE = "replaypipe-ingest-internal-tls"
# ClickHouse user -> the client it is for (its Secret is replaypipe-clickhouse-<client>).
CLICKHOUSE_USERS = {
    "replaypipe_migrate": "migrate",
    "replaypipe_sink": "sink",
    "replaypipe_analyst": "analyst",
}
READ_ONLY_GRANT = re.compile(r"^GRANT SELECT ON replaypipe\.\*$")
DDL = re.compile(r"\b(ALL|CREATE|DROP|ALTER TABLE|TRUNCATE|ALTER (?!DELETE))", re.IGNORECASE)


def clickhouse_users(objs: tuple[Manifest, ...]) -> dict[str, dict[str, object]]:
    """``user -> {setting: value}`` of the ClickHouseInstallation's ``users`` section."""
    flat = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]["configuration"]["users"]
    users: dict[str, dict[str, object]] = {}
    for path, value in flat.items():
        user, _, setting = path.partition("/")
        users.setdefault(user, {})[setting] = value
    return users


def clickhouse_profile(objs: tuple[Manifest, ...], name: str) -> dict[str, str]:
    flat = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]["configuration"]["profiles"]
    prefix = f"{name}/"
    return {k.removeprefix(prefix): str(v) for k, v in flat.items() if k.startswith(prefix)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clickhouse_has_one_user_per_client_with_its_password_from_a_secret(
    objects: Objects, overlay: str
) -> None:
    users = clickhouse_users(objects(overlay))
    assert set(users) == set(CLICKHOUSE_USERS)  # `default` keeps the operator's localhost rule
    for user, client in CLICKHOUSE_USERS.items():
        assert users[user]["k8s_secret_password"] == f"replaypipe-clickhouse-{client}/password"
        assert not {"password", "password_sha256_hex"} & set(users[user]), user
        assert users[user]["grants/query"], f"{user} without grants would have every right"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_clickhouse_reader_is_read_only_by_profile_and_by_grants(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    analyst = clickhouse_users(objs)["replaypipe_analyst"]
    assert int(clickhouse_profile(objs, str(analyst["profile"]))["readonly"]) in (1, 2)
    grants = analyst["grants/query"]
    assert isinstance(grants, list) and all(READ_ONLY_GRANT.match(g) for g in grants), grants


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_migration_user_may_change_the_schema(objects: Objects, overlay: str) -> None:
    grants = clickhouse_users(objects(overlay))["replaypipe_sink"]["grants/query"]
    assert isinstance(grants, list)
    schema_changes = [g for g in grants if DDL.search(g.removeprefix("GRANT "))]
    # Its start creates the migrations table if missing (a no-op after the Job).
    assert schema_changes == ["GRANT CREATE TABLE ON replaypipe.schema_migrations"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    ("workload", "prefix", "user"),
    [
        ("Deployment/replaypipe-sink", "", "replaypipe_sink"),
        ("Deployment/replaypipe-sink", "SINK_SQL_", "replaypipe_analyst"),
        ("Job/replaypipe-migrate", "", "replaypipe_migrate"),
    ],
)
def test_clickhouse_clients_log_in_as_their_user_with_the_mounted_password(
    objects: Objects, overlay: str, workload: str, prefix: str, user: str
) -> None:
    objs = objects(overlay)
    spec = dict(pod_specs(objs))[workload]
    container = spec["containers"][0]
    env = container_env(objs, container)
    assert "@" not in env[f"{prefix}CLICKHOUSE_URL"]  # no credentials in a URL
    assert env[f"{prefix}CLICKHOUSE_USER"] == user
    secret = f"replaypipe-clickhouse-{CLICKHOUSE_USERS[user]}"
    assert mounted_secret(spec, container, env[f"{prefix}CLICKHOUSE_PASSWORD_FILE"]) == (
        secret,
        "password",
    )


def test_no_kustomization_carries_a_secret_value() -> None:
    for path in sorted((DEPLOY / "k8s").rglob("kustomization.yaml")):
        doc = load_yaml(path)
        for generator in doc.get("secretGenerator", []):
            assert not generator.get("literals") and not generator.get("envs"), path
            for source in generator.get("files", []):
                file_path = path.parent / source.partition("=")[2]
                assert file_path.parent.name == "secrets", f"{path}: {source}"
    ignored = (DEPLOY / "k8s/overlays/dev/secrets/.gitignore").read_text().split()
    assert ignored[-2:] == ["*", "!.gitignore"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_rendered_object_holds_a_secret_but_generated_secrets(
    objects: Objects, overlay: str
) -> None:
    secrets = find(objects(overlay), "Secret")
    if overlay == "prod":
        assert secrets == []
    for secret in secrets:
        assert "stringData" not in secret


def clickhouse_pod(objs: tuple[Manifest, ...]) -> Manifest:
    chi = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]
    (template,) = chi["templates"]["podTemplates"]
    spec: Manifest = template["spec"]
    return spec


def referenced_secrets(objs: tuple[Manifest, ...]) -> set[str]:
    """Every Secret a workload mounts or reads, and those the ClickHouseInstallation reads."""
    names = set()
    for _, spec in [*pod_specs(objs), ("ClickHouse", clickhouse_pod(objs))]:
        names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec["containers"]:
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
    for settings in clickhouse_users(objs).values():
        ref = settings.get("k8s_secret_password")
        if isinstance(ref, str):
            names.add(ref.split("/")[0])
    return names


def made_by_operators(objs: tuple[Manifest, ...]) -> set[str]:
    """Secrets Strimzi (users, cluster CA) and cert-manager (certificates) make."""
    certificates = {c["spec"]["secretName"] for c in find(objs, "Certificate")}
    users = {u["metadata"]["name"] for u in find(objs, "KafkaUser")}
    return users | certificates | {CLUSTER_CA_SECRET}


def secrets_created_in_the_docs() -> set[str]:
    text = (ROOT / "docs/operations.md").read_text()
    return set(re.findall(r"create secret generic (\S+)", text))


def test_prod_needs_exactly_the_secrets_the_deploy_steps_create(objects: Objects) -> None:
    objs = objects("prod")
    assert referenced_secrets(objs) - made_by_operators(objs) == secrets_created_in_the_docs()


def test_dev_renders_every_secret_the_operators_do_not_make(objects: Objects) -> None:
    objs = objects("dev")
    rendered = {s["metadata"]["name"] for s in find(objs, "Secret")}
    assert referenced_secrets(objs) - made_by_operators(objs) == rendered


def test_dev_secret_script_writes_every_file_the_overlay_reads(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts/k8s_dev_secrets.sh"), str(tmp_path)], check=True, capture_output=True
    )
    overlay = load_yaml(DEPLOY / "k8s/overlays/dev/kustomization.yaml")
    wanted = {
        Path(source.partition("=")[2]).name
        for generator in overlay["secretGenerator"]
        for source in generator["files"]
    }
    written = {p.name: p for p in tmp_path.iterdir()}
    assert set(written) == wanted
    for path in written.values():
        assert path.stat().st_mode & 0o077 == 0, path  # owner only
        assert len(path.read_text()) >= 44, path  # 256 random bits, hex or base64


def clickhouse_https(objs: tuple[Manifest, ...]) -> tuple[int, str, str]:
    """``(https_port, certificate file, key file)`` of the servers' TLS config."""
    xml = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]["configuration"]["files"][
        "config.d/replaypipe-tls.xml"
    ]

    def element(name: str) -> str:
        found = re.search(rf"<{name}>([^<]+)</{name}>", xml)
        assert found, name
        return found.group(1)

    return int(element("https_port")), element("certificateFile"), element("privateKeyFile")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clickhouse_serves_https_with_the_certificate_cert_manager_keeps(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    port, cert_file, key_file = clickhouse_https(objs)
    certificate = one(objs, "Certificate", CLICKHOUSE_CERTIFICATE)
    spec = clickhouse_pod(objs)
    container = spec["containers"][0]
    secret = certificate["spec"]["secretName"]
    assert mounted_secret(spec, container, cert_file) == (secret, "tls.crt")
    assert mounted_secret(spec, container, key_file) == (secret, "tls.key")
    assert certificate["spec"]["issuerRef"]["name"] == "replaypipe-internal-ca"
    service = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]["templates"][
        "serviceTemplates"
    ][0]["spec"]
    assert service["type"] == "ClusterIP" and port in [p["port"] for p in service["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    ("workload", "prefix"),
    [
        ("Deployment/replaypipe-sink", ""),
        ("Deployment/replaypipe-sink", "SINK_SQL_"),
        ("Job/replaypipe-migrate", ""),
    ],
)
def test_clickhouse_clients_speak_https_and_check_the_servers_certificate(
    objects: Objects, overlay: str, workload: str, prefix: str
) -> None:
    objs = objects(overlay)
    spec = dict(pod_specs(objs))[workload]
    container = spec["containers"][0]
    env = container_env(objs, container)
    url = re.fullmatch(r"(\w+)://([^:/]+):(\d+)/\w+", env[f"{prefix}CLICKHOUSE_URL"])
    assert url, env[f"{prefix}CLICKHOUSE_URL"]
    certificate = one(objs, "Certificate", CLICKHOUSE_CERTIFICATE)
    assert url.group(1) == "https"
    assert url.group(2) in certificate["spec"]["dnsNames"]
    assert int(url.group(3)) == clickhouse_https(objs)[0]
    assert mounted_secret(spec, container, env["CLICKHOUSE_CA_FILE"]) == (
        certificate["spec"]["secretName"],
        "ca.crt",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clickhouse_clients_may_reach_the_https_port_only(objects: Objects, overlay: str) -> None:
    policy = one(objects(overlay), "NetworkPolicy", "clickhouse-from-clients")["spec"]
    client_rules = [
        rule
        for rule in policy["ingress"]
        if {"podSelector": {"matchLabels": {"replaypipe.io/clickhouse-client": "true"}}}
        in rule["from"]
    ]
    assert [[p["port"] for p in rule["ports"]] for rule in client_rules] == [
        [clickhouse_https(objects(overlay))[0]]
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_serves_https_which_the_ingress_controller_and_prometheus_check(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    certificate = one(objs, "Certificate", INGEST_CERTIFICATE)["spec"]
    assert certificate["issuerRef"]["name"] == "replaypipe-internal-ca"
    spec, container = deployment(objs, "ingest")
    env = container_env(objs, container)
    secret = certificate["secretName"]
    assert mounted_secret(spec, container, env["INGEST_TLS_CERT_FILE"]) == (secret, "tls.crt")
    assert mounted_secret(spec, container, env["INGEST_TLS_KEY_FILE"]) == (secret, "tls.key")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    service = one(objs, "Service", "replaypipe-ingest")
    assert service["metadata"]["name"] in certificate["dnsNames"]
    annotations = one(objs, "Ingress", "replaypipe-ingest")["metadata"]["annotations"]
    namespace = service["metadata"]["namespace"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-secret"] == f"{namespace}/{secret}"
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-name"] in certificate["dnsNames"]
    (endpoint,) = one(objs, "ServiceMonitor", "replaypipe-ingest")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": secret, "key": "ca.crt"}
    assert endpoint["tlsConfig"]["serverName"] in certificate["dnsNames"]
