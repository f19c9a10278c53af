"""`cronpipe channel create|list|test|delete|log` and `cronpipe notifier`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from schemas.settings import Settings

__all__ = ["add_parsers"]

Command = Callable[[Settings, argparse.Namespace], int]


def _emit(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def _connect(settings: Settings) -> Any:
    import psycopg

    return psycopg.connect(settings.effective_database_url(), autocommit=True)


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    from schemas import channels as store
    from schemas.destinations import resolve_destination

    resolve_destination(args.url, allow_private=settings.notify_allow_private)
    with _connect(settings) as conn:
        channel, secret = store.create_channel(conn, args.org, args.kind, args.url, args.routing_key)
    _emit({"id": str(channel.guid), "kind": channel.kind, "url": channel.url, "secret": secret})
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from schemas import channels as store

    with _connect(settings) as conn:
        _emit({"channels": [c.public() for c in store.list_channels(conn, args.org)]})
    return 0


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    from schemas import channels as store

    with _connect(settings) as conn:
        store.delete_channel(conn, args.org, args.id)
    _emit({"id": args.id, "deleted": True})
    return 0


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.service import delivery_config
    from notifier.testing import send_test
    from schemas import channels as store

    with _connect(settings) as conn:
        result = send_test(conn, store.find_channel(conn, args.org, args.id), delivery_config(settings))
    _emit(result)
    return 0 if result["delivered"] else 1


def cmd_log(settings: Settings, args: argparse.Namespace) -> int:
    from schemas import channels as store

    with _connect(settings) as conn:
        _emit({"id": args.id, "attempts": store.read_log(conn, args.org, args.id, limit=args.limit)})
    return 0


def cmd_notifier(settings: Settings, args: argparse.Namespace) -> int:
    from notifier.service import run_notifier

    return run_notifier(settings)


def add_parsers(sub: Any, add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    """Register `channel ...` and `notifier` on the CLI's subparsers."""
    from schemas.channels import KINDS

    add("notifier", cmd_notifier, "deliver monitors-incidents events to the alert channels (webhook, Slack, PagerDuty)")
    ch = sub.add_parser("channel", help="manage alert channels").add_subparsers(dest="action", required=True)
    p = ch.add_parser("create", help="create a channel; prints {id, kind, url, secret} (the secret is shown once)")
    p.add_argument("--org", required=True, help="organization slug")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--url", required=True, help="destination; private addresses need CRONPIPE_NOTIFY_ALLOW_PRIVATE=1")
    p.add_argument("--routing-key", help="pagerduty: the integration (routing) key")
    p.set_defaults(func=cmd_create)
    p = ch.add_parser("list", help="the organization's channels (no secrets)")
    p.add_argument("--org", required=True)
    p.set_defaults(func=cmd_list)
    for name, fn, what in (("test", cmd_test, "send a test notification now (revives a failing channel)"),
                           ("delete", cmd_delete, "delete a channel with its deliveries and log")):
        p = ch.add_parser(name, help=what)
        p.add_argument("id", help="channel id")
        p.add_argument("--org", required=True)
        p.set_defaults(func=fn)
    p = ch.add_parser("log", help="the channel's delivery attempts, newest first")
    p.add_argument("id", help="channel id")
    p.add_argument("--org", required=True)
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_log)
