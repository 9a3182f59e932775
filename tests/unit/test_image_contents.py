"""The production image gets the services without the development tooling, and they work so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _image_copy(tmp_path: Path) -> Path:
    """``services/`` as .dockerignore lets it into the image: without ``services/dev``."""
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "services/dev/" in ignored
    shutil.copytree(
        ROOT / "services",
        tmp_path / "services",
        ignore=shutil.ignore_patterns("dev", "__pycache__", "static"),
    )
    return tmp_path


# The image installs the package; this venv has an editable install whose finder
# would still find services/dev in the source tree: take it out first.
NO_SOURCE_TREE = (
    "import sys; sys.meta_path = [f for f in sys.meta_path"
    " if getattr(f, '__name__', '') != '_EditableFinder'];"
)


def _python(cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_SOURCE_TREE + code],
        cwd=cwd,
        # Not a local broker address: were the dev tools found after all, `run`
        # would stop at once instead of starting a stack.
        env={
            "PYTHONPATH": str(cwd),
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP_SERVERS": "not-local.invalid:1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_service_imports_without_the_development_tools(tmp_path: Path) -> None:
    image = _image_copy(tmp_path)
    result = _python(
        image,
        "import importlib.util, services, services.ingest.app, services.masker.app,"
        " services.sink.app, services.sink.cli_commands, services.masker.offline;"
        " assert importlib.util.find_spec('services.dev') is None;"
        f" assert services.__file__.startswith({str(image)!r})",
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_development_command_in_the_image_says_where_to_run_it(tmp_path: Path) -> None:
    image = _image_copy(tmp_path)
    result = _python(image, "from services.cli import main; sys.exit(main(['run']))")
    assert result.returncode == 2
    assert "'run' is a development command" in result.stderr
    assert "Traceback" not in result.stderr
