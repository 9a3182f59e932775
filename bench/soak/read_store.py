"""Print every batch of one site in one embedded store: ``session_id, seq, rows, distinct``.

Run by the soak in a child process per store (``python -m bench.soak.read_store
PATH SITE``), since a process opens one embedded ClickHouse. One JSON array a
line; rows are read with ``FINAL``, as every read of the sink's API is.
"""

from __future__ import annotations

import sys

import orjson

from services.sink.store import open_client

BATCHES_SQL = """
SELECT session_id, seq, count(), uniqExact(window_id, idx)
FROM events FINAL
WHERE site_id = {site:String}
GROUP BY session_id, seq
"""


def main(argv: list[str]) -> int:
    """Print the store's batches of ``SITE`` to stdout."""
    path, site = argv
    client = open_client(f"chdb://{path}")
    result = client.query(BATCHES_SQL, parameters={"site": site})
    out = sys.stdout.buffer
    for session_id, seq, rows, distinct in result.result_rows:
        out.write(orjson.dumps([session_id, seq, rows, distinct]) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
