"""The benchmark's baseline: a faust agent that forwards ``recordings.raw`` unchanged.

Same faust App settings as the masker (:func:`services.masker.app.faust_app`), same
broker and data; it only copies each message's key and value to another topic.
Run by ``bench/bench_masker.py`` as its own process:

    BENCH_APP_ID=... BENCH_OUTPUT_TOPIC=... python -m bench.masker_passthrough
"""

from __future__ import annotations

import os
import sys

import faust

from services.masker.app import bytes_topic, faust_app, logging_config
from services.masker.settings import MaskerSettings
from services.shared import topics


def main() -> None:
    """Run one pass-through worker until SIGTERM."""
    from faust.worker import Worker

    settings = MaskerSettings.from_env()
    app = faust_app(settings, app_id=os.environ["BENCH_APP_ID"])
    source = bytes_topic(app, topics.RAW, settings.kafka.partitions)
    output = bytes_topic(app, os.environ["BENCH_OUTPUT_TOPIC"], settings.kafka.partitions)

    @app.agent(source, concurrency=1)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await output.send(key=event.key, value=event.value)

    _ = forward
    sys.argv = [sys.argv[0], "worker"]
    Worker(
        app,
        loglevel="WARNING",
        logging_config=logging_config("WARNING"),
        quiet=True,
        redirect_stdouts=False,
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
