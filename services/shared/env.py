"""Settings from environment variables, declared once per setting.

A settings class is a frozen dataclass whose fields are made with :func:`setting`:
the field's name and type, its environment variable, its default and what it
means are written in one place. :func:`from_env` reads any such class (and the
settings classes nested in it, such as ``KafkaSettings``); :func:`settings_table`
writes the README's configuration table from the same declarations, and a test
checks that the README shows exactly that table.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")
SettingsT = TypeVar("SettingsT")

_ENV_KEY: Final = "replaypipe.env"


class SettingError(ValueError):
    """An environment variable with a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class EnvVar:
    """How one setting is read from the environment and shown in the README."""

    name: str
    meaning: str
    # Text -> value, for a setting whose variable is not in the field's unit.
    parse: Callable[[str], Any] | None = None
    # The default as the README writes it, when the field's own value would mislead.
    shown_default: str | None = None


def setting(
    env: str,
    default: T,
    meaning: str,
    *,
    parse: Callable[[str], T] | None = None,
    shown_default: str | None = None,
) -> T:
    """A settings field read from ``env``; ``meaning`` is its line in the README table."""
    metadata = {_ENV_KEY: EnvVar(env, meaning, parse, shown_default)}
    return dataclasses.field(default=default, metadata=metadata)


def from_env(cls: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    """An instance of the settings class ``cls`` from ``environ`` (default: ``os.environ``).

    An unset variable keeps the field's default; so does an empty one, except for
    text and list settings, where empty is a value. A value that cannot be read
    raises :class:`SettingError` naming the variable.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(typing.cast(Any, cls)):
        var: EnvVar | None = field.metadata.get(_ENV_KEY)
        hint = hints[field.name]
        if var is None:
            values[field.name] = from_env(_nested_settings(cls, field.name, hint), env)
            continue
        raw = env.get(var.name)
        if raw is None:
            continue
        parsed = _parse(var, hint, raw)
        if parsed is not _DEFAULT:
            values[field.name] = parsed
    return cls(**values)


_DEFAULT: Final = object()


def _parse(var: EnvVar, hint: object, raw: str) -> object:
    if hint is str:
        return raw
    if typing.get_origin(hint) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if raw.strip() == "":
        return _DEFAULT
    if var.parse is not None:
        reader, kind = var.parse, "a number"
    elif hint is int:
        reader, kind = int, "an integer"
    elif hint is float:
        reader, kind = float, "a number"
    else:
        raise TypeError(f"{var.name}: no reader for settings of type {hint!r}")
    try:
        return reader(raw)
    except ValueError:
        raise SettingError(f"{var.name} must be {kind}, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class DeclaredSetting:
    """One environment variable as the README table lists it."""

    name: str
    default: str
    used_by: str
    meaning: str


def declared_settings(classes: Mapping[str, type[Any]]) -> list[DeclaredSetting]:
    """Every variable that ``classes`` (service name -> settings class) read, once each.

    Variables read by every service come first. A variable declared by two classes
    must have the same default and meaning in both.
    """
    seen: dict[str, tuple[str, str]] = {}
    users: dict[str, list[str]] = {}
    for service, cls in classes.items():
        for var, default in _env_fields(cls):
            shown = _shown_default(var, default)
            if var.name in seen and seen[var.name] != (shown, var.meaning):
                raise SettingError(f"{var.name} is declared twice with different defaults/meanings")
            seen[var.name] = (shown, var.meaning)
            users.setdefault(var.name, [])
            if service not in users[var.name]:
                users[var.name].append(service)
    every = len(classes)
    order = sorted(seen, key=lambda name: (len(users[name]) != every, list(seen).index(name)))
    return [
        DeclaredSetting(
            name,
            seen[name][0],
            "all" if len(users[name]) == every else ", ".join(users[name]),
            seen[name][1],
        )
        for name in order
    ]


def settings_table(classes: Mapping[str, type[Any]]) -> str:
    """The README's configuration table (Markdown) for ``classes``."""
    rows = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    rows += [
        f"| `{s.name}` | {s.default} | {s.used_by} | {s.meaning} |"
        for s in declared_settings(classes)
    ]
    return "\n".join(rows) + "\n"


def _env_fields(cls: type[Any]) -> Iterable[tuple[EnvVar, object]]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        var: EnvVar | None = field.metadata.get(_ENV_KEY)
        if var is not None:
            yield var, field.default
        else:
            yield from _env_fields(_nested_settings(cls, field.name, hints[field.name]))


def _nested_settings(cls: type[Any], name: str, hint: object) -> type[Any]:
    # A field that is neither a setting nor a settings class would silently be a
    # constant nobody can configure: refuse the class instead.
    if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        raise TypeError(f"{cls.__name__}.{name} is not declared with setting()")
    return hint


def _shown_default(var: EnvVar, default: object) -> str:
    if var.shown_default is not None:
        return var.shown_default
    if isinstance(default, float):
        return f"`{default:g}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`"
    return f"`{default}`"


def days_as_ms(raw: str) -> int:
    """A number of days (fractions allowed) given in the environment, as milliseconds."""
    return int(float(raw) * 86_400_000)


def log_level_setting() -> str:
    """``LOG_LEVEL``, read by every service."""
    return setting("LOG_LEVEL", "INFO", "JSON-lines logs on stderr (`DEBUG`, `INFO`, `WARNING`, …)")


def sites_file_setting() -> str:
    """``SITES_FILE``, read by every service."""
    return setting(
        "SITES_FILE",
        "config/sites.json",
        "per-site settings file (also updated live via `sites.config`)",
    )


def read_secret_file(variable: str, path: str) -> str:
    """The secret stored in the file ``path`` named by the variable ``variable``.

    Secrets come from files (a mounted Kubernetes Secret), never from a variable
    or a default. One trailing line break is dropped (``echo`` adds one). A
    missing, unreadable or empty file raises :class:`SettingError` naming the
    variable and the path, never the content.
    """
    if not path:
        raise SettingError(f"{variable} is not set: name the file that holds the secret")
    try:
        secret = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingError(f"{variable}: cannot read {path} ({reason})") from None
    secret = secret.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise SettingError(f"{variable}: {path} is empty")
    return secret
