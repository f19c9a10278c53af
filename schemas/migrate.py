"""Versioned SQL migrations (``schemas/migrations/NNNN_name.sql``), applied in order.

Each file runs in its own transaction and is recorded in ``schema_migrations``. A
session-level advisory lock makes two concurrent runners safe: the second waits, then
finds nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant shared by every cronpipe process ("cronpipe" in ASCII, truncated).
_LOCK_KEY = 0x63726F6E70697065


def available() -> list[tuple[str, Path]]:
    """(version, path) pairs sorted by version; version is the file name without .sql."""
    return sorted((p.stem, p) for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def apply_migrations(database_url: str) -> list[str]:
    """Apply every pending migration; return the versions applied by this call."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, path in available():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
