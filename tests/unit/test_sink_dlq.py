"""What the sink's DLQ pointer holds (:func:`services.sink.dlq.dlq_pointer`)."""

from __future__ import annotations

import orjson

from services.sink.dlq import dlq_pointer


def test_a_pointer_names_where_the_message_is_and_why_not_what_it_is() -> None:
    pointer = orjson.loads(dlq_pointer("recordings.masked", 3, 1207, "over_limit"))
    assert pointer == {
        "stage": "sink",
        "topic": "recordings.masked",
        "partition": 3,
        "offset": 1207,
        "reason": "over_limit",
    }
