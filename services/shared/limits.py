"""Limits that every stage enforces alike, so a batch one stage accepts the next can handle."""

from __future__ import annotations

# orjson refuses to serialise containers nested more than 255 deep. A batch body
# (its root object is depth 1) may nest at most this deep: the envelope adds up
# to 3 levels around the events and the masker re-serialises every event, so 200
# leaves headroom. A full snapshot nests ~2 levels per DOM level, so this admits
# DOMs ~98 elements deep (Lighthouse flags pages deeper than 32).
MAX_JSON_DEPTH = 200
