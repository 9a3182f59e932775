"""Storage efficiency of ``events`` on real pages (results in docs/benchmarks.md, section
``storage``).

Corpora, each loaded into a fresh embedded ClickHouse through the sink's insert
path (``rows.incoming_row`` of each masked envelope → ``incoming_batches`` → the
views → ``events``, 4,000 messages per insert as ``bench_sink`` builds its store):

- ``chromium``: the masked batches of the real Chromium recording the e2e test
  makes (``tests/e2e/test_browser_replay.py`` writes them to
  ``test-output/e2e/recordings.masked.ndjson``; the bench reads the copy kept in
  ``bench/fixtures/chromium_masked.ndjson.gz``, or ``--recording FILE``), replayed as ``--copies``
  visitors (new ids, times shifted): one recording is a few hundred events, a
  site's store holds the same pages visited many times;
- ``heavy``: product-listing pages of a shop (~300 KB full snapshot: a site
  stylesheet, product cards from a catalogue with image URLs, prices, names),
  then infinite-scroll mutations, hovers, mouse trails, scrolls and typing in
  the search box;
- ``generated``: ``services/dev/rrweb_gen.py`` sessions, as ``bench_sink``.

Per corpus it reports bytes per event (compressed and uncompressed, total and per
column from ``system.parts_columns``, after ``OPTIMIZE … FINAL``: one part per
partition, what merges converge to) for the schema before ``0005`` and after
it (applied by the migration itself to the loaded data), and for candidate codecs
and ORDER BYs: a "lab" table holds every candidate codec of a column as its own
column, filled by ``INSERT … SELECT`` from ``events``, so one copy measures them
all (a column's bytes depend only on its codec and the row order).

Then the replay fetch of a ~2,000-event session through the real read API (HTTP,
p50/p95) on a store of ≥ ``--store-events`` events: the three corpora and the
target session loaded through the insert path, multiplied by ``INSERT … SELECT``
from ``events`` cross ``numbers()`` (copies of the real rows under new session ids,
times shifted), copied, and measured before 0005 (the copy) and after it (the migration
run on the store, then ``OPTIMIZE``), alternating rounds in the same run.

    .venv/bin/python -m bench.bench_storage [--copies 200] [--heavy 60] [--generated 2000]
        [--store-events 10000000] [--requests 30] [--rounds 4] [--skip-store]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.bench_sink import DAY_MS, incoming_columns, load, machine, percentile, session_envelopes
from bench.bench_sink_reads import ADMIN, timed_requests
from services.dev.kafka_broker import PROJECT_ROOT
from services.shared.envelope import BatchEnvelope, RrwebEvent
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink.read_api import make_read_app
from services.sink.rows import INCOMING_COLUMNS
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, open_client, run_migrations

FIXTURE = PROJECT_ROOT / "bench" / "fixtures" / "chromium_masked.ndjson.gz"
BEFORE = 4  # the last migration before the storage change
MESSAGES_PER_INSERT = 4000
TARGET_SITE = "bench"

# Candidate codecs per column of ``events`` (the lab table). "" = the default (LZ4).
CANDIDATES: dict[str, dict[str, str]] = {
    "site_id": {"lz4": "", "zstd1": "ZSTD(1)"},
    "session_id": {"lz4": "", "zstd1": "ZSTD(1)", "zstd3": "ZSTD(3)"},
    "window_id": {"lz4": "", "zstd1": "ZSTD(1)", "zstd3": "ZSTD(3)"},
    "visitor_id": {"lz4": "", "zstd1": "ZSTD(1)", "zstd3": "ZSTD(3)"},
    "seq": {
        "lz4": "",
        "zstd1": "ZSTD(1)",
        "delta_zstd1": "Delta, ZSTD(1)",
        "t64_zstd1": "T64, ZSTD(1)",
    },
    "idx": {
        "lz4": "",
        "zstd1": "ZSTD(1)",
        "delta_zstd1": "Delta, ZSTD(1)",
        "t64_zstd1": "T64, ZSTD(1)",
    },
    "ts": {
        "lz4": "",
        "zstd1": "ZSTD(1)",
        "delta_zstd1": "Delta, ZSTD(1)",
        "doubledelta_zstd1": "DoubleDelta, ZSTD(1)",
        "doubledelta_lz4": "DoubleDelta",
        "t64_zstd1": "T64, ZSTD(1)",
    },
    "received_at": {
        "lz4": "",
        "zstd1": "ZSTD(1)",
        "delta_zstd1": "Delta, ZSTD(1)",
        "doubledelta_zstd1": "DoubleDelta, ZSTD(1)",
    },
    "type": {"lz4": "", "zstd1": "ZSTD(1)", "lowcardinality": "LC"},
    "source": {"lz4": "", "zstd1": "ZSTD(1)", "t64_zstd1": "T64, ZSTD(1)"},
    "data": {
        "zstd1": "ZSTD(1)",
        "zstd3": "ZSTD(3)",
        "zstd6": "ZSTD(6)",
        "zstd9": "ZSTD(9)",
        "zstd15": "ZSTD(15)",
    },
    "size": {"lz4": "", "zstd1": "ZSTD(1)", "t64_zstd1": "T64, ZSTD(1)"},
    "retention_days": {"lz4": "", "zstd1": "ZSTD(1)", "t64_zstd1": "T64, ZSTD(1)"},
}
ORDER_BYS = {
    "time": "site_id, session_id, ts, window_id, seq, idx",
    "batch": "site_id, session_id, window_id, seq, idx",
}


# --- corpora -----------------------------------------------------------------------


def chromium_recording(path: Path | None) -> list[bytes]:
    """The masked batches of a Chromium session: the fixture, or ``path`` (NDJSON, e.g. a
    fresh ``test-output/e2e/recordings.masked.ndjson``)."""
    raw = path.read_bytes() if path is not None else gzip.decompress(FIXTURE.read_bytes())
    return [line for line in raw.splitlines() if line.strip()]


def as_visitors(recording: list[bytes], copies: int, rng: random.Random) -> list[bytes]:
    """``copies`` visitors replaying one recording: new session/window/visitor ids and
    times shifted, every event's JSON otherwise as recorded."""
    envelopes = [BatchEnvelope.from_json(raw) for raw in recording]
    first = min(e["timestamp"] for env in envelopes for e in env.events)
    now_ms = int(time.time() * 1000)
    out: list[bytes] = []
    for _ in range(copies):
        shift = now_ms - rng.randint(0, 20 * DAY_MS) - first
        session, visitor = _id(rng, 24), _id(rng, 16)
        windows = {env.window_id: _id(rng, 8) for env in envelopes}
        for env in envelopes:
            events = [{**e, "timestamp": e["timestamp"] + shift} for e in env.events]
            out.append(
                BatchEnvelope(
                    site_id="chromium",
                    session_id=session,
                    window_id=windows[env.window_id],
                    visitor_id=visitor,
                    seq=env.seq,
                    received_at_ms=env.received_at_ms + shift,
                    events=events,
                    user_agent=env.user_agent,
                    consent=env.consent,
                ).to_json()
            )
    return out


def _id(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=length))


@dataclass(frozen=True, slots=True)
class Shop:
    """What every page of one shop shares: its stylesheet and its product catalogue."""

    css: str
    products: list[dict[str, str]]


def make_shop(rng: random.Random, products: int = 3000) -> Shop:
    """A shop's stylesheet (~40 KB of rules) and catalogue (names from a 1,500-word vocabulary)."""
    syllables = ["ka", "lo", "mi", "ster", "ben", "dra", "vi", "tor", "el", "sa", "qu", "on"]
    vocabulary = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(1500)]
    props = ["margin", "padding", "color", "background", "border-radius", "font-size", "gap"]
    rules = []
    for _ in range(900):
        body = ";".join(
            f"{rng.choice(props)}:{rng.randint(0, 48)}px" for _ in range(rng.randint(1, 5))
        )
        rules.append(f".{_id(rng, 6)}>.{rng.choice(vocabulary)}{{{body}}}")
    catalogue = []
    for n in range(products):
        name = " ".join(rng.choice(vocabulary).title() for _ in range(rng.randint(2, 5)))
        catalogue.append(
            {
                "sku": f"SKU-{n:06d}-{_id(rng, 3).upper()}",
                "name": name,
                "slug": name.lower().replace(" ", "-"),
                "img": f"https://cdn.shop.example/img/{rng.getrandbits(128):032x}.webp",
                "price": f"{rng.randint(3, 900)}.{rng.randint(0, 99):02d} EUR",
                "rating": f"{rng.randint(20, 50) / 10} ({rng.randint(0, 4000)})",
            }
        )
    return Shop(css="".join(rules), products=catalogue)


class _Nodes:
    """Hands out rrweb node ids in document order."""

    def __init__(self) -> None:
        self.next = 1

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _element(nodes: _Nodes, tag: str, attrs: dict[str, Any], *children: Any) -> dict[str, Any]:
    node_id = nodes.take()
    kids = [
        {"type": 3, "id": nodes.take(), "textContent": c} if isinstance(c, str) else c
        for c in children
    ]
    return {"type": 2, "id": node_id, "tagName": tag, "attributes": attrs, "childNodes": kids}


def _card(nodes: _Nodes, product: dict[str, str]) -> dict[str, Any]:
    return _element(
        nodes,
        "div",
        {"class": "card product-tile", "data-sku": product["sku"]},
        _element(
            nodes,
            "a",
            {"href": f"/p/{product['slug']}-{product['sku'].lower()}"},
            _element(
                nodes,
                "img",
                {"src": product["img"], "alt": product["name"], "width": "300", "height": "300"},
            ),
        ),
        _element(nodes, "h3", {"class": "title"}, product["name"]),
        _element(nodes, "span", {"class": "price"}, product["price"]),
        _element(nodes, "span", {"class": "rating"}, "★ " + product["rating"]),
        _element(nodes, "button", {"class": "add", "type": "button"}, "Add to basket"),
    )


def _mutation(t: int, **changes: list[dict[str, Any]]) -> RrwebEvent:
    """An rrweb Mutation event (IncrementalSnapshot, source 0) with only ``changes``."""
    data: dict[str, Any] = {"source": 0, "texts": [], "attributes": [], "removes": [], "adds": []}
    return {"type": 3, "timestamp": t, "data": {**data, **changes}}


def heavy_session(rng: random.Random, shop: Shop, start_ms: int) -> list[bytes]:
    """One visit of a product listing: the envelopes as the masker writes them."""
    nodes = _Nodes()
    grid = _element(nodes, "div", {"class": "grid", "id": "results"})
    grid["childNodes"] = [_card(nodes, p) for p in rng.sample(shop.products, 160)]
    search = _element(nodes, "input", {"type": "search", "name": "q", "value": ""})
    basket = _element(nodes, "span", {"id": "basket-count"}, "0")
    tree = {
        "type": 0,
        "id": nodes.take(),
        "childNodes": [
            _element(
                nodes,
                "html",
                {"lang": "en"},
                _element(
                    nodes,
                    "head",
                    {},
                    _element(nodes, "title", {}, "All products | Shop"),
                    _element(
                        nodes,
                        "style",
                        {},
                        {"type": 3, "id": nodes.take(), "textContent": shop.css, "isStyle": True},
                    ),
                ),
                _element(nodes, "body", {}, _element(nodes, "header", {}, search, basket), grid),
            )
        ],
    }
    href = f"https://shop.example/products?page=1&sort=popular&ref={_id(rng, 10)}"
    t = start_ms
    events: list[RrwebEvent] = [
        {"type": 4, "timestamp": t, "data": {"href": href, "width": 1440, "height": 900}},
        {
            "type": 2,
            "timestamp": t + 3,
            "data": {"node": tree, "initialOffset": {"left": 0, "top": 0}},
        },
    ]
    card_ids = [c["id"] for c in grid["childNodes"]]
    scroll_y = 0
    for step in range(rng.randint(500, 900)):
        t += rng.randint(12, 90)
        kind = rng.random()
        if kind < 0.55:
            positions = [
                {
                    "x": rng.randint(0, 1439),
                    "y": rng.randint(0, 899),
                    "id": rng.choice(card_ids),
                    "timeOffset": -k * rng.randint(10, 50),
                }
                for k in range(rng.randint(1, 10))
            ]
            events.append(
                {"type": 3, "timestamp": t, "data": {"source": 1, "positions": positions}}
            )
        elif kind < 0.75:
            scroll_y += rng.randint(40, 400)
            events.append(
                {"type": 3, "timestamp": t, "data": {"source": 3, "id": 1, "x": 0, "y": scroll_y}}
            )
        elif kind < 0.88:
            target = rng.choice(card_ids)
            hovered = "card product-tile hover" if step % 2 else "card product-tile"
            events.append(
                _mutation(t, attributes=[{"id": target, "attributes": {"class": hovered}}])
            )
        elif kind < 0.93:
            # Infinite scroll: the next 12 products.
            adds = []
            for product in rng.sample(shop.products, 12):
                card = _card(nodes, product)
                card_ids.append(card["id"])
                adds.append({"parentId": grid["id"], "nextId": None, "node": card})
            events.append(_mutation(t, adds=adds))
        elif kind < 0.97:
            events.append(
                {
                    "type": 3,
                    "timestamp": t,
                    "data": {
                        "source": 5,
                        "id": search["id"],
                        "text": "*" * rng.randint(1, 12),
                        "isChecked": False,
                    },
                }
            )
        else:
            basket_text = basket["childNodes"][0]["id"]
            events.append(_mutation(t, texts=[{"id": basket_text, "value": str(step % 9)}]))
    session, window, visitor = _id(rng, 24), _id(rng, 8), _id(rng, 16)
    return [
        BatchEnvelope(
            site_id="heavy",
            session_id=session,
            window_id=window,
            visitor_id=visitor,
            seq=seq,
            received_at_ms=events[min(start + 49, len(events) - 1)]["timestamp"] + 400,
            events=events[start : start + 50],
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 bench",
            consent=True,
        ).to_json()
        for seq, start in enumerate(range(0, len(events), 50))
    ]


def heavy_corpus(sessions: int, rng: random.Random) -> list[bytes]:
    """``sessions`` visits of one shop's listing pages."""
    shop = make_shop(rng)
    now_ms = int(time.time() * 1000)
    return [
        raw
        for _ in range(sessions)
        for raw in heavy_session(rng, shop, now_ms - rng.randint(0, 20 * DAY_MS))
    ]


def generated_corpus(sessions: int, rng: random.Random) -> list[bytes]:
    """``rrweb_gen`` sessions shaped as in ``bench_sink``'s store."""
    now_ms = int(time.time() * 1000)
    return [
        e.to_json()
        for _ in range(sessions)
        for e in session_envelopes(
            rng, "generated", now_ms - rng.randint(0, 20 * DAY_MS), rng.randint(0, 30)
        )
    ]


# --- loading and measuring ------------------------------------------------------------


def reset(client: Any, upto: int | None) -> None:
    """Drop every table of the database, then migrate (to ``upto``): a fresh store."""
    for (name,) in client.query("SHOW TABLES").result_rows:
        client.command(f"DROP TABLE IF EXISTS `{name}` SYNC")
    run_migrations(client, upto=upto)


def insert_via_sink(client: Any, raws: list[bytes]) -> float:
    """Insert masked envelopes as the sink does (``incoming_row`` → ``incoming_batches``)."""
    envelopes = [BatchEnvelope.from_json(raw) for raw in raws]
    started = time.perf_counter()
    for start in range(0, len(envelopes), MESSAGES_PER_INSERT):
        client.insert(
            "incoming_batches",
            incoming_columns(envelopes[start : start + MESSAGES_PER_INSERT], 30),
            column_names=list(INCOMING_COLUMNS),
            column_oriented=True,
            settings={"insert_deduplication_token": uuid.uuid4().hex},
        )
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class ColumnBytes:
    """A table's bytes per event: per column (compressed, uncompressed) and rows."""

    rows: int
    columns: dict[str, tuple[float, float]]

    @property
    def compressed(self) -> float:
        return sum(c for c, _ in self.columns.values())

    @property
    def uncompressed(self) -> float:
        return sum(u for _, u in self.columns.values())


def column_bytes(client: Any, table: str) -> ColumnBytes:
    """Bytes per row of every column of ``table``'s active parts (after OPTIMIZE FINAL)."""
    # Per-column sizes exist only for wide parts; small ones are compact (one file).
    client.command(f"ALTER TABLE {table} MODIFY SETTING min_bytes_for_wide_part = 0")
    client.command(f"OPTIMIZE TABLE {table} FINAL")
    rows = client.query(
        "SELECT sum(rows) FROM system.parts WHERE active AND database = currentDatabase() "
        "AND table = {t:String}",
        parameters={"t": table},
    ).result_rows[0][0]
    result = client.query(
        "SELECT column, sum(column_data_compressed_bytes), sum(column_data_uncompressed_bytes) "
        "FROM system.parts_columns WHERE active AND database = currentDatabase() "
        "AND table = {t:String} GROUP BY column",
        parameters={"t": table},
    )
    return ColumnBytes(
        rows=rows, columns={name: (c / rows, u / rows) for name, c, u in result.result_rows}
    )


def lab_ddl(client: Any, order_by: str) -> tuple[str, str]:
    """The lab table (every candidate codec of a column as a column) and its INSERT."""
    types = dict(
        client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            "AND table = 'events'"
        ).result_rows
    )
    keys = [k.strip() for k in order_by.split(",")]
    keys += [] if "ts" in keys else ["ts"]  # the partition key
    columns = [f"{k} {types[k]}" for k in keys]
    selects = list(keys)
    for column, codecs in CANDIDATES.items():
        for label, codec in codecs.items():
            kind = types[column]
            if codec == "LC":
                columns.append(f"{column}__{label} LowCardinality({kind})")
            else:
                columns.append(f"{column}__{label} {kind}" + (f" CODEC({codec})" if codec else ""))
            selects.append(column)
    ddl = (
        f"CREATE TABLE events_lab ({', '.join(columns)}) ENGINE = MergeTree "
        f"PARTITION BY toYYYYMM(ts) ORDER BY ({order_by})"
    )
    return ddl, f"INSERT INTO events_lab SELECT {', '.join(selects)} FROM events"


def lab(client: Any, order_by: str) -> dict[str, dict[str, float]]:
    """Compressed bytes per event of every candidate, per column, rows in ``order_by``."""
    ddl, insert = lab_ddl(client, order_by)
    client.command("DROP TABLE IF EXISTS events_lab SYNC")
    # ClickHouse refuses LowCardinality of a number unless asked: measured to show why.
    client.command(ddl, settings={"allow_suspicious_low_cardinality_types": 1})
    client.command(insert)
    measured = column_bytes(client, "events_lab")
    client.command("DROP TABLE events_lab SYNC")
    out: dict[str, dict[str, float]] = {}
    for name, (compressed, _) in measured.columns.items():
        if "__" in name:
            column, label = name.split("__", 1)
            out.setdefault(column, {})[label] = compressed
    return out


def measure_corpus(client: Any, name: str, raws: list[bytes]) -> dict[str, Any]:
    """Before/after bytes, the lab per ORDER BY and the insert time, for one corpus."""
    reset(client, BEFORE)
    insert_before = insert_via_sink(client, raws)
    before = column_bytes(client, "events")
    labs = {label: lab(client, order_by) for label, order_by in ORDER_BYS.items()}
    started = time.perf_counter()
    run_migrations(client)  # the storage migration, on the loaded data
    migrate_s = time.perf_counter() - started
    after = column_bytes(client, "events")
    reset(client, None)
    insert_after = insert_via_sink(client, raws)
    print(f"  {name}: loaded and measured", flush=True)
    return {
        "messages": len(raws),
        "before": before,
        "after": after,
        "labs": labs,
        "insert_s": (insert_before, insert_after),
        "migrate_s": migrate_s,
    }


# --- replay on a large store -----------------------------------------------------------


def target_session(rng: random.Random) -> tuple[str, list[bytes]]:
    """The ~2,000-event session replayed (``bench_sink``'s target)."""
    envelopes = session_envelopes(rng, TARGET_SITE, int(time.time() * 1000) - 2 * DAY_MS, 1880)
    return envelopes[0].session_id, [e.to_json() for e in envelopes]


def multiply(client: Any, at_least: int) -> int:
    """Copies of every stored event under new session ids (times shifted) until
    ``events`` holds ``at_least`` rows; returns the row count."""
    base = client.query("SELECT count() FROM events").result_rows[0][0]
    copies = -(-at_least // base) - 1
    client.command(
        "INSERT INTO events SELECT site_id, concat(session_id, '-', toString(n.number)), "
        "window_id, visitor_id, seq, idx, ts - toIntervalMinute(n.number % 20000), "
        "received_at - toIntervalMinute(n.number % 20000), type, source, data, size, "
        "retention_days FROM events CROSS JOIN numbers(1, {copies:UInt32}) AS n "
        "WHERE site_id != {target:String}",
        parameters={"copies": copies, "target": TARGET_SITE},
    )
    rows: int = client.query("SELECT count() FROM events").result_rows[0][0]
    return rows


async def replay_times(store: ClickHouseStore, session_id: str, requests: int) -> list[float]:
    """Replay fetches of one session through the real read API over HTTP (ms)."""
    app = make_read_app(
        store, SiteRegistry([SiteSettings(site_id=TARGET_SITE)]), SinkSettings(admin_token=ADMIN)
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/v1/sites/{TARGET_SITE}/sessions/{session_id}/events"
    try:
        async with aiohttp.ClientSession() as http:
            await timed_requests(http, url, None, 3, 60)  # warm caches
            return await timed_requests(http, url, None, requests, 120)
    finally:
        await runner.cleanup()


def settle(client: Any, limit_s: float = 120) -> None:
    """Wait (bounded) until no merge runs, so the reads do not share the cores with one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not client.query("SELECT count() FROM system.merges").result_rows[0][0]:
            return
        time.sleep(0.5)


def large_store(
    client: Any, corpora: dict[str, list[bytes]], at_least: int, requests: int, rounds: int
) -> dict[str, Any]:
    """Replay p50/p95 on a store of ``at_least`` events, before and after 0005.

    The store is built before 0005 and copied (``events_before``, same rows, the old
    codecs); then 0005 runs on ``events`` and both are merged (``OPTIMIZE … FINAL``).
    Rounds alternate which of the two is ``events`` (``EXCHANGE TABLES``), so both are
    read through the same read API under the same load.
    """
    reset(client, BEFORE)
    session_id, target = target_session(random.Random(11))
    for raws in corpora.values():
        insert_via_sink(client, raws)
    insert_via_sink(client, target)
    started = time.perf_counter()
    rows = multiply(client, at_least)
    built_s = time.perf_counter() - started
    print(f"  large store: {rows:,} events in {built_s:.0f}s", flush=True)
    out: dict[str, Any] = {"rows": rows, "built_s": built_s, "before": [], "after": []}
    out["target_events"] = client.query(
        "SELECT count() FROM events WHERE session_id = {s:String}", parameters={"s": session_id}
    ).result_rows[0][0]
    client.command("CREATE TABLE events_before AS events")
    client.command("INSERT INTO events_before SELECT * FROM events")
    for label, table in (("before", "events_before"), ("after", "events")):
        step_started = time.perf_counter()
        if label == "after":
            run_migrations(client)  # 0005 on the full store
        client.command(f"OPTIMIZE TABLE {table} FINAL")
        out[f"{label}_optimize_s"] = time.perf_counter() - step_started
        stored = client.query(
            "SELECT sum(data_compressed_bytes) FROM system.parts WHERE active "
            "AND database = currentDatabase() AND table = {t:String}",
            parameters={"t": table},
        ).result_rows[0][0]
        out[f"{label}_bytes_per_event"] = stored / rows
    out["load_before"] = load()
    for round_ in range(rounds):
        order = ("after", "before") if round_ % 2 == 0 else ("before", "after")
        for label in order:
            if label == "before":
                client.command("EXCHANGE TABLES events AND events_before")
            settle(client)
            times = asyncio.run(replay_times(ClickHouseStore(client), session_id, requests))
            out[label].extend(times)
            if label == "before":
                client.command("EXCHANGE TABLES events AND events_before")
        print(f"  large store: round {round_ + 1} measured", flush=True)
    out["load_after"] = load()
    return out


# --- report -------------------------------------------------------------------------


def fmt_ms(times: list[float]) -> str:
    median, p95 = statistics.median(times), percentile(times, 95)
    return f"p50 {median:.1f} ms, p95 {p95:.1f} ms (n={len(times)})"


def report(results: dict[str, dict[str, Any]], store: dict[str, Any] | None) -> None:
    """Print the figures as Markdown tables for docs/benchmarks.md."""
    print(
        "\n| corpus | events | JSON bytes/event (uncompressed) | before 0005 | after 0005 "
        "| after / before | insert s before → after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        before, after = r["before"], r["after"]
        ins_b, ins_a = r["insert_s"]
        print(
            f"| {name} | {before.rows:,} | {before.columns['data'][1]:,.1f} | "
            f"{before.compressed:.2f} | {after.compressed:.2f} | "
            f"{after.compressed / before.compressed:.2f} | {ins_b:.2f} → {ins_a:.2f} |"
        )
    columns = list(next(iter(results.values()))["before"].columns)
    print("\nPer column, compressed bytes/event before → after 0005:\n")
    print("| column | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for column in columns:
        cells = [
            f"{r['before'].columns[column][0]:.3f} → {r['after'].columns[column][0]:.3f}"
            for r in results.values()
        ]
        print(f"| {column} | " + " | ".join(cells) + " |")
    print("\nCandidates (lab; compressed bytes/event per column, per ORDER BY):\n")
    print(
        "| column | codec | " + " | ".join(f"{c} ({o})" for c in results for o in ORDER_BYS) + " |"
    )
    print("|---|---|" + "---:|" * (len(results) * len(ORDER_BYS)))
    for column, codecs in CANDIDATES.items():
        for label in codecs:
            cells = [
                f"{r['labs'][o][column][label]:.3f}" for r in results.values() for o in ORDER_BYS
            ]
            print(f"| {column} | {label} | " + " | ".join(cells) + " |")
    for name, r in results.items():
        best = {o: sum(min(v.values()) for v in r["labs"][o].values()) for o in ORDER_BYS}
        print(
            f"{name}: sum of each column's best candidate "
            + ", ".join(f"{o} {b:.2f}" for o, b in best.items())
            + f"; migration on the loaded data {r['migrate_s']:.2f}s"
        )
    if store:
        print(
            f"\nlarge store: {store['rows']:,} events (built in {store['built_s']:.0f}s), "
            f"target session {store['target_events']:,} events"
        )
        print(
            f"  load average before the reads {store['load_before']}, after {store['load_after']}"
        )
        for label in ("before", "after"):
            print(
                f"  {label}: {store[f'{label}_bytes_per_event']:.2f} bytes/event on disk, "
                f"OPTIMIZE {store[f'{label}_optimize_s']:.0f}s; replay {fmt_ms(store[label])}"
            )
        ratio = percentile(store["after"], 95) / percentile(store["before"], 95)
        print(f"  replay p95 after / before: {ratio:.2f}")


def main() -> None:
    """Load the corpora, measure, print."""
    parser = argparse.ArgumentParser(prog="bench_storage")
    parser.add_argument(
        "--copies", type=int, default=200, help="visitors of the Chromium recording"
    )
    parser.add_argument(
        "--recording", type=Path, default=None, help="masked NDJSON instead of the fixture"
    )
    parser.add_argument("--heavy", type=int, default=60, help="heavy product-listing sessions")
    parser.add_argument("--generated", type=int, default=2000, help="rrweb_gen sessions")
    parser.add_argument("--store-events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=30, help="replays per round and table")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of replays, alternating")
    parser.add_argument("--skip-store", action="store_true", help="only the corpora")
    parser.add_argument("--store", default=str(PROJECT_ROOT / "var" / "bench" / "storage"))
    args = parser.parse_args()
    rng = random.Random(16)
    builders: dict[str, Callable[[], list[bytes]]] = {
        "chromium": lambda: as_visitors(chromium_recording(args.recording), args.copies, rng),
        "heavy": lambda: heavy_corpus(args.heavy, rng),
        "generated": lambda: generated_corpus(args.generated, rng),
    }
    corpora = {name: build() for name, build in builders.items()}
    print(f"machine: {machine()}; load average {load()}", flush=True)
    client = open_client(f"chdb://{Path(args.store).resolve()}")
    try:
        results = {name: measure_corpus(client, name, raws) for name, raws in corpora.items()}
        store = (
            None
            if args.skip_store
            else large_store(client, corpora, args.store_events, args.requests, args.rounds)
        )
    finally:
        client.close()
    print(f"load average after {load()}")
    report(results, store)


if __name__ == "__main__":
    main()
