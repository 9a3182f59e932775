"""A raw batch the masker cannot mask is rejected with a reason, never half published."""

from __future__ import annotations

import orjson
import pytest

from services.masker.batch import BatchOverBudget
from services.masker.message import (
    BatchTooDeep,
    dlq_pointer,
    mask_message,
    rejection_for,
)
from services.shared.envelope import EnvelopeError
from services.shared.limits import MAX_JSON_DEPTH
from services.shared.site_settings import SiteRegistry, SiteSettings
from tests.unit.masker_pages import nesting_depth, raw_with_custom_payload_nested, small_page

REGISTRY = SiteRegistry([SiteSettings(site_id="deep", record_inputs=True)])


def test_a_batch_nested_deeper_than_the_limit_is_rejected_as_too_deep() -> None:
    raw = raw_with_custom_payload_nested(300)

    with pytest.raises(BatchTooDeep) as raised:
        mask_message(raw, None, REGISTRY, partition=0, offset=7)

    assert rejection_for(raised.value).reason == "too_deep"


def test_a_batch_nested_just_within_the_limit_is_masked() -> None:
    # The payload's outer list is level 5 (envelope, events, event, data, payload).
    raw = raw_with_custom_payload_nested(MAX_JSON_DEPTH - 4)

    masked = mask_message(raw, None, REGISTRY, partition=0, offset=7)

    assert masked.value is not None
    assert nesting_depth(orjson.loads(masked.value)) == MAX_JSON_DEPTH


def test_a_batch_over_its_time_budget_is_rejected_not_published() -> None:
    raw = small_page("deep", "s1").to_json()

    with pytest.raises(BatchOverBudget) as raised:
        mask_message(raw, None, REGISTRY, partition=0, offset=7, budget_s=0.0)

    assert rejection_for(raised.value).reason == "over_budget"


def test_a_batch_within_its_time_budget_is_masked_as_without_one() -> None:
    raw = small_page("deep", "s1").to_json()

    timed = mask_message(raw, None, REGISTRY, partition=0, offset=7, budget_s=60.0)
    untimed = mask_message(raw, None, REGISTRY, partition=0, offset=7)

    assert timed.value == untimed.value


def test_an_unexpected_error_is_named_by_its_type_never_its_text() -> None:
    rejection = rejection_for(KeyError("hunter2-secret"))

    assert rejection.reason == "mask_error"
    assert "hunter2" not in rejection.detail


def test_a_bad_envelope_keeps_its_specific_reason() -> None:
    rejection = rejection_for(EnvelopeError("missing field 'site_id'"))

    assert (rejection.reason, rejection.detail) == ("bad_envelope", "missing field 'site_id'")


def test_a_dlq_pointer_names_the_reason_code_and_detail_without_content() -> None:
    pointer = orjson.loads(
        dlq_pointer("recordings.raw", 1, 9, "too_deep", detail="events nest 300 levels deep")
    )

    assert pointer == {
        "stage": "masker",
        "topic": "recordings.raw",
        "partition": 1,
        "offset": 9,
        "reason": "too_deep",
        "detail": "events nest 300 levels deep",
    }


def test_nesting_depth_counts_lists_and_objects() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth([]) == 1
    assert nesting_depth({"a": [{"b": []}]}) == 4
