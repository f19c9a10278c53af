"""A throwaway PostgreSQL cluster per test, for the tests that stop or crash the database
(never the shared one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cronpipe.local import postgres
from schemas.migrate import apply_migrations
from tests.e2e.gateway_processes import free_port


@contextmanager
def own_postgres(tmp_path: Path) -> Iterator[postgres.PostgresLayout]:
    """A migrated cluster on a free port in ``tmp_path``; stopped (immediately) afterwards."""
    layout = postgres.PostgresLayout(home=tmp_path / "pg", port=free_port())
    apply_migrations(postgres.start(layout))
    try:
        yield layout
    finally:
        postgres.stop(layout, mode="immediate")


def crash(layout: postgres.PostgresLayout) -> None:
    """The postmaster stops at once, as in ``pg_ctl restart -m immediate``'s first half."""
    assert postgres.stop(layout, mode="immediate"), f"PostgreSQL did not stop (log {layout.log_file})"


def restart(layout: postgres.PostgresLayout) -> None:
    postgres.start(layout)
