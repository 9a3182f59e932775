"""The sealed side of ``bench/bench_masker.py --raw-encryption``.

- :func:`seal_values` seals the benchmark's raw values with ingest's own
  :class:`~services.shared.keyring.RawSealer`: a data key wrapped by the KEK of
  ``RAW_KEK_DIR`` and published to ``keys.raw`` before first use, each value
  sealed for its Kafka key, exactly as the gateway does.
- :func:`sealed_opener` opens them in-process the way the masker's
  ``RawOpener`` does (keyring look-up by the value's key id, then
  ``open_sealed``), for the in-process CPU measure.
- ``python -m bench.masker_sealed`` runs the masker (``replaypipe masker``)
  reading :data:`SEALED_TOPIC` instead of ``recordings.raw``; nothing else
  differs. ``python -m bench.masker_sealed passthrough`` runs the pass-through
  agent (``bench/masker_passthrough.py``) on it the same way. The clear and
  the sealed copies of the data then sit side by side on one broker, and each
  run reads all of one of them from the start.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from services.shared import topics
from services.shared.kafka import KafkaSettings
from services.shared.keyring import Keyring, RawEncryptionSettings, RawSealer, now_ms
from services.shared.raw_crypto import open_sealed, sealed_key_id

SEALED_TOPIC = "bench.raw.sealed"
# The first data key is published within seconds on a local broker; longer means
# keys.raw is not writable, and the benchmark should say so rather than hang.
FIRST_KEY_TIMEOUT_S = 60.0


async def seal_values(
    messages: Sequence[tuple[bytes, bytes]],
    settings: RawEncryptionSettings,
    kafka: KafkaSettings,
) -> list[bytes]:
    """The values of ``(message key, value)`` pairs, sealed as ingest seals them (same order)."""
    sealer = RawSealer(settings, kafka)
    await sealer.start()
    try:
        async with asyncio.timeout(FIRST_KEY_TIMEOUT_S):
            return [await sealer.seal(key, value) for key, value in messages]
    finally:
        await sealer.stop()


def sealed_opener(keyring: Keyring, at_ms: int | None = None) -> Callable[[bytes, bytes], bytes]:
    """``(message key, sealed value) -> envelope bytes``, as the masker opens a raw value.

    ``at_ms`` is the clock the keyring checks key ages against (now by default);
    raises :class:`~services.shared.raw_crypto.RawValueUnreadable` like the masker.
    """
    clock = now_ms() if at_ms is None else at_ms

    def open_value(message_key: bytes, value: bytes) -> bytes:
        return open_sealed(keyring.get(sealed_key_id(value), clock), message_key, value)

    return open_value


def main() -> None:
    """Run one masker (or, with ``passthrough``, pass-through) worker on SEALED_TOPIC."""
    # Both look the source topic up at start-up (``topics.RAW`` at call time), so
    # renaming it here is the only difference.
    topics.RAW = SEALED_TOPIC
    if sys.argv[1:] == ["passthrough"]:
        from bench.masker_passthrough import main as worker_main
    else:
        from services.masker.app import main as worker_main
    worker_main()


if __name__ == "__main__":
    main()
