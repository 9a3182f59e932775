"""Does this checkout's ``mask_message`` mask raw messages exactly as another one?

``bench/compare_walk.py`` compares ``mask_batch`` (Python events in, Python
events out). This compares the message path, raw bytes in: the published
value (parsed, not bytes), the new state (parsed), the counts, the drops, the
event count, or the error's type and DLQ reason. Each side runs in its own
interpreter, in its checkout (``--baseline``, e.g. ``git archive d4ad225``
unpacked) with its own compiled core (``--baseline-core``: a directory holding a
``replaypipe_masker_core`` package, as ``bench/ab_core.py`` uses; default: the
one in ``.venv``). The corpus, made here and handed to both:

- the benchmark's messages (``bench.bench_masker.build_messages``): every page
  kind at 30 KB and 300 KB, and the generator's pages, each session's batches
  in order with the state carried from one to the next;
- the careless-page recordings (``tests/fixtures/careless``), one raw batch each;
- odd raw values: duplicate keys (at every level, masked ones included),
  ``batch.events`` as ingest publishes it, negative zero, big and small
  numbers, escapes, deep nesting, values that are not JSON or not envelopes.

Run (exit status 1 on any difference):

    .venv/bin/python -m bench.compare_messages --baseline /tmp/gilfree-base \
        --baseline-core /tmp/gilfree-core-before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.bench_masker import build_messages
from bench.heavy_pages import PAGE_KINDS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CARELESS = PROJECT_ROOT / "tests" / "fixtures" / "careless"

# Masks a corpus file in the checkout it runs in: only the stable API.
_MASK_CORPUS = """
import sys, orjson
from services.masker.message import mask_message, rejection_for
from services.shared.site_settings import SiteRegistry, load_sites_file
registry = SiteRegistry(load_sites_file("config/sites.json"))
out = []
for session in orjson.loads(open(sys.argv[1], "rb").read()):
    state = None
    results = []
    for offset, raw in enumerate(session):
        try:
            m = mask_message(raw.encode("latin-1"), state, registry, partition=0, offset=offset)
        except Exception as exc:
            results.append(["error", type(exc).__name__, rejection_for(exc).reason])
            continue
        if m.state is not None:
            state = m.state
        results.append([
            None if m.value is None else orjson.loads(m.value),
            None if m.state is None else orjson.loads(m.state),
            dict(sorted(m.counts.items())), m.dropped, m.events, m.site_id, m.received_at_ms,
        ])
    out.append(results)
open(sys.argv[2], "wb").write(orjson.dumps(out))
"""

_HEAD = (
    b'"v":1,"site_id":"demo","session_id":"s-odd","window_id":"w","visitor_id":"v",'
    b'"seq":0,"received_at":1'
)


def _odd(events: bytes, extra: bytes = b"") -> bytes:
    return b"{" + _HEAD + extra + b',"events":' + events + b"}"


def odd_values() -> list[bytes]:
    """Raw values where a parser other than orjson could mean something else."""
    snapshot = (
        b'{"type":2,"timestamp":1,"data":{"node":{"type":0,"id":1,"childNodes":[{"type":2,'
        b'"id":2,"tagName":"input","attributes":{"type":"text","type":"password",'
        b'"value":"hunter2","value":"s3cret-value"},"childNodes":[]},{"type":3,"id":3,'
        b'"textContent":"mail bob@example.com","textContent":"mail eve@example.com"}]}}}'
    )
    deep = b"[" * 300 + b"]" * 300
    return [
        _odd(b"[" + snapshot + b"]"),
        # duplicate keys at the top and in an event
        _odd(b"[]", b',"site_id":"other"'),
        _odd(b'[{"type":5,"data":{"tag":"x","payload":{"password":"a","password":1}}}]'),
        _odd(b'[{"type":3,"data":{"source":5,"id":2,"text":"x","text":"bob@example.com"}}]'),
        _odd(b'[{"type":5,"type":4,"data":{"href":"https://x.example/?token=abc"}}]'),
        # the batch form ingest publishes
        b"{" + _HEAD + b',"batch":{"events":[' + snapshot + b'],"x":1}}',
        b"{" + _HEAD + b',"events":null,"batch":{"events":[' + snapshot + b"]}}",
        b"{" + _HEAD + b',"batch":{"events":"nope"}}',
        # numbers
        _odd(b'[{"type":5,"data":{"tag":"n","payload":{"a":-0,"b":-0.0,"c":1e16,"d":1.5e-7,'
             b'"e":18446744073709551615,"f":18446744073709551616,"g":-9223372036854775809,'
             b'"h":4111111111111111,"secret":3.0,"i":1E2,"j":0.1}}}]'),
        _odd(b'[{"type":2.0,"data":{"node":{"type":0,"id":1.0,"childNodes":[]}}},'
             b'{"type":true,"data":{}},{"type":3,"data":{"source":[1]}}]'),
        # strings
        _odd(b'[{"type":5,"data":{"tag":"s","payload":{"k":"\\u0000\\n\\t\\"\\\\ \\ud83d\\ude00 '
             b'\xc3\xa9 \xe2\x80\xa8","":"empty key"}}}]'),
        # nesting: fine for orjson to read, too deep to write again; and too deep to read
        _odd(b'[{"type":5,"data":{"tag":"d","payload":' + deep + b"}}]"),
        _odd(b"[" * 1030 + b"]" * 1030),
        # not JSON, not an envelope
        b"\xef\xbb\xbf" + _odd(b"[]"),
        _odd(b"[]") + b" x",
        _odd(b'["\\ud800"]'),
        _odd(b'["\xff"]'),
        _odd(b"[NaN]"),
        _odd(b"[1,]"),
        b"[]",
        b"",
        _odd(b'"not a list"'),
        b'{"v":2,"events":[]}',
    ]


def build_corpus(sessions: int) -> list[list[str]]:
    """Sessions of raw values (latin-1 text, to travel inside JSON)."""
    corpus: list[list[bytes]] = []
    for page in PAGE_KINDS:
        for size in (30_000, 300_000):
            by_key: dict[bytes, list[bytes]] = {}
            for m in build_messages(sessions, size, page=page):
                by_key.setdefault(m.key, []).append(m.value)
            corpus.extend(by_key.values())
    by_key = {}
    for m in build_messages(sessions * 2, 0):
        by_key.setdefault(m.key, []).append(m.value)
    corpus.extend(by_key.values())
    for path in sorted(CARELESS.glob("*.json")):
        recording = orjson.loads(path.read_bytes())
        doc = {
            "v": 1, "site_id": "careless", "session_id": "s-careless", "window_id": "w1",
            "visitor_id": "v1", "seq": 0, "received_at": 1, "page_url": recording["page_url"],
            "events": recording["events"],
        }
        corpus.append([orjson.dumps(doc)])
    corpus.extend([value] for value in odd_values())
    return [[raw.decode("latin-1") for raw in session] for session in corpus]


def mask_in(checkout: Path, core: Path | None, corpus: Path) -> list[Any]:
    """The corpus masked by ``checkout``'s code (with ``core``'s compiled module)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        path = [str(checkout)] if core is None else [str(core), str(checkout)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        subprocess.run([sys.executable, "-c", _MASK_CORPUS, str(corpus), str(out)],
                       cwd=checkout, env=env, check=True)
        result: list[Any] = orjson.loads(out.read_bytes())
        return result


def main() -> None:
    """Mask the corpus on both sides and report every difference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--baseline-core", type=Path, default=None)
    parser.add_argument("--sessions", type=int, default=2)
    args = parser.parse_args()
    corpus = build_corpus(args.sessions)
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = Path(tmp) / "corpus.json"
        corpus_path.write_bytes(orjson.dumps(corpus))
        ours = mask_in(PROJECT_ROOT, None, corpus_path)
        theirs = mask_in(args.baseline, args.baseline_core, corpus_path)
    cases = differ = errors = 0
    for n, (a_session, b_session) in enumerate(zip(ours, theirs, strict=True)):
        for i, (a, b) in enumerate(zip(a_session, b_session, strict=True)):
            cases += 1
            errors += a[0] == "error" or b[0] == "error"
            if a != b:
                differ += 1
                if differ <= 5:
                    print(f"session {n} message {i} differs:\n  this: {str(a)[:300]}\n"
                          f"  base: {str(b)[:300]}")
    print(f"{cases} messages ({errors} rejected by both or one), {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
