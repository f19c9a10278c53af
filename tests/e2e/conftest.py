"""Fixtures of the end-to-end tests (each runs real `cronpipe` processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cronpipe.local import kafka
from schemas.settings import Settings
from tests.e2e.gateway_processes import free_port_pair


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[kafka.KafkaLayout]:
    """A throwaway single-node broker on a free port pair, in a folder of this test: one a
    test may stop and start (never the shared one)."""
    layout = kafka.KafkaLayout(home=tmp_path / "kafka", port=free_port_pair())
    layout.home.mkdir(parents=True)
    shared_libs = kafka.layout_for(Settings().state_dir, "127.0.0.1:9092").libs
    if (shared_libs / ".complete").exists():
        layout.libs.symlink_to(shared_libs)  # reuse the jars instead of fetching them again
    kafka.start(layout)
    try:
        yield layout
    finally:
        kafka.stop(layout)
