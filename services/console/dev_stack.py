"""The console in ``replaypipe run`` (the local stack): its secrets and the first admin.

Nothing has a default password: the first run creates the instance admin
``admin@localhost`` (``CONSOLE_FIRST_ADMIN_EMAIL``) with a one-time password that
is printed once, and generates the sink's admin token (the console's service
credential) and the CSRF signing key as files under ``var/secrets/``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Protocol

from services.console.cli_commands import ensure_first_admin
from services.console.settings import ConsoleSettings
from services.shared.kafka import KafkaSettings

CONSOLE_PORT = 8083


class Stack(Protocol):
    """What the console needs of services/dev/stack.py's LocalStack."""

    var_dir: Path
    kafka_port: int
    extra_env: dict[str, str]

    def start_service(self, name: str) -> object: ...

    def wait_ready(self, name: str, port: int, timeout: float = 90.0) -> None: ...


def _secret_file(var_dir: Path, name: str) -> Path:
    path = var_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path


def console_env(
    var_dir: Path, sink_port: int, ingest_port: int, console_port: int | None = None
) -> dict[str, str]:
    """Environment for every service of the stack: the shared secrets and the console's URLs.

    The console listens on ``console_port``, else on ``CONSOLE_PORT`` (default 8083).
    """
    if console_port is None:
        console_port = ConsoleSettings.from_env().port
    env = {
        "CONSOLE_PORT": str(console_port),
        "CONSOLE_SINK_URL": f"http://127.0.0.1:{sink_port}",
        "CONSOLE_INGEST_URL": f"http://127.0.0.1:{ingest_port}",
        "CONSOLE_SECRET_KEY_FILE": str(_secret_file(var_dir, "console-secret-key")),
    }
    if not os.environ.get("SINK_ADMIN_TOKEN"):
        # The sink reads the token from the environment, the console from either.
        env["SINK_ADMIN_TOKEN"] = _secret_file(var_dir, "sink-admin-token").read_text().strip()
    return env


def start_console(stack: Stack) -> str:
    """Start the console process, wait for it, create the first admin; lines to print."""
    port = int(stack.extra_env.get("CONSOLE_PORT", CONSOLE_PORT))
    stack.start_service("console")
    stack.wait_ready("console", port)
    email = ConsoleSettings.from_env().first_admin_email
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{stack.kafka_port}")
    one_time = asyncio.run(ensure_first_admin(kafka, email))
    lines = f"  console   http://127.0.0.1:{port}/"
    if one_time is not None:
        lines += (
            f"\n            first admin {email}, one-time password (shown once, change it at "
            f"first login): {one_time}"
        )
    return lines
