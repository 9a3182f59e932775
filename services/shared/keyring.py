"""Data keys of ``recordings.raw`` on Kafka: rotation, following, destruction, KEK rotation.

- Each ingest process creates a random data key per rotation period, wraps it
  with the current key-encryption key (KEK, from files) and publishes it to the
  compacted topic ``keys.raw`` (key = data key id, ``acks=all``) *before* sealing
  anything with it. Rotation is a timer in every ingest: no restart, no
  coordination beyond the topic.
- Every ingest and masker follows ``keys.raw`` from the beginning into a
  :class:`Keyring` (like ``sites.config``). The masker, meeting a key id it does
  not know, reads the topic up to its current end before calling the value
  unreadable.
- A data key older than ``RAW_KEY_DESTROY_AFTER_S`` (the raw topic's retention
  plus a margin) is forgotten by every process and tombstoned by the ingests;
  compaction then deletes the wrapped key, and the raw data sealed with it can
  no longer be read by anyone (crypto-shredding).
- KEK rotation: add a KEK file, ``replaypipe keys rewrap`` re-publishes every
  live data key wrapped with it, then the old KEK file is removed.

:class:`RawSealer` is ingest's side, :class:`RawOpener` the masker's; both are
no-ops with ``RAW_ENCRYPTION=off``. docs/security.md describes the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from services.shared.compacted_topic import CompactedTopicFollower
from services.shared.env import SettingError, from_env, setting
from services.shared.kafka_security import aiokafka_client_kwargs
from services.shared.raw_crypto import (
    KEK_MISSING,
    KEY_DESTROYED,
    NOT_ENCRYPTED,
    UNKNOWN_DATA_KEY,
    DataKey,
    KekError,
    KekSet,
    RawValueUnreadable,
    is_sealed,
    new_kek_secret_text,
    open_sealed,
    seal,
    sealed_key_id,
)

if TYPE_CHECKING:
    from services.shared.kafka import KafkaSettings

log = logging.getLogger("replaypipe.keys")

KEYS_TOPIC = "keys.raw"
# Compacted; small segments and an eager cleaner so a tombstoned (destroyed)
# wrapped key leaves the broker's disks soon, not after a week-long segment.
KEYS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": str(3_600_000),
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    # Tombstones stay this long, so a follower that was away still sees them.
    "delete.retention.ms": str(86_400_000),
}
MODES = ("off", "on", "required")
RECORD_VERSION = 1
# How often ingest looks at its key's age and at keys due for destruction.
HOUSEKEEPING_S = 30.0
# How often every process re-reads RAW_KEK_DIR (a KEK added to the mounted
# Secret is picked up without a restart; docs/security.md, KEK rotation).
KEK_RELOAD_S = 60.0


@dataclass(frozen=True)
class RawEncryptionSettings:
    """``RAW_*``: whether raw values are sealed, where the KEKs are, the key lifetimes.

    ``mode``: ``off`` (clear), ``on`` (ingest seals; the masker opens sealed values
    and still accepts clear ones, for a rollout) or ``required`` (the masker
    refuses clear values: they go to the DLQ as ``not_encrypted``).
    """

    mode: str = setting(
        "RAW_ENCRYPTION",
        "off",
        "`off`, `on` (ingest seals `recordings.raw`; the masker also accepts clear values) or"
        " `required` (clear values go to the DLQ); `replaypipe run` sets `on`",
    )
    kek_dir: str = setting(
        "RAW_KEK_DIR",
        "var/keys",
        "directory of key-encryption-key files: the greatest name wraps new data keys, all unwrap",
    )
    rotation_s: float = setting(
        "RAW_KEY_ROTATION_S", 3600.0, "ingest makes a new data key this often"
    )
    # 7 days of recordings.raw retention + 1 day (covers the rotation period and
    # a segment that is deleted a little after its last record expired).
    destroy_after_s: float = setting(
        "RAW_KEY_DESTROY_AFTER_S",
        8 * 86_400.0,
        "data keys older than this are destroyed (crypto-shredding of old raw data)",
    )
    key_wait_s: float = setting(
        "RAW_KEY_WAIT_S", 10.0, "the masker's longest wait for an unknown data key on `keys.raw`"
    )
    # "lz4" compresses before sealing (ciphertext does not compress, so the
    # producer's INGEST_COMPRESSION no longer shrinks recordings.raw): ~3.7x less
    # disk for ~16 µs of event-loop CPU per 21 KiB batch, ~8 % of a request; off
    # by default to keep the gateway's throughput (docs/security.md, "Cost").
    compression: str = setting(
        "RAW_ENCRYPTION_COMPRESSION",
        "none",
        "`lz4` compresses a raw value before sealing it (less disk, more CPU), `none`",
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError(f"RAW_ENCRYPTION must be one of {', '.join(MODES)}")
        if self.compression not in ("lz4", "none"):
            raise SettingError("RAW_ENCRYPTION_COMPRESSION must be lz4 or none")
        if self.rotation_s <= 0 or self.key_wait_s <= 0:
            raise SettingError("RAW_KEY_ROTATION_S and RAW_KEY_WAIT_S must be positive")
        if self.destroy_after_s <= self.rotation_s:
            raise SettingError(
                "RAW_KEY_DESTROY_AFTER_S must be longer than RAW_KEY_ROTATION_S "
                "(a key is destroyed only after its last use plus the raw topic's retention)"
            )

    @property
    def enabled(self) -> bool:
        """Whether ingest seals (``on`` or ``required``)."""
        return self.mode != "off"

    @classmethod
    def from_env(cls) -> RawEncryptionSettings:
        """Read ``RAW_ENCRYPTION*``, ``RAW_KEK_DIR`` and ``RAW_KEY_*``."""
        return from_env(cls)


# --- the keys topic's records --------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as ``keys.raw`` holds it: wrapped by one KEK."""

    key_id: bytes
    kek_id: str
    wrapped: bytes = field(repr=False)
    created_at_ms: int

    def to_json(self) -> bytes:
        """The record value (the key id is the record key)."""
        return orjson.dumps(
            {
                "v": RECORD_VERSION,
                "kek": self.kek_id,
                "wrapped": self.wrapped.hex(),
                "created_at": self.created_at_ms,
            }
        )

    @classmethod
    def from_record(cls, record_key: bytes, value: bytes) -> WrappedKey:
        """Parse a ``keys.raw`` record; raises ``ValueError`` for a malformed one."""
        doc = orjson.loads(value)
        if not isinstance(doc, dict) or doc.get("v") != RECORD_VERSION:
            raise ValueError("unknown key record version")
        return cls(
            key_id=bytes.fromhex(record_key.decode()),
            kek_id=str(doc["kek"]),
            wrapped=bytes.fromhex(str(doc["wrapped"])),
            created_at_ms=int(doc["created_at"]),
        )


class Keyring:
    """The data keys one process knows, by id, and those destroyed.

    Pure state (the clock is passed in): :class:`KeyFeed` applies records to it.
    ``unwrap=False`` keeps only the wrapped records (enough to destroy or re-wrap).
    """

    def __init__(self, keks: KekSet, destroy_after_s: float, *, unwrap: bool = True) -> None:
        self.keks = keks
        self.destroy_after_ms = int(destroy_after_s * 1000)
        self._unwrap = unwrap
        self.wrapped: dict[bytes, WrappedKey] = {}
        self._keys: dict[bytes, DataKey] = {}
        self._failed: dict[bytes, str] = {}  # records this process cannot unwrap: why
        self._destroyed: set[bytes] = set()

    def apply(self, record_key: bytes, value: bytes | None, now_ms: int) -> None:
        """Apply one ``keys.raw`` record (a tombstone destroys the key)."""
        try:
            key_id = bytes.fromhex(record_key.decode())
        except ValueError:
            log.error("ignored a keys.raw record with a malformed id")
            return
        if value is None:
            self._forget(key_id)
            return
        try:
            record = WrappedKey.from_record(record_key, value)
        except (ValueError, KeyError, TypeError):
            log.error("ignored a malformed keys.raw record for data key %s", key_id.hex())
            return
        self.wrapped[key_id] = record  # kept when expired too: expire() returns it to tombstone
        self._destroyed.discard(key_id)
        if not self._unwrap or self.expired(record.created_at_ms, now_ms):
            return
        try:
            self._keys[key_id] = self.keks.unwrap(
                key_id, record.kek_id, record.wrapped, record.created_at_ms
            )
            self._failed.pop(key_id, None)
        except RawValueUnreadable as exc:
            self._failed[key_id] = exc.reason
            log.error(
                "data key %s (KEK %s) cannot be unwrapped",
                key_id.hex(),
                record.kek_id,
                extra={"reason": exc.reason},
            )

    def replace_keks(self, keks: KekSet, now_ms: int) -> None:
        """Use a re-read KEK set; keys that no KEK unwrapped before are tried again."""
        self.keks = keks
        for key_id in list(self._failed):
            record = self.wrapped[key_id]
            self.apply(key_id.hex().encode(), record.to_json(), now_ms)

    def add(self, key: DataKey, record: WrappedKey) -> None:
        """A key this process created and published itself."""
        self.wrapped[key.key_id] = record
        self._keys[key.key_id] = key

    def get(self, key_id: bytes, now_ms: int) -> DataKey:
        """The data key ``key_id``; raises :class:`RawValueUnreadable` with the reason."""
        key = self._keys.get(key_id)
        if key is not None and not self.expired(key.created_at_ms, now_ms):
            return key
        if key is not None or key_id in self._destroyed:
            raise RawValueUnreadable(KEY_DESTROYED)
        raise RawValueUnreadable(self._failed.get(key_id, UNKNOWN_DATA_KEY))

    def knows(self, key_id: bytes) -> bool:
        """Whether ``key_id`` has been seen (alive, destroyed or not unwrappable)."""
        return key_id in self.wrapped or key_id in self._destroyed

    def expired(self, created_at_ms: int, now_ms: int) -> bool:
        """Whether a key created then is past its destruction age."""
        return now_ms - created_at_ms > self.destroy_after_ms

    def expire(self, now_ms: int) -> list[bytes]:
        """Forget every key past its destruction age; returns their ids (to tombstone)."""
        due = [k for k, r in self.wrapped.items() if self.expired(r.created_at_ms, now_ms)]
        for key_id in due:
            self._forget(key_id)
        return due

    def _forget(self, key_id: bytes) -> None:
        self.wrapped.pop(key_id, None)
        self._keys.pop(key_id, None)
        self._failed.pop(key_id, None)
        self._destroyed.add(key_id)


def now_ms() -> int:
    """Wall-clock milliseconds (key ages are wall-clock: they outlive processes)."""
    return int(time.time() * 1000)


class KeyFeed:
    """Follows ``keys.raw`` from the beginning into a :class:`Keyring`, until cancelled."""

    def __init__(
        self,
        keyring: Keyring,
        kafka: KafkaSettings,
        *,
        forget_expired: bool = True,
        kek_dir: str | None = None,
    ) -> None:
        self.keyring = keyring
        self.kek_dir = kek_dir  # re-read every KEK_RELOAD_S when given
        self._keks_read = time.monotonic()
        # False where the owner forgets expired keys itself (ingest tombstones them).
        self.forget_expired = forget_expired
        # Retries stay short (2 s at most): a masker without its keys holds its partitions.
        self._follower = CompactedTopicFollower(
            KEYS_TOPIC, kafka, logger=log, first_retry_s=1.0, max_retry_s=2.0
        )

    async def run(self) -> None:
        """Apply records as they come; reconnect when Kafka goes away."""
        await self._follower.run(self._apply, after_poll=self._after_poll)

    def _apply(self, key: bytes, value: bytes | None, offset: int) -> None:
        self.keyring.apply(key, value, now_ms())

    def _after_poll(self) -> None:
        now = now_ms()
        if self.forget_expired:
            self.keyring.expire(now)
        self._reload_keks(now)

    def _reload_keks(self, now: int) -> None:
        if self.kek_dir is None or time.monotonic() - self._keks_read < KEK_RELOAD_S:
            return
        self._keks_read = time.monotonic()
        try:
            keks = KekSet.load_dir(self.kek_dir)
        except (KekError, OSError) as exc:
            log.error("RAW_KEK_DIR not readable; keeping the KEKs held", extra={"reason": str(exc)})
            return
        if keks.secrets != self.keyring.keks.secrets:
            self.keyring.replace_keks(keks, now)
            log.info("key-encryption keys reloaded; %s wraps new data keys", keks.current_id)

    async def wait_for(self, key_id: bytes, timeout_s: float) -> None:
        """Return once ``key_id`` is known or the topic is read up to its end as of now.

        Ingest publishes a key before using it, so a value's key is on the topic
        before the value: reading to the end settles it. ``timeout_s`` counts
        from when that end is known: while ``keys.raw`` cannot be reached (the
        masker starting, Kafka away) this waits, rather than calling a readable
        value unreadable.
        """
        deadline: float | None = None
        ends: dict[int, int] | None = None
        while not self.keyring.knows(key_id):
            if ends is None:
                ends = await self._follower.end_offsets()
                if ends is not None:
                    deadline = time.monotonic() + timeout_s
            if ends is not None and self._follower.has_read_to(ends):
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            await self._follower.wait_for_progress(remaining if remaining else 1.0)


def _kafka_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    # acks=all: a key is used only once every in-sync replica has it.
    return AIOKafkaProducer(**aiokafka_client_kwargs(kafka), acks="all", enable_idempotence=True)


async def publish_wrapped_key(producer: AIOKafkaProducer, record: WrappedKey) -> None:
    """Publish one wrapped data key and wait for every in-sync replica to have it."""
    await producer.send_and_wait(KEYS_TOPIC, record.to_json(), key=record.key_id.hex().encode())


async def destroy_keys(producer: AIOKafkaProducer, key_ids: list[bytes]) -> None:
    """Tombstone data keys on ``keys.raw`` (compaction then deletes the wrapped keys)."""
    for key_id in key_ids:
        await producer.send_and_wait(KEYS_TOPIC, None, key=key_id.hex().encode())
        log.info("data key %s destroyed", key_id.hex())


# --- metrics (created by the side that uses them, so each service shows its own) ---


@functools.cache
def _ingest_key_age() -> Gauge:
    return Gauge(
        "replaypipe_ingest_data_key_age_seconds",
        "Age of the data key sealing recordings.raw now (rotation stalls if it keeps growing)",
    )


@functools.cache
def _masker_unreadable() -> Counter:
    return Counter(
        "replaypipe_masker_unreadable_raw_batches",
        "recordings.raw values the masker could not open (sent to the DLQ), by reason",
        ["reason"],
    )


# --- ingest: seal ---------------------------------------------------------------


class RawSealer:
    """Ingest's side: seal each raw value with the current data key; rotate and destroy keys.

    ``start()`` publishes the first key; ``run()`` rotates it, follows ``keys.raw``
    and tombstones keys past their age (every ingest does; tombstones are idempotent).
    """

    def __init__(self, settings: RawEncryptionSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self._compress = settings.compression == "lz4"
        self._current: DataKey | None = None
        self._ready = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._feed: KeyFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []
        if settings.enabled:
            keyring = Keyring(
                KekSet.load_dir(settings.kek_dir), settings.destroy_after_s, unwrap=False
            )
            self._feed = KeyFeed(keyring, kafka, forget_expired=False, kek_dir=settings.kek_dir)
            _ingest_key_age().set_function(self._key_age_s)
        else:
            log.warning("recordings.raw is written in clear (RAW_ENCRYPTION=off)")

    async def seal(self, message_key: bytes, value: bytes) -> bytes:
        """The value to publish for ``message_key``: sealed, or as is when encryption is off.

        Waits for the first data key when ingest has not published one yet (Kafka
        was down at start); the caller's publish timeout bounds the wait.
        """
        key = self._current
        if key is None:
            if self._feed is None:
                return value
            await self._ready.wait()
            key = self._current
            assert key is not None
        return seal(key, message_key, value, compress=self._compress)

    async def start(self) -> None:
        """Start the key tasks; wait briefly for the first key (Kafka may be slow)."""
        if self._feed is None:
            return
        self._producer = _kafka_producer(self.kafka)
        self._tasks = [
            asyncio.create_task(self._feed.run()),
            asyncio.create_task(self._housekeeping()),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5.0)

    async def stop(self) -> None:
        """Stop the key tasks and the keys producer."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()

    async def _housekeeping(self) -> None:
        assert self._producer is not None and self._feed is not None
        producer, keyring = self._producer, self._feed.keyring
        started = False
        while True:
            try:
                if not started:
                    await producer.start()
                    started = True
                if self._current is None or self._key_age_s() >= self.settings.rotation_s:
                    await self._rotate(producer, keyring)
                due = keyring.expire(now_ms())
                if due:
                    await destroy_keys(producer, due)
                await asyncio.sleep(min(HOUSEKEEPING_S, self.settings.rotation_s / 4))
            except KafkaError as exc:
                # The current key stays in use; Kafka being away stops ingest anyway.
                log.warning("data key rotation failed; retrying", extra={"reason": str(exc)})
                await asyncio.sleep(2.0)

    async def _rotate(self, producer: AIOKafkaProducer, keyring: Keyring) -> None:
        key = DataKey.create(now_ms())
        kek_id, wrapped = keyring.keks.wrap(key)
        record = WrappedKey(key.key_id, kek_id, wrapped, key.created_at_ms)
        await publish_wrapped_key(producer, record)  # on every replica before first use
        keyring.add(key, record)
        self._current = key
        self._ready.set()
        log.info("data key %s in use (wrapped by KEK %s)", key.hex_id, kek_id)

    def _key_age_s(self) -> float:
        key = self._current
        return 0.0 if key is None else (now_ms() - key.created_at_ms) / 1000


# --- masker: open ---------------------------------------------------------------


class RawOpener:
    """The masker's side: open each raw value before it is parsed as an envelope.

    ``run()`` follows ``keys.raw``; ``open`` raises :class:`RawValueUnreadable`
    (an ``EnvelopeError``: the DLQ gets a pointer) and counts the reason.
    """

    def __init__(self, settings: RawEncryptionSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self._feed: KeyFeed | None = None
        if settings.enabled:
            keyring = Keyring(KekSet.load_dir(settings.kek_dir), settings.destroy_after_s)
            self._feed = KeyFeed(keyring, kafka, kek_dir=settings.kek_dir)
            _masker_unreadable()  # on /metrics from the start, not from the first failure

    async def run(self) -> None:
        """Follow ``keys.raw`` until cancelled (returns at once with encryption off)."""
        if self._feed is not None:
            await self._feed.run()

    async def open(self, message_key: bytes, value: bytes) -> bytes:
        """The envelope bytes of one ``recordings.raw`` value."""
        feed = self._feed
        if feed is None or not is_sealed(value):
            if feed is not None and self.settings.mode == "required":
                raise self._unreadable(NOT_ENCRYPTED)
            return value  # in clear: off, or "on" during a rollout
        try:
            key_id = sealed_key_id(value)
            if not feed.keyring.knows(key_id):
                await feed.wait_for(key_id, self.settings.key_wait_s)
            return open_sealed(feed.keyring.get(key_id, now_ms()), message_key, value)
        except RawValueUnreadable as exc:
            raise self._unreadable(exc.reason) from None

    def _unreadable(self, reason: str) -> RawValueUnreadable:
        _masker_unreadable().labels(reason).inc()
        return RawValueUnreadable(reason)


# --- local stack and operator commands -------------------------------------------


def new_kek_file(directory: str | Path) -> Path:
    """Write a new KEK file ``kek-<UTC time>`` (mode 0600) into ``directory``; returns its path."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = time.strftime("kek-%Y%m%dT%H%M%SZ", time.gmtime())
    target = path / name
    while target.exists():  # two in one second: keep the order by name
        name += "x"
        target = path / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(new_kek_secret_text())
    return target


def with_local_raw_encryption(env: dict[str, str], var_dir: Path) -> dict[str, str]:
    """``env`` plus raw encryption for the local stack: a KEK in ``var/keys`` made on first run.

    ``on`` rather than ``required``, so tools that write clear envelopes straight
    to ``recordings.raw`` keep working locally; settings already in ``env`` win.
    """
    kek_dir = Path(env.get("RAW_KEK_DIR", var_dir / "keys"))
    if env.get("RAW_ENCRYPTION", "on") != "off" and not (
        kek_dir.is_dir() and any(not p.name.startswith(".") for p in kek_dir.iterdir())
    ):
        new_kek_file(kek_dir)
    return {"RAW_ENCRYPTION": "on", "RAW_KEK_DIR": str(kek_dir), **env}


async def load_keyring(
    settings: RawEncryptionSettings, kafka: KafkaSettings, *, unwrap: bool = False
) -> Keyring:
    """Read ``keys.raw`` to its end once into a keyring (of wrapped records only by default)."""
    keyring = Keyring(KekSet.load_dir(settings.kek_dir), settings.destroy_after_s, unwrap=unwrap)
    feed = KeyFeed(keyring, kafka, forget_expired=False)
    task = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(60.0):  # Kafka unreachable: say so rather than hang
            await feed.wait_for(b"\x00" * 16, 30.0)  # an id no one uses: read to the end
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return keyring


def read_raw_in_clear(kafka: KafkaSettings, kek_dir: str | Path) -> list[bytes]:
    """Every ``recordings.raw`` value, opened with the live data keys (tests, forensics).

    Holding the KEK and a Kafka client is exactly what this takes: the threat
    model's "KEK and keys.raw" row (docs/security.md). Values that do not open
    are left out; clear values are returned as they are.
    """
    from services.shared import topics

    async def read() -> list[bytes]:
        settings = RawEncryptionSettings(mode="on", kek_dir=str(kek_dir))
        keyring = await load_keyring(settings, kafka, unwrap=True)
        consumer = AIOKafkaConsumer(
            topics.RAW,
            **aiokafka_client_kwargs(kafka),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        out: list[bytes] = []
        try:
            while batch := await consumer.getmany(timeout_ms=2000):
                for record in (r for records in batch.values() for r in records):
                    if not record.value:
                        continue
                    if not is_sealed(record.value):
                        out.append(record.value)
                        continue
                    with contextlib.suppress(RawValueUnreadable):
                        key = keyring.get(sealed_key_id(record.value), now_ms())
                        out.append(open_sealed(key, record.key or b"", record.value))
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


@dataclass(frozen=True, slots=True)
class RewrapSummary:
    """What ``replaypipe keys rewrap`` did: keys re-wrapped, already current, not unwrappable."""

    rewrapped: int
    current: int
    unreadable: list[str]


async def rewrap_keys(settings: RawEncryptionSettings, kafka: KafkaSettings) -> RewrapSummary:
    """Re-publish every live data key wrapped with the current KEK (KEK rotation).

    Run it after adding a new KEK to every ingest and masker, and before removing
    the old KEK. Keys that no held KEK unwraps are listed, not touched: removing
    a KEK then would make their raw data unreadable.
    """
    keyring = await load_keyring(settings, kafka)
    keks = keyring.keks
    producer = _kafka_producer(kafka)
    await producer.start()
    done = current = 0
    unreadable: list[str] = []
    now = now_ms()
    try:
        for key_id, record in sorted(keyring.wrapped.items()):
            if keyring.expired(record.created_at_ms, now):
                continue  # due for destruction: ingest tombstones it
            if record.kek_id == keks.current_id:
                current += 1
                continue
            try:
                key = keks.unwrap(key_id, record.kek_id, record.wrapped, record.created_at_ms)
            except RawValueUnreadable:
                unreadable.append(key_id.hex())
                continue
            kek_id, wrapped = keks.wrap(key)
            await publish_wrapped_key(
                producer, WrappedKey(key_id, kek_id, wrapped, key.created_at_ms)
            )
            done += 1
    finally:
        await producer.stop()
    return RewrapSummary(done, current, unreadable)


USAGE = """replaypipe keys new-kek DIR    write a new key-encryption key file (mode 0600) into DIR
replaypipe keys rewrap          re-wrap every live data key on keys.raw with the newest KEK
                                of RAW_KEK_DIR (KEK rotation; docs/security.md)
replaypipe keys list            data key ids, their KEK and age (no secrets)"""


def keys_command(argv: list[str]) -> int:
    """``replaypipe keys ...``; returns the exit status."""
    from services.shared.kafka import KafkaSettings

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        if argv[0] == "new-kek" and len(argv) == 2:
            path = new_kek_file(argv[1])
            print(f"wrote key-encryption key {path.name} to {path.parent}")
            return 0
        settings = RawEncryptionSettings.from_env()
        kafka = KafkaSettings.from_env()
        if argv[0] == "rewrap":
            summary = asyncio.run(rewrap_keys(settings, kafka))
            print(
                f"rewrapped {summary.rewrapped} data keys; {summary.current} were wrapped "
                "with the newest KEK already"
            )
            if summary.unreadable:
                print(
                    f"{len(summary.unreadable)} data keys are wrapped with a KEK not in "
                    f"{settings.kek_dir} (keep that KEK until they expire): "
                    + ", ".join(summary.unreadable),
                    file=sys.stderr,
                )
                return 1
            return 0
        if argv[0] == "list":
            keyring = asyncio.run(load_keyring(settings, kafka))
            now = now_ms()
            for key_id, record in sorted(keyring.wrapped.items(), key=lambda i: i[1].created_at_ms):
                age_h = (now - record.created_at_ms) / 3_600_000
                print(f"{key_id.hex()}  kek={record.kek_id}  age={age_h:.1f}h")
            return 0
    except (KekError, RawValueUnreadable) as exc:
        print(f"replaypipe keys: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"replaypipe keys: {KEYS_TOPIC} not readable within 60 s (KAFKA_*)", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


__all__ = [
    "KEK_MISSING",
    "KEYS_TOPIC",
    "KEYS_TOPIC_CONFIGS",
    "Keyring",
    "RawEncryptionSettings",
    "RawOpener",
    "RawSealer",
    "keys_command",
    "with_local_raw_encryption",
]
