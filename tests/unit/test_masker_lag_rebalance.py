"""The masker's lag timer while a rebalance takes partitions away (found by bench/soak)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError
from faust.types import TP

from services.masker.app import update_consumer_lag
from services.shared import topics


class RevokedMidwayConsumer:
    """Assigned partitions 0 and 1; partition 1 is revoked before its position is read."""

    _committed_offset: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return {TP(topics.RAW, 0), TP(topics.RAW, 1)}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 100)

    async def position(self, tp: TP) -> int:
        if tp.partition == 1:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 40


class FakeApp:
    consumer = RevokedMidwayConsumer()


def test_a_partition_revoked_while_lag_is_read_is_skipped_not_a_crash() -> None:
    app = cast(faust.App, cast(Any, FakeApp()))
    assert asyncio.run(update_consumer_lag(app)) == {0: (100, 40)}
