"""The worker's database connections run with PostgreSQL's JIT off: the pools' and the
clock tasks' own. With JIT on, a 5,000-task batch spent ≈ 1.4 s of its ≈ 1.6 s outbox
insert compiling it (BENCHMARKS.md, "Clock"). Real PostgreSQL."""

from __future__ import annotations

from consumers.clock.runner import TaskApplier
from tests.integration.clock_helpers import ClockRig, scalar


def test_the_clock_tasks_connection_and_the_pool_run_with_jit_off(rig: ClockRig) -> None:
    applier = TaskApplier(rig.ctx)
    try:
        assert scalar(applier._connection().execute("SHOW jit")) == "off"
    finally:
        applier.close()
    with rig.ctx.pool.connection() as conn:
        assert scalar(conn.execute("SHOW jit")) == "off"
