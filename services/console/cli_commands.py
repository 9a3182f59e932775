"""``replaypipe users …`` and ``replaypipe sites …``: the console's state from a terminal.

users create [--admin] [--site SITE --role ROLE] EMAIL
    create an account; prints its one-time password once (it must be changed
    at the first login). Nothing has a default password.
sites get SITE                  the site's current settings (JSON)
sites set SITE FIELD=VALUE ...  change settings (validated like the page), publish
                                to sites.config, record the change in the history
sites history SITE              who changed what, when

They read ``console.state`` and ``sites.config`` from ``KAFKA_BOOTSTRAP_SERVERS``
and the base settings from ``SITES_FILE``, like the services do.
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import sys
import time
from typing import Any

import orjson

from services.console.passwords import hash_password
from services.console.roles import ROLES, parse_role
from services.console.settings import ConsoleSettings
from services.console.site_form import settings_change, settings_diff, settings_from_form
from services.console.state import Account, Membership, normalize_email
from services.console.state_feed import StateStore, load_state
from services.shared.kafka import KafkaSettings
from services.shared.site_feed import load_site_config
from services.shared.site_settings import SiteRegistry, SiteSettings, load_sites_file

USAGE = __doc__ or ""


def users(argv: list[str]) -> int:
    """``replaypipe users create [--admin] [--site S --role R] EMAIL``."""
    args = list(argv)
    if not args or args[0] != "create":
        print(USAGE, file=sys.stderr)
        return 2
    args.pop(0)
    is_admin = "--admin" in args
    args = [a for a in args if a != "--admin"]
    site = _option(args, "--site")
    role = _option(args, "--role") or ("owner" if site else None)
    if len(args) != 1 or "@" not in args[0] or (role is not None and role not in ROLES):
        print(USAGE, file=sys.stderr)
        return 2
    email = normalize_email(args[0])
    one_time = asyncio.run(create_user(KafkaSettings.from_env(), email, is_admin, site, role))
    if one_time is None:
        print(f"replaypipe: an account {email} exists already", file=sys.stderr)
        return 1
    print(f"created {email}{' (instance admin)' if is_admin else ''}")
    print(f"one-time password (shown once, must be changed at first login): {one_time}")
    return 0


async def create_user(
    kafka: KafkaSettings, email: str, is_admin: bool, site: str | None, role: str | None
) -> str | None:
    """Create an account (and a membership); returns its one-time password, or None if it exists."""
    store = StateStore(kafka, await load_state(kafka))
    if store.state.account(email) is not None:
        return None
    one_time = secrets.token_urlsafe(15)
    await store.start()
    try:
        now_ms = int(time.time() * 1000)
        await store.put(
            Account(
                email=email,
                password_hash=hash_password(one_time),
                is_admin=is_admin,
                must_change_password=True,
                created_ms=now_ms,
            )
        )
        if site is not None and role is not None:
            await store.put(
                Membership(
                    site_id=site,
                    email=email,
                    role=parse_role(role),
                    granted_by="cli",
                    granted_ms=now_ms,
                )
            )
    finally:
        await store.stop()
    return one_time


async def ensure_first_admin(kafka: KafkaSettings, email: str) -> str | None:
    """For ``make run``: create the first instance admin if there is none; its one-time password."""
    state = await load_state(kafka)
    if state.has_admin():
        return None
    return await create_user(kafka, normalize_email(email), True, None, None)


def sites(argv: list[str]) -> int:
    """``replaypipe sites get|set|history SITE ...``."""
    if len(argv) < 2 or argv[0] not in ("get", "set", "history"):
        print(USAGE, file=sys.stderr)
        return 2
    command, site_id, rest = argv[0], argv[1], argv[2:]
    kafka = KafkaSettings.from_env()
    if command == "history":
        state = asyncio.run(load_state(kafka))
        for change in state.history_of(site_id):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(change.at_ms / 1000))
            diff = settings_diff(change.before, change.after) if change.before else {"created": ()}
            print(f"{when} {change.who}: " + "; ".join(_describe(n, p) for n, p in diff.items()))
        return 0
    registry = asyncio.run(current_sites(kafka))
    site = registry.get(site_id)
    if site is None:
        print(f"replaypipe: no site {site_id!r} in SITES_FILE or sites.config", file=sys.stderr)
        return 1
    if command == "get":
        print(orjson.dumps(_public(site.to_dict()), option=orjson.OPT_INDENT_2).decode())
        return 0
    form = _form_from_assignments(site, rest)
    if isinstance(form, str):
        print(f"replaypipe: {form}", file=sys.stderr)
        return 2
    result = settings_from_form(site, form)
    if result.settings is None:
        for field, problems in result.problems.items():
            for problem in problems:
                print(f"replaypipe: {field}: {problem}", file=sys.stderr)
        return 1
    who = f"cli:{getpass.getuser()}"
    asyncio.run(_publish_with_history(kafka, who, site, result.settings))
    for name, pair in settings_diff(site.to_dict(), result.settings.to_dict()).items():
        print(_describe(name, pair))
    return 0


def _describe(name: str, pair: Any) -> str:
    if not pair:
        return name
    before, after = pair
    return f"{name}: {orjson.dumps(before).decode()} -> {orjson.dumps(after).decode()}"


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "read_token_sha256"} | {
        "read_tokens": len(doc.get("read_token_sha256", []))
    }


def _form_from_assignments(site: SiteSettings, assignments: list[str]) -> dict[str, Any] | str:
    """``field=value`` pairs as the settings form would post them (lists: comma-separated)."""
    form: dict[str, Any] = {
        "record_inputs": "on" if site.record_inputs else "",
        "pii_detectors": list(site.pii_detectors),
    }
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            return f"expected FIELD=VALUE, got {item!r}"
        if name == "record_inputs":
            if value not in ("true", "false", "on", "off"):
                return "record_inputs must be true or false"
            form[name] = "on" if value in ("true", "on") else ""
        elif name == "pii_detectors":
            form[name] = [v for v in value.split(",") if v]
        elif name in (
            "mask_text_selectors",
            "block_selectors",
            "ignore_input_selectors",
            "scrub_query_params",
            "allowed_origins",
        ):
            # Selectors may contain commas: a list field takes ';' between entries.
            form[name] = "\n".join(v.strip() for v in value.split(";") if v.strip())
        elif name in ("consent_mode", "ip_mode", "sample_rate", "retention_days"):
            form[name] = value
        else:
            return f"{name!r} cannot be set here (see 'replaypipe sites get')"
    return form


async def current_sites(kafka: KafkaSettings) -> SiteRegistry:
    """SITES_FILE, then every ``sites.config`` record up to the topic's current end."""
    registry = SiteRegistry(load_sites_file(ConsoleSettings.from_env().sites_file))
    await load_site_config(registry, kafka)
    return registry


async def _publish_with_history(
    kafka: KafkaSettings, who: str, before: SiteSettings, after: SiteSettings
) -> None:
    store = StateStore(kafka)
    await store.start()
    try:
        await store.publish_site_settings(after)
        await store.put(
            settings_change(who=who, before=before, after=after, at_ms=int(time.time() * 1000))
        )
    finally:
        await store.stop()


def _option(args: list[str], name: str) -> str | None:
    if name not in args:
        return None
    index = args.index(name)
    if index + 1 >= len(args):
        return None
    value = args[index + 1]
    del args[index : index + 2]
    return value
