"""``replaypipe`` — one entry point for every service and tool.

replaypipe ingest | masker | sink | console
                                       run one service (configured by env)
replaypipe run [VAR_DIR]               local stack: Kafka broker + the services (and the
                                       console), restarted when they crash (development only)
replaypipe kafka                       only the local Kafka broker (var/kafka; development only)
replaypipe topics                      create the pipeline's topics
replaypipe migrate [--cluster NAME] [--print]
                                       apply the ClickHouse schema migrations (cluster
                                       variant: Replicated* + Distributed ON CLUSTER NAME;
                                       --print shows the DDL without applying it)
replaypipe erase --site S (--session ID | --visitor ID)
                                       GDPR erasure from ClickHouse (CLICKHOUSE_URL; stop
                                       the sink first on the embedded engine, or use the
                                       sink's DELETE API)
replaypipe mask --site-settings FILE   mask an NDJSON recording offline (stdin → stdout)
replaypipe demo                        send generated sessions to a running stack (development only)
replaypipe settings                    print every environment setting as the README table
replaypipe demo                        send generated sessions to a running stack
replaypipe keys new-kek DIR | rewrap | list
                                       key-encryption keys and the data keys of
                                       recordings.raw (docs/security.md)
replaypipe users create [--admin] EMAIL
                                       a console account with a one-time password
replaypipe sites get|set|history SITE [FIELD=VALUE ...]
                                       a site's privacy settings (docs/console.md)
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any


def settings_classes() -> dict[str, type[Any]]:
    """Each service's settings class (their fields declare every environment variable)."""
    from services.console.settings import ConsoleSettings
    from services.ingest.settings import IngestSettings
    from services.masker.settings import MaskerSettings
    from services.sink.settings import SinkSettings

    return {
        "ingest": IngestSettings,
        "masker": MaskerSettings,
        "sink": SinkSettings,
        "console": ConsoleSettings,
    }


# The development tools (services/dev) are left out of the production image.
DEV_ONLY = ("run", "kafka", "demo")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the exit status.

    A setting that cannot be used (a bad value, a missing password file) ends the
    command with its one-line reason, naming the variable, instead of a traceback.
    """
    from services.shared.env import SettingError

    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except SettingError as exc:
        print(f"replaypipe: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = args[0], args[1:]
    if command in DEV_ONLY and importlib.util.find_spec("services.dev") is None:
        print(
            f"replaypipe: {command!r} is a development command and is not in this"
            " installation (the production image has only the services); run it from"
            " a source checkout: make run",
            file=sys.stderr,
        )
        return 2
    if command == "ingest":
        from services.ingest.app import main as ingest_main

        ingest_main()
    elif command == "masker":
        from services.masker.app import main as masker_main

        sys.argv = [sys.argv[0], "worker"]
        masker_main()
    elif command == "sink":
        from services.sink.app import main as sink_main

        sink_main()
    elif command == "console":
        from services.console.app import main as console_main

        console_main()
    elif command in ("users", "sites"):
        from services.console import cli_commands

        return cli_commands.users(rest) if command == "users" else cli_commands.sites(rest)
    elif command == "run":
        from services.dev.stack import run_forever

        return run_forever(Path(rest[0] if rest else "var").resolve())
    elif command == "kafka":
        from services.dev.stack import run_broker_forever

        return run_broker_forever(Path("var").resolve())
    elif command == "topics":
        from services.shared.kafka import KafkaSettings, ensure_topics

        created = asyncio.run(ensure_topics(KafkaSettings.from_env()))
        print("created:", ", ".join(created) or "nothing (all exist)")
    elif command == "migrate":
        from services.sink.cli_commands import migrate

        return migrate(rest)
    elif command == "erase":
        from services.sink.cli_commands import erase

        return erase(rest)
    elif command == "mask":
        from services.masker import offline

        return offline.main(rest)
    elif command == "settings":
        from services.shared.env import settings_table

        print(settings_table(settings_classes()), end="")
    elif command == "keys":
        from services.shared.keyring import keys_command

        return keys_command(rest)
    elif command == "demo":
        from services.dev.demo import main as demo_main

        return demo_main(rest)
    else:
        print(f"replaypipe: unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
