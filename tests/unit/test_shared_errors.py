"""The one JSON error body of every HTTP service."""

from __future__ import annotations

import orjson

from services.shared.errors import error_response


def test_an_error_is_a_code_and_a_sentence_as_json() -> None:
    response = error_response(404, "session_not_found", "No session abc on site demo.")

    assert response.status == 404
    assert response.content_type == "application/json"
    assert response.body is not None and isinstance(response.body, bytes)
    assert orjson.loads(response.body) == {
        "error": "session_not_found",
        "detail": "No session abc on site demo.",
    }


def test_a_retryable_error_says_when_to_retry() -> None:
    response = error_response(503, "kafka_unavailable", "Try again.", retry_after_s=5)

    assert response.headers["Retry-After"] == "5"


def test_extra_headers_are_kept() -> None:
    response = error_response(
        403, "origin_not_allowed", "Add the origin.", headers={"Vary": "Origin"}
    )

    assert response.headers["Vary"] == "Origin"
    assert "Retry-After" not in response.headers
