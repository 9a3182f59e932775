#!/usr/bin/env bash
# Installs the offline tools that check deploy/ (tests/deploy), into
# .cache/deploy-tools (git-ignored), and nothing else:
#   bin/kustomize   kustomize, built from its Go module with the local Go
#   bin/promtool    promtool, unpacked from Debian's `prometheus` package
#                   (apt-get download + dpkg-deb -x: no daemon, no system change)
#   venv/           kubernetes-validate (ships the Kubernetes JSON schemas),
#                   jsonschema and PyYAML for deploy/tools/validate_manifests.py
# Idempotent: a second run with nothing changed takes well under a second.
# Versions are pinned here and only here.
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=v5.7.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PYYAML_VERSION=6.0.2
PROMETHEUS_DEB_VERSION_PREFIX=2.42.   # Debian 12 (bookworm); promtool is the same binary

TOOLS=.cache/deploy-tools
mkdir -p "$TOOLS/bin"
TOOLS_ABS="$PWD/$TOOLS"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

say() { echo "setup_deploy_tools: $*" >&2; }

# --- kustomize ------------------------------------------------------------
if [[ "$("$TOOLS/bin/kustomize" version 2>/dev/null || true)" != "$KUSTOMIZE_VERSION" ]]; then
  say "building kustomize $KUSTOMIZE_VERSION with go install"
  command -v go >/dev/null || { say "go is required to build kustomize"; exit 1; }
  GOBIN="$TOOLS_ABS/bin" GOFLAGS=-mod=mod \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi

# --- promtool -------------------------------------------------------------
if ! "$TOOLS/bin/promtool" --version 2>&1 | grep -q "version $PROMETHEUS_DEB_VERSION_PREFIX"; then
  say "unpacking promtool from Debian's prometheus package"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 0777 "$work"   # lets apt's sandbox user write the download
  (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1) || {
    # A machine whose package lists were never fetched knows no `prometheus`.
    if [[ $(id -u) -eq 0 ]]; then
      apt-get update -qq >/dev/null
      (cd "$work" && apt-get download -q prometheus >/dev/null)
    else
      say "apt-get download prometheus failed (run once as root: apt-get update)"; exit 1
    fi
  }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  install -m 0755 "$work/x/usr/bin/promtool" "$TOOLS/bin/promtool"
  "$TOOLS/bin/promtool" --version 2>&1 | grep -q "version $PROMETHEUS_DEB_VERSION_PREFIX" || {
    say "Debian served a promtool other than $PROMETHEUS_DEB_VERSION_PREFIX*; update the pin"; exit 1; }
fi

# --- schema validator (Python, own venv: the project venv stays as pyproject says) ---
vstamp="$TOOLS/venv/.installed-$KUBERNETES_VALIDATE_VERSION-$PYYAML_VERSION"
if [[ ! -f $vstamp ]]; then
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $TOOLS/venv"
  [[ -x $TOOLS/venv/bin/python ]] || "$PYTHON" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "PyYAML==$PYYAML_VERSION"
  rm -f "$TOOLS"/venv/.installed-*
  touch "$vstamp"
fi
