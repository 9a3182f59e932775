"""Scoped SQL: the site row filters (the query checks are analyst SQL's, tested there)."""

from __future__ import annotations

import pytest

from services.sink.analyst_sql import AnalystLimits
from services.sink.scoped_sql import site_filters


def test_row_filters_are_engine_settings_fixed_by_readonly() -> None:
    filters = site_filters(["shop"])
    settings = AnalystLimits(row_filters=filters).settings()
    assert settings["additional_table_filters"] == filters
    assert list(settings)[-1] == "readonly"  # readonly last: the query cannot lift the filter


def test_site_filters_cover_both_row_tables() -> None:
    assert site_filters(["shop", "blog"]) == {
        "events": "site_id IN ('shop', 'blog')",
        "sessions": "site_id IN ('shop', 'blog')",
    }


@pytest.mark.parametrize("sites", [[], ["it's"], ["a b"]])
def test_site_filters_refuse_what_is_not_a_plain_site_id(sites: list[str]) -> None:
    with pytest.raises(ValueError):
        site_filters(sites)
