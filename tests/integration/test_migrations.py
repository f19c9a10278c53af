from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from schemas.migrate import apply_migrations, available


def _fresh(make_database: Callable[[], str]) -> str:
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return url


def test_migrations_apply_once_and_a_second_run_does_nothing(make_database) -> None:  # type: ignore[no-untyped-def]
    url = _fresh(make_database)
    first = apply_migrations(url)
    assert first == [v for v, _ in available()]
    assert apply_migrations(url) == []
    with psycopg.connect(url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert recorded == first
        assert conn.execute("SELECT to_regclass('public.checkins')").fetchone() == ("checkins",)


def test_two_concurrent_runners_apply_each_migration_exactly_once(make_database) -> None:  # type: ignore[no-untyped-def]
    url = _fresh(make_database)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(apply_migrations(url))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, len(available())]
