"""The DLQ limit is a guard against our own bugs, never a switch a client can flip
(consumers.checkins.dlq, issue #10.1): each project counts at most its budget per window."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from consumers.checkins.dlq import (
    DeadLetter,
    DlqLimiter,
    DlqLimitExceeded,
    DlqPolicy,
    project_of_key,
)
from consumers.checkins.dlq_server import shared_limiter
from consumers.context import WorkerContext

POLICY = DlqPolicy(max_messages=1000, window_s=60, project_budget=100)


def letters(project_id: int | None, n: int) -> list[DeadLetter]:
    return [DeadLetter("ingest", 0, i, None, b"\xc1", "undecodable", project_id) for i in range(n)]


def test_any_number_of_dead_letters_from_one_project_never_reaches_the_limit() -> None:
    limiter = DlqLimiter(POLICY)
    for second in range(50):
        limiter.admit(letters(7, 1000), now=second)
    assert limiter.counted() == 100


def test_a_project_past_its_budget_is_reported_and_the_others_still_count() -> None:
    limiter = DlqLimiter(POLICY)
    assert limiter.admit(letters(7, 100), now=0) == set()
    assert limiter.admit(letters(7, 1) + letters(8, 5), now=1) == {7}
    assert limiter.counted() == 105


def test_unattributed_dead_letters_share_one_budget() -> None:
    limiter = DlqLimiter(POLICY)
    assert limiter.admit(letters(None, 5000), now=0) == {None}
    assert limiter.counted() == 100


def test_many_projects_failing_at_once_stop_the_worker_as_a_bad_deploy_would() -> None:
    limiter = DlqLimiter(POLICY)
    for project in range(10):
        limiter.admit(letters(project, 100), now=project)
    with pytest.raises(DlqLimitExceeded, match="from 11 projects"):
        limiter.admit(letters(10, 1), now=10)


def test_a_projects_budget_refills_when_its_dead_letters_leave_the_window() -> None:
    limiter = DlqLimiter(POLICY)
    limiter.admit(letters(7, 150), now=0)
    assert limiter.admit(letters(7, 50), now=61) == set()
    assert limiter.counted() == 50


@pytest.mark.parametrize(("key", "project"), [
    (b"42:nightly-backup", 42), (b"1:x", 1), (b"abc:slug", None), (b"", None), (None, None), (b"42", None),
])
def test_a_dead_letter_is_attributed_to_the_project_its_key_names(key: bytes | None, project: int | None) -> None:
    assert project_of_key(key) == project


def test_a_project_over_its_budget_is_reported_once_per_window() -> None:
    limiter = DlqLimiter(POLICY)
    assert [limiter.first_report(7, now) for now in (0, 1, 59, 60, 61)] == [True, False, False, True, False]
    assert limiter.first_report(8, 1)


@pytest.mark.parametrize("batch_process", [False, True])
def test_several_readers_share_one_dlq_limit(batch_process: bool) -> None:
    """Two check-in readers (threads, or batch processes calling the limiter's server)
    count toward one limit: 11 projects past it stop the worker, whichever reader sent them."""
    ctx = cast(WorkerContext, SimpleNamespace(batch_process=batch_process, dlq=POLICY))
    limiter, stop = shared_limiter(ctx, readers=2)
    assert limiter is not None
    try:
        for project in range(10):
            assert limiter.admit(letters(project, 100), now=0.0) == set()
        with pytest.raises(DlqLimitExceeded, match="1001 dead letters"):
            limiter.admit(letters(10, 1), now=1.0)
        assert limiter.admit(letters(3, 1), now=2.0) == {3}  # over its budget: sent, not counted
    finally:
        stop()
