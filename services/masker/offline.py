"""``replaypipe mask``: run the masking rules over an NDJSON file of one session.

    replaypipe mask --site-settings config/sites.json --site demo < in.ndjson > out.ndjson

One rrweb event per input line, one masked event per output line (events the
rules drop are not written). A JSON summary of what was masked goes to stderr.
Same rules, same code as the streaming masker: useful to check a site's
settings against a real recording before deploying them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from services.masker.batch import mask_batch
from services.masker.policy import MaskPolicy
from services.masker.state import SessionMaskState
from services.shared.site_settings import SiteSettings, SiteSettingsError

# Events are masked in chunks of this many (state carries across chunks, so
# the result is the same as one big batch; memory stays bounded).
CHUNK_EVENTS = 1000


class OfflineInputError(ValueError):
    """An input line or settings file the command cannot use."""


def load_site(path: Path, site_id: str | None) -> SiteSettings:
    """A site's settings from a sites file (``{"sites": [...]}``) or one site object."""
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise OfflineInputError(f"{path}: cannot read site settings: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise OfflineInputError(f"{path}: not JSON: {exc.msg}") from None
    if isinstance(doc, dict) and isinstance(doc.get("sites"), list):
        entries = [e for e in doc["sites"] if isinstance(e, dict)]
        if site_id is None:
            if len(entries) != 1:
                ids = [e.get("site_id") for e in entries]
                raise OfflineInputError(
                    f"{path} holds {len(entries)} sites {ids}: choose one with --site"
                )
            return SiteSettings.from_dict(entries[0])
        for entry in entries:
            if entry.get("site_id") == site_id:
                return SiteSettings.from_dict(entry)
        raise OfflineInputError(f"{path}: no site with site_id {site_id!r}")
    if isinstance(doc, dict):
        if site_id is not None and doc.get("site_id") != site_id:
            raise OfflineInputError(f"{path}: site_id is {doc.get('site_id')!r}, not {site_id!r}")
        return SiteSettings.from_dict(doc)
    raise OfflineInputError(f'{path}: expected a site object or {{"sites": [...]}}')


def _read_events(stream: IO[bytes]) -> Iterator[Any]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise OfflineInputError(f"input line {number}: not JSON: {exc.msg}") from None


def mask_stream(
    source: IO[bytes],
    sink: IO[bytes],
    site: SiteSettings,
    *,
    consent: bool | None = None,
    sensitive_names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Mask NDJSON events from ``source`` to ``sink``; returns the summary."""
    state = SessionMaskState()
    counts: Counter[str] = Counter()
    events_in = events_out = dropped = 0
    consent_state = ""
    chunk: list[Any] = []

    def flush() -> None:
        nonlocal events_out, dropped, consent_state
        result = mask_batch(chunk, state, site, consent, sensitive_names=sensitive_names)
        counts.update(result.counts)
        dropped += result.dropped
        consent_state = result.consent_state
        events_out += len(result.events)
        sink.write(b"".join(orjson.dumps(e) + b"\n" for e in result.events))
        chunk.clear()

    for event in _read_events(source):
        events_in += 1
        chunk.append(event)
        if len(chunk) >= CHUNK_EVENTS:
            flush()
    if chunk or events_in == 0:
        flush()
    return {
        "site_id": site.site_id,
        "events_in": events_in,
        "events_out": events_out,
        "dropped": dropped,
        "consent_state": consent_state,
        "counts": dict(sorted(counts.items())),
        "state_bytes": len(orjson.dumps(state.to_dict())),
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="replaypipe mask",
        description="Mask an rrweb recording (NDJSON, one event per line, stdin to stdout) "
        "with a site's privacy settings; a JSON summary goes to stderr.",
    )
    parser.add_argument(
        "--site-settings",
        required=True,
        type=Path,
        metavar="FILE",
        help='sites file ({"sites": [...]}, e.g. config/sites.json) or one site object',
    )
    parser.add_argument("--site", metavar="SITE_ID", help="which site of a sites file")
    parser.add_argument(
        "--consent",
        choices=("granted", "withdrawn", "unknown"),
        default="unknown",
        help="consent signal as the envelope would carry it (default: unknown)",
    )
    parser.add_argument(
        "--sensitive-names",
        metavar="LIST",
        help="comma-separated field names/ids always masked (default: built-in list)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``replaypipe mask``; returns the process exit code."""
    args = _parse_args(argv)
    consent = {"granted": True, "withdrawn": False}.get(args.consent)
    names = None
    if args.sensitive_names is not None:
        names = tuple(n.strip() for n in args.sensitive_names.split(",") if n.strip())
    try:
        site = load_site(args.site_settings, args.site)
        for problem in MaskPolicy.from_site(site, names).problems:
            print(f"warning: site {site.site_id}: {problem}", file=sys.stderr)
        summary = mask_stream(
            sys.stdin.buffer, sys.stdout.buffer, site, consent=consent, sensitive_names=names
        )
    except (OfflineInputError, SiteSettingsError) as exc:
        print(f"replaypipe mask: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.flush()
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
