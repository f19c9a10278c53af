"""`cronpipe` command line: one parser per subcommand, settings from CRONPIPE_* variables.

Commands that create something print exactly one JSON object on stdout; progress and
logs go to stderr. Errors exit 1 with one line naming the cause and the fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from schemas.argtypes import positive_int
from schemas.settings import SettingError, Settings, describe

log = logging.getLogger("cronpipe")

#: Commands whose help lists every variable: they start (or measure) the other processes.
_STARTS_EVERYTHING = frozenset({"up", "bench"})


def environment_help(command: str | None) -> str:
    """The settings a command's help lists: every variable for the top level (None) and the
    commands that start the others; otherwise those the command reads (schemas.settings)."""
    return describe(None if command is None or command in _STARTS_EVERYTHING else (command,))


def slug_argument(text: str) -> str:
    """An organization or project slug, refused with its reason (exit 2) before any connection."""
    from cronpipe.admin import slug_problem

    problem = slug_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _connect(settings: Settings):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(settings.effective_database_url(), autocommit=True)


# -- commands -----------------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.migrate import apply_migrations

    applied = apply_migrations(settings.effective_database_url())
    _emit({"applied": applied})
    return 0


def cmd_org_create(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import create_org

    with _connect(settings) as conn:
        org = create_org(conn, args.slug, args.name)
    _emit({"id": org.id, "slug": org.slug})
    return 0


def cmd_project_create(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import create_project, dsn

    with _connect(settings) as conn, conn.transaction():
        p = create_project(conn, args.org, args.slug, args.id, args.name)
    host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    _emit({"id": p.id, "slug": p.slug, "org": p.org, "public_key": p.public_key,
           "dsn": dsn(p.public_key, host, settings.gateway_port, p.id)})
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import create_token

    with _connect(settings) as conn:
        token = create_token(conn, args.org, args.scope)
    _emit({"token": token, "org": args.org, "scope": args.scope})
    return 0


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import list_tokens

    with _connect(settings) as conn:
        _emit({"tokens": list_tokens(conn, args.org)})
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import revoke_token

    with _connect(settings) as conn:
        _emit({"id": revoke_token(conn, args.token), "revoked": True})
    return 0


def cmd_key_list(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import list_keys

    with _connect(settings) as conn:
        _emit({"keys": list_keys(conn, args.org)})
    return 0


def cmd_key_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.admin import revoke_key

    with _connect(settings) as conn:
        revoke_key(conn, args.public_key)
    _emit({"public_key": args.public_key, "revoked": True})
    return 0


def cmd_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.monitors import run

    _emit(run(settings.effective_database_url(), args))
    return 0


def cmd_services_start(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.local.stack import start_services

    services = start_services(settings)
    _emit({"kafka": services.kafka_bootstrap, "database_url": services.database_url})
    return 0


def cmd_services_stop(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.local.stack import stop_services

    _emit({"stopped": stop_services(settings)})
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.topics import Topics, ensure_topics

    created = ensure_topics(settings.kafka_bootstrap, Topics(prefix=settings.topic_prefix).specs())
    _emit({"created": created})
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.worker import run_worker

    return run_worker(settings, agents=args.agents.split(","), loglevel=args.loglevel)


def cmd_maintain(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from consumers.maintenance.plan import config_from_settings
    from consumers.maintenance.run import maintain

    def progress(line: str) -> None:
        print(f"cronpipe maintain: {line}", file=sys.stderr, flush=True)

    now = args.now or datetime.now(timezone.utc)
    summary = maintain(settings.effective_database_url(), now, config_from_settings(settings), progress=progress)
    _emit(summary.as_json())
    return 0


def _utc_time(value: str) -> Any:
    from datetime import datetime, timezone

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.gateway.server import serve

    return serve(settings, workers=args.workers)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from api.server import serve

    return serve(settings, workers=args.workers)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.up import up

    return up(settings, demo=not args.no_demo)


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.up import down

    return down(settings, clean=args.clean)


def cmd_loadgen(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.loadgen import run_loadgen

    return run_loadgen(settings, args)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from cronpipe.bench import run_bench

    return run_bench(settings, args)


# -- parser -------------------------------------------------------------------------


#: Subcommands whose arguments come from their implementation modules, which import the
#: API (FastAPI), faust or the benchmarks: ≈ 1 s of imports that every other command, and
#: every ``cronpipe`` process the tests spawn, would pay for nothing.
_HEAVY_ARGUMENTS = frozenset({"monitor", "loadgen", "bench"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (the one the command line names), the arguments of
    the other heavy subcommands (:data:`_HEAVY_ARGUMENTS`) are left out: they are still
    listed, with their help, but their modules are not imported."""

    def building(name: str) -> bool:
        return command is None or command == name

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="cronpipe", description="Cron-job check-in pipeline (Kafka + PostgreSQL).",
                                     epilog=environment_help(None), formatter_class=fmt)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[Settings, argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=fmt)
        p.set_defaults(func=fn)
        return p

    add("migrate", cmd_migrate, "apply pending SQL migrations (safe to run twice or concurrently)")
    add("topics", cmd_topics, "create the Kafka topics of the contract that do not exist yet")

    org = sub.add_parser("org", help="manage organizations").add_subparsers(dest="action", required=True)
    p = org.add_parser("create", help="create an organization; prints {id, slug}")
    p.add_argument("slug", type=slug_argument)
    p.add_argument("--name", help="display name (default: the slug)")
    p.set_defaults(func=cmd_org_create)

    proj = sub.add_parser("project", help="manage projects").add_subparsers(dest="action", required=True)
    p = proj.add_parser("create", help="create a project and its DSN key; prints {id, slug, org, public_key, dsn}")
    p.add_argument("--org", required=True, help="organization slug")
    p.add_argument("--slug", required=True, type=slug_argument, help="project slug (not all digits)")
    p.add_argument("--id", type=int, help="choose the project id (default: next free)")
    p.add_argument("--name", help="display name (default: the slug)")
    p.set_defaults(func=cmd_project_create)

    tok = sub.add_parser("token", help="manage API tokens").add_subparsers(dest="action", required=True)
    p = tok.add_parser("create", help="create a token for one organization; prints {token, org, scope} once")
    p.add_argument("--org", required=True, help="organization slug")
    p.add_argument("--scope", choices=["read", "write"], default="read",
                   help="read: read routes only (default); write: also create, change and delete monitors")
    p.set_defaults(func=cmd_token_create)
    p = tok.add_parser("list", help="list an organization's tokens (id, prefix, scope); prints {tokens}")
    p.add_argument("--org", required=True, help="organization slug")
    p.set_defaults(func=cmd_token_list)
    p = tok.add_parser("revoke", help="delete a token; the API refuses it within 10 s")
    p.add_argument("token", metavar="TOKEN_OR_ID", help="the token itself, or its id from `token list`")
    p.set_defaults(func=cmd_token_revoke)

    key = sub.add_parser("key", help="manage DSN keys").add_subparsers(dest="action", required=True)
    p = key.add_parser("list", help="list the DSN keys of an organization's projects; prints {keys}")
    p.add_argument("--org", required=True, help="organization slug")
    p.set_defaults(func=cmd_key_list)
    p = key.add_parser("revoke", help="deactivate a project's public key (the gateway stops accepting it)")
    p.add_argument("public_key")
    p.set_defaults(func=cmd_key_revoke)

    mon = sub.add_parser("monitor", help="manage monitors (the API's write routes, without curl)")
    if building("monitor"):
        from cronpipe.monitors import add_arguments as add_monitor_arguments

        add_monitor_arguments(mon, cmd_monitor)

    svc = sub.add_parser("services", help="start/stop the local Kafka and PostgreSQL").add_subparsers(dest="action", required=True)
    svc.add_parser("start", help="start local Kafka and PostgreSQL unless configured elsewhere").set_defaults(func=cmd_services_start)
    svc.add_parser("stop", help="stop the local services this project started").set_defaults(func=cmd_services_stop)

    p = add("worker", cmd_worker, "run the faust worker (check-in processor, clock, clock tasks, incident relay)")
    p.add_argument("--agents", default="all",
                   help="comma-separated: checkins, clock, clock_tasks, relay, "
                        "maintenance, or all (default all)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warn", "error"], help="default info")

    p = add("maintain", cmd_maintain,
            "one retention pass: create check-in partitions ahead, drop expired partitions (DETACH "
            "CONCURRENTLY, DROP), trim shorter retentions and old rollups, prune sent outbox rows, "
            "finished deliveries, the delivery log and consumed alert events, in batches; progress on "
            "stderr, a JSON summary on stdout. Safe beside running workers: one pass at a time")
    p.add_argument("--now", type=_utc_time, default=None,
                   help="pretend it is this time (ISO 8601, UTC unless an offset is given; default: now)")

    p = add("gateway", cmd_gateway, "run the Sentry-compatible HTTP ingest gateway on CRONPIPE_BIND:CRONPIPE_GATEWAY_PORT")
    p.add_argument("--workers", type=positive_int, default=1, help="HTTP worker processes (default 1)")
    p = add("api", cmd_api, "run the read API on CRONPIPE_BIND:CRONPIPE_API_PORT")
    p.add_argument("--workers", type=positive_int, default=1, help="HTTP worker processes (default 1)")

    p = add("up", cmd_up, "bring up the whole local stack, create a demo org/project/token and show check-ins flowing")
    p.add_argument("--no-demo", action="store_true", help="start everything but send no demo check-ins")
    p = add("down", cmd_down, "stop every process and service `cronpipe up` started")
    p.add_argument("--clean", action="store_true", help="also delete local state (Kafka and PostgreSQL data)")

    from cronpipe.channels import add_parsers as add_channel_parsers

    add_channel_parsers(sub, add)

    from cronpipe.clock_status import add_parsers as add_clock_parsers

    add_clock_parsers(sub)

    p = add("loadgen", cmd_loadgen, "synthetic check-in producers writing to ingest-monitors")
    if building("loadgen"):
        _add_loadgen_arguments(p)
    p = add("bench", cmd_bench, "run a benchmark against the local stack and print its figures")
    if building("bench"):
        _add_bench_arguments(p)
    for name, subparser in _subcommands(parser):
        _list_environment(subparser, name)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser's direct subcommands by name (argparse keeps them in its subparsers action)."""
    return [(name, p) for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, p in action.choices.items()]


def _list_environment(parser: argparse.ArgumentParser, command: str) -> None:
    """Give ``parser`` and every parser below it the environment list of ``command``."""
    parser.epilog = environment_help(command)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for _, below in _subcommands(parser):
        _list_environment(below, command)


def _add_loadgen_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from ingest.loadgen import add_arguments
    except ImportError:
        return
    add_arguments(p)


def _add_bench_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from cronpipe.bench import add_arguments
    except ImportError:
        return
    add_arguments(p)


def named_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top-level
    options take no value), or None (e.g. ``cronpipe --help``, where every parser is built)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(named_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cronpipe.admin import AdminError
    from cronpipe.local.procs import ServiceError
    from schemas.channels import ChannelError
    from schemas.destinations import DestinationRefused
    from schemas.topics import TopicError

    try:
        return int(args.func(Settings(), args) or 0)
    except (AdminError, ServiceError, TopicError, ChannelError, DestinationRefused, SettingError) as exc:
        print(f"cronpipe: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, not a stack trace (use -v for one)
        if args.verbose:
            raise
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"cronpipe: error: database unreachable: {first}; check CRONPIPE_DATABASE_URL "
                  "or run `cronpipe services start`", file=sys.stderr)
            return 1
        print(f"cronpipe: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
