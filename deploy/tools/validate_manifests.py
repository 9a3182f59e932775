"""Validate rendered Kubernetes manifests offline, and turn YAML into JSON.

Runs with the interpreter of .cache/deploy-tools/venv (scripts/setup_deploy_tools.sh),
which has kubernetes-validate (the Kubernetes JSON schemas of every version,
bundled), jsonschema and PyYAML; the project's venv needs none of them.

    validate_manifests.py validate --kubernetes-version 1.31.0 rendered.yaml
    validate_manifests.py to-json rendered.yaml      # JSON list of the documents

Built-in kinds are checked strictly (unknown fields are errors) against the
schemas of the pinned Kubernetes version. Custom resources (Strimzi, Altinity,
Prometheus operator) are checked against the schemas in deploy/crd-schemas/,
which may reference built-in definitions (PodSpec, ObjectMeta). A kind with
no schema at all is an error, never skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import kubernetes_validate  # type: ignore[import-untyped]
import referencing
import referencing.jsonschema
import yaml  # type: ignore[import-untyped,unused-ignore]

CRD_SCHEMAS = Path(__file__).resolve().parent.parent / "crd-schemas"
K8S_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"


def load_documents(path: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path`` (``-`` for stdin)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def crd_schema_path(api_version: str, kind: str) -> Path:
    """Where the schema of a custom resource lives: ``<kind>.<group>.yaml``, lower case."""
    group = api_version.split("/", 1)[0]
    return CRD_SCHEMAS / f"{kind.lower()}.{group}.yaml"


def k8s_definitions(version: str) -> dict[str, Any]:
    """The shared definitions of one Kubernetes version (strict flavour)."""
    minor = kubernetes_validate.utils.major_minor(version)
    chosen = [
        v
        for v in kubernetes_validate.utils.all_versions()
        if kubernetes_validate.utils.major_minor(v) <= minor
    ][-1]
    defs: dict[str, Any] = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{chosen}-local-strict/_definitions.json", version
    )
    return defs


def crd_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Problems of one custom resource against its vendored schema."""
    path = crd_schema_path(doc["apiVersion"], doc["kind"])
    if not path.exists():
        return [f"no schema for {doc['apiVersion']} {doc['kind']} (add {path.name})"]
    schema = yaml.safe_load(path.read_text())
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        K8S_DEFINITIONS_URI,
        referencing.jsonschema.DRAFT202012.create_resource(k8s_definitions(version)),
    )
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def builtin_errors(doc: dict[str, Any], version: str) -> list[str] | None:
    """Problems of a built-in object, or None when the version has no schema for it."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as err:
        where = ".".join(str(p) for p in err.path) or "<root>"
        return [f"{where}: {err.message}"]
    return []


def validate_documents(docs: list[dict[str, Any]], version: str) -> Iterator[tuple[str, list[str]]]:
    """``(kind/name, errors)`` for every document."""
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if "apiVersion" not in doc or "kind" not in doc:
            yield name, ["apiVersion and kind are required"]
            continue
        errors = builtin_errors(doc, version)
        if errors is None:
            errors = crd_errors(doc, version)
        yield name, errors


def main(argv: list[str] | None = None) -> int:
    """Command line entry; exit status 1 when any object is invalid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="validate every object of a YAML stream")
    check.add_argument("--kubernetes-version", required=True)
    check.add_argument("path")
    to_json = sub.add_parser("to-json", help="print the YAML documents as one JSON list")
    to_json.add_argument("path")
    args = parser.parse_args(argv)

    docs = load_documents(args.path)
    if args.command == "to-json":
        json.dump(docs, sys.stdout)
        return 0
    failed = 0
    for name, errors in validate_documents(docs, args.kubernetes_version):
        if errors:
            failed += 1
            for error in errors:
                print(f"INVALID {name}: {error}")
        else:
            print(f"ok {name}")
    print(f"{len(docs) - failed} valid, {failed} invalid (Kubernetes {args.kubernetes_version})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
