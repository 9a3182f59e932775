"""Limits that every stage enforces alike, so a batch one stage accepts the next can handle."""

from __future__ import annotations

# orjson refuses to serialise containers nested more than 255 deep. A batch body
# (its root object is depth 1) may nest at most this deep: the envelope adds up
# to 3 levels around the events and the masker re-serialises every event, so 200
# leaves headroom. A full snapshot nests ~2 levels per DOM level, so this admits
# DOMs ~98 elements deep (Lighthouse flags pages deeper than 32).
MAX_JSON_DEPTH = 200

# A window's batch counter: the sink stores it as UInt32, so a larger one would
# make its insert fail. Ingest refuses it (400 invalid_seq) and an envelope that
# carries one anyway is not an envelope (the masker and the sink send it to the DLQ).
MAX_SEQ = 2**32 - 1
