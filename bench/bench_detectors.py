"""Worst-case text for the masker's string detectors, against ``orjson.loads``.

Each case is a text built to make one detector work hardest (digits joined by
single spaces, long digit runs, IBAN-like and e-mail-like runs, ``@`` storms,
query strings, ...). For each, the time of ``Scrubber.scrub`` with every
detector and a query-parameter list enabled is compared with ``orjson.loads``
of the same text as a JSON string (the cheapest thing the masker does with
every byte anyway). Run:

    .venv/bin/python -m bench.bench_detectors [--kib 256] [--repeat 3]

Prints a Markdown table (ns per character; ratio to ``orjson.loads``) for
docs/benchmarks.md (section ``detectors``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import orjson

from services.masker.detectors import Scrubber

SCRUBBER = Scrubber.build(("email", "card", "iban"), ("token", "email", "password"))


def repeat_to(piece: str, size: int) -> str:
    """``piece`` repeated until the text is ``size`` characters long."""
    return (piece * (size // len(piece) + 1))[:size]


CASES: dict[str, Callable[[int], str]] = {
    "digits joined by single spaces": lambda n: repeat_to("1 ", n),
    "digits joined by dashes": lambda n: repeat_to("4-", n),
    "groups of four digits": lambda n: repeat_to("4111 ", n),
    "one long digit run": lambda n: "7" * n,
    "card-length runs, spaced": lambda n: repeat_to("4111111111111112 ", n),
    "valid cards back to back": lambda n: repeat_to("4111 1111 1111 1111 ", n),
    "IBAN-like runs": lambda n: repeat_to("DE12 3456 7890 1234 5678 90 ", n),
    "IBAN-like, no spaces": lambda n: repeat_to("DE89370400440532013001", n),
    "e-mail-like local part": lambda n: "@" + "a" * (n - 1),
    "e-mail-like dotted domain": lambda n: "a@" + repeat_to("a.", n - 2),
    "@ storm": lambda n: "@" * n,
    "a@ storm": lambda n: repeat_to("a@", n),
    "%40 storm": lambda n: repeat_to("a%40", n),
    "query string storm": lambda n: "?" + repeat_to("token=x&", n - 1),
    "plain words": lambda n: repeat_to("lorem ipsum dolor ", n),
}


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Time every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kib", type=int, default=256, help="text size per case")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.kib * 1024
    print(f"Text of {args.kib} KiB per case; best of {args.repeat}.\n")
    print("| case | scrub ns/char | orjson.loads ns/char | ratio |")
    print("| --- | ---: | ---: | ---: |")
    worst = 0.0
    for name, build in CASES.items():
        text = build(size)
        encoded = orjson.dumps(text)
        scrub = best_of(args.repeat, partial(SCRUBBER.scrub, text, Counter()))
        loads = best_of(args.repeat, partial(orjson.loads, encoded))
        ratio = scrub / loads
        worst = max(worst, ratio)
        print(
            f"| {name} | {scrub / size * 1e9:,.1f} | {loads / size * 1e9:,.2f} | {ratio:,.0f} |"
        )
    print(f"\nWorst ratio: {worst:,.0f}x orjson.loads.")


if __name__ == "__main__":
    main()
