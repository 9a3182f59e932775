"""The masking rules' public names, in one import (pure: no Kafka, no faust).

Each piece has its own home; this module only gathers the ones that callers
(the faust app, ``replaypipe mask``, tests, benchmarks) use:

- :mod:`services.masker.rrweb`: the rrweb vocabulary (event, source, node types);
- :mod:`services.masker.sensitivity`: sensitive field names and the node bits;
- :mod:`services.masker.policy`: a site's settings, precompiled (:class:`MaskPolicy`);
- :mod:`services.masker.state`: the per-session state (:class:`SessionMaskState`);
- :mod:`services.masker.batch`: the batch walk (:func:`mask_batch`);
- :mod:`services.masker.message`: one raw message to one masked value (``mask_message``);
- :mod:`services.masker.detectors`: string scrubbers (:func:`mask_text`, PII detectors).
"""

from __future__ import annotations

from services.masker.batch import MaskResult, mask_batch
from services.masker.detectors import mask_text
from services.masker.policy import MaskPolicy
from services.masker.rrweb import CONSENT_EVENT_TAG
from services.masker.sensitivity import DEFAULT_SENSITIVE_NAMES
from services.masker.state import SessionMaskState

__all__ = [
    "CONSENT_EVENT_TAG",
    "DEFAULT_SENSITIVE_NAMES",
    "MaskPolicy",
    "MaskResult",
    "SessionMaskState",
    "mask_batch",
    "mask_text",
]
