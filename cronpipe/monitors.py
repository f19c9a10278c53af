"""`cronpipe monitor ...`: the API's management operations (api.manage) from the command line.

Not a second implementation: each command resolves the monitor with the API's resolution
code, runs the same api.manage function in one transaction and prints the monitor as the
API serializes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from api import manage, present, store
from api.deletions import purge_all
from api.errors import ApiError
from api.resolve import find_monitor_scope
from api.routes import parse_list_query
from api.store import EnvironmentRow, MonitorRow
from api.write_routes import stored_monitors
from cronpipe.admin import AdminError
from schemas.api import MonitorWrite
from schemas.enums import MonitorStatus

#: ``monitor <action>`` → the update body it stands for.
SHORTCUTS: dict[str, dict[str, Any]] = {
    "mute": {"is_muted": True}, "unmute": {"is_muted": False},
    "disable": {"status": "disabled"}, "enable": {"status": "active"},
}


def run(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        return asyncio.run(_run(database_url, args))
    except ApiError as exc:
        raise AdminError(exc.detail) from None


def _body(args: argparse.Namespace) -> MonitorWrite:
    fields: dict[str, Any] = {k: getattr(args, k, None) for k in ("project", "name", "slug", "status")}
    if getattr(args, "config", None) is not None:
        try:
            fields["config"] = json.loads(args.config)
        except ValueError as exc:
            raise AdminError(f"--config is not JSON: {exc}") from None
    if getattr(args, "channel", None):
        fields["alert_channels"] = args.channel
    elif getattr(args, "all_channels", False):
        fields["alert_channels"] = "all"
    fields.update(SHORTCUTS.get(args.action, {}))
    try:
        return MonitorWrite.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValueError as exc:
        raise AdminError(str(exc).splitlines()[0] + ": " + str(exc).splitlines()[-1].strip()) from None


async def _run(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT id FROM organizations WHERE slug = %(slug)s", {"slug": args.org})
        found = await cur.fetchone()
        if found is None:
            raise AdminError(f"organization {args.org!r} not found")
        org_id = int(found[0])
        now = datetime.now(UTC)
        if args.action == "list":
            return {"monitors": await _list(conn, org_id, args)}
        if args.action == "create":
            async with conn.transaction():
                monitor_id = await manage.create_monitor(conn, org_id, _body(args))
                return _dump((await stored_monitors(conn, [monitor_id]))[0])
        scope = await find_monitor_scope(conn, org_id, args.org, args.in_project, args.monitor)
        monitor_id = scope.monitor.id
        if args.action == "show":
            return _dump((await stored_monitors(conn, [monitor_id]))[0])
        if args.action == "delete":
            async with conn.transaction():
                await manage.delete_monitor(conn, org_id, monitor_id, args.environment)
            purged = await purge_all(conn) >= 0 if args.wait else False
            return {"deleted": str(scope.monitor.guid), "purged": purged}
        async with conn.transaction():
            await manage.update_monitor(conn, org_id, monitor_id, _body(args), now)
            return _dump((await stored_monitors(conn, [monitor_id]))[0])


async def _list(conn: Any, org_id: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    statuses, text = parse_list_query(args.query)
    monitors = await store.fetch_all(conn, MonitorRow, store.monitor_list(args.sort), {
        "organization_id": org_id, "project_keys": args.project_filter, "project_numbers": None,
        "environments": None, "statuses": statuses, "disabled": MonitorStatus.DISABLED, "text": text,
        "limit": 10_000, "offset": 0})
    envs = await store.fetch_all(conn, EnvironmentRow, store.ENVIRONMENTS,
                                 {"monitor_ids": [m.id for m in monitors], "environments": None})
    by_monitor: dict[int, list[EnvironmentRow]] = {m.id: [] for m in monitors}
    for env in envs:
        by_monitor[env.monitor_id].append(env)
    return [_dump(present.monitor(m, by_monitor[m.id])) for m in monitors]


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped


def add_arguments(mon: argparse.ArgumentParser, func: Any) -> None:
    """``cronpipe monitor list|show|create|update|mute|unmute|disable|enable|delete``: the
    actions under ``mon`` (cronpipe.cli adds ``mon`` itself, so its help needs no import of this)."""
    actions = mon.add_subparsers(dest="action", required=True)

    def action(name: str, help_: str, monitor: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_)
        p.add_argument("--org", required=True, help="organization slug")
        if monitor:
            p.add_argument("monitor", help="monitor guid or slug")
            p.add_argument("--in-project", dest="in_project", help="project id or slug the monitor belongs to")
        p.set_defaults(func=func)
        return p

    p = action("list", "list monitors; prints {monitors}", monitor=False)
    p.add_argument("--project", dest="project_filter", action="append", help="project slug (repeatable)")
    p.add_argument("--query", help="free text on name or slug, and status:active|disabled|ok|error")
    p.add_argument("--sort", choices=sorted(store.MONITOR_SORTS), default="name")
    action("show", "print one monitor as the API shows it")
    p = action("create", "create a monitor; prints it", monitor=False)
    p.add_argument("--project", required=True, help="project id or slug")
    p.add_argument("--name", required=True, help="display name (the slug defaults to it, slugified)")
    p.add_argument("--slug")
    p.add_argument("--status", choices=["active", "disabled"])
    p.add_argument("--config", required=True, help='JSON, e.g. \'{"schedule_type": "crontab", "schedule": "0 3 * * *"}\'')
    p.add_argument("--channel", action="append", metavar="CHANNEL_ID",
                   help="notify only this alert channel (repeatable; default: every channel of the organization)")
    p = action("update", "change name, slug, status, config (merged into the stored one) or alert routing")
    p.add_argument("--name")
    p.add_argument("--slug")
    p.add_argument("--status", choices=["active", "disabled"])
    p.add_argument("--config", help="JSON keys to merge into the stored config")
    routing = p.add_mutually_exclusive_group()
    routing.add_argument("--channel", action="append", metavar="CHANNEL_ID",
                         help="notify only these alert channels (repeatable; replaces the monitor's list)")
    routing.add_argument("--all-channels", action="store_true",
                         help="notify every channel of the organization again (the default routing)")
    for name, help_ in (("mute", "mute every environment"), ("unmute", "unmute every environment"),
                        ("disable", "stop accepting check-ins and clock tasks"),
                        ("enable", "accept check-ins again, expecting the next slot after now")):
        action(name, help_)
    p = action("delete", "delete the monitor (or --environment E ...); rows are purged in the background")
    p.add_argument("--environment", action="append", help="delete only this environment (repeatable)")
    p.add_argument("--wait", action="store_true", help="purge the rows now instead of leaving it to `cronpipe api`")
