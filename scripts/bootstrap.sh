#!/usr/bin/env bash
# Sets up what is missing, and nothing else: the virtualenv with the pinned
# dependencies (.venv), the masker's compiled core (services/masker/core, Rust,
# built with maturin into .venv) and the Apache Kafka jars (.cache/kafka/libs).
# Idempotent: a second run with nothing changed takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# --- Python ---------------------------------------------------------------
stamp=.venv/.installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "bootstrap: creating .venv and installing pinned dependencies" >&2
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet -e '.[test,build]'
  touch "$stamp"
fi

# --- The masker's compiled core (Rust) --------------------------------------
# Rebuilt when a file of the crate changed (its target/ aside). Crates come from
# crates.io at the versions in Cargo.lock; a first build takes about a minute.
core=services/masker/core
cstamp=.venv/.core-installed
if [[ ! -f $cstamp || -n "$(find "$core" -path "$core/target" -prune -o -newer "$cstamp" -type f -print -quit)" ]]; then
  command -v cargo >/dev/null || PATH="$HOME/.cargo/bin:$PATH"
  command -v cargo >/dev/null || { echo "bootstrap: cargo is required (Rust, rustup)" >&2; exit 1; }
  echo "bootstrap: building the masker's compiled core (cargo, release)" >&2
  start=$SECONDS
  log=.venv/core-build.log
  if ! (cd "$core" && VIRTUAL_ENV="$PWD/../../../.venv" ../../../.venv/bin/maturin develop \
      --release --locked) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: building $core failed (whole log: $log)" >&2
    exit 1
  fi
  echo "bootstrap: compiled core built in $((SECONDS - start)) s" >&2
  touch "$cstamp"
fi

# --- Kafka broker jars from Maven Central ---------------------------------
kstamp=.cache/kafka/.installed
if [[ ! -f $kstamp || scripts/kafka/pom.xml -nt $kstamp ]]; then
  echo "bootstrap: resolving the Apache Kafka jars with mvn" >&2
  command -v mvn >/dev/null || { echo "bootstrap: mvn is required (Maven 3)" >&2; exit 1; }
  command -v java >/dev/null || { echo "bootstrap: java 17+ is required" >&2; exit 1; }
  rm -rf .cache/kafka/libs
  mkdir -p .cache/kafka
  mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
      -DoutputDirectory="$PWD/.cache/kafka/libs" -DincludeScope=runtime
  touch "$kstamp"
fi
