"""The overlays render, validate against the pinned Kubernetes schemas, and say what ops needs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    OVERLAYS,
    TOOLS_PYTHON,
    VALIDATOR,
    Manifest,
    env_of,
    find,
    one,
    pod_specs,
    require_tool,
)

Objects = Callable[[str], tuple[Manifest, ...]]
Render = Callable[[str], str]


def run_validator(yaml_text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(require_tool(TOOLS_PYTHON)),
            str(VALIDATOR),
            "validate",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "-",
        ],
        input=yaml_text,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_its_schema(render: Render, overlay: str) -> None:
    result = run_validator(render(overlay))
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_a_misspelled_field_in_a_custom_resource(render: Render) -> None:
    broken = render("dev").replace("partitions: 3", "partitons: 3", 1)
    result = run_validator(broken)
    assert result.returncode == 1
    assert "partitons" in result.stdout


def test_validator_rejects_a_kind_it_has_no_schema_for() -> None:
    result = run_validator("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n")
    assert result.returncode == 1
    assert "no schema" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumer_replicas_do_not_exceed_partitions(objects: Objects, overlay: str) -> None:
    objs = objects(overlay)
    partitions = int(env_of(objs)["KAFKA_PARTITIONS"])
    for topic in ("recordings.raw", "recordings.masked"):
        assert one(objs, "KafkaTopic", topic)["spec"]["partitions"] == partitions
    for service in ("masker", "sink"):
        replicas = one(objs, "Deployment", f"replaypipe-{service}")["spec"]["replicas"]
        assert 1 <= replicas <= partitions, f"{service}: {replicas} replicas > {partitions}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_take_full_snapshots_and_sites_config_is_compacted(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    limit = int(env_of(objs)["KAFKA_MAX_MESSAGE_BYTES"])
    for topic in ("recordings.raw", "recordings.masked", "recordings.dlq"):
        config = one(objs, "KafkaTopic", topic)["spec"]["config"]
        assert config["max.message.bytes"] >= limit > 1024 * 1024
    broker = one(objs, "Kafka", "replaypipe")["spec"]["kafka"]["config"]
    assert broker["message.max.bytes"] >= limit
    assert one(objs, "KafkaTopic", "sites.config")["spec"]["config"]["cleanup.policy"] == "compact"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topic_replication_fits_the_brokers(objects: Objects, overlay: str) -> None:
    objs = objects(overlay)
    brokers = sum(p["spec"]["replicas"] for p in find(objs, "KafkaNodePool"))
    assert int(env_of(objs)["KAFKA_REPLICATION_FACTOR"]) <= brokers
    for topic in find(objs, "KafkaTopic"):
        assert (
            topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"] <= brokers
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_restricted(objects: Objects, overlay: str) -> None:
    for name, spec in pod_specs(objects(overlay)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_probe_their_health_endpoints_on_their_ports(
    objects: Objects, overlay: str
) -> None:
    ports = {"ingest": 8080, "masker": 8081, "sink": 8082}
    for service, port in ports.items():
        spec = one(objects(overlay), "Deployment", f"replaypipe-{service}")["spec"]
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"] == [service]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_have_time_to_flush_and_commit_on_shutdown(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    grace = {
        s: one(objs, "Deployment", f"replaypipe-{s}")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        for s in ("masker", "sink")
    }
    assert grace["masker"] >= 60
    assert grace["sink"] >= 120


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_is_served_over_tls_autoscaled_and_protected_from_eviction(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    ingress = one(objs, "Ingress", "replaypipe-ingest")["spec"]
    hosts = {rule["host"] for rule in ingress["rules"]}
    assert hosts <= {h for tls in ingress["tls"] for h in tls["hosts"]}
    hpa = one(objs, "HorizontalPodAutoscaler", "replaypipe-ingest")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "replaypipe-ingest"
    assert "replicas" not in one(objs, "Deployment", "replaypipe-ingest")["spec"]
    pdb = one(objs, "PodDisruptionBudget", "replaypipe-ingest")["spec"]
    if "minAvailable" in pdb:
        assert pdb["minAvailable"] < hpa["minReplicas"]


def test_dev_overlay_renders_every_configmap_and_secret_it_references(objects: Objects) -> None:
    objs = objects("dev")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for workload, spec in pod_specs(objs):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, workload
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names, workload
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, workload


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_ingest_the_console_and_the_read_api_accept_traffic_from_outside(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    policies = find(objs, "NetworkPolicy")
    deny = one(objs, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    )
    outside = {}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                labels = peer.get("namespaceSelector", {}).get("matchLabels", {})
                if (
                    labels.get("kubernetes.io/metadata.name") == "ingress-nginx"
                    or "ipBlock" in peer
                ):
                    component = policy["spec"]["podSelector"]["matchLabels"][
                        "app.kubernetes.io/component"
                    ]
                    outside[component] = [p["port"] for p in rule["ports"]]
    assert outside == {"ingest": [8080], "console": [8083], "sink": [8082]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_applies_the_cluster_schema_of_the_clickhouse_cluster(
    objects: Objects, overlay: str
) -> None:
    objs = objects(overlay)
    job = one(objs, "Job", "replaypipe-migrate")["spec"]["template"]["spec"]
    cluster = one(objs, "ClickHouseInstallation", "replaypipe")["spec"]["configuration"]
    assert job["containers"][0]["args"] == ["migrate", "--cluster", cluster["clusters"][0]["name"]]


def test_prod_runs_clickhouse_sharded_and_replicated(objects: Objects) -> None:
    layout = one(objects("prod"), "ClickHouseInstallation", "replaypipe")["spec"]["configuration"][
        "clusters"
    ][0]["layout"]
    assert layout["shardsCount"] >= 2 and layout["replicasCount"] >= 2


def test_image_is_multi_stage_non_root_without_build_tools() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    assert len(stages) >= 3, "expected a build stage and a runtime stage"
    final = stages[-1]
    assert "build-essential" not in final and "gcc" not in final
    assert "COPY --from=build" in final
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
