"""Fixtures of tests/deploy (see manifests.py)."""

from tests.deploy.manifests import objects, render

__all__ = ["objects", "render"]
