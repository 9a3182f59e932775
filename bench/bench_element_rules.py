"""Element rules on heavy pages: ``MaskPolicy.element_value`` + ``attribute_marks``
per element, this checkout against another one (e.g. a worktree of main), same run.

Every element of each heavy page (``bench/heavy_pages.py``: snapshot and SPA
mutation adds) is classified the way the batch walk does it (each element with
its parent element's value), with and without site selectors. Two worker
processes, one per checkout, build the same pages (same seed) and run their
rounds alternately, so machine load hits both alike; the report is CPU time
per element (median of rounds) and the ratio ``this / other``.

``no-names``: the same elements without ``name``/``id`` attributes, i.e.
without sensitive-name look-ups (until the word rules are merged into the core,
those go through Python; see ``services/masker/core/src/policy_deps.rs``).

    .venv/bin/python -m bench.bench_element_rules --other /tmp/rpol-base
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SELECTOR_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "no-selectors": {},
    "site-selectors": {
        "mask_text_selectors": (".secret", "form .card input"),
        "block_selectors": ("[data-private]",),
        "ignore_input_selectors": ("input.search",),
    },
}
PAGES = ("paragraphs", "css", "article", "small-text", "spa", "mixed")
Element = tuple[str, dict[str, Any], int]  # tag, attributes, index of the parent element or -1


def _walk(node: dict[str, Any], parent: int, out: list[Element]) -> None:
    here = parent
    if node.get("type") == 2:
        tag = node.get("tagName")
        attrs = node.get("attributes")
        out.append((
            tag.lower() if isinstance(tag, str) else "",
            attrs if isinstance(attrs, dict) else {},
            parent,
        ))
        here = len(out) - 1
    for child in node.get("childNodes") or ():
        if isinstance(child, dict):
            _walk(child, here, out)


def page_elements(page: str, snapshot_bytes: int, seed: int) -> list[Element]:
    """Every element of one generated session grown as ``page``, in document order."""
    from bench.heavy_pages import grow_session
    from services.dev.rrweb_gen import generate_session

    rng = random.Random(seed)
    session = generate_session(rng, site_id="bench", start_ms=1_700_000_000_000)
    out: list[Element] = []
    for event in grow_session(session.events, rng, snapshot_bytes, page):
        data = event.get("data") or {}
        if event["type"] == 2:
            _walk(data["node"], -1, out)
        elif event["type"] == 3 and data.get("source") == 0:
            for add in data.get("adds") or ():
                _walk(add["node"], -1, out)
    return out


def without_names(elements: list[Element]) -> list[Element]:
    return [
        (tag, {k: v for k, v in attrs.items() if k not in ("name", "id")}, parent)
        for tag, attrs, parent in elements
    ]


def _classify(value_of: Callable[[str, dict[str, Any], int], int]) -> Callable[
    [list[Element]], None
]:
    def run(elements: list[Element]) -> None:
        values = [0] * len(elements)
        for i, (tag, attrs, parent) in enumerate(elements):
            values[i] = value_of(tag, attrs, values[parent] if parent >= 0 else 0)

    return run


def _marks(marks_of: Callable[[dict[str, Any]], int]) -> Callable[[list[Element]], None]:
    def run(elements: list[Element]) -> None:
        for _, attrs, _ in elements:
            marks_of(attrs)

    return run


def worker(snapshot_bytes: int, seed: int, loops: int) -> None:
    """Builds the pages, then times one round per line read on stdin."""
    from services.masker.policy import MaskPolicy
    from services.shared.site_settings import SiteSettings

    pages: dict[str, list[Element]] = {}
    for page in PAGES:
        pages[page] = page_elements(page, snapshot_bytes, seed)
    pages["mixed/no-names"] = without_names(pages["mixed"])
    cases: dict[str, Callable[[list[Element]], None]] = {}
    for name, selectors in SELECTOR_SETS.items():
        policy = MaskPolicy.from_site(SiteSettings(site_id="bench", **selectors))  # type: ignore[arg-type]
        cases[f"element_value/{name}"] = _classify(policy.element_value)
        rules = getattr(policy, "rules", None)
        if rules is not None:  # the compiled core, without MaskPolicy's Python method
            cases[f"core.element_value/{name}"] = _classify(rules.element_value)
    cases["attribute_marks"] = _marks(
        MaskPolicy.from_site(SiteSettings(site_id="bench")).attribute_marks
    )
    # the loop itself, with a C call of the same arity (slice(a, b, c) builds a
    # small object): the part of a case's time that is the Python loop and call
    cases["loop floor"] = _classify(slice)  # type: ignore[arg-type]
    counts = {page: len(elements) for page, elements in pages.items()}
    named = {p: sum(1 for _, a, _ in e if "name" in a or "id" in a) for p, e in pages.items()}
    print(json.dumps({"elements": counts, "named": named}), flush=True)
    for _ in sys.stdin:
        result: dict[str, float] = {}
        for case, run in cases.items():
            for page, elements in pages.items():
                start = time.process_time()
                for _ in range(loops):
                    run(elements)
                elapsed = time.process_time() - start
                result[f"{case} {page}"] = elapsed / (loops * len(elements))
        print(json.dumps(result), flush=True)


def _start(checkout: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    # this file as a script, the checkout's own packages first on the path
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker",
        "--snapshot-bytes", str(args.snapshot_bytes), "--seed", str(args.seed),
        "--loops", str(args.loops),
    ]
    return subprocess.Popen(
        command, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _rounds(proc: subprocess.Popen[str], rounds: int) -> Iterator[dict[str, float]]:
    assert proc.stdin is not None and proc.stdout is not None
    for _ in range(rounds):
        proc.stdin.write("round\n")
        proc.stdin.flush()
        yield json.loads(proc.stdout.readline())


def main() -> None:
    """Parse arguments; run both checkouts' workers alternately; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="checkout to compare with (e.g. main)")
    parser.add_argument("--snapshot-bytes", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--loops", type=int, default=20, help="passes over a page per round")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.snapshot_bytes, args.seed, args.loops)
        return
    here = Path(__file__).resolve().parent.parent
    checkouts = {"this": here} | ({"other": args.other.resolve()} if args.other else {})
    procs = {name: _start(path, args) for name, path in checkouts.items()}
    info = {name: json.loads(p.stdout.readline()) for name, p in procs.items()}  # type: ignore[union-attr]
    print(f"elements per page: {info['this']['elements']}")
    print(f"with a name or id: {info['this']['named']}")
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in procs}
    iters = {name: _rounds(p, args.rounds) for name, p in procs.items()}
    for _ in range(args.rounds):
        for name, it in iters.items():  # alternate: load hits both alike
            for key, value in next(it).items():
                samples[name].setdefault(key, []).append(value)
    for p in procs.values():
        p.stdin.close()  # type: ignore[union-attr]
        p.wait()
    print(f"{'case':58} {'this us/el':>11} {'other us/el':>12} {'ratio':>7}")
    for key in samples["this"]:
        this = statistics.median(samples["this"][key]) * 1e6
        base_key = key.replace("core.", "")
        other_samples = samples.get("other", {}).get(base_key)
        other = statistics.median(other_samples) * 1e6 if other_samples else float("nan")
        print(f"{key:58} {this:11.3f} {other:12.3f} {this / other:7.3f}")


if __name__ == "__main__":
    main()
