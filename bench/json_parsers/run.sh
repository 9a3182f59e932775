#!/usr/bin/env bash
# Times orjson's loads + dumps (collector paused, as the masker runs it) and three
# Rust JSON libraries on the same raw batches. Usage: bench/json_parsers/run.sh [PAGE] [BYTES]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:$HOME/.cargo/bin"
messages="$(mktemp --suffix=.ndjson)"
trap 'rm -f "$messages"' EXIT
.venv/bin/python - "$messages" "${1:-mixed}" "${2:-300000}" <<'PY'
import gc, sys, time, orjson
from bench.bench_masker import build_messages
messages = build_messages(100, int(sys.argv[3]), page=sys.argv[2])
open(sys.argv[1], "wb").write(b"\n".join(m.value for m in messages))
gc.disable()
for _ in range(3):
    started = time.process_time()
    for m in messages:
        orjson.dumps(orjson.loads(m.value))
    print(f"orjson loads + dumps {time.process_time() - started:.4f} s")
PY
cargo run --quiet --release --locked --manifest-path bench/json_parsers/Cargo.toml -- "$messages"
