from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest

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


def _apply_until(url: str, last: str) -> None:
    """Apply the migrations up to and including ``last`` as ``apply_migrations`` would."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, path in available():
            if version > last:
                break
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def test_partitioning_converts_a_database_with_check_ins_without_losing_a_row(make_database) -> None:  # type: ignore[no-untyped-def]
    url = _fresh(make_database)
    _apply_until(url, "0007_zzz")  # everything before 0008_partitioning
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (slug, name) VALUES ('acme', 'acme')")
        conn.execute("INSERT INTO projects (id, organization_id, slug, name) VALUES (1, 1, 'p', 'p')")
        conn.execute("INSERT INTO monitors (organization_id, project_id, slug, name, config)"
                     " VALUES (1, 1, 'm', 'm', '{}')")
        conn.execute("INSERT INTO monitor_environments (monitor_id, environment) VALUES (1, 'production')")
        # 3,000 check-ins over 300 days, a few in progress; ids from the table's sequence.
        conn.execute("INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                     " date_added, date_updated, timeout_at)"
                     " SELECT gen_random_uuid(), 1, 1, 1, CASE WHEN n % 100 = 0 THEN 3 ELSE 1 END,"
                     " now() - n * interval '2 hours 24 minutes', now(),"
                     " CASE WHEN n % 100 = 0 THEN now() END FROM generate_series(1, 3000) AS n")
        before = conn.execute("SELECT id, guid, status, date_added, timeout_at FROM checkins ORDER BY id").fetchall()
    assert apply_migrations(url) == [v for v, _ in available() if v > "0007_zzz"]
    with psycopg.connect(url, autocommit=True) as conn:
        after = conn.execute("SELECT id, guid, status, date_added, timeout_at FROM checkins ORDER BY id").fetchall()
        assert after == before
        assert conn.execute("SELECT count(*), count(DISTINCT retention_days) FROM checkins").fetchone() == (3000, 1)
        guids = conn.execute("SELECT guid, checkin_id FROM checkin_guids ORDER BY checkin_id").fetchall()
        assert guids == [(g, i) for i, g, *_ in before]
        days = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'checkins'::regclass").fetchone()
        assert days is not None and days[0] >= 300
        # New rows continue the old id sequence, and the guid stays unique across partitions.
        new_id = conn.execute("INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id,"
                              " status, date_added, date_updated) VALUES (gen_random_uuid(), 1, 1, 1, 1, now(),"
                              " now()) RETURNING id").fetchone()
        assert new_id is not None and new_id[0] > before[-1][0]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO checkins (guid, project_id, monitor_id, monitor_environment_id, status,"
                         " date_added, date_updated) VALUES (%s, 1, 1, 1, 1, now() - interval '100 days', now())",
                         (before[0][1],))
