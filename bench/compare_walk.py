"""Does this checkout mask exactly as another one? ``mask_batch`` output, case by case.

For moving the masker's walk and rules to the compiled core without changing
what they do: one corpus of batches is masked by this checkout and by
``--baseline`` (say a worktree of the commit before the port), each in its own
interpreter, and every result is compared: the kept events as masked, the
counts, the consent state, the drops, the session state after each batch, the
events as mutated in place, or the type of the error raised. The corpus:

- sessions drawn by the property tests' strategy (``tests/unit/strategies_rrweb.py``),
  each masked in two batches so that state carries over;
- generated odd events (floats and bools as types and ids, lists where ids go,
  unknown node and event types, consent events, payloads with secrets);
- the benchmark's heavy pages (``bench/heavy_pages.py``, every kind at 30 KB);
- the careless-page recordings (``tests/fixtures/careless``) in each consent mode.

Run (exit status 1 on any difference):

    .venv/bin/python -m bench.compare_walk --baseline /tmp/base [--scenarios 300] [--odd 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from bench.heavy_pages import PAGE_KINDS, grow_session
from services.dev.rrweb_gen import generate_session
from tests.unit.strategies_rrweb import Scenario, scenarios

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Masks a corpus file in the checkout it runs in: only the stable API.
_MASK_CORPUS = """
import sys, orjson
from services.masker.batch import mask_batch
from services.masker.state import SessionMaskState
from services.shared.site_settings import SiteSettings
out = []
for case in orjson.loads(open(sys.argv[1], "rb").read()):
    doc = case["site"]
    site = SiteSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})
    state = SessionMaskState()
    results = []
    for events in case["batches"]:
        try:
            r = mask_batch(events, state, site, case["consent"])
            results.append([r.events, dict(sorted(r.counts.items())), r.consent_state, r.dropped,
                            state.to_dict(), events])
        except Exception as exc:
            results.append(["error", type(exc).__name__])
            break
    out.append(results)
open(sys.argv[2], "wb").write(orjson.dumps(out))
"""
_ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, 2, 3, 5, 9, 11, 1.0, 2.0, 3.0, 0.5, -1, 2**40, "x", "", "2",
    [], {}, [1], {"a": 1}, "hello user@example.com", "4111 1111 1111 1111",
    "token=abc123secretXYZ", "password",
]
_ODD_KEYS = [
    "id", "type", "data", "source", "node", "childNodes", "tagName", "attributes",
    "textContent", "name", "value", "text", "adds", "removes", "texts", "parentId",
    "password", "api_key", "tag", "payload", "granted", "plugin", "href", "property",
    "args", "isStyle", "class", "placeholder",
]
_ODD_ATTRIBUTES: list[Any] = [
    {}, [], "x",
    {"type": "password", "name": "pw", "value": "hunter2"},
    {"class": "rr-mask x", "title": "hi user@example.com"},
    {"class": "rr-block"},
    {"value": "abc", "data-x": "q", "href": "https://x.com/a?token=secret"},
    {"name": "email", "id": "e"},
    {"srcdoc": "<b>x</b>", "data-api-key": "k12345678", "content": "c"},
]


def _site(site: Any) -> dict[str, Any]:
    return {
        "site_id": site.site_id,
        "record_inputs": site.record_inputs,
        "consent_mode": site.consent_mode,
        "mask_text_selectors": list(site.mask_text_selectors),
        "block_selectors": list(site.block_selectors),
        "ignore_input_selectors": list(site.ignore_input_selectors),
    }


def scenario_cases(count: int) -> list[dict[str, Any]]:
    """``count`` sessions of the property tests' strategy (derandomized), two batches each."""
    cases: list[dict[str, Any]] = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(scenarios())
    def collect(scenario: Scenario) -> None:
        half = len(scenario.events) // 2
        cases.append({
            "site": _site(scenario.site),
            "consent": scenario.consent,
            "batches": [scenario.events[:half], scenario.events[half:]],
        })

    collect()
    return cases


class _OddEvents:
    """Seeded generator of events a careless or hostile recorder could send."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = 100

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if depth > 3 or roll < 0.4:
            return rng.choice(_ODD_VALUES)
        if roll < 0.7:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(_ODD_KEYS): self.value(depth + 1) for _ in range(rng.randint(0, 5))}

    def node(self, depth: int = 0) -> dict[str, Any]:
        rng = self.rng
        self.next_id += 1
        node: dict[str, Any] = {
            "id": rng.choice([self.next_id] * 3 + [rng.choice(_ODD_VALUES)]),
            "type": rng.choice([0, 1, 2, 2, 2, 3, 3, 4, 5, 7, 2.0, True, None, "2"]),
        }
        if rng.random() < 0.8:
            node["tagName"] = rng.choice(
                ["div", "INPUT", "input", "textarea", "select", "style", "script", "Span", 5]
            )
        if rng.random() < 0.7:
            node["attributes"] = rng.choice(_ODD_ATTRIBUTES)
        if rng.random() < 0.6:
            node["textContent"] = rng.choice(
                ["hello", "user@example.com", "", 5, "SCRIPT_PLACEHOLDER", "4111111111111111"]
            )
        if rng.random() < 0.3:
            node["isStyle"] = rng.choice([True, 1, "true"])
        if rng.random() < 0.3:
            node["other"] = rng.choice(["text", 3, "bob@example.com"])
        if depth < 4 and rng.random() < 0.8:
            node["childNodes"] = [self.node(depth + 1) for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.2:
                node["childNodes"].append(self.value())
        return node

    def mutation_or_input(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "source": rng.choice([0, 0, 5, 5, 9, 11, 1, 2, 3.0, True, None, [], "0", 17]),
            "id": rng.choice([101, 102, 103, 104, 1.0, True, "x", None, 5]),
            "text": rng.choice(["hunter2", "user@example.com", 3]),
            "adds": [
                {"parentId": rng.choice([101, 102, None, 1.5, "x", []]), "node": self.node()}
                for _ in range(rng.randint(0, 2))
            ] + [self.value()],
            "removes": [
                {"parentId": rng.choice([101, 102, None]), "id": rng.choice([101, 102, 103, True])},
                self.value(),
            ],
            "attributes": [
                {"id": rng.choice([101, 102, 103, True, 1.0]), "attributes": rng.choice([
                    {"class": "rr-mask"}, {"name": "pw"}, {"value": "v", "type": "password"},
                    {"class": "rr-block"}, {"title": "x@y.com"},
                ])},
                self.value(),
            ],
            "texts": [
                {"id": rng.choice([101, 102, 103, 104, 99]),
                 "value": rng.choice(["x@y.com", "hello", "", 3])},
                self.value(),
            ],
            "property": "fillText",
            "args": ["mail me a@b.com", 1],
            "commands": [{"property": "strokeText", "args": ["c@d.com"]}],
        }

    def event(self) -> Any:
        rng = self.rng
        etype = rng.choice([0, 1, 2, 3, 3, 3, 3, 4, 5, 6, 7, 2.0, 3.0, True, None, "3"])
        roll = rng.random()
        data: Any
        if etype == 2 and roll < 0.8:
            data = {"node": self.node()}
        elif etype == 3 and roll < 0.9:
            data = self.mutation_or_input()
        elif etype == 5 and roll < 0.5:
            data = {"tag": "replaypipe.consent",
                    "payload": rng.choice([{"granted": True}, {"granted": 1}, {}, None])}
        elif etype == 6 and roll < 0.6:
            data = {"plugin": rng.choice(["rrweb/console@1", "rrweb/network@1"]),
                    "payload": self.value()}
        else:
            data = self.value()
        if rng.random() < 0.05:
            return self.value()
        event: dict[str, Any] = {"type": etype, "data": data, "timestamp": 1}
        if rng.random() < 0.1:
            del event["data"]
        return event

    def case(self) -> dict[str, Any]:
        rng = self.rng
        events = [self.event() for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.7:
            events.insert(0, {"type": 2, "data": {"node": self.node()}})
        return {
            "site": {
                "site_id": "odd",
                "record_inputs": rng.random() < 0.5,
                "consent_mode": rng.choice(["none", "required", "mask_until_consent"]),
                "mask_text_selectors": rng.choice([[], [".private", "div span"]]),
                "block_selectors": rng.choice([[], ["#ad"]]),
                "ignore_input_selectors": [],
            },
            "consent": rng.choice([None, True, False]),
            "batches": [events],
        }


def page_cases() -> list[dict[str, Any]]:
    """Each heavy page kind at 30 KB, and each careless recording in each consent mode."""
    cases: list[dict[str, Any]] = []
    site = {"site_id": "demo"}
    for kind in PAGE_KINDS:
        rng = random.Random(3)
        session = generate_session(rng, start_ms=1_700_000_000_000)
        events = grow_session(session.events, rng, 30_000, kind)
        cases.append({"site": site, "consent": None, "batches": [events[:50], events[50:]]})
    for path in sorted((PROJECT_ROOT / "tests" / "fixtures" / "careless").glob("*.json")):
        events = orjson.loads(path.read_bytes())["events"]
        for mode in ("none", "required", "mask_until_consent"):
            careless = {"site_id": "demo", "consent_mode": mode, "record_inputs": True}
            cases.append({"site": careless, "consent": None, "batches": [events]})
    return cases


def mask_in(checkout: Path, corpus: Path, out: Path) -> list[Any]:
    """The corpus masked by ``checkout``'s own code, in its own interpreter."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run(
        [sys.executable, "-c", _MASK_CORPUS, str(corpus), str(out)],
        cwd=checkout, env=env, check=True,
    )
    result: list[Any] = orjson.loads(out.read_bytes())
    return result


def main() -> int:
    """Mask the corpus in both checkouts; print and count the differences."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--scenarios", type=int, default=300)
    parser.add_argument("--odd", type=int, default=2000)
    args = parser.parse_args()
    odd = _OddEvents(seed=7)
    cases = scenario_cases(args.scenarios) + [odd.case() for _ in range(args.odd)] + page_cases()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.json"
        corpus.write_bytes(orjson.dumps(cases))
        ours = mask_in(PROJECT_ROOT, corpus, Path(tmp) / "ours.json")
        theirs = mask_in(args.baseline.resolve(), corpus, Path(tmp) / "theirs.json")
    differing = [pos for pos, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    for pos in differing[:5]:
        print(f"case {pos} differs:")
        print(f"  ours   {str(ours[pos])[:800]}\n  theirs {str(theirs[pos])[:800]}")
    errors = sum(1 for results in ours if results and results[-1][0] == "error")
    print(f"{len(cases)} cases ({errors} raise in both or one), {len(differing)} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
