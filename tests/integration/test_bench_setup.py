"""`cronpipe bench` on a database nobody has migrated yet: it migrates before measuring."""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from cronpipe.bench import run_bench
from schemas.settings import Settings


def test_a_benchmark_finds_the_schema_on_a_database_that_was_never_migrated(
        make_database: Callable[[], str], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    seen: list[Any] = []

    def run(settings: Settings, args: argparse.Namespace) -> int:
        with psycopg.connect(settings.effective_database_url()) as conn:
            seen.append(conn.execute("SELECT to_regclass('public.organizations')").fetchone())
        return 0

    # The benchmark itself is replaced: what is under test is what runs before it.
    monkeypatch.setattr("cronpipe.bench.load", lambda name: types.SimpleNamespace(run=run))
    code = run_bench(Settings(kafka_bootstrap=kafka_bootstrap, database_url=url), argparse.Namespace(bench="pipeline"))
    assert code == 0
    assert seen == [("organizations",)]
