"""The masker's agent with the masking taken out: what the agent around it costs.

Runs the masker worker (``services.masker.app``: the same faust App, state
table, manual acks after delivery, metrics, DLQ path) with ``mask_message``
replaced by a stand-in that does no parsing and no masking: it publishes each
raw value as it came. ``BENCH_AGENT_STATE_BYTES`` (default 0) makes the
stand-in store a state of that many bytes for every batch, as a batch that
changes the session's node index does; 0 stores none. Run by
``bench/bench_masker.py --agent-only`` as its own process:

    MASKER_APP_ID=... BENCH_AGENT_STATE_BYTES=381 python -m bench.masker_agent_only
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from services.masker import app as masker_app
from services.masker.message import MaskedBatch


def stand_in(state_bytes: int) -> Callable[..., MaskedBatch]:
    """A ``mask_message`` that publishes the raw value as it came, storing
    ``state_bytes`` of state per batch (none for 0)."""
    state = b"s" * state_bytes if state_bytes else None

    def no_masking(raw_value: bytes, *_args: Any, **_kwargs: Any) -> MaskedBatch:
        return MaskedBatch(
            value=raw_value, events=0, state=state, counts={}, dropped=0, site_id="bench",
            received_at_ms=0,
        )

    return no_masking


def main() -> None:
    """Run the masker worker with the stand-in until SIGTERM."""
    masker_app.mask_message = stand_in(int(os.environ.get("BENCH_AGENT_STATE_BYTES", "0")))
    sys.argv = [sys.argv[0], "worker"]
    masker_app.main()


if __name__ == "__main__":
    main()
