"""The console in the rendered overlays: its pod, who reaches it, what it reaches, its topics."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.console.settings import ConsoleSettings
from services.console.state_feed import (
    AUDIT_RETENTION_MS,
    AUDIT_TOPIC,
    STATE_TOPIC,
    STATE_TOPIC_CONFIGS,
)
from tests.deploy.manifests import (
    OVERLAYS,
    Manifest,
    container_env,
    deployment,
    find,
    mounted_secret,
    one,
    without_hash_suffix,
)

Objects = Callable[[str], tuple[Manifest, ...]]
PORT = ConsoleSettings().port
SINK_PORT = 8082
OPS_PATHS = ("/metrics", "/healthz", "/readyz")


def policies_for(objs: tuple[Manifest, ...], component: str, kind: str) -> list[Manifest]:
    """NetworkPolicies of ``kind`` (Ingress/Egress) that select pods of ``component``."""
    return [
        p["spec"]
        for p in find(objs, "NetworkPolicy")
        if kind in p["spec"]["policyTypes"]
        and p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        == component
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_serves_its_port_and_probes_its_health_endpoints(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    _, container = deployment(objs, "console")
    assert container["args"] == ["console"]
    assert [p["containerPort"] for p in container["ports"]] == [PORT]
    assert container_env(objs, container)["CONSOLE_PORT"] == str(PORT)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_reads_its_keys_from_mounted_secrets_and_sets_secure_cookies(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    spec, container = deployment(objs, "console")
    env = container_env(objs, container)
    secrets = {
        name: mounted_secret(spec, container, env[name])
        for name in ("CONSOLE_SECRET_KEY_FILE", "CONSOLE_TOTP_KEY_FILE", "SINK_ADMIN_TOKEN_FILE")
    }
    assert {k: (without_hash_suffix(s[0]), s[1]) for k, s in secrets.items() if s} == {
        "CONSOLE_SECRET_KEY_FILE": ("replaypipe-console-keys", "secret-key"),
        "CONSOLE_TOTP_KEY_FILE": ("replaypipe-console-keys", "totp-key"),
        "SINK_ADMIN_TOKEN_FILE": ("replaypipe-sink-admin", "token"),
    }
    assert "CONSOLE_SECRET_KEY" not in env and "SINK_ADMIN_TOKEN" not in env
    assert env["CONSOLE_COOKIE_SECURE"] == "true"  # TLS ends at the ingress controller
    assert env["CONSOLE_SINK_URL"] == f"http://replaypipe-sink:{SINK_PORT}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_is_reachable_from_the_ingress_controller_and_prometheus_only(
    objects: Objects, overlay: str
) -> None:
    peers = []
    objs = objects(overlay)
    for policy in policies_for(objs, "console", "Ingress"):
        for rule in policy["ingress"]:
            assert [p["port"] for p in rule["ports"]] == [PORT]
            peers += [p["namespaceSelector"]["matchLabels"] for p in rule["from"]]
    metrics = one(objs, "NetworkPolicy", "metrics-from-prometheus")["spec"]
    assert "console" in metrics["podSelector"]["matchExpressions"][0]["values"]
    assert PORT in [p["port"] for p in metrics["ingress"][0]["ports"]]
    assert peers == [{"kubernetes.io/metadata.name": "ingress-nginx"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_may_reach_dns_the_kafka_tls_listener_and_the_sink_only(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    (egress,) = policies_for(objs, "console", "Egress")
    reached = {
        (
            tuple(sorted(peer.get("podSelector", {}).get("matchLabels", {}).items())),
            port["port"],
        )
        for rule in egress["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    kafka_port = one(objs, "Kafka", "replaypipe")["spec"]["kafka"]["listeners"][0]["port"]
    assert reached == {
        ((("k8s-app", "kube-dns"),), 53),
        ((("strimzi.io/cluster", "replaypipe"), ("strimzi.io/kind", "Kafka")), kafka_port),
        (
            (("app.kubernetes.io/component", "sink"), ("app.kubernetes.io/name", "replaypipe")),
            SINK_PORT,
        ),
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sink_accepts_the_console_on_its_read_api(objects: Objects, overlay: str) -> None:
    rules = [r for p in policies_for(objects(overlay), "sink", "Ingress") for r in p["ingress"]]
    assert any(
        [p["port"] for p in rule["ports"]] == [SINK_PORT]
        and {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "replaypipe",
                    "app.kubernetes.io/component": "console",
                }
            }
        }
        in rule["from"]
        for rule in rules
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_ingress_is_tls_and_routes_no_ops_endpoint(objects: Objects, overlay: str) -> None:
    ingress = one(objects(overlay), "Ingress", "replaypipe-console")["spec"]
    hosts = {rule["host"] for rule in ingress["rules"]}
    assert hosts <= {h for tls in ingress["tls"] for h in tls["hosts"]}
    for rule in ingress["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {
                "name": "replaypipe-console",
                "port": {"name": "http"},
            }
            for ops in OPS_PATHS:
                routed = ops == path["path"] or (
                    path["pathType"] == "Prefix" and ops.startswith(path["path"].rstrip("/") + "/")
                )
                assert not routed, f"{path['path']} exposes {ops}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_is_scraped_like_the_other_services(objects: Objects, overlay: str) -> None:
    monitor = one(objects(overlay), "ServiceMonitor", "replaypipe-console")["spec"]
    service = one(objects(overlay), "Service", "replaypipe-console")["spec"]
    assert monitor["selector"]["matchLabels"] == service["selector"]
    assert [e["port"] for e in monitor["endpoints"]] == [p["name"] for p in service["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_topics_are_configured_as_the_console_creates_them(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    state = one(objs, "KafkaTopic", STATE_TOPIC)["spec"]
    assert state["partitions"] == 1  # one total order of every change
    for name, value in STATE_TOPIC_CONFIGS.items():
        assert str(state["config"][name]) == value, name
    assert one(objs, "KafkaTopic", AUDIT_TOPIC)["spec"]["config"]["retention.ms"] == (
        AUDIT_RETENTION_MS
    )
