"""Kafka in the rendered overlays: TLS with SCRAM only, and per service a KafkaUser
whose ACLs are exactly the topics and consumer groups its code uses.

The topics come from the code's own constants (found by reading the source), so
a topic added to the code without a row in ``ACCESS`` (and an ACL in
deploy/k8s/base/kafka/users.yaml) fails here; so does a new consumer group.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from services.console import state_feed
from services.masker.settings import MaskerSettings
from services.shared import topics
from services.shared.keyring import KEYS_TOPIC
from services.sink import audit
from services.sink.settings import SinkSettings
from tests.deploy.manifests import (
    CLUSTER_CA_SECRET,
    OVERLAYS,
    ROOT,
    Manifest,
    container_env,
    deployment,
    find,
    mounted_secret,
    one,
    pod_specs,
)

Objects = Callable[[str], tuple[Manifest, ...]]

READ = frozenset({"Read", "Describe"})
WRITE = frozenset({"Write", "Describe"})
READ_WRITE = READ | WRITE

# What each service does with each topic (services/*/app.py, keyring.py, site_feed.py).
ACCESS: dict[str, dict[str, frozenset[str]]] = {
    "ingest": {topics.RAW: WRITE, KEYS_TOPIC: READ_WRITE, topics.SITES_CONFIG: READ},
    "masker": {
        topics.RAW: READ,
        topics.MASKED: WRITE,
        topics.DLQ: WRITE,
        KEYS_TOPIC: READ,
        topics.SITES_CONFIG: READ,
    },
    "sink": {
        topics.MASKED: READ,
        topics.DLQ: WRITE,
        audit.AUDIT_TOPIC: READ,
        topics.SITES_CONFIG: READ,
    },
    "console": {
        state_feed.STATE_TOPIC: READ_WRITE,
        state_feed.AUDIT_TOPIC: WRITE,
        topics.SITES_CONFIG: READ_WRITE,
    },
}
MASKER_APP_ID = MaskerSettings().app_id
SINK_GROUP = SinkSettings().group_id
# Consumer groups (Read on the group commits its offsets). The sink's audit
# consumer joins "<SINK_GROUP_ID>-audit" (services/sink/app.py).
GROUPS = {"masker": {MASKER_APP_ID}, "sink": {SINK_GROUP, f"{SINK_GROUP}-audit"}}
# faust creates its own topics under the app id: the table's changelog, the
# leader assignor's topic.
PREFIXED_TOPICS = {"masker": {f"{MASKER_APP_ID}-": READ_WRITE | {"Create"}}}
# Where the code joins a consumer group (group_id=... other than None), and the
# setting naming the group there. A new one needs an ACL and a line here.
GROUP_CALL_SITES = {
    "services/sink/writer.py": "SINK_GROUP_ID",
    "services/sink/audit.py": "SINK_GROUP_ID",
}
SERVICES = tuple(ACCESS)

Acls = dict[tuple[str, str, str], frozenset[str]]


def _source_files() -> list[Path]:
    return sorted((ROOT / "services").rglob("*.py"))


def topics_named_in_code() -> set[str]:
    """Every Kafka topic name the code declares as a module constant.

    ``services/shared/topics.py`` holds the pipeline's; elsewhere a topic is a
    module-level ``SOMETHING_TOPIC = "name"``.
    """
    found = set()
    for path in _source_files():
        for node in ast.parse(path.read_text()).body:
            if not (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                continue
            name = node.targets[0].id
            in_topics_module = path == ROOT / "services/shared/topics.py" and name.isupper()
            if (in_topics_module and name != "KEY_SEPARATOR") or name.endswith("_TOPIC"):
                found.add(node.value.value)
    return found


def consumer_group_call_sites() -> set[str]:
    """Files that pass a ``group_id`` other than None to a Kafka consumer."""
    found = set()
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg == "group_id" and not (
                        isinstance(value, ast.Constant) and value.value is None
                    ):
                        found.add(str(path.relative_to(ROOT)))
    return found


def acls_of(user: Manifest) -> Acls:
    """``(resource type, name, pattern) -> operations`` of a KafkaUser (allow rules)."""
    acls: Acls = {}
    for rule in user["spec"]["authorization"]["acls"]:
        assert rule.get("type", "allow") == "allow" and rule.get("host", "*") == "*", rule
        resource = rule["resource"]
        key = (resource["type"], resource.get("name", ""), resource.get("patternType", "literal"))
        assert key not in acls, f"{key} listed twice"
        acls[key] = frozenset(rule["operations"])
    return acls


def expected_acls(service: str) -> Acls:
    expected: Acls = {("topic", t, "literal"): ops for t, ops in ACCESS[service].items()}
    for prefix, ops in PREFIXED_TOPICS.get(service, {}).items():
        expected[("topic", prefix, "prefix")] = ops
    for group in GROUPS.get(service, set()):
        expected[("group", group, "literal")] = frozenset({"Read"})
    return expected


def test_every_topic_the_code_names_has_a_row_of_access() -> None:
    used = {topic for table in ACCESS.values() for topic in table}
    assert topics_named_in_code() == used


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_the_code_names_is_a_kafka_topic(objects: Objects, overlay: str) -> None:
    declared = {t["metadata"]["name"] for t in find(objects(overlay), "KafkaTopic")}
    assert declared == topics_named_in_code()


def test_consumer_groups_are_joined_only_where_the_acls_expect() -> None:
    assert consumer_group_call_sites() == set(GROUP_CALL_SITES)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_kafka_user_grants_exactly_what_its_code_uses(
    objects: Objects, overlay: str, service: str
) -> None:
    user = one(objects(overlay), "KafkaUser", f"replaypipe-{service}")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "replaypipe"
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert acls_of(user) == expected_acls(service)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_there_is_one_kafka_user_per_kafka_client(objects: Objects, overlay: str) -> None:
    users = {u["metadata"]["name"] for u in find(objects(overlay), "KafkaUser")}
    assert users == {f"replaypipe-{s}" for s in SERVICES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_join_the_consumer_groups_their_user_may_read(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    _, masker = deployment(objs, "masker")
    _, sink = deployment(objs, "sink")
    assert container_env(objs, masker).get("MASKER_APP_ID", MASKER_APP_ID) == MASKER_APP_ID
    assert container_env(objs, sink).get("SINK_GROUP_ID", SINK_GROUP) == SINK_GROUP


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_listens_only_on_tls_with_scram_and_authorizes_every_request(
    objects: Objects, overlay: str
) -> None:
    kafka = one(objects(overlay), "Kafka", "replaypipe")["spec"]["kafka"]
    listeners = kafka["listeners"]
    assert [(lst["port"], lst["tls"], lst["authentication"]["type"]) for lst in listeners] == [
        (9093, True, "scram-sha-512")
    ]
    assert listeners[0]["type"] == "internal"
    assert kafka["authorization"]["type"] == "simple"
    assert not kafka["authorization"].get("superUsers")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clients_connect_to_the_tls_listener_with_sasl_ssl(objects: Objects, overlay: str) -> None:
    env = container_env(objects(overlay), deployment(objects(overlay), "ingest")[1])
    assert {server.rsplit(":", 1)[1] for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(",")} == {
        "9093"
    }
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_kafka_client_mounts_its_own_password_and_the_cluster_ca(
    objects: Objects, overlay: str, service: str
) -> None:
    objs = objects(overlay)
    spec, container = deployment(objs, service)
    env = container_env(objs, container)
    assert env["KAFKA_SASL_USERNAME"] == f"replaypipe-{service}"
    assert mounted_secret(spec, container, env["KAFKA_SASL_PASSWORD_FILE"]) == (
        f"replaypipe-{service}",
        "password",
    )
    assert mounted_secret(spec, container, env["KAFKA_SSL_CA_FILE"]) == (
        CLUSTER_CA_SECRET,
        "ca.crt",
    )
    assert (
        one(objs, "Deployment", f"replaypipe-{service}")["spec"]["template"]["metadata"]["labels"][
            "replaypipe.io/kafka-client"
        ]
        == "true"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_workload_mounts_another_services_kafka_password(objects: Objects, overlay: str) -> None:
    objs = objects(overlay)
    kafka_secrets = {u["metadata"]["name"] for u in find(objs, "KafkaUser")}
    for name, spec in pod_specs(objs):
        mounted = {
            v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v
        } & kafka_secrets
        assert mounted <= {name.split("/", 1)[1]}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_kafka_clients_may_reach_the_brokers(objects: Objects, overlay: str) -> None:
    objs = objects(overlay)
    labelled = {
        name
        for name, _ in pod_specs(objs)
        for o in find(objs, name.split("/")[0], name.split("/")[1])
        if o["spec"]["template"]["metadata"]["labels"].get("replaypipe.io/kafka-client") == "true"
    }
    assert labelled == {f"Deployment/replaypipe-{s}" for s in SERVICES}
    (listener,) = one(objs, "Kafka", "replaypipe")["spec"]["kafka"]["listeners"]
    assert listener["networkPolicyPeers"] == [
        {"podSelector": {"matchLabels": {"replaypipe.io/kafka-client": "true"}}}
    ]
