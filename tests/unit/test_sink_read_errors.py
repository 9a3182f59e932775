"""What the read API and the viewer answer when a request cannot be served (no engine)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.sink.read_api import engine_error_response
from services.sink.store import EngineError
from services.sink.viewer import add_viewer_routes


async def test_a_missing_viewer_file_is_a_404_that_does_not_echo_the_name() -> None:
    app = web.Application()
    add_viewer_routes(app)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/viewer/static/%3Cscript%3Ealert(1)%3C%2Fscript%3E.js")
        body = await response.text()
    assert response.status == 404 and "not_found" in body
    assert "script" not in body and "alert" not in body
    assert "viewer.js" in body  # it names what exists instead


@pytest.mark.parametrize("name", ["BAD_QUERY_PARAMETER", "CANNOT_PARSE_DATETIME"])
def test_an_engine_error_caused_by_a_parameter_is_a_400(name: str) -> None:
    response = engine_error_response(EngineError(457, name))
    assert response.status == 400
    assert response.text is not None and "invalid_parameter" in response.text


def test_any_other_engine_error_is_a_503_not_a_500() -> None:
    response = engine_error_response(EngineError(60, "UNKNOWN_TABLE"))
    assert response.status == 503
    assert response.text is not None and "store_unavailable" in response.text
