#!/usr/bin/env bash
# Writes the random secret files the dev overlay's secretGenerator reads
# (deploy/k8s/overlays/dev/secrets/, git-ignored), one file per value:
#   clickhouse-{migrate,sink,analyst}.password  ClickHouse users (hex)
#   sink-admin.token                            the sink's admin token (hex)
#   console-secret-key                          CONSOLE_SECRET_KEY_FILE (hex)
#   console-totp-key                            CONSOLE_TOTP_KEY_FILE (base64 of 32 bytes)
#   raw-kek                                     a raw-encryption KEK (base64 of 32 bytes)
# Kafka passwords and the Kafka CA are not here: Strimzi makes them.
# Idempotent: an existing file is kept (rerunning never rotates a secret).
#   scripts/k8s_dev_secrets.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-deploy/k8s/overlays/dev/secrets}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DIR"
umask 077

write() {  # write NAME PYTHON-EXPRESSION: the file, unless it exists
  local target="$DIR/$1"
  [[ -s $target ]] && return 0
  "$PYTHON" -c "import base64, secrets, sys; sys.stdout.write($2)" >"$target.tmp"
  mv "$target.tmp" "$target"
  echo "k8s_dev_secrets: wrote $target" >&2
}

HEX='secrets.token_hex(32)'
for user in migrate sink analyst; do write "clickhouse-$user.password" "$HEX"; done
write sink-admin.token "$HEX"
write console-secret-key "$HEX"
B64='base64.b64encode(secrets.token_bytes(32)).decode()'
write console-totp-key "$B64"
write raw-kek "$B64"
