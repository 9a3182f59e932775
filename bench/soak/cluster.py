"""A 3-node Apache Kafka cluster (KRaft) of the real jars, for the soak.

Each node is a broker and a controller (a KRaft quorum of three), all on
127.0.0.1. Topics are replicated three times and a write needs two in-sync
replicas (``min.insync.replicas=2``), so one node can die without losing an
acknowledged (``acks=all``) record nor refusing new ones.

A node is :class:`~services.dev.kafka_broker.LocalKafkaBroker` with the
cluster's lines in place of the single-node ones, and the storage formatted
with the cluster's one id.
"""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from services.dev.kafka_broker import BrokerError, LocalKafkaBroker, free_port, new_cluster_id
from services.shared.kafka import KafkaSettings, ensure_topics

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


@dataclass
class ClusterNode(LocalKafkaBroker):
    """One broker+controller of a :class:`KafkaCluster`."""

    node_id: int = 1
    cluster_id: str = ""
    quorum_voters: str = ""

    def _properties(self) -> str:
        lines = super()._properties().splitlines()
        props = dict(line.split("=", 1) for line in lines if "=" in line)
        props.update(
            {
                "node.id": str(self.node_id),
                "controller.quorum.voters": self.quorum_voters,
                "offsets.topic.replication.factor": str(REPLICATION_FACTOR),
                "transaction.state.log.replication.factor": str(REPLICATION_FACTOR),
                "transaction.state.log.min.isr": str(MIN_INSYNC_REPLICAS),
                "share.coordinator.state.topic.replication.factor": str(REPLICATION_FACTOR),
                "share.coordinator.state.topic.min.isr": str(MIN_INSYNC_REPLICAS),
                "default.replication.factor": str(REPLICATION_FACTOR),
                "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
                # A write acknowledged by 2 of 3 must survive the leader's death:
                # never elect a replica that was out of sync.
                "unclean.leader.election.enable": "false",
            }
        )
        return "\n".join(f"{key}={value}" for key, value in props.items()) + "\n"

    def format_if_needed(self) -> None:
        """Write the config; format the storage once, with the cluster's id."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties())
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        result = subprocess.run(
            self._java_cmd(
                "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(config)
            ),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"kafka storage format failed: {result.stderr.decode()[-2000:]}")


@dataclass
class KafkaCluster:
    """Three :class:`ClusterNode` under ``data_dir/node-N`` on free ports."""

    data_dir: Path
    size: int = 3
    heap: str = "512m"
    partitions: int = 4
    nodes: list[ClusterNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        cluster_id = new_cluster_id()
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{ctl}" for n, (_, ctl) in enumerate(ports))
        self.nodes = [
            ClusterNode(
                data_dir=self.data_dir / f"node-{n + 1}",
                port=port,
                controller_port=ctl,
                heap=self.heap,
                partitions=self.partitions,
                stop_with_parent=True,
                node_id=n + 1,
                cluster_id=cluster_id,
                quorum_voters=voters,
            )
            for n, (port, ctl) in enumerate(ports)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node, comma-separated, as clients take it."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def kafka_settings(self) -> KafkaSettings:
        """The cluster as the services' ``KAFKA_*`` settings name it."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            partitions=self.partitions,
            replication_factor=REPLICATION_FACTOR,
        )

    def service_env(self) -> dict[str, str]:
        """``KAFKA_*`` variables for a service on this cluster."""
        settings = self.kafka_settings()
        return {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKA_PARTITIONS": str(settings.partitions),
            "KAFKA_REPLICATION_FACTOR": str(settings.replication_factor),
        }

    async def start(self, ready_within_s: float = 180.0) -> None:
        """Start every node at once (no node is ready before the quorum is), then the topics.

        Each start blocks until its node answers, which needs a majority up, so
        they run in the loop's executor threads: those live as long as the loop,
        and a node dies with the thread that started it (``stop_with_parent``).
        """
        starts = [asyncio.to_thread(node.start, ready_within_s) for node in self.nodes]
        await asyncio.gather(*starts)
        await ensure_topics(self.kafka_settings())

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL if one hangs)."""
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))
