"""The rrweb vocabulary the masker reads: event, source and node types, plugin
names, and which attributes hold text, URLs or structure.

Plain constants, no logic: the rest of the masker names things by these.
"""

from __future__ import annotations

from typing import Final

# --- event, source and node types ---------------------------------------------

EVENT_DOM_CONTENT_LOADED = 0
EVENT_LOAD = 1
EVENT_FULL_SNAPSHOT = 2
EVENT_INCREMENTAL = 3
EVENT_META = 4
EVENT_CUSTOM = 5
EVENT_PLUGIN = 6

SOURCE_MUTATION = 0
SOURCE_INPUT = 5
SOURCE_CANVAS = 9
SOURCE_LOG = 11
# Sources whose payload is positions, ids, CSS or media state: no visitor text.
PASS_THROUGH_SOURCES: Final = frozenset({1, 2, 3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 16})

NODE_DOCUMENT = 0
NODE_ELEMENT = 2
NODE_TEXT = 3
NODE_CDATA = 4
NODE_COMMENT = 5

CONSOLE_PLUGIN = "rrweb/console@1"
SEQUENTIAL_ID_PLUGIN = "rrweb/sequential-id@1"
CONSENT_EVENT_TAG = "replaypipe.consent"
SCRIPT_PLACEHOLDER = "SCRIPT_PLACEHOLDER"  # what rrweb itself records for script text

# --- attributes and keys --------------------------------------------------------

# Attributes that carry human-readable text: masked like text inside masked subtrees.
TEXT_ATTRIBUTES: Final = frozenset(
    {"placeholder", "title", "alt", "label", "summary", "srcdoc", "content", "abbr"}
)
URL_ATTRIBUTES: Final = frozenset(
    {
        "href", "src", "action", "formaction", "srcset", "poster", "data", "cite",
        "background", "ping", "longdesc", "manifest", "xlink:href", "imagesrcset",
    }
)
# URL attributes that load what the replay shows (images, media, embeds): their
# path segments are not masked as random tokens (content hashes and CDN ids
# look random; a broken image is a broken replay). Parameters still are.
ASSET_URL_ATTRIBUTES: Final = frozenset(
    {"src", "srcset", "poster", "data", "background", "imagesrcset", "manifest"}
)
# Never scrubbed: CSS (a regex over CSS breaks replays) and the masker's own marks.
UNTOUCHED_ATTRIBUTES: Final = frozenset({"style", "_cssText", "data-recording-ignore"})
# What a blocked element keeps, as rrweb does for rr-block: its box, nothing inside.
PLACEHOLDER_ATTRIBUTES: Final = ("class", "style", "width", "height", "rr_width", "rr_height")
# Keys of unknown event shapes whose string values are structure, not content.
STRUCTURAL_KEYS: Final = frozenset(
    {"type", "source", "tag", "plugin", "level", "tagName", "rootId", "nodeType", "property"}
)
# Elements whose value the visitor types or picks.
FORM_FIELD_TAGS: Final = frozenset({"input", "textarea", "select"})
