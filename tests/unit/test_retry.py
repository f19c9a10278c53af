"""The one failure rule every consumer follows (consumers.retry): transient errors back off
and retry, permanent ones propagate and stop the worker; the shielded drain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

import psycopg
import psycopg.errors
import pytest

from consumers import retry
from schemas.database import StoreError, StoreUnavailable

NO_WAIT = retry.Backoff(first_s=0.0, cap_s=0.0)


class Flaky:
    """Raises the given errors one call each, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    async def coroutine(self) -> str:
        return self()


class SendError(RuntimeError):
    pass


def test_the_back_off_doubles_from_half_a_second_and_is_capped_at_two_seconds() -> None:
    assert [retry.DEFAULT_BACKOFF.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert retry.Backoff(first_s=0.5, cap_s=5.0).delay(3) == 4.0
    assert retry.Backoff(first_s=0.5, cap_s=5.0).delay(10_000) == 5.0


def test_a_transient_error_is_retried_until_the_work_succeeds() -> None:
    work = Flaky(StoreUnavailable("connection lost"), psycopg.OperationalError("server closed"),
                 psycopg.errors.SerializationFailure("could not serialize"))
    retried: list[str] = []
    recovered: list[bool] = []
    result = asyncio.run(retry.retry_async("batch", work.coroutine, backoff=NO_WAIT,
                                           on_retry=lambda exc: retried.append(type(exc).__name__),
                                           on_recovered=lambda: recovered.append(True)))
    assert result == "done" and work.calls == 4
    assert retried == ["StoreUnavailable"] * 3  # psycopg's types never reach the caller
    assert recovered == [True]


def test_a_success_at_the_first_attempt_is_no_recovery() -> None:
    recovered: list[bool] = []
    assert asyncio.run(retry.retry_async("batch", Flaky().coroutine, on_recovered=lambda: recovered.append(True))) \
        == "done"
    assert recovered == []


@pytest.mark.parametrize("error", [StoreError("database error: bad"), psycopg.errors.UndefinedTable("no table"),
                                   ValueError("a bug")])
def test_a_permanent_error_propagates_at_once_without_a_retry(error: BaseException) -> None:
    work = Flaky(error)
    with pytest.raises((StoreError, ValueError)) as raised:
        asyncio.run(retry.retry_async("batch", work.coroutine, backoff=NO_WAIT))
    assert work.calls == 1
    assert not isinstance(raised.value, StoreUnavailable)


def test_a_missing_table_becomes_a_store_error_not_a_retry() -> None:
    work = Flaky(psycopg.errors.UndefinedTable('relation "clock_state" does not exist'))
    with pytest.raises(StoreError, match="clock_state"):
        asyncio.run(retry.retry_async("tick", work.coroutine, backoff=NO_WAIT))


def test_errors_the_caller_names_as_transient_are_retried_too() -> None:
    work = Flaky(SendError("not delivered"), SendError("not delivered"))
    assert asyncio.run(retry.retry_async("tick", work.coroutine, transient=(SendError,), backoff=NO_WAIT)) == "done"
    assert work.calls == 3
    with pytest.raises(SendError):
        asyncio.run(retry.retry_async("tick", Flaky(SendError("x")).coroutine, backoff=NO_WAIT))


def test_once_the_worker_is_stopping_no_attempt_starts_and_the_caller_waits_to_be_cancelled() -> None:
    stopping = threading.Event()
    stopping.set()
    work = Flaky()

    async def main() -> None:
        task = asyncio.ensure_future(retry.retry_async("tick", work.coroutine, stopping=stopping))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert work.calls == 0


def test_the_blocking_retry_follows_the_same_rule() -> None:
    stop = threading.Event()
    dropped: list[str] = []
    work = Flaky(StoreUnavailable("connection lost"), psycopg.OperationalError("gone"))
    assert retry.retry_blocking("batch", work, stop=[stop], backoff=NO_WAIT,
                                on_retry=lambda exc: dropped.append(str(exc))) == "done"
    assert work.calls == 3 and len(dropped) == 2
    with pytest.raises(StoreError):
        retry.retry_blocking("batch", Flaky(psycopg.errors.UndefinedTable("no table")), stop=[stop])


def test_the_blocking_retry_gives_up_without_an_attempt_once_a_stop_event_is_set() -> None:
    stop, stopping = threading.Event(), threading.Event()
    work = Flaky()
    stopping.set()
    assert retry.retry_blocking("batch", work, stop=[stop, stopping]) is None
    assert work.calls == 0


def test_a_blocking_retry_without_stop_events_retries_until_the_work_succeeds() -> None:
    work = Flaky(StoreUnavailable("down"), StoreUnavailable("down"))
    assert retry.retry_blocking("batch", work, stop=(), backoff=NO_WAIT) == "done"
    assert work.calls == 3


def test_the_blocking_retry_reports_a_recovery_only_after_a_retry() -> None:
    stop = threading.Event()
    recovered: list[bool] = []
    assert retry.retry_blocking("batch", Flaky(), stop=[stop], on_recovered=lambda: recovered.append(True)) == "done"
    assert recovered == []
    assert retry.retry_blocking("batch", Flaky(StoreUnavailable("down")), stop=[stop], backoff=NO_WAIT,
                                on_recovered=lambda: recovered.append(True)) == "done"
    assert recovered == [True]


def test_a_stop_during_the_back_off_ends_the_blocking_retry_with_nothing_committed() -> None:
    stop = threading.Event()
    work = Flaky(StoreUnavailable("down"), StoreUnavailable("down"))
    assert retry.retry_blocking("batch", work, stop=[stop], on_retry=lambda _exc: stop.set()) is None
    assert work.calls == 1


def test_a_cancelled_caller_waits_for_the_work_in_flight_then_is_cancelled() -> None:
    finished: list[str] = []
    cancelled: list[bool] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def work() -> str:
            await gate.wait()
            finished.append("committed")
            return "committed"

        caller = asyncio.ensure_future(retry.finish_even_if_cancelled(work(), on_cancel=lambda: cancelled.append(True)))
        await asyncio.sleep(0)
        caller.cancel()
        await asyncio.sleep(0)
        assert not caller.done() and cancelled == [True]  # still draining
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(main())
    assert finished == ["committed"]


def test_a_loop_in_its_own_thread_is_told_to_stop_and_finishes_its_batch_on_cancellation() -> None:
    batches: list[int] = []
    started = threading.Event()

    def loop(stop: threading.Event) -> None:
        while not stop.is_set():
            started.set()
            stop.wait(0.01)
            batches.append(len(batches))  # the batch in flight completes after the stop
        batches.append(-1)

    async def main() -> None:
        task = asyncio.ensure_future(retry.run_in_own_thread(loop, name="test-loop"))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert batches[-1] == -1 and len(batches) >= 2


class FakeApp:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


class FakeContext:
    def __init__(self) -> None:
        self.fatal: BaseException | None = None

    def stop_fatally(self, exc: BaseException) -> None:
        self.fatal = exc


def _stop(app: FakeApp, ctx: FakeContext, exc: BaseException) -> Callable[[], Awaitable[Any]]:
    return lambda: retry.stop_worker(cast(Any, app), cast(Any, ctx), "clock", exc)


def test_a_permanent_error_stops_the_worker_loudly_and_never_returns_to_the_stream(
        caplog: pytest.LogCaptureFixture) -> None:
    app, ctx = FakeApp(), FakeContext()
    error = StoreError('database error: relation "clock_state" does not exist')

    async def main() -> None:
        task = asyncio.ensure_future(_stop(app, ctx, error)())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not task.done()  # waits to be cancelled by the worker's stop
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level("CRITICAL", logger="cronpipe.retry"):
        asyncio.run(main())
    assert ctx.fatal is error and app.crashed == [error]
    assert [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"] == [
        'clock stopped: database error: relation "clock_state" does not exist']
