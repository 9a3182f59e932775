"""The ceiling: what the broker itself moves here, measured with Kafka's own tools.

``org.apache.kafka.tools.ProducerPerformance`` and ``ConsumerPerformance`` (the
kafka-tools jar that ``scripts/bootstrap.sh`` resolves into ``.cache/kafka/libs``)
on the benchmark's broker, with the pipeline's record sizes and compression, on
topics of their own laid out like the pipeline's (same partitions, same largest
message). The tools run in their own JVM with the default JIT; the broker's CPU
during each run is measured too.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bench_ingest import cpu_seconds
from bench.pipeline_figures import (
    ConsumerRun,
    ProducerRun,
    parse_consumer_performance,
    parse_producer_performance,
)
from services.dev.kafka_broker import KAFKA_LIBS, LOG4J_CONFIG
from services.shared.kafka import MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class RecordShape:
    """What the ceiling's producer sends: a fixed size of incompressible-ish letters
    (``payload_file`` None: stands in for AES-GCM sealed values) or real payloads."""

    compression: str
    record_bytes: int
    payload_file: Path | None = None


@dataclass(frozen=True, slots=True)
class CeilingRun:
    """One producer run then one consumer run over the same records, with CPU spent."""

    producer: ProducerRun
    consumer: ConsumerRun
    producer_broker_cpu_s: float
    producer_tool_cpu_s: float
    consumer_broker_cpu_s: float
    consumer_tool_cpu_s: float


def tool_cmd(main_class: str, *args: str, heap: str = "512m") -> list[str]:
    """A Kafka tool's command line on the resolved jars, logging warnings only."""
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main_class,
        *args,
    ]


def producer_cmd(
    bootstrap: str, topic: str, records: int, shape: RecordShape, producer_props: dict[str, str]
) -> list[str]:
    """ProducerPerformance, unthrottled, with the shape's size or payloads."""
    payload = (
        ["--payload-file", str(shape.payload_file)]
        if shape.payload_file is not None
        else ["--record-size", str(shape.record_bytes)]
    )
    props = {
        "bootstrap.servers": bootstrap,
        "compression.type": shape.compression,
        "max.request.size": str(MAX_MESSAGE_BYTES),
        **producer_props,
    }
    return tool_cmd(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--throughput",
        "-1",
        *payload,
        "--producer-props",
        *(f"{name}={value}" for name, value in props.items()),
    )


def consumer_cmd(bootstrap: str, topic: str, records: int) -> list[str]:
    """ConsumerPerformance reading ``records`` from the start of ``topic``, in a new group."""
    return tool_cmd(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(records),
        "--group",
        f"ceiling-{uuid.uuid4().hex[:8]}",
        "--timeout",
        "30000",
    )


def run_tool(cmd: list[str], broker_pid: int, timeout_s: float) -> tuple[str, float, float]:
    """Run a tool to its end: its output, the broker's CPU seconds and the tool's own."""
    broker_before = cpu_seconds(broker_pid)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tool_cpu = 0.0
    try:
        # The tool's CPU is read just before it exits: poll /proc while it runs.
        while proc.poll() is None:
            try:
                tool_cpu = cpu_seconds(proc.pid)
                proc.wait(0.2)
            except (OSError, subprocess.TimeoutExpired):
                continue
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        tool = cmd[cmd.index("-cp") + 2].rsplit(".", 1)[-1]
        raise RuntimeError(f"{tool} exited with {proc.returncode}: {text[-2000:]}")
    return text, cpu_seconds(broker_pid) - broker_before, tool_cpu


async def create_ceiling_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A topic laid out like ``recordings.raw`` / ``recordings.masked``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


def measure_ceiling(
    bootstrap: str,
    broker_pid: int,
    *,
    name: str,
    shape: RecordShape,
    records: int,
    partitions: int,
    producer_props: dict[str, str],
) -> CeilingRun:
    """Produce ``records`` of ``shape`` to a fresh topic, then consume them all."""
    topic = f"ceiling.{name}.{uuid.uuid4().hex[:6]}"
    asyncio.run(create_ceiling_topic(bootstrap, topic, partitions))
    out, producer_broker, producer_tool = run_tool(
        producer_cmd(bootstrap, topic, records, shape, producer_props), broker_pid, 900
    )
    produced = parse_producer_performance(out)
    out, consumer_broker, consumer_tool = run_tool(
        consumer_cmd(bootstrap, topic, produced.records), broker_pid, 900
    )
    return CeilingRun(
        producer=produced,
        consumer=parse_consumer_performance(out),
        producer_broker_cpu_s=producer_broker,
        producer_tool_cpu_s=producer_tool,
        consumer_broker_cpu_s=consumer_broker,
        consumer_tool_cpu_s=consumer_tool,
    )
